//! What a hostile tester and a first-time user found, each as the behaviour that must hold:
//! damaged manifests hide nothing, children see no secrets and leave nothing running, key
//! derivation is bounded, secret files are capped and private, writes are synced, symlinks are
//! not followed, and mistakes get clear errors.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use coffre::config::Config;
use coffre::data::v1::DATA_FILE;
use coffre::error::Class;
use coffre::ops::verify::{Outcome, verify_all};
use support::exit::TARGET;
use support::faulty::faulty_store;
use support::{Workspace, coffre_bin, noise, three_backups};

fn manifest_path(ws: &Workspace, id: &str) -> std::path::PathBuf {
    ws.backup_dir("files", id).join("manifest.json")
}

// Defect 1: one damaged manifest hides nothing.

#[test]
fn a_damaged_manifest_is_reported_and_hides_no_other_backup() {
    let deep = format!("{}{}", "[".repeat(1_000_000), "]".repeat(1_000_000));
    let huge = format!("{{\"pad\": \"{}\"}}", "x".repeat(5 << 20));
    for (what, content) in [
        ("invalid JSON", "{ not json".to_string()),
        ("nested a million deep", deep),
        ("over the size cap", huge),
    ] {
        let (ws, ids) = three_backups();
        // The newest backup's manifest is the damaged one.
        std::fs::write(manifest_path(&ws, &ids[2]), content).unwrap();

        let list = ws.run(&["list"]);
        list.ok();
        let text = list.stdout_text();
        assert!(
            text.contains(&ids[0]) && text.contains(&ids[1]),
            "{what}: {text}"
        );
        assert!(
            text.lines()
                .any(|l| l.starts_with("damaged:") && l.contains(&ids[2])),
            "{what}: {text}"
        );
        let items = support::json_lines(&ws.run(&["list", "--json"]));
        let status = |id: &str| {
            items
                .iter()
                .find(|b| b["id"] == id)
                .map(|b| b["status"].as_str().unwrap().to_string())
        };
        assert_eq!(status(&ids[0]).as_deref(), Some("complete"), "{what}");
        assert_eq!(status(&ids[2]).as_deref(), Some("damaged"), "{what}");

        let verify = ws.run(&["verify", "--all"]);
        verify.expect_class(Class::Integrity);
        assert!(verify.stderr.contains(&ids[2]), "{what}: {}", verify.stderr);
        assert!(
            verify
                .stdout_text()
                .contains("verified 2 of 3 backups: 1 failed"),
            "{what}: {}",
            verify.stdout_text()
        );

        // --latest takes the newest intact backup, and says it passed one over.
        let latest = ws.run(&["restore", "--latest", "--to", "-"]);
        latest.ok();
        assert_eq!(latest.stdout, b"ward 7 admissions");
        assert!(
            latest.stderr.contains("damaged"),
            "{what}: {}",
            latest.stderr
        );
        // An id is found whatever else is broken.
        let by_id = ws.run(&["restore", &ids[0][..8], "--to", "-"]);
        by_id.ok();
        assert_eq!(by_id.stdout, b"ward 7 admissions");
        ws.run(&["key", "list"]).ok();
    }
}

#[tokio::test]
async fn an_unreadable_manifest_is_a_named_failure_of_verify_all_only() {
    let (ws, ids) = three_backups();
    let config = Config::load(&ws.path("coffre.toml")).unwrap();
    let secrets = support::configured_keys(&config).await;
    let store = faulty_store(&ws, |f| {
        f.fail_get = Some(format!("{}/manifest.json", ids[1]))
    });
    let report = verify_all(&config, &store, &secrets, None, false)
        .await
        .unwrap();
    let failures: Vec<_> = report.failures().collect();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].0.id.to_string(), ids[1]);
    assert!(failures[0].1.message().contains("injected read failure"));
    assert_eq!(report.count(|o| matches!(o, Outcome::Verified(_))), 2);
    // Finding another backup by id never reads the broken manifest.
    let found = store.find(&ids[2], None).await.unwrap();
    assert_eq!(found.location.id.to_string(), ids[2]);
}

// Defect 9: a backup pruned while verify --all runs is not a failure.

#[tokio::test]
async fn backups_pruned_during_verify_all_are_reported_as_pruned_not_failed() {
    let (ws, ids) = three_backups();
    let config = Config::load(&ws.path("coffre.toml")).unwrap();
    let secrets = support::configured_keys(&config).await;
    // Pruned after the listing, before its manifest is read.
    let store = faulty_store(&ws, |f| {
        f.vanish_on_get = Some(format!("{}/manifest.json", ids[0]))
    });
    let report = verify_all(&config, &store, &secrets, None, false)
        .await
        .unwrap();
    assert_eq!(report.failures().count(), 0, "{report:?}");
    assert_eq!(report.count(|o| matches!(o, Outcome::PrunedMeanwhile)), 1);
    assert_eq!(report.count(|o| matches!(o, Outcome::Verified(_))), 2);

    // Pruned after its manifest was read, before its data is.
    let store = faulty_store(&ws, |f| {
        f.vanish_on_get = Some(format!("{}/recipe.cfr", ids[1]))
    });
    let report = verify_all(&config, &store, &secrets, None, false)
        .await
        .unwrap();
    assert_eq!(report.failures().count(), 0, "{report:?}");
    assert_eq!(report.count(|o| matches!(o, Outcome::PrunedMeanwhile)), 1);
    assert_eq!(report.count(|o| matches!(o, Outcome::Verified(_))), 1);

    // Data gone while the manifest stays is a real loss, and a failure.
    std::fs::remove_file(ws.backup_dir("files", &ids[2]).join("recipe.cfr")).unwrap();
    let run = ws.run(&["verify", "--all"]);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains(&ids[2]), "{}", run.stderr);
}

// Defect 2: a command source sees only what it is given.

#[test]
fn command_sources_get_a_clean_environment_plus_what_the_job_names() {
    let ws = Workspace::new();
    ws.write_config(
        "keys = [{ file = \"backup.key\" }, { passphrase_env = \"BACKUP_PASSPHRASE\" }]\nargon2 = { m_kib = 1024, t = 1, p = 1 }",
    );
    ws.write(
        "jobs/envdump.toml",
        "[source]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"env > env.txt; echo dump\"]\ninherit_env = [\"WANTED_BY_JOB\"]\nenv = { JOB_SECRET = \"given-to-the-dump\" }\nworkdir = \"..\"\n",
    );
    let run = ws.run_env(
        &["backup", "envdump"],
        &[
            ("BACKUP_PASSPHRASE", "passphrase-that-must-stay-in-coffre"),
            ("AWS_SECRET_ACCESS_KEY", "aws-secret-that-must-stay"),
            ("PGPASSWORD", "db-password-that-must-stay"),
            ("WANTED_BY_JOB", "inherited"),
            ("LC_TIME", "C"),
        ],
    );
    run.ok();
    let env = std::fs::read_to_string(ws.path("env.txt")).unwrap();
    for leaked in [
        "passphrase-that-must-stay",
        "aws-secret",
        "db-password",
        "COFFRE_LOG",
    ] {
        assert!(!env.contains(leaked), "{leaked} reached the dump: {env}");
    }
    for given in [
        "PATH=",
        "HOME=",
        "LC_TIME=C",
        "WANTED_BY_JOB=inherited",
        "JOB_SECRET=given-to-the-dump",
    ] {
        assert!(env.contains(given), "{given} missing: {env}");
    }
}

// Defect 8: stopping a dump stops everything it started.

#[test]
fn sigterm_stops_the_whole_process_group_of_a_command_source() {
    let ws = Workspace::new();
    ws.shell_job(
        "lingering",
        "sleep 1000 & echo $! > sleep.pid; head -c 1000 /dev/zero; wait",
    );
    let mut child = Command::new(coffre_bin())
        .args(["--config", "coffre.toml", "backup", "lingering"])
        .current_dir(ws.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = ws.path("sleep.pid");
    let started = Instant::now();
    let sleep_pid = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file)
            && !text.trim().is_empty()
        {
            break text.trim().to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the dump never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(143), "128 + SIGTERM");
    let alive = || {
        std::fs::read_to_string(format!("/proc/{sleep_pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
    };
    let stopped = Instant::now();
    while alive() && stopped.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !alive(),
        "the dump's child process {sleep_pid} is still running"
    );
}

// Defect 3: key derivation is bounded and never blocks signals.

/// A backup made with a passphrase; returns its id.
fn passphrase_backup(ws: &Workspace) -> String {
    ws.write_config(
        "keys = [{ passphrase_env = \"PASS\" }]\nargon2 = { m_kib = 1024, t = 1, p = 1 }",
    );
    ws.write("input.bin", "ward 7 admissions");
    ws.v1_file_job("files", "input.bin", 16);
    let run = ws.run_env(&["backup", "files", "--json"], &[("PASS", "correct horse")]);
    run.ok();
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    v["id"].as_str().unwrap().to_string()
}

/// Put `stanza` before the manifest's own stanzas.
fn prepend_stanza(ws: &Workspace, id: &str, stanza: serde_json::Value) {
    let path = manifest_path(ws, id);
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["keys"].as_array_mut().unwrap().insert(0, stanza);
    std::fs::write(path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
}

fn argon2_stanza(m_kib: u64, t: u64) -> serde_json::Value {
    serde_json::json!({
        "type": "argon2id", "key_id": "0000000000000000", "salt": "AAAAAAAAAAAAAAAAAAAAAA==",
        "m_kib": m_kib, "t": t, "p": 1, "nonce": "AAAAAAAAAAAAAAAA",
        "wrapped": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    })
}

#[test]
fn a_stanza_asking_for_years_of_key_derivation_is_skipped() {
    let ws = Workspace::new();
    let id = passphrase_backup(&ws);
    prepend_stanza(&ws, &id, argon2_stanza(1024, u64::from(u32::MAX)));
    let started = Instant::now();
    let run = ws.run_env(&["restore", &id, "--to", "-"], &[("PASS", "correct horse")]);
    run.ok();
    assert_eq!(run.stdout, b"ward 7 admissions");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn sigterm_stops_a_restore_during_key_derivation() {
    let ws = Workspace::new();
    let id = passphrase_backup(&ws);
    // Within the limits and the budget (with the real stanza), but seconds of work: 1 GiB, 3 passes.
    prepend_stanza(&ws, &id, argon2_stanza(1 << 20, 3));
    let mut child = Command::new(coffre_bin())
        .args(["--config", "coffre.toml", "restore", &id, "--to", "-"])
        .current_dir(ws.dir.path())
        .env("PASS", "wrong passphrase")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let signalled = Instant::now();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(2),
            "coffre ignored SIGTERM while deriving a key"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(143), "128 + SIGTERM");
}

// Defects 6 and 7: secret files are private and capped.

fn set_mode(path: &std::path::Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn key_files_readable_by_others_are_refused_unless_the_config_allows_it() {
    let (ws, ids) = three_backups();
    set_mode(&ws.path("backup.key"), 0o644);
    let run = ws.run(&["backup", "files"]);
    run.expect_class(Class::Config);
    assert!(
        run.stderr.contains("chmod 600") && run.stderr.contains("0644"),
        "{}",
        run.stderr
    );
    ws.run(&["restore", &ids[0], "--to", "-"])
        .expect_class(Class::Config);

    set_mode(&ws.path("backup.key"), 0o640);
    let key = "keys = [{ key = \"file:backup.key\" }]";
    ws.write_config_with("secret_file_access = \"group\"", key);
    ws.run(&["restore", &ids[0], "--to", "-"]).ok();
    set_mode(&ws.path("backup.key"), 0o644);
    ws.run(&["restore", &ids[0], "--to", "-"])
        .expect_class(Class::Config);
    ws.write_config_with("secret_file_access = \"any\"", key);
    ws.run(&["restore", &ids[0], "--to", "-"]).ok();
}

#[test]
fn generating_over_a_readable_key_file_leaves_it_owner_only() {
    let ws = Workspace::new();
    std::fs::write(ws.path("shared.key"), "old").unwrap();
    set_mode(&ws.path("shared.key"), 0o666);
    ws.run_raw(&["key", "generate", "shared.key", "--force"], &[])
        .ok();
    let mode = std::fs::metadata(ws.path("shared.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    ws.run_raw(&["key", "id", "shared.key"], &[]).ok();
    ws.run_raw(&["key", "generate", "--x25519", "id.identity"], &[])
        .ok();
    let mode = std::fs::metadata(ws.path("id.identity"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn endless_key_files_are_refused_after_a_bounded_read() {
    let (ws, ids) = three_backups();
    for flag in ["--key-file", "--passphrase-file", "--identity-file"] {
        let started = Instant::now();
        let run = ws.run(&["restore", &ids[0], "--to", "-", flag, "/dev/urandom"]);
        run.expect_class(Class::Config);
        assert!(
            run.stderr.contains("more than 64 KiB"),
            "{flag}: {}",
            run.stderr
        );
        assert!(run.stderr.contains(flag), "{flag}: {}", run.stderr);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    let run = ws.run_raw(&["--config", "/dev/zero", "list"], &[]);
    run.expect_class(Class::Config);
}

// Defect 4: a killed restore leaves no plaintext behind.

#[test]
fn a_killed_restore_leaves_no_file_at_or_beside_the_target() {
    let ws = Workspace::new();
    std::fs::write(ws.path("input.bin"), noise(3 << 20, 9)).unwrap();
    ws.file_job("files", "input.bin");
    let id = ws.backup("files");
    std::fs::create_dir(ws.path("out")).unwrap();
    for point in ["restore:opened", "restore:written"] {
        let mut child = Command::new(coffre_bin())
            .args([
                "--config",
                "coffre.toml",
                "restore",
                &id,
                "--to",
                "out/restored.bin",
            ])
            .current_dir(ws.dir.path())
            .env("COFFRE_FAILPOINT", point)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        while !line.contains("failpoint") {
            line.clear();
            assert!(std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0);
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let left: Vec<_> = std::fs::read_dir(ws.path("out")).unwrap().collect();
        assert!(left.is_empty(), "a restore killed at {point} left {left:?}");
    }
    ws.run(&["restore", &id, "--to", "out/restored.bin"]).ok();
}

// Defect 5: local writes reach the disk before the manifest names them.

/// The fsync and link calls of `coffre ARGS` on a local store, as strace shows them.
fn synced_paths(ws: &Workspace, args: &[&str]) -> Vec<String> {
    let trace = ws.path("trace.txt");
    let status = Command::new("strace")
        .args([
            "-f",
            "-y",
            "-qq",
            "-e",
            "trace=fsync,fdatasync,rename,renameat,renameat2,link,linkat",
            "-o",
        ])
        .arg(&trace)
        .arg(coffre_bin())
        .args(["--config", "coffre.toml"])
        .args(args)
        .current_dir(ws.dir.path())
        .stdout(Stdio::null())
        .status()
        .expect("strace runs (scripts/test installs it)");
    assert!(status.success());
    std::fs::read_to_string(trace)
        .unwrap()
        .lines()
        .filter(|l| l.contains("sync(") || l.contains("link") || l.contains("rename"))
        .map(|l| {
            // "PID  call(...)": the pid column is padded.
            l.split_once(' ')
                .map(|(_, call)| call.trim_start().to_string())
                .unwrap_or_default()
        })
        .collect()
}

#[test]
fn local_backups_and_key_changes_are_synced_before_they_count() {
    for format in [1, 2] {
        synced_before_they_count(format);
    }
}

fn synced_before_they_count(format: u8) {
    let ws = Workspace::new();
    ws.write("input.bin", "ward 7 admissions");
    let data: &[&str] = match format {
        1 => {
            ws.v1_file_job("files", "input.bin", 16);
            &["data.cfr"]
        }
        _ => {
            ws.file_job("files", "input.bin");
            &["recipe.cfr", ".cfp", "/_sessions/"]
        }
    };
    let calls = synced_paths(&ws, &["backup", "files"]);
    let position = |what: &dyn Fn(&str) -> bool| calls.iter().position(|c| what(c));
    let data_synced = data
        .iter()
        .map(|name| {
            position(&|c| c.starts_with("fsync(") && c.contains(name))
                .unwrap_or_else(|| panic!("{name} never synced: {calls:#?}"))
        })
        .max()
        .unwrap();
    let manifest_named = position(&|c| !c.starts_with("fsync(") && c.contains("manifest.json\""))
        .unwrap_or_else(|| panic!("manifest never published: {calls:#?}"));
    let manifest_synced = position(&|c| c.starts_with("fsync(") && c.contains("manifest.json"))
        .unwrap_or_else(|| panic!("manifest never synced: {calls:#?}"));
    assert!(data_synced < manifest_named, "{calls:#?}");
    assert!(manifest_synced < manifest_named, "{calls:#?}");
    // The directory entry of the manifest is synced after it was made.
    let dir_synced = calls[manifest_named..]
        .iter()
        .any(|c| c.starts_with("fsync(") && !c.contains(".json") && !c.contains(".cfr"));
    assert!(dir_synced, "{calls:#?}");

    ws.run_raw(&["key", "generate", "new.key"], &[]).ok();
    let calls = synced_paths(&ws, &["key", "add", "--new-key-file", "new.key"]);
    let holder = if format == 1 {
        "manifest.json"
    } else {
        "/_sessions/"
    };
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("fsync(") && c.contains(holder)),
        "a rewritten {holder} was never synced: {calls:#?}"
    );
}

// Defect 10: symlinks never lead out of the store.

#[test]
fn a_symlinked_backup_directory_is_refused_and_prune_never_deletes_through_it() {
    let (ws, ids) = three_backups();
    // The oldest backup now lives outside the store, reached through a link.
    let dir = ws.backup_dir("files", &ids[0]);
    let outside = ws.path("outside");
    std::fs::rename(&dir, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &dir).unwrap();
    ws.write(
        "jobs/files.toml",
        "[source]\nkind = \"file\"\npath = \"../input.bin\"\n\n[retention]\nkeep_within_days = 0\nkeep_last = 1\nmin_keep = 1\n",
    );
    let list = ws.run(&["list"]);
    assert!(
        list.stdout_text().contains("symbolic link"),
        "{}",
        list.stdout_text()
    );
    ws.run(&["verify", "--all"]).expect_class(Class::Integrity);
    ws.run(&["verify", &ids[0]]).expect_class(Class::Integrity);
    ws.run(&["prune", "files"]).ok();
    assert!(outside.join("manifest.json").exists() && outside.join("recipe.cfr").exists());
}

// Defect 11: an interrupted rotation leaves every backup with a key that opens it.

#[tokio::test]
async fn a_rotation_stopped_in_its_remove_phase_leaves_every_backup_opening_with_the_new_key() {
    for format in [1, 2] {
        stopped_in_the_remove_phase(format).await;
    }
}

async fn stopped_in_the_remove_phase(format: u8) {
    use coffre::ops::keys::{self as keyring, Removal};

    let (ws, ids) = support::three_backups_in(format);
    ws.run_raw(&["key", "generate", "new.key"], &[]).ok();
    let old = ws
        .run_raw(&["key", "id", "backup.key"], &[])
        .stdout_text()
        .trim()
        .to_string();
    let config = Config::load(&ws.path("coffre.toml")).unwrap();
    let unlock = support::configured_keys(&config).await;
    let new_key = support::key_file(&ws, "new.key").await;
    let holder = ws.stanza_holder(&ids[1]);
    let holder = holder.strip_prefix(ws.path("store")).unwrap().to_owned();
    let store = faulty_store(&ws, |f| f.fail_put = Some(holder.display().to_string()));
    // The add phase completes (the faulty write is set up for the remove phase below).
    keyring::add(&faulty_store(&ws, |_| {}), None, &unlock, &new_key)
        .await
        .unwrap();
    let err = keyring::remove(&store, None, Removal::KeyId(&old))
        .await
        .unwrap_err();
    assert!(err.message().contains("injected write failure"), "{err}");
    ws.write_config("keys = [{ file = \"new.key\" }]");
    for id in &ids {
        ws.run(&["restore", id, "--to", "-"]).ok();
    }
    // The old key opens exactly the backups whose manifest still lists it: the failed one
    // among them.
    ws.write_config("keys = [{ file = \"backup.key\" }]");
    for id in &ids {
        let opens = ws.run(&["restore", id, "--to", "-"]).code == 0;
        // In format 2 a backup needs the key of every session it reads chunks from.
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(manifest_path(&ws, id)).unwrap()).unwrap();
        let holders: Vec<String> = match manifest["sessions"].as_array() {
            None => vec![id.clone()],
            Some(sessions) => sessions
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
                .collect(),
        };
        let listed = holders.iter().all(|h| ws.stanza_ids(h).contains(&old));
        assert_eq!(opens, listed, "{id}");
        assert!(opens || id != &ids[1] || format == 2);
    }
    // The README promises what was just seen.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let readme = readme.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        readme.contains("stopped during the remove phase, every backup opens with the new key"),
        "README no longer says what an interrupted rotation leaves"
    );
}

// Defect 12: first-run mistakes get clear errors.

#[test]
fn a_jobs_pattern_matching_nothing_fails_config_check_and_backup_all() {
    let ws = Workspace::new();
    ws.write(
        "coffre.toml",
        "jobs = [\"jbos/*.toml\"]\n\n[store]\nkind = \"local\"\npath = \"store\"\n\n[encryption]\nkeys = [{ file = \"backup.key\" }]\n",
    );
    for args in [
        &["config", "check"][..],
        &["backup", "--all"],
        &["prune", "--all"],
    ] {
        let run = ws.run(args);
        run.expect_class(Class::Config);
        assert!(
            run.stderr.contains("jbos/*.toml") && run.stderr.contains("matches no file"),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn an_unknown_job_is_an_error_for_list_and_key_list_too() {
    let (ws, _) = three_backups();
    for args in [
        &["list", "--job", "fiels"][..],
        &["key", "list", "--job", "fiels"],
        &["verify", "--all", "--job", "fiels"],
    ] {
        let run = ws.run(args);
        run.expect_class(Class::Config);
        assert!(
            run.stderr.contains("no job named 'fiels'"),
            "{args:?}: {}",
            run.stderr
        );
    }
}

/// A missing key file on backup is named by its absolute path; making a new key is suggested
/// only while no backup exists (a new key opens none of them); a key file others can read gets
/// the chmod fix alone. A mistyped job's JSON error says what fixes it, as the text does.
#[test]
fn key_file_errors_name_the_absolute_path_and_suggest_a_new_key_only_before_any_backup() {
    let ws = Workspace::new();
    ws.write("input.bin", "ward 7 admissions");
    ws.file_job("files", "input.bin");
    ws.write("keys/.keep", "");
    ws.write_config(r#"keys = [{ key = "file:keys/../backup.key" }]"#);
    let absolute = ws.path("backup.key").canonicalize().unwrap();
    std::fs::rename(ws.path("backup.key"), ws.path("kept.key")).unwrap();
    // Nothing backed up yet: a new key is what is missing.
    let run = ws.run(&["backup", "files"]);
    run.expect_class(Class::Config);
    assert!(
        run.stderr.contains(&absolute.display().to_string()) && !run.stderr.contains("/../"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("key generate"), "{}", run.stderr);
    // Once backups exist, the file must be found, not replaced.
    std::fs::rename(ws.path("kept.key"), ws.path("backup.key")).unwrap();
    ws.backup("files");
    std::fs::rename(ws.path("backup.key"), ws.path("kept.key")).unwrap();
    for args in [&["backup", "files"][..], &["config", "check"]] {
        let run = ws.run(args);
        run.expect_class(Class::Config);
        assert!(
            run.stderr.contains("No such file"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("key generate"),
            "{args:?}: {}",
            run.stderr
        );
    }
    // Readable by others: the chmod fix, and nothing else.
    std::fs::rename(ws.path("kept.key"), ws.path("backup.key")).unwrap();
    std::fs::set_permissions(
        ws.path("backup.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let run = ws.run(&["backup", "files"]);
    run.expect_class(Class::Config);
    assert!(
        run.stderr
            .contains(&format!("chmod 600 {}", absolute.display())),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("key generate"), "{}", run.stderr);
    // A mistyped job: the JSON error carries the fix, as the text line does.
    let run = ws.run(&["--log-format", "json", "backup", "fiels"]);
    run.expect_class(Class::Config);
    let error: serde_json::Value =
        serde_json::from_str(run.stderr.lines().last().unwrap()).unwrap();
    assert_eq!(error["remedy"], "known_name", "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("files"),
        "{error}"
    );
    assert!(
        error["hint"].as_str().unwrap().contains("coffre job list"),
        "{error}"
    );
}

#[test]
fn key_errors_on_restore_point_to_the_key_options_not_to_a_new_key() {
    let (ws, ids) = three_backups();
    std::fs::remove_file(ws.path("backup.key")).unwrap();
    let run = ws.run(&["restore", &ids[0], "--to", "-"]);
    run.expect_failure(Class::Config, "--key-file");
    assert!(!run.stderr.contains("key generate"), "{}", run.stderr);

    let run = ws.run(&["restore", &ids[0], "--to", "-", "--passphrase-env", "NOPE"]);
    run.expect_failure(Class::Config, "--passphrase-env NOPE");
    assert!(!run.stderr.contains("the config"), "{}", run.stderr);
}

#[test]
fn restoring_into_a_missing_directory_names_the_directory() {
    let (ws, ids) = three_backups();
    let run = ws.run(&["restore", &ids[0], "--to", "no/such/dir/out.bin"]);
    run.expect_failure(Class::Target, "directory no/such/dir does not exist");
    assert!(!run.stderr.contains("partial"), "{}", run.stderr);
}

#[test]
fn a_restore_target_that_cannot_be_written_is_a_target_error_not_damage() {
    let (ws, ids) = three_backups();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = Command::new(coffre_bin())
        .args(["--config", "coffre.toml", "restore", &ids[0], "--to", "-"])
        .current_dir(ws.dir.path())
        .stdout(full)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(TARGET), "{stderr}");
    assert!(!stderr.contains("does not decompress"), "{stderr}");
}

#[test]
fn a_backup_past_its_timeout_stops_even_when_its_dump_hangs_after_closing_stdout() {
    let ws = Workspace::new();
    ws.write(
        "jobs/hang.toml",
        "timeout = \"2s\"\n\n[source]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"echo some data; exec >&-; sleep 1000 & echo $! > hang.pid; wait\"]\nworkdir = \"..\"\n",
    );
    let started = Instant::now();
    let run = ws.run(&["backup", "hang"]);
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert!(run.stderr.contains("timeout (2s)"), "{}", run.stderr);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    let pid = std::fs::read_to_string(ws.path("hang.pid")).unwrap();
    let alive = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    });
    assert!(!alive, "the hung dump's process {pid} is still running");
    assert!(ws.run(&["list", "--json"]).stdout.is_empty());
}

/// Three backups and what a key rotation through the library takes: the store, the configured
/// keys, a new key (file `new.key`) and the old key's id.
struct Rekey {
    ws: Workspace,
    ids: Vec<String>,
    store: coffre::store::Store,
    unlock: Vec<coffre::crypto::keys::Secret>,
    new: coffre::crypto::keys::Secret,
    old: String,
}

async fn three_backups_and_a_new_key() -> Rekey {
    let (ws, ids) = three_backups();
    ws.run_raw(&["key", "generate", "new.key"], &[]).ok();
    let old = coffre::ops::keys::key_id_of_file(&ws.path("backup.key")).unwrap();
    let (config, store) = support::open_store(&ws).await;
    let unlock = support::configured_keys(&config).await;
    let new = support::key_file(&ws, "new.key").await;
    Rekey {
        ws,
        ids,
        store,
        unlock,
        new,
        old,
    }
}

#[tokio::test]
async fn a_rotation_never_takes_the_old_key_from_a_backup_without_the_new_one() {
    use coffre::ops::keys;
    let Rekey {
        ws,
        ids,
        store,
        unlock,
        new,
        old,
    } = three_backups_and_a_new_key().await;
    // The new key reaches the first three backups; a fourth is made with the old key only, as
    // if a backup ran between the rotation's two phases.
    keys::add(&store, None, &unlock, &new).await.unwrap();
    let late = ws.backup("files");
    let rotation = keys::rotate(&store, None, &unlock, &new, &old)
        .await
        .unwrap();
    assert_eq!(
        rotation.added.changed, 1,
        "the late backup gets the new key"
    );
    assert_eq!(rotation.removed.changed, 4);
    assert_eq!(rotation.removed.lacking_new_key, 0);
    // Made after the add phase listed the store: left with the old key, and counted.
    let later = ws.backup("files");
    let removed = keys::remove_replaced(&store, None, &old, &new)
        .await
        .unwrap();
    assert_eq!(removed.lacking_new_key, 1);
    ws.run(&["restore", &later, "--to", "-"]).ok();
    for id in ids.iter().chain([&late]) {
        assert!(
            !ws.stanza_ids(id).contains(&old),
            "{id} still has the old key"
        );
    }
}

/// In format 2 a backup reads the chunks of earlier sessions with their keys: a session keeps
/// the old key while a backup that uses it has only the old key.
#[tokio::test]
async fn a_session_keeps_the_old_key_while_a_backup_using_it_lacks_the_new_one() {
    use coffre::ops::keys;
    let Rekey {
        ws,
        ids,
        store,
        unlock,
        new,
        old,
    } = three_backups_and_a_new_key().await;
    keys::add(&store, None, &unlock, &new).await.unwrap();
    // Made with the old key only, reusing the first backup's chunk.
    let late = ws.backup("files");
    let manifest = ws.manifest("files", &late);
    assert_eq!(manifest["new_chunks"], 0, "{manifest}");
    assert_eq!(manifest["sessions"][1], ids[0].as_str(), "{manifest}");
    let removed = keys::remove_replaced(&store, None, &old, &new)
        .await
        .unwrap();
    assert_eq!(removed.lacking_new_key, 1);
    assert!(ws.stanza_ids(&ids[0]).contains(&old));
    assert!(!ws.stanza_ids(&ids[1]).contains(&old));
    ws.run(&["restore", &late, "--to", "-"]).ok();
    ws.write_config("keys = [{ file = \"new.key\" }]");
    for id in &ids {
        ws.run(&["restore", id, "--to", "-"]).ok();
    }
}

#[tokio::test]
async fn a_manifest_is_never_left_without_its_data() {
    let (ws, ids) = support::three_backups_in(1);
    let (_, store) = support::open_store(&ws).await;
    let backup = store.find(&ids[0], None).await.unwrap();
    // A prune deleted the backup after it was listed: a key change must not bring it back.
    std::fs::remove_dir_all(ws.backup_dir("files", &ids[0])).unwrap();
    let bytes = backup
        .manifest
        .with_keys(backup.manifest.v1_keys().to_vec())
        .unwrap();
    let err = store
        .rewrite_manifest(&backup, bytes, &[DATA_FILE])
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(!ws.store_files().iter().any(|f| f.contains(&ids[0])));
    // The data deleted right after a manifest was written: the manifest goes too.
    let other = store.find(&ids[1], None).await.unwrap();
    std::fs::remove_file(ws.backup_dir("files", &ids[1]).join("data.cfr")).unwrap();
    let err = store
        .check_objects_still_there(&other.location, &[DATA_FILE])
        .await
        .unwrap_err();
    assert_eq!(err.class(), coffre::error::Class::Integrity, "{err}");
    assert!(
        !ws.store_files().iter().any(|f| f.contains(&ids[1])),
        "{:?}",
        ws.store_files()
    );
}
