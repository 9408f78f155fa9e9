//! Object stores beyond the local disk: S3 (moto_server) and Azure Blob (azurite), both real
//! servers started by scripts/test. Each test writes under its own prefix.

mod support;

use coffre::data::v1::DATA_FILE;
use coffre::error::Class;
use support::db::unique;
use support::s3::{S3_ENV, env, s3_keys, s3_open_uploads, s3_store, workspace_with_store};
use support::{Workspace, noise};

/// Azurite's published development account key (not a secret).
const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

#[test]
fn s3_backup_spans_several_parts_and_restores() {
    let prefix = unique("s3");
    let ws = workspace_with_store(&s3_store(&prefix));
    let data = noise(12 * 1024 * 1024 + 321, 11);
    std::fs::write(ws.path("input.bin"), &data).unwrap();
    ws.file_job("files", "input.bin");
    let run = ws.run_env(&["backup", "files", "--json"], &S3_ENV);
    run.ok();
    let id = serde_json::from_slice::<serde_json::Value>(&run.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    // The manifest and recipe in the backup's directory, its session, and one pack (12 MiB
    // of new chunks, uploaded in parts).
    let keys = s3_keys(&prefix);
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert!(
        keys.iter()
            .all(|k| k.starts_with(&format!("{prefix}/files/")))
    );
    assert!(
        keys.iter()
            .any(|k| k.ends_with(&format!("{id}/recipe.cfr")))
    );
    assert!(
        keys.iter()
            .any(|k| k.ends_with(&format!("{id}/manifest.json")))
    );
    assert!(
        keys.iter()
            .any(|k| k.ends_with(&format!("_sessions/{id}.json")))
    );
    assert!(
        keys.iter()
            .any(|k| k.contains("/_packs/") && k.ends_with(".cfp"))
    );

    let list = ws.run_env(&["list", "--json"], &S3_ENV);
    list.ok();
    assert!(list.stdout_text().contains(&id));
    ws.run_env(&["verify", &id], &S3_ENV).ok();
    ws.run_env(&["restore", &id, "--to", "out.bin"], &S3_ENV)
        .ok();
    assert!(std::fs::read(ws.path("out.bin")).unwrap() == data);
}

#[test]
fn s3_failed_dump_aborts_the_multipart_upload() {
    let prefix = unique("s3fail");
    let ws = workspace_with_store(&s3_store(&prefix));
    // More than two 5 MiB parts reach the store before the dump fails.
    ws.shell_job("broken", "head -c 12000000 /dev/urandom; exit 4");
    let run = ws.run_env(&["backup", "broken"], &S3_ENV);
    run.expect_class(Class::Source);
    assert!(s3_keys(&prefix).is_empty(), "{:?}", s3_keys(&prefix));
    assert!(
        s3_open_uploads(&prefix).is_empty(),
        "{:?}",
        s3_open_uploads(&prefix)
    );
}

#[test]
fn unreachable_s3_endpoint_is_a_store_error() {
    let ws = workspace_with_store(
        "[store]\nkind = \"s3\"\nbucket = \"coffre-test\"\nendpoint = \"http://127.0.0.1:9\"\npath_style = true\nallow_http = true\n",
    );
    ws.write("input.bin", "x");
    ws.file_job("files", "input.bin");
    let mut env = S3_ENV.to_vec();
    env.extend([("AWS_ACCESS_KEY_ID", "x"), ("AWS_SECRET_ACCESS_KEY", "y")]);
    // Few retries, so the test does not wait for the default backoff.
    let config = std::fs::read_to_string(ws.path("coffre.toml")).unwrap();
    ws.write(
        "coffre.toml",
        &config.replace(
            "part_size_mib = 5",
            "part_size_mib = 5\nretries = 1\nretry_timeout_secs = 2",
        ),
    );
    let run = ws.run_env(&["backup", "files"], &env);
    run.expect_failure(Class::Store, "store error");
}

#[test]
fn plain_http_endpoints_need_allow_http() {
    let ws = workspace_with_store(
        "[store]\nkind = \"s3\"\nbucket = \"b\"\nendpoint = \"http://minio.internal:9000\"\n",
    );
    let run = ws.run(&["config", "check"]);
    run.expect_failure(Class::Config, "allow_http");
}

#[test]
fn azure_backup_restores() {
    let prefix = unique("az");
    let store = format!(
        "[store]\nkind = \"azure\"\naccount = \"devstoreaccount1\"\ncontainer = \"coffre-test\"\nendpoint = \"{}\"\nallow_http = true\naccess_key_env = \"TEST_AZ_KEY\"\nprefix = \"{prefix}\"\n",
        env("COFFRE_TEST_AZURITE")
    );
    let ws = workspace_with_store(&store);
    let data = noise(7 * 1024 * 1024, 5);
    std::fs::write(ws.path("input.bin"), &data).unwrap();
    ws.file_job("files", "input.bin");
    let az = [("TEST_AZ_KEY", AZURITE_KEY)];
    let run = ws.run_env(&["backup", "files", "--json"], &az);
    run.ok();
    let list = ws.run_env(&["list", "--json"], &az);
    list.ok();
    assert_eq!(support::json_lines(&list).len(), 1);
    ws.run_env(&["verify", "--latest"], &az).ok();
    ws.run_env(&["restore", "--latest", "--to", "out.bin"], &az)
        .ok();
    assert!(std::fs::read(ws.path("out.bin")).unwrap() == data);
}

fn lock_store(prefix: &str) -> String {
    s3_store(prefix).replace("bucket = \"coffre-test\"", "bucket = \"coffre-lock\"")
}

/// What `tests/interop/s3_lock_check.py` (boto3, not coffre) reports of every object version
/// under `prefix` in the lock bucket: mode, retain-until, and whether deleting it was refused.
fn lock_report(prefix: &str) -> serde_json::Value {
    let out = support::interop(
        "s3_lock_check.py",
        [env("COFFRE_TEST_S3").as_str(), "coffre-lock", prefix],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // The audit trail beside the backups is checked on its own (`PREFIX/_audit`).
    if !prefix.ends_with("/_audit") {
        let versions = report["versions"].as_array_mut().unwrap();
        versions.retain(|v| {
            let key = v["key"].as_str().unwrap_or_default();
            !key.contains("/_audit/") && !key.contains("/_runs/")
        });
    }
    report
}

/// Checked through the S3 API with boto3, not through coffre: `count` object versions under
/// `prefix`, each in governance mode and none deletable; a backup's own objects for about two
/// days, the packs and sessions later backups may reuse for a week more.
fn assert_all_locked(prefix: &str, count: usize) {
    let report = lock_report(prefix);
    assert_eq!(
        report["control"], "deleted",
        "an unlocked version must be deletable"
    );
    let versions = report["versions"].as_array().unwrap();
    assert_eq!(versions.len(), count, "{report}");
    for v in versions {
        assert_eq!(v["mode"], "GOVERNANCE", "{v}");
        assert_eq!(v["delete"], "AccessDenied", "{v}");
        let until = chrono::DateTime::parse_from_rfc3339(v["until"].as_str().unwrap()).unwrap();
        let hours = (until.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours();
        let key = v["key"].as_str().unwrap();
        let days = match key.contains("/_packs/") || key.contains("/_sessions/") {
            true => 9,
            false => 2,
        };
        assert!(
            (days * 24 - 1..=days * 24).contains(&hours),
            "{v}: locked for {hours} hours, not {days} days"
        );
    }
}

#[test]
fn object_lock_protects_every_object_of_a_backup() {
    let prefix = unique("lock");
    let ws = workspace_with_store(&lock_store(&prefix));
    ws.write("input.bin", "discharge summaries");
    ws.write(
        "jobs/files.toml",
        "[object_lock]\nmode = \"governance\"\ndays = 2\n\n[retention]\nkeep_within_days = 0\nmin_keep = 0\n\n[source]\nkind = \"file\"\npath = \"../input.bin\"\n",
    );
    let first = ws.run_env(&["backup", "files", "--json"], &S3_ENV);
    first.ok();
    ws.run_env(&["backup", "files"], &S3_ENV).ok();

    // Two manifests, two recipes, two sessions, and the one pack both use.
    assert_all_locked(&prefix, 7);
    // A key change rewrites the sessions: their new versions are locked too.
    ws.run_raw(&["key", "generate", "new.key"], &[]).ok();
    ws.run_env(&["key", "add", "--new-key-file", "new.key"], &S3_ENV)
        .ok();
    assert_all_locked(&prefix, 9);

    // The manifest records the lock, and prune keeps a locked backup it would otherwise drop.
    let id = serde_json::from_slice::<serde_json::Value>(&first.stdout).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let plan = ws.run_env(&["prune", "files", "--dry-run"], &S3_ENV);
    plan.ok();
    let line = plan
        .stdout_text()
        .lines()
        .find(|l| l.contains(&id))
        .unwrap()
        .to_string();
    assert!(line.contains("keep (object lock)"), "{line}");
    ws.run_env(&["verify", "--all"], &S3_ENV).ok();
}

/// Hours each object version under `prefix` stays locked, by key, read back with boto3.
fn locked_hours(prefix: &str) -> Vec<(String, i64)> {
    let report = lock_report(prefix);
    let versions = report["versions"].as_array().unwrap();
    let mut hours: Vec<(String, i64)> = versions
        .iter()
        .map(|v| {
            let until = chrono::DateTime::parse_from_rfc3339(v["until"].as_str().unwrap()).unwrap();
            let left = (until.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_hours();
            (v["key"].as_str().unwrap().to_string(), left)
        })
        .collect();
    hours.sort();
    hours
}

/// A backup locked longer than the one before extends the lock of the pack and session it
/// reuses before its manifest is written, so that nothing it needs can go before it may.
#[test]
fn object_lock_extends_what_a_backup_reuses_to_its_own_retention() {
    let prefix = unique("lock-extend");
    let ws = workspace_with_store(&lock_store(&prefix));
    ws.write("input.bin", "discharge summaries");
    let job = |days: u32| {
        format!(
            "[object_lock]\nmode = \"governance\"\ndays = {days}\n\n[source]\nkind = \"file\"\npath = \"../input.bin\"\n"
        )
    };
    ws.write("jobs/files.toml", &job(2));
    ws.run_env(&["backup", "files"], &S3_ENV).ok();
    let before = locked_hours(&prefix);
    let (pack, session) = (
        before
            .iter()
            .find(|(k, _)| k.contains("/_packs/"))
            .unwrap()
            .clone(),
        before
            .iter()
            .find(|(k, _)| k.contains("/_sessions/"))
            .unwrap()
            .clone(),
    );
    // Two days, and a week more for what later backups reuse.
    assert!((8 * 24..=9 * 24).contains(&pack.1), "{before:?}");

    ws.write("jobs/files.toml", &job(20));
    let second = ws.run_env(&["backup", "files", "--json"], &S3_ENV);
    second.ok();
    let summary: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(
        (
            &summary["format"],
            &summary["new_chunks"],
            &summary["chunks"]
        ),
        (
            &serde_json::json!(2),
            &serde_json::json!(0),
            &serde_json::json!(1)
        ),
        "{summary}"
    );
    let after = locked_hours(&prefix);
    // The one pack, reused, is now locked for the new backup's 20 days and the week more;
    // so is the first session, whose key opens that pack.
    let hours_of = |key: &str| {
        after
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, h)| *h)
            .max()
            .unwrap()
    };
    assert!(
        (27 * 24 - 1..=27 * 24).contains(&hours_of(&pack.0)),
        "{after:?}"
    );
    assert!(
        (27 * 24 - 1..=27 * 24).contains(&hours_of(&session.0)),
        "{after:?}"
    );
    assert_eq!(
        after.iter().filter(|(k, _)| k.contains("/_packs/")).count(),
        1,
        "no pack stored again: {after:?}"
    );
    // The first backup's own objects keep their two days: only what is reused is extended.
    let own = |k: &str| !k.contains("/_packs/") && !k.contains("/_sessions/");
    for (key, _) in before.iter().filter(|(k, _)| own(k)) {
        assert!(hours_of(key) <= 2 * 24, "{key}: {after:?}");
    }
    ws.run_env(&["verify", "--all"], &S3_ENV).ok();
}

#[test]
fn object_lock_on_a_bucket_without_it_fails_the_backup_loudly() {
    let prefix = unique("nolock");
    let ws = workspace_with_store(&s3_store(&prefix));
    ws.write("input.bin", "x");
    ws.write(
        "jobs/files.toml",
        "[object_lock]\nmode = \"compliance\"\ndays = 1\n\n[source]\nkind = \"file\"\npath = \"../input.bin\"\n",
    );
    // Format 2 locks its first pack before anything counts: no backup is made.
    let run = ws.run_env(&["backup", "files"], &S3_ENV);
    run.expect_failure(Class::Store, "is Object Lock enabled on the bucket");
    let list = ws.run_env(&["list", "--json"], &S3_ENV);
    list.ok();
    assert!(
        support::json_lines(&list).is_empty(),
        "{}",
        list.stdout_text()
    );
    // Format 1 locks its objects once the backup is complete, and says it is not locked.
    ws.write(
        "jobs/files.toml",
        "format = 1\n\n[object_lock]\nmode = \"compliance\"\ndays = 1\n\n[source]\nkind = \"file\"\npath = \"../input.bin\"\n",
    );
    let run = ws.run_env(&["backup", "files"], &S3_ENV);
    run.expect_failure(Class::Store, "complete but not locked");
}

#[test]
fn object_lock_needs_an_s3_store() {
    let ws = Workspace::new();
    ws.write("input.bin", "x");
    ws.write(
        "jobs/files.toml",
        "[object_lock]\nmode = \"governance\"\ndays = 30\n\n[source]\nkind = \"file\"\npath = \"../input.bin\"\n",
    );
    let run = ws.run(&["config", "check"]);
    run.expect_failure(Class::Config, "object_lock needs an S3 store");
}

#[test]
fn sigterm_during_a_backup_aborts_the_multipart_upload_and_exits_promptly() {
    let prefix = unique("sigterm");
    let ws = workspace_with_store(&s3_store(&prefix));
    // Two 5 MiB parts reach the store, then the dump stalls like a slow database.
    ws.shell_job("slow", "head -c 12000000 /dev/urandom; sleep 60");
    let mut child = std::process::Command::new(support::coffre_bin())
        .args(["--config", "coffre.toml", "backup", "slow"])
        .current_dir(ws.dir.path())
        .envs(S3_ENV)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while s3_open_uploads(&prefix).is_empty() {
        assert!(started.elapsed().as_secs() < 30, "the upload never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let signalled = std::time::Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed().as_secs() < 10,
            "coffre did not stop within 10 s of SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert!(
        s3_open_uploads(&prefix).is_empty(),
        "{:?}",
        s3_open_uploads(&prefix)
    );
    assert!(s3_keys(&prefix).is_empty(), "{:?}", s3_keys(&prefix));
}

/// A store on s3s-fs, which checks every request's SigV4 signature, with the secret read from
/// `secret_env`.
fn s3s_store(prefix: &str, secret_env: &str) -> String {
    format!(
        "[store]\nkind = \"s3\"\nbucket = \"coffre-test\"\nendpoint = \"{}\"\npath_style = true\nallow_http = true\nprefix = \"{prefix}\"\naccess_key_id_env = \"COFFRE_TEST_S3S_KEY\"\nsecret_access_key_env = \"{secret_env}\"\n",
        env("COFFRE_TEST_S3S")
    )
}

#[tokio::test]
async fn requests_coffre_signs_itself_pass_a_signature_checking_s3_and_a_wrong_secret_fails() {
    use coffre::config::Config;
    use coffre::manifest::LockMode;
    use coffre::store::BackupRef;

    let prefix = unique("sigv4");
    let ws = workspace_with_store(&s3s_store(&prefix, "COFFRE_TEST_S3S_SECRET"));
    let data = noise(12 << 20, 5);
    std::fs::write(ws.path("input.bin"), &data).unwrap();
    ws.file_job("files", "input.bin");
    // object_store's own requests: multipart upload, listing, reads.
    let id = ws.backup("files");
    ws.run(&["verify", "--all"]).ok();
    let restored = ws.run(&["restore", &id, "--to", "-"]);
    restored.ok();
    assert!(restored.stdout == data);

    // coffre's own requests: listing open uploads (prune) and PutObjectRetention. s3s-fs
    // implements neither, but checks the signature first: NotImplemented means it was good.
    let (_, store) = support::open_store(&ws).await;
    assert!(store.strays("files").await.unwrap().is_empty());
    ws.run(&["prune", "files"]).ok();
    let backup = store.find(&id, None).await.unwrap();
    let until = chrono::Utc::now() + chrono::Duration::days(1);
    let err = store
        .lock_objects(&backup.location, &[DATA_FILE], LockMode::Governance, until)
        .await
        .unwrap_err();
    assert!(err.message().contains("NotImplemented"), "{err}");

    // The same requests with a wrong secret are refused as auth errors (exit 4).
    let wrong = workspace_with_store(&s3s_store(&prefix, "COFFRE_TEST_S3S_KEY"));
    let run = wrong.run(&["list"]);
    run.expect_failure(Class::Auth, "refused the credentials");
    let config = Config::load(&wrong.path("coffre.toml")).unwrap();
    let store = coffre::store::Store::open(&config.store, &config.upload, &config.secrets)
        .await
        .unwrap();
    let err = store.strays("files").await.unwrap_err();
    assert_eq!(err.class(), coffre::error::Class::Auth, "{err}");
    assert!(err.message().contains("SignatureDoesNotMatch"), "{err}");
    let err = store
        .lock_objects(
            &BackupRef::new("files", backup.location.time, backup.location.id),
            &[DATA_FILE],
            LockMode::Governance,
            until,
        )
        .await
        .unwrap_err();
    assert_eq!(err.class(), coffre::error::Class::Auth, "{err}");
}

/// The audit trail under Object Lock: every event object is locked when written, and so are
/// the reports a report job stores.
#[test]
fn audit_events_are_locked_when_the_config_says_so() {
    let prefix = unique("audit");
    let ws = workspace_with_store(&lock_store(&prefix));
    let config = std::fs::read_to_string(ws.path("coffre.toml")).unwrap();
    ws.write(
        "coffre.toml",
        &format!("{config}\n[audit]\nobject_lock = {{ mode = \"governance\", days = 2 }}\n"),
    );
    let user = unique("audited");
    support::db::psql("postgres", &format!("CREATE ROLE {user} LOGIN"));
    let (host, port) = support::db::pg_addr();
    ws.write(
        "jobs/passwords.toml",
        &format!(
            "kind = \"rotation\"\n[[target]]\nname = \"app\"\nkind = \"postgres\"\nhost = \"{host}\"\nport = {port}\nsslmode = \"disable\"\nadmin_user = \"postgres\"\nadmin_password = \"env:PG_ADMIN\"\nuser = \"{user}\"\npublish = \"file:../secrets/app.json\"\n"
        ),
    );
    let password = support::db::pg_password();
    let mut env = S3_ENV.to_vec();
    env.push(("PG_ADMIN", &password));
    ws.run_env(&["rotate", "app"], &env).ok();
    assert_all_locked(&format!("{prefix}/_audit"), 6);
    // A report job's report, in its three formats, is locked the same way.
    ws.write("jobs/monthly-report.toml", "kind = \"report\"\n");
    ws.run_env(&["job", "run", "monthly-report"], &env).ok();
    assert_all_locked(&format!("{prefix}/_reports"), 3);

    // A store that cannot lock is a config error before anything runs.
    let ws = Workspace::new();
    let config = std::fs::read_to_string(ws.path("coffre.toml")).unwrap();
    ws.write(
        "coffre.toml",
        &format!("{config}\n[audit]\nobject_lock = {{ mode = \"governance\", days = 2 }}\n"),
    );
    let run = ws.run(&["config", "check"]);
    run.expect_failure(Class::Config, "audit.object_lock needs an S3 store");
}
