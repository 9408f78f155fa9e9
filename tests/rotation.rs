//! Password rotation against the real PostgreSQL and MariaDB servers: the journal state machine
//! under crashes and injected errors at every step, dual-user rotations under a client that
//! keeps logging in, edits behind coffre's back, two runs at once, bad input, and every
//! generated password searched for in everything coffre printed, stored or passed on.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use coffre::error::Class;
use serde_json::Value;
use support::db::{mariadb, mariadb_addr, pg_addr, pg_password, pg_rotation_job, psql, unique};
use support::{Run, Workspace, coffre_bin};

const ADMIN_ENV: &str = "COFFRE_TEST_ADMIN_PW";

/// A workspace with one rotation target `app` over two fresh PostgreSQL roles (or one, with
/// `dual = false`), published to a file.
struct Target {
    ws: Workspace,
    users: Vec<String>,
}

impl Target {
    fn postgres(dual: bool) -> Self {
        let base = unique("rot");
        let users: Vec<String> = match dual {
            true => vec![format!("{base}_a"), format!("{base}_b")],
            false => vec![base],
        };
        for user in &users {
            psql(
                "postgres",
                &format!("CREATE ROLE {user} LOGIN PASSWORD 'initial-{user}'"),
            );
        }
        let ws = Workspace::new();
        ws.write(
            "jobs/passwords.toml",
            &pg_rotation_job(
                "app",
                &users,
                &format!("env:{ADMIN_ENV}"),
                "file:../secrets/app.json",
                "database = \"postgres\"\ntest_query = \"SELECT count(*) FROM pg_class\"",
            ),
        );
        Self { ws, users }
    }

    fn rotate(&self, args: &[&str]) -> Run {
        self.rotate_env(args, &[])
    }

    fn rotate_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut full = vec!["rotate"];
        full.extend_from_slice(args);
        let mut env = env.to_vec();
        let password = pg_password();
        env.push((ADMIN_ENV, &password));
        self.ws.run_env(&full, &env)
    }

    /// The published secret's fields, if any.
    fn published(&self) -> Option<Value> {
        read_fields(&self.ws.path("secrets/app.json"))
    }

    /// Edit the published secret's fields as a person would, behind coffre's back.
    fn edit_published(&self, edit: impl FnOnce(&mut Value)) {
        let path = self.ws.path("secrets/app.json");
        let mut doc: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut doc["fields"]);
        std::fs::write(&path, doc.to_string()).unwrap();
    }

    /// The journal record and pending password.
    fn journal(&self) -> (Value, Option<String>) {
        let fields = read_fields(&self.ws.path("secrets/journal/app.json")).expect("a journal");
        let record = serde_json::from_str(fields["journal"].as_str().unwrap()).unwrap();
        let pending = fields["pending_password"].as_str().map(str::to_string);
        (record, pending)
    }

    /// Every rotation event in the stored trail, in trail order.
    fn audit_events(&self) -> Vec<Value> {
        let mut files = Vec::new();
        collect_files(&self.ws.path("store/backups/_audit/events"), &mut files);
        files.retain(|f| f.extension().is_some_and(|e| e == "json"));
        files.sort();
        files
            .iter()
            .map(|f| serde_json::from_slice::<Value>(&std::fs::read(f).unwrap()).unwrap())
            .filter(|e| e["event"] == "rotation")
            .collect()
    }

    /// Start `coffre rotate app` stopped at failpoint `point` (kill mode); returns the child
    /// once it is there.
    fn start_at(&self, point: &str) -> std::process::Child {
        let mut cmd = Command::new(coffre_bin());
        cmd.args(["--config", "coffre.toml", "rotate", "app"])
            .current_dir(self.ws.dir.path())
            .env(ADMIN_ENV, pg_password())
            .env("COFFRE_LOG", "debug");
        support::start_at_failpoint(&mut cmd, point)
    }
}

fn read_fields(path: &std::path::Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: Value = serde_json::from_str(&text).unwrap();
    Some(value["fields"].clone())
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Whether PostgreSQL lets `user` in with `password`.
async fn pg_login(user: &str, password: &str) -> bool {
    let (host, port) = pg_addr();
    let connected = tokio_postgres::Config::new()
        .host(&host)
        .port(port)
        .user(user)
        .password(password)
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await;
    match connected {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            client.simple_query("SELECT 1").await.is_ok()
        }
        Err(_) => false,
    }
}

/// The published credential opens the database.
async fn published_opens(t: &Target) -> bool {
    let p = t.published().expect("a published secret");
    pg_login(
        p["username"].as_str().unwrap(),
        p["password"].as_str().unwrap(),
    )
    .await
}

/// Audit events of one rotation name one credential, whatever runs it took.
fn one_password_per_rotation(events: &[Value]) {
    let mut seen: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
    for e in events {
        seen.entry(e["rotation_id"].as_str().unwrap().to_string())
            .or_default()
            .insert(e["fingerprint"].as_str().unwrap().to_string());
    }
    for (id, prints) in seen {
        assert_eq!(
            prints.len(),
            1,
            "rotation {id} made several passwords: {prints:?}"
        );
    }
}

/// Every rotation that reached FINISHED has one stored event for each state it went through,
/// in order, each once (failed attempts may add FAILED events between them).
fn every_finished_rotation_has_its_full_trail(events: &[Value], case: &str) {
    let mut by_rotation: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for e in events {
        by_rotation
            .entry(e["rotation_id"].as_str().unwrap())
            .or_default()
            .push(e["to"].as_str().unwrap());
    }
    for (id, reached) in by_rotation {
        if !reached.contains(&"FINISHED") {
            continue;
        }
        let steps: Vec<&str> = reached.into_iter().filter(|s| *s != "FAILED").collect();
        assert_eq!(
            steps,
            [
                "PLANNED",
                "DB_SET",
                "TESTED",
                "PUBLISHED",
                "ROLLED_OUT",
                "FINISHED"
            ],
            "{case}: rotation {id}'s stored events"
        );
    }
}

#[tokio::test]
async fn dual_user_rotation_alternates_users_and_audits_each_step() {
    let t = Target::postgres(true);
    let run = t.rotate(&["app", "--json"]);
    run.ok();
    let first = t.published().unwrap();
    assert_eq!(first["username"], t.users[0].as_str());
    assert!(published_opens(&t).await);
    // The other user still has its old password: dual-user rotation leaves it alone.
    assert!(pg_login(&t.users[1], &format!("initial-{}", t.users[1])).await);

    t.rotate(&["app"]).ok();
    let second = t.published().unwrap();
    assert_eq!(second["username"], t.users[1].as_str());
    assert!(published_opens(&t).await);
    // The previously published credential still works until the next rotation changes it.
    assert!(pg_login(&t.users[0], first["password"].as_str().unwrap()).await);
    assert!(!pg_login(&t.users[1], &format!("initial-{}", t.users[1])).await);

    let (record, pending) = t.journal();
    assert_eq!(record["state"], "FINISHED");
    assert!(pending.is_none(), "a finished journal keeps no password");

    let lines: Vec<Value> = support::json_lines(&run);
    let events: Vec<&Value> = support::of_type(&lines, "rotation_event");
    let steps: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["from"].as_str().unwrap(), e["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("NONE", "PLANNED"),
            ("PLANNED", "DB_SET"),
            ("DB_SET", "TESTED"),
            ("TESTED", "PUBLISHED"),
            ("PUBLISHED", "ROLLED_OUT"),
            ("ROLLED_OUT", "FINISHED")
        ]
    );
    let result = support::of_type(&lines, "rotation");
    assert_eq!(result.len(), 1);
    assert_eq!(result[0]["outcome"], "rotated");
    // The same events are in the store, two rotations' worth, each with one fingerprint.
    let stored = t.audit_events();
    assert_eq!(stored.len(), 12);
    assert_eq!(stored[0]["trigger"], "manual");
    one_password_per_rotation(&stored);

    let status = t.ws.run(&["rotate", "status", "--json"]);
    status.ok();
    let status = support::json_lines(&status);
    assert_eq!(status[0]["state"], "FINISHED");
    assert_eq!(status[0]["user"], t.users[1].as_str());
}

#[tokio::test]
async fn single_user_rotation_replaces_the_password() {
    let t = Target::postgres(false);
    let user = &t.users[0];
    t.rotate(&["app"]).ok();
    let published = t.published().unwrap();
    assert_eq!(published["username"], user.as_str());
    assert!(published_opens(&t).await);
    assert!(!pg_login(user, &format!("initial-{user}")).await);
    // The server saw a SCRAM verifier, never the password.
    if let Ok(log) = std::env::var("COFFRE_TEST_PG_LOG") {
        let log = std::fs::read_to_string(log).unwrap();
        assert!(log.contains(&format!(
            "ALTER ROLE \"{user}\" WITH PASSWORD 'SCRAM-SHA-256$"
        )));
        assert!(!log.contains(published["password"].as_str().unwrap()));
    }
}

/// Every step, just before and just after its journal write, killed or failing: the next run
/// finishes the rotation with the one password it planned, and the published secret always
/// opens the database.
#[tokio::test]
async fn a_crash_or_an_error_at_any_step_converges_on_one_password() {
    let states = [
        "PLANNED",
        "DB_SET",
        "TESTED",
        "PUBLISHED",
        "ROLLED_OUT",
        "FINISHED",
    ];
    let mut cases = Vec::new();
    for state in states {
        for when in ["before", "after"] {
            for mode in ["kill", "error"] {
                cases.push((format!("rotate.{when}.{state}"), mode));
            }
        }
    }
    for (point, mode) in cases {
        let t = Target::postgres(true);
        // A first rotation, so that there is a published secret to keep working.
        t.rotate(&["app"]).ok();
        let before = t.published().unwrap();
        match mode {
            "kill" => {
                let mut child = t.start_at(&point);
                // While stopped, the published secret opens the database.
                assert!(
                    published_opens(&t).await,
                    "{point}: published secret broken"
                );
                child.kill().unwrap();
                child.wait().unwrap();
            }
            _ => {
                let run = t.rotate_env(
                    &["app"],
                    &[
                        ("COFFRE_FAILPOINT", &point),
                        ("COFFRE_FAILPOINT_MODE", "error"),
                    ],
                );
                assert_ne!(
                    run.code, 0,
                    "{point}: the injected error did not fail the run"
                );
                assert!(
                    run.stderr.contains("injected error"),
                    "{point}: {}",
                    run.stderr
                );
            }
        }
        assert!(
            published_opens(&t).await,
            "{point} {mode}: published secret broken"
        );
        let pending_then = t.journal().1;
        let run = t.rotate(&["app", "--json"]);
        run.ok();
        assert!(published_opens(&t).await, "{point} {mode}: not converged");
        let (record, pending) = t.journal();
        assert_eq!(record["state"], "FINISHED", "{point} {mode}");
        assert!(pending.is_none());
        let after = t.published().unwrap();
        assert_ne!(after["password"], before["password"], "{point} {mode}");
        // A resumed rotation publishes the password it planned before the crash.
        if let Some(pending_then) = pending_then {
            let resumed =
                support::of_type(&support::json_lines(&run), "rotation")[0]["resumed_from"]
                    .is_string();
            assert!(resumed, "{point} {mode}: the rerun did not resume");
            assert_eq!(
                after["password"].as_str(),
                Some(pending_then.as_str()),
                "{point} {mode}"
            );
        }
        let events = t.audit_events();
        one_password_per_rotation(&events);
        // Killed between a journal write and its event, the event is owed, not lost.
        every_finished_rotation_has_its_full_trail(&events, &format!("{point} {mode}"));
        assert!(
            t.journal().0.get("owed").is_none(),
            "{point} {mode}: events still owed"
        );
    }
}

#[tokio::test]
async fn a_client_logging_in_throughout_twenty_rotations_never_fails() {
    let t = Arc::new(Target::postgres(true));
    t.rotate(&["app"]).ok();
    let stop = Arc::new(AtomicBool::new(false));
    let (logins, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (t, stop, logins, failures) =
            (t.clone(), stop.clone(), logins.clone(), failures.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let p = t.published().unwrap();
                let ok = pg_login(
                    p["username"].as_str().unwrap(),
                    p["password"].as_str().unwrap(),
                )
                .await;
                logins.fetch_add(1, Ordering::Relaxed);
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    for _ in 0..20 {
        let t = t.clone();
        tokio::task::spawn_blocking(move || t.rotate(&["app"]).ok().code)
            .await
            .unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    client.await.unwrap();
    assert!(logins.load(Ordering::Relaxed) > 20, "the client barely ran");
    assert_eq!(failures.load(Ordering::Relaxed), 0);
    assert_eq!(t.audit_events().len(), 21 * 6);
}

#[tokio::test]
async fn an_edit_behind_coffres_back_stops_the_rotation_and_changes_nothing_else() {
    let t = Target::postgres(false);
    t.rotate(&["app"]).ok();
    let mut child = t.start_at("rotate.before.DB_SET");
    // Someone edits the published secret while the rotation is planned.
    let old_password = t.published().unwrap()["password"]
        .as_str()
        .unwrap()
        .to_string();
    t.edit_published(|fields| fields["note"] = "edited by hand".into());
    child.kill().unwrap();
    child.wait().unwrap();

    let run = t.rotate(&["app"]);
    run.expect_failure(Class::Integrity, "needs a human");
    assert!(run.stderr.contains("--abandon"), "{}", run.stderr);
    // The edit stands, and the database still takes the password it had.
    let published = t.published().unwrap();
    assert_eq!(published["note"], "edited by hand");
    assert!(pg_login(&t.users[0], &old_password).await);
    assert_eq!(t.journal().0["state"], "NEEDS_HUMAN");
    // Another run does not touch it either, until a person closes it.
    t.rotate(&["app"]).expect_class(Class::Integrity);
    t.rotate(&["--abandon", "app"]).ok();
    assert_eq!(t.journal().0["state"], "FINISHED");
    assert!(t.journal().1.is_none());
    t.rotate(&["app"]).ok();
    assert!(published_opens(&t).await);
}

#[tokio::test]
async fn an_edit_just_before_publishing_is_not_overwritten() {
    let t = Target::postgres(true);
    t.rotate(&["app"]).ok();
    let mut child = t.start_at("rotate.before.PUBLISHED");
    t.edit_published(|fields| fields["password"] = "set-by-a-person".into());
    child.kill().unwrap();
    child.wait().unwrap();
    t.rotate(&["app"]).expect_class(Class::Integrity);
    assert_eq!(t.published().unwrap()["password"], "set-by-a-person");
    let events = t.audit_events();
    assert_eq!(events.last().unwrap()["to"], "NEEDS_HUMAN");
}

#[test]
fn two_runs_at_once_one_rotates_the_other_says_who_holds_it() {
    let t = Target::postgres(true);
    let mut first = t.start_at("rotate.before.DB_SET");
    let second = t.rotate(&["app"]);
    second.ok();
    assert!(
        second.stdout_text().contains("held by"),
        "{}",
        second.stdout_text()
    );
    let held_by = t.journal().0["holder"].as_str().unwrap().to_string();
    assert!(held_by.contains(&format!("/{}/", first.id())), "{held_by}");
    assert!(second.stdout_text().contains(&held_by));
    first.kill().unwrap();
    first.wait().unwrap();
    // The holder is gone: the next run takes the rotation over and finishes it.
    let third = t.rotate(&["app", "--json"]);
    third.ok();
    let lines = support::json_lines(&third);
    assert_eq!(
        support::of_type(&lines, "rotation")[0]["resumed_from"],
        "PLANNED"
    );
}

#[tokio::test]
async fn no_generated_password_appears_anywhere_but_where_it_belongs() {
    let t = Target::postgres(true);
    let mut outputs = Vec::new();
    let mut passwords = BTreeSet::new();
    let mut argv = Vec::new();
    for point in ["rotate.before.DB_SET", "rotate.after.TESTED"] {
        let mut child = t.start_at(point);
        argv.push(std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap());
        argv.push(std::fs::read(format!("/proc/{}/environ", child.id())).unwrap());
        passwords.extend(t.journal().1);
        child.kill().unwrap();
        child.wait().unwrap();
        let run = t.rotate(&["app"]);
        run.ok();
        outputs.push(run.stdout_text() + &run.stderr);
        passwords.insert(
            t.published().unwrap()["password"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for args in [
        vec!["app", "--json"],
        vec!["app", "--dry-run"],
        vec!["status"],
        vec!["status", "--json"],
    ] {
        let run = t.rotate(&args);
        run.ok();
        outputs.push(run.stdout_text() + &run.stderr);
        passwords.insert(
            t.published().unwrap()["password"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let failed = t.rotate_env(
        &["app"],
        &[
            ("COFFRE_FAILPOINT", "rotate.after.DB_SET"),
            ("COFFRE_FAILPOINT_MODE", "error"),
        ],
    );
    outputs.push(failed.stdout_text() + &failed.stderr);
    passwords.extend(t.journal().1);
    // Three rotations finished (two resumed after a kill), one failed with its password pending.
    assert_eq!(passwords.len(), 4, "{}", passwords.len());
    let journal_record = std::fs::read_to_string(t.ws.path("secrets/journal/app.json")).unwrap();
    let record_field =
        read_fields(&t.ws.path("secrets/journal/app.json")).unwrap()["journal"].clone();
    let audit: Vec<String> = t.audit_events().iter().map(Value::to_string).collect();
    let pg_log = std::env::var("COFFRE_TEST_PG_LOG")
        .map(|p| std::fs::read_to_string(p).unwrap())
        .unwrap_or_default();
    for password in &passwords {
        for (i, out) in outputs.iter().enumerate() {
            assert!(
                !out.contains(password.as_str()),
                "output {i} holds a password"
            );
        }
        for a in &argv {
            assert!(
                !String::from_utf8_lossy(a).contains(password.as_str()),
                "argv/env holds a password"
            );
        }
        assert!(
            !record_field.to_string().contains(password.as_str()),
            "the journal record holds a password"
        );
        assert!(
            !audit.iter().any(|e| e.contains(password.as_str())),
            "an audit event holds a password"
        );
        assert!(
            !pg_log.contains(password.as_str()),
            "the server log holds a password"
        );
    }
    // The pending password of the failed run is in the journal's secret field only.
    assert!(journal_record.contains("pending_password"));
}

#[tokio::test]
async fn bad_input_is_a_clear_error_and_changes_nothing() {
    let t = Target::postgres(true);
    // Unknown target.
    let run = t.rotate(&["nope"]);
    run.expect_class(Class::Config);
    assert!(
        run.stderr.contains("no rotation target named 'nope'") && run.stderr.contains("app"),
        "{}",
        run.stderr
    );
    // Wrong admin password: an auth error, and no journal, no secret.
    let run =
        t.ws.run_env(&["rotate", "app"], &[(ADMIN_ENV, "wrong-admin-password")]);
    run.expect_failure(Class::Auth, "admin_password");
    assert!(!t.ws.path("secrets").exists());
    assert!(!run.stderr.contains("wrong-admin-password"));
    // The admin password's variable not set: a config error naming it.
    let run = t.ws.run(&["rotate", "app"]);
    run.expect_failure(Class::Config, ADMIN_ENV);
    // An unreachable database.
    let text = std::fs::read_to_string(t.ws.path("jobs/passwords.toml")).unwrap();
    let port = pg_addr().1;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    t.ws.write(
        "jobs/passwords.toml",
        &text.replace(&format!("port = {port}"), &format!("port = {closed}")),
    );
    let run = t.rotate(&["app"]);
    run.expect_failure(Class::Source, "cannot connect");
    assert!(!t.ws.path("secrets").exists());
    // A user that does not exist: nothing published, the journal says what failed.
    t.ws.write(
        "jobs/passwords.toml",
        &text.replace(&t.users[0], "no_such_role_x"),
    );
    let run = t.rotate(&["app"]);
    run.expect_failure(Class::Config, "does not exist");
    assert!(t.published().is_none());
    // Bad job files.
    for (bad, says) in [
        (
            text.replace("users = [", "colour = \"blue\"\nusers = ["),
            "unknown field",
        ),
        (
            text.replace(
                "publish = \"file:../secrets/app.json\"",
                "publish = \"s3:x\"",
            ),
            "not a secret location",
        ),
        (
            text.replace("kind = \"postgres\"", "kind = \"oracle\""),
            "a target is postgres, mariadb, api_key, tls or ca",
        ),
        (
            text.replace("sslmode = \"disable\"", "sslmode = \"sometimes\""),
            "sslmode",
        ),
        (
            text.replace("name = \"app\"", "name = \"status\""),
            "name the target otherwise",
        ),
        (
            text.replace(&t.users[0], "x'; DROP ROLE postgres; --"),
            "use letters, digits",
        ),
        (
            format!(
                "{text}\n{}",
                &text[text.find("[[target]]").unwrap()..]
                    .replace("name = \"app\"", "name = \"app2\"")
            ),
            "both publish to",
        ),
    ] {
        t.ws.write("jobs/passwords.toml", &bad);
        let run = t.rotate(&["app"]);
        run.expect_class(Class::Config);
        assert!(run.stderr.contains(says), "{says}: {}", run.stderr);
    }
}

#[tokio::test]
async fn mariadb_users_rotate_with_a_hash_computed_client_side() {
    let base = unique("rot");
    let users = [format!("{base}_a"), format!("{base}_b")];
    for user in &users {
        mariadb(
            "",
            &format!("CREATE USER '{user}'@'%' IDENTIFIED BY 'initial'"),
        );
    }
    let (host, port) = mariadb_addr();
    let ws = Workspace::new();
    ws.write(
        "jobs/passwords.toml",
        &format!(
            "kind = \"rotation\"\n\n[[target]]\nname = \"shop\"\nkind = \"mariadb\"\nhost = \"{host}\"\nport = {port}\nadmin_user = \"root\"\nusers = [\"{}\", \"{}\"]\npublish = \"file:../secrets/shop.json\"\n[target.password]\nlength = 40\nalphabet = \"url-safe\"\n",
            users[0], users[1]
        ),
    );
    let logs_in = |user: &str, password: &str| {
        Command::new("mariadb")
            .args([
                "--protocol=TCP",
                "-h",
                &host,
                "-P",
                &port.to_string(),
                "-u",
                user,
            ])
            .args(["-e", "SELECT 1"])
            .env("MYSQL_PWD", password)
            .output()
            .unwrap()
            .status
            .success()
    };
    for expected in [&users[0], &users[1], &users[0]] {
        ws.run(&["rotate", "shop"]).ok();
        let published = read_fields(&ws.path("secrets/shop.json")).unwrap();
        assert_eq!(published["username"], expected.as_str());
        let password = published["password"].as_str().unwrap();
        assert_eq!(password.len(), 40);
        assert!(logs_in(expected, password), "{expected} cannot log in");
    }
    assert!(
        !logs_in(&users[1], "initial"),
        "the rotated user kept its first password"
    );
}

#[test]
fn a_rotation_job_runs_through_job_run_and_lists_its_kind() {
    let t = Target::postgres(true);
    let password = pg_password();
    let run = t.ws.run_env(
        &["job", "run", "passwords", "--json"],
        &[(ADMIN_ENV, &password)],
    );
    run.ok();
    let lines = support::json_lines(&run);
    assert_eq!(
        support::of_type(&lines, "rotation")[0]["outcome"],
        "rotated"
    );
    assert_eq!(t.audit_events()[0]["trigger"], "schedule");
    let list = t.ws.run(&["job", "list", "--json"]);
    list.ok();
    assert!(list.stdout_text().contains("\"rotation\""));
    // A dry run changes nothing and says what it would do.
    let before = t.published().unwrap();
    let plan = t.rotate(&["--all", "--dry-run"]);
    plan.ok();
    assert!(
        plan.stdout_text().contains(&format!(
            "rotate {} (dual-user: {}, in use now, keeps its password until the next rotation changes it)",
            t.users[1], t.users[0]
        )),
        "{}",
        plan.stdout_text()
    );
    // An incident replaces the one in use with a password nobody knows, and says so.
    let text = std::fs::read_to_string(t.ws.path("jobs/passwords.toml")).unwrap();
    t.ws.write(
        "jobs/passwords.toml",
        &text.replace("[[target]]", "[[target]]\ngrace = \"2h\""),
    );
    let plan = t.rotate(&["--all", "--dry-run"]);
    assert!(
        plan.stdout_text().contains(&format!(
            "{}, in use now, keeps its password for 2h after the rotation finishes, then gets one nobody knows",
            t.users[0]
        )),
        "{}",
        plan.stdout_text()
    );
    assert_eq!(t.published().unwrap(), before);
    assert_eq!(t.audit_events().len(), 6);
}

/// sslmode as libpq means it: require encrypts without checking the certificate, verify-full
/// checks it against sslrootcert and the host name, and a failed check changes nothing.
#[tokio::test]
async fn tls_modes_encrypt_and_verify_as_libpq_does() {
    let ca = std::env::var("COFFRE_TEST_PG_CA").expect("COFFRE_TEST_PG_CA: run with scripts/test");
    let only_over_tls = "DO $$ BEGIN IF NOT (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) THEN RAISE EXCEPTION 'not over TLS'; END IF; END $$";
    let t = Target::postgres(false);
    let text = std::fs::read_to_string(t.ws.path("jobs/passwords.toml")).unwrap();
    let with = |sslmode: &str, host: &str, extra: &str| {
        let (pg_host, _) = pg_addr();
        let job = text
            .replace(
                "sslmode = \"disable\"",
                &format!("sslmode = \"{sslmode}\"\n{extra}"),
            )
            .replace(
                &format!("host = \"{pg_host}\""),
                &format!("host = \"{host}\""),
            )
            .replace(
                "test_query = \"SELECT count(*) FROM pg_class\"",
                &format!("test_query = {}", toml::Value::from(only_over_tls)),
            );
        t.ws.write("jobs/passwords.toml", &job);
    };
    // The server's certificate is self-signed: no system CA vouches for it.
    with("verify-full", "localhost", "");
    let run = t.rotate(&["app"]);
    run.expect_class(Class::Source);
    assert!(
        run.stderr.contains("cannot connect") && run.stderr.to_lowercase().contains("certificate"),
        "{}",
        run.stderr
    );
    assert!(t.published().is_none() && !t.ws.path("secrets").exists());
    with(
        "verify-full",
        "localhost",
        &format!("sslrootcert = \"{ca}\""),
    );
    t.rotate(&["app"]).ok();
    assert!(published_opens(&t).await);
    with("require", "127.0.0.1", "");
    t.rotate(&["app"]).ok();
    assert!(published_opens(&t).await);
}

#[test]
fn config_check_logs_in_to_every_target_and_reads_its_journal() {
    let t = Target::postgres(true);
    let run = t.rotate_env(&[], &[]);
    run.expect_class(Class::Config);
    let password = pg_password();
    let check =
        t.ws.run_env(&["config", "check"], &[(ADMIN_ENV, &password)]);
    check.ok();
    assert!(
        check
            .stdout_text()
            .contains("rotation target app: admin login ok, never rotated"),
        "{}",
        check.stdout_text()
    );
    t.rotate(&["app"]).ok();
    let check =
        t.ws.run_env(&["config", "check", "--json"], &[(ADMIN_ENV, &password)]);
    check.ok();
    let report = &support::json_lines(&check)[0];
    assert_eq!(
        report["targets"],
        serde_json::json!([{"name": "app", "state": "FINISHED"}])
    );
    // A wrong admin password is found before any rotation runs.
    let check =
        t.ws.run_env(&["config", "check"], &[(ADMIN_ENV, "not-the-password")]);
    check.expect_class(Class::Auth);
    assert!(
        check.stderr.contains("rotation target 'app'") && check.stderr.contains("admin"),
        "{}",
        check.stderr
    );
    // A config that only rotates passwords needs no backup job and no key.
    t.ws.write_config("keys = []");
    t.ws.run_env(&["config", "check"], &[(ADMIN_ENV, &password)])
        .ok();
    t.rotate(&["app"]).ok();
}

#[test]
fn an_admin_without_the_privilege_fails_the_rotation_and_status_says_why() {
    let t = Target::postgres(true);
    let weak = unique("weak_admin");
    psql(
        "postgres",
        &format!("CREATE ROLE {weak} LOGIN PASSWORD 'weak-admin-pw'"),
    );
    let text = std::fs::read_to_string(t.ws.path("jobs/passwords.toml")).unwrap();
    t.ws.write(
        "jobs/passwords.toml",
        &text.replace(
            "admin_user = \"postgres\"",
            &format!("admin_user = \"{weak}\""),
        ),
    );
    let run =
        t.ws.run_env(&["rotate", "app"], &[(ADMIN_ENV, "weak-admin-pw")]);
    run.expect_failure(Class::Auth, "CREATEROLE");
    assert!(t.published().is_none());
    assert!(!run.stderr.contains("weak-admin-pw"));
    let status = t.ws.run(&["rotate", "status", "--json"]);
    status.ok();
    let status = &support::json_lines(&status)[0];
    assert_eq!(status["state"], "FAILED");
    assert_eq!(status["step"], "PLANNED");
    assert_eq!(status["failed_runs"], 1);
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("CREATEROLE")
    );
    // With the privilege fixed, the next run resumes the same rotation and finishes it.
    psql("postgres", &format!("ALTER ROLE {weak} CREATEROLE"));
    let planned = t.journal().0["rotation_id"].clone();
    let run = t.ws.run_env(
        &["rotate", "app", "--json"],
        &[(ADMIN_ENV, "weak-admin-pw")],
    );
    run.ok();
    let lines = support::json_lines(&run);
    let result = support::of_type(&lines, "rotation")[0];
    assert_eq!(result["rotation_id"], planned);
    assert_eq!(result["resumed_from"], "PLANNED");
}

/// SIGTERM (the stop token) lets the step in flight finish, releases the journal at once and
/// stops; a rotation not started yet does not start. Through the library, which the daemon and
/// `job run` call.
#[tokio::test]
async fn a_stop_between_steps_releases_the_journal_for_the_next_run() {
    use coffre::audit::Audit;
    use coffre::ops::rotate::{self, RotateOptions};
    let t = Target::postgres(true);
    let text = std::fs::read_to_string(t.ws.path("jobs/passwords.toml")).unwrap();
    t.ws.write(
        "jobs/passwords.toml",
        &text.replace(&format!("env:{ADMIN_ENV}"), "file:../pgadmin"),
    );
    t.ws.write("pgadmin", &pg_password());
    std::fs::set_permissions(
        t.ws.path("pgadmin"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let config = coffre::config::Config::load(&t.ws.path("coffre.toml")).unwrap();
    let targets = rotate::select(&config, &[]).unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let options = RotateOptions {
        actor: "test".into(),
        holder: "elsewhere/1/test".into(),
        attempts: 1,
        ..RotateOptions::new("manual", stop.clone())
    };
    // Stopped before anything: nothing is written.
    stop.cancel();
    let results = rotate::rotate(
        &targets,
        &config.secrets,
        &Audit::new(None, None, |_| {}),
        &options,
    )
    .await;
    assert_eq!(
        results[0].as_ref().unwrap_err().class(),
        coffre::error::Class::Interrupted
    );
    assert!(!t.ws.path("secrets").exists());
    // Stopped while the database step runs: that step is journaled, then the run stops.
    let stop = tokio_util::sync::CancellationToken::new();
    let options = RotateOptions {
        stop: stop.clone(),
        ..options
    };
    let on_event = stop.clone();
    let audit = Audit::new(None, None, move |event| {
        if matches!(&event.what, coffre::audit::What::Rotation { to, .. } if to == "DB_SET") {
            on_event.cancel();
        }
    });
    let results = rotate::rotate(&targets, &config.secrets, &audit, &options).await;
    let error = results[0].as_ref().unwrap_err();
    assert_eq!(error.class(), coffre::error::Class::Interrupted);
    assert!(error.message().contains("stopped after DB_SET"), "{error}");
    let (record, pending) = t.journal();
    assert_eq!(record["state"], "DB_SET");
    assert!(
        record["holder"].is_null(),
        "the journal is still held: {record}"
    );
    // Another host's run does not wait out a hold: it resumes at once.
    let run = t.rotate(&["app", "--json"]);
    run.ok();
    assert_eq!(
        support::of_type(&support::json_lines(&run), "rotation")[0]["resumed_from"],
        "DB_SET"
    );
    assert_eq!(
        t.published().unwrap()["password"].as_str(),
        pending.as_deref()
    );
}

/// A role that may not log in (NOLOGIN, or pg_hba.conf refusing it) is a config error found
/// before its password changes: rotating it would only lock it out further.
#[test]
fn a_user_that_may_not_log_in_is_refused_before_its_password_changes() {
    let t = Target::postgres(false);
    let user = &t.users[0];
    psql("postgres", &format!("ALTER ROLE {user} NOLOGIN"));
    let password_of = || {
        psql(
            "postgres",
            &format!("SELECT rolpassword FROM pg_authid WHERE rolname = '{user}'"),
        )
    };
    let before = password_of();
    let run = t.rotate(&["app"]);
    run.expect_class(Class::Config);
    assert!(
        run.stderr.contains("may not log in") && run.stderr.contains("LOGIN"),
        "{}",
        run.stderr
    );
    assert_eq!(before, password_of(), "the password changed");
    assert!(t.published().is_none());
}

/// Single-user, stopped after the database took the new password but before it was published:
/// abandoning would lose the password in use, so it is refused; resuming over the secret as a
/// person left it publishes the password the database has.
#[tokio::test]
async fn a_single_user_rotation_stopped_after_db_set_is_resumed_not_abandoned() {
    let t = Target::postgres(false);
    t.rotate(&["app"]).ok();
    let mut child = t.start_at("rotate.before.PUBLISHED");
    t.edit_published(|fields| fields["note"] = "looked at by the on-call".into());
    child.kill().unwrap();
    child.wait().unwrap();
    let run = t.rotate(&["app"]);
    run.expect_failure(Class::Integrity, "--resume");
    let pending = t.journal().1.expect("the pending password is kept");
    // The database already has it; the published secret does not.
    assert!(pg_login(&t.users[0], &pending).await);
    assert!(!published_opens(&t).await);
    let run = t.rotate(&["--abandon", "app"]);
    run.expect_failure(Class::Config, "would lose the password in use");
    assert_eq!(t.journal().0["state"], "NEEDS_HUMAN");
    let run = t.rotate(&["--resume", "app", "--json"]);
    run.ok();
    let lines = support::json_lines(&run);
    assert_eq!(
        support::of_type(&lines, "rotation")[0]["resumed_from"],
        "TESTED"
    );
    assert_eq!(
        t.published().unwrap()["password"].as_str(),
        Some(pending.as_str())
    );
    assert!(published_opens(&t).await);
    assert_eq!(t.journal().0["state"], "FINISHED");
    assert!(
        t.audit_events()
            .iter()
            .any(|e| e["from"] == "NEEDS_HUMAN" && e["to"] == "TESTED")
    );
}

/// MariaDB refuses with the same error a wrong password and an account whose host part does
/// not match where coffre connects from: the failed test says both, and nothing is published.
#[tokio::test]
async fn a_mariadb_account_for_another_host_fails_the_test_naming_user_host() {
    let user = unique("rothost");
    mariadb(
        "",
        &format!("CREATE USER '{user}'@'10.254.254.254' IDENTIFIED BY 'initial'"),
    );
    let (host, port) = mariadb_addr();
    let ws = Workspace::new();
    ws.write(
        "jobs/passwords.toml",
        &format!(
            "kind = \"rotation\"\n\n[[target]]\nname = \"remote\"\nkind = \"mariadb\"\nhost = \"{host}\"\nport = {port}\nadmin_user = \"root\"\nuser = \"{user}\"\nuser_host = \"10.254.254.254\"\npublish = \"file:../secrets/remote.json\"\n"
        ),
    );
    let run = ws.run(&["rotate", "remote"]);
    run.expect_failure(Class::Auth, "user_host '10.254.254.254' not match");
    assert!(!ws.path("secrets/remote.json").exists());
    mariadb("", &format!("DROP USER '{user}'@'10.254.254.254'"));
}

/// coffre never rotates its own admin, nor a role with an administrator's powers: its password
/// would be handed to an application. Refused before anything changes, by name at config load
/// (dry runs and config check included) and on the server by what the role can do.
#[test]
fn the_admin_or_a_privileged_role_is_never_rotated() {
    let t = Target::postgres(true);
    let text = std::fs::read_to_string(t.ws.path("jobs/passwords.toml")).unwrap();
    for admin_spelling in ["postgres", "POSTGRES"] {
        t.ws.write(
            "jobs/passwords.toml",
            &text.replace(&t.users[0], admin_spelling),
        );
        for args in [&["rotate", "app", "--dry-run"][..], &["config", "check"]] {
            let run = t.ws.run_env(args, &[(ADMIN_ENV, &pg_password())]);
            run.expect_class(Class::Config);
            assert!(
                run.stderr.contains("is the admin_user"),
                "{args:?}: {}",
                run.stderr
            );
        }
    }
    let powerful = unique("powerful");
    psql(
        "postgres",
        &format!("CREATE ROLE {powerful} NOLOGIN SUPERUSER"),
    );
    for (grant, says) in [
        (
            format!("ALTER ROLE {} CREATEROLE", t.users[0]),
            "CREATEROLE".to_string(),
        ),
        (
            format!(
                "ALTER ROLE {} NOCREATEROLE; GRANT {powerful} TO {}",
                t.users[0], t.users[0]
            ),
            format!("SUPERUSER (through {powerful})"),
        ),
    ] {
        psql("postgres", &grant);
        t.ws.write("jobs/passwords.toml", &text);
        let password_of = || {
            psql(
                "postgres",
                &format!(
                    "SELECT rolpassword FROM pg_authid WHERE rolname = '{}'",
                    t.users[0]
                ),
            )
        };
        let before = password_of();
        let run = t.rotate(&["app"]);
        run.expect_class(Class::Config);
        assert!(run.stderr.contains(&says), "{says}: {}", run.stderr);
        assert_eq!(before, password_of(), "{says}: the password changed");
        assert!(t.published().is_none());
        let check =
            t.ws.run_env(&["config", "check"], &[(ADMIN_ENV, &pg_password())]);
        check.expect_class(Class::Config);
        assert!(check.stderr.contains(&says), "{says}: {}", check.stderr);
    }
}

/// A `users` list is two different users (dual-user); single-user is `user = "..."`. A list
/// of one would rotate the user in use in place, locking out the clients that hold its password.
#[test]
fn a_users_list_of_one_is_refused() {
    let t = Target::postgres(true);
    t.rotate(&["app"]).ok();
    let before = t.published().unwrap();
    let text = std::fs::read_to_string(t.ws.path("jobs/passwords.toml")).unwrap();
    let users = format!("users = [\"{}\", \"{}\"]", t.users[0], t.users[1]);
    assert!(text.contains(&users), "{text}");
    t.ws.write(
        "jobs/passwords.toml",
        &text.replace(&users, &format!("users = [\"{}\"]", t.users[0])),
    );
    for args in [&["app"][..], &["app", "--dry-run"]] {
        let run = t.rotate(args);
        run.expect_failure(Class::Config, "exactly two different users");
    }
    assert_eq!(t.published().unwrap(), before);
}

/// The test query's failure carries the server's own words (in the error, the audit event and
/// `rotate status`), and the run that stops the rotation for a person exits 7, as later ones do.
#[test]
fn a_failing_test_query_says_why_and_the_fifth_failure_stops_with_exit_7() {
    let t = Target::postgres(true);
    let table = unique("wards");
    psql(
        "postgres",
        &format!(
            "CREATE TABLE {table} (id int); GRANT SELECT ON {table} TO {}; REVOKE ALL ON {table} FROM {}",
            t.users[1], t.users[0]
        ),
    );
    let text = std::fs::read_to_string(t.ws.path("jobs/passwords.toml")).unwrap();
    t.ws.write(
        "jobs/passwords.toml",
        &text.replace(
            "SELECT count(*) FROM pg_class",
            &format!("SELECT count(*) FROM {table}"),
        ),
    );
    let denied = format!("permission denied for table {table}");
    for run_number in 1..=6 {
        let run = t.rotate(&["app"]);
        let expected = match run_number < 5 {
            true => Class::Config,
            false => Class::Integrity,
        };
        run.expect_failure(expected, &denied);
        // One line: the error is printed once.
        assert_eq!(
            run.stderr.matches(&denied).count(),
            1,
            "run {run_number}: {}",
            run.stderr
        );
    }
    assert!(t.published().is_none());
    let status = t.ws.run(&["rotate", "status", "--json"]);
    status.ok();
    let status = &support::json_lines(&status)[0];
    assert_eq!(status["state"], "NEEDS_HUMAN");
    assert!(status.to_string().contains(&denied), "{status}");
    let events = t.audit_events();
    let failed: Vec<&Value> = events.iter().filter(|e| e["to"] == "FAILED").collect();
    assert_eq!(failed.len(), 4);
    assert!(
        failed
            .iter()
            .all(|e| e["detail"].as_str().unwrap().contains(&denied))
    );
    assert!(
        events
            .iter()
            .any(|e| e["to"] == "NEEDS_HUMAN" && e["detail"].as_str().unwrap().contains(&denied))
    );
}

/// A server that lets a user in without checking its password (a pg_hba.conf trust rule)
/// would make every rotation a silent no-op with a secret the database never saw: refused,
/// naming the rule, never FINISHED.
#[tokio::test]
async fn a_user_the_server_lets_in_without_a_password_is_refused() {
    for dual in [false, true] {
        let t = Target::postgres(dual);
        for user in &t.users {
            psql("postgres", &format!("GRANT coffre_trusted TO {user}"));
        }
        // The rule is real: any password opens it.
        assert!(pg_login(&t.users[0], "not-its-password").await);
        let run = t.rotate(&["app"]);
        run.expect_class(Class::Config);
        assert!(
            run.stderr.contains("wrong password") && run.stderr.contains("pg_hba.conf"),
            "{}",
            run.stderr
        );
        assert!(t.published().is_none());
        assert_ne!(t.journal().0["state"], "FINISHED");
        assert!(!t.audit_events().iter().any(|e| e["to"] == "FINISHED"));
    }
}

/// The rotator with exactly the README's grant (CREATE USER ON *.*) rotates the users of a
/// target that names a database. An application user that may not use that database is an
/// auth error (exit 4, not the retryable 5) naming the grant, printed once; one with GRANT
/// OPTION is refused before its password is published (the rotator may not read other
/// accounts' grants, so the account's own are read when it logs in).
#[test]
fn mariadb_rotator_with_the_readme_grant_rotates_and_refusals_say_what_to_grant() {
    let base = unique("mrot");
    let (db, rotator) = (format!("{base}_db"), format!("{base}_rotator"));
    let users = [format!("{base}_a"), format!("{base}_b")];
    mariadb(
        "",
        &format!(
            "CREATE DATABASE {db}; CREATE USER '{rotator}'@'%' IDENTIFIED BY 'rotator-pw-77'; GRANT CREATE USER ON *.* TO '{rotator}'@'%'"
        ),
    );
    for user in &users {
        mariadb(
            "",
            &format!(
                "CREATE USER '{user}'@'%' IDENTIFIED BY 'initial'; GRANT SELECT ON {db}.* TO '{user}'@'%'"
            ),
        );
    }
    let (host, port) = mariadb_addr();
    let ws = Workspace::new();
    ws.write(
        "jobs/passwords.toml",
        &format!(
            "kind = \"rotation\"\n\n[[target]]\nname = \"shop\"\nkind = \"mariadb\"\nhost = \"{host}\"\nport = {port}\ndatabase = \"{db}\"\nadmin_user = \"{rotator}\"\nadmin_password = \"env:ROTATOR_PW\"\nusers = [\"{}\", \"{}\"]\npublish = \"file:../secrets/shop.json\"\n",
            users[0], users[1]
        ),
    );
    let env = [("ROTATOR_PW", "rotator-pw-77")];
    for expected in [&users[0], &users[1]] {
        ws.run_env(&["rotate", "shop"], &env).ok();
        let published = read_fields(&ws.path("secrets/shop.json")).unwrap();
        assert_eq!(published["username"], expected.as_str());
    }
    // The next rotation is users[0]'s, which may no longer use the database.
    mariadb(
        "",
        &format!("REVOKE SELECT ON {db}.* FROM '{}'@'%'", users[0]),
    );
    let run = ws.run_env(&["rotate", "shop"], &env);
    run.expect_class(Class::Auth);
    assert!(
        run.stderr.contains(&format!("may not use database '{db}'"))
            && run.stderr.contains("GRANT"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("may not use database").count(),
        1,
        "{}",
        run.stderr
    );
    assert_eq!(
        read_fields(&ws.path("secrets/shop.json")).unwrap()["username"],
        users[1].as_str()
    );
    // Given more than an application should have, it is refused before publishing.
    mariadb(
        "",
        &format!(
            "GRANT SELECT ON {db}.* TO '{}'@'%' WITH GRANT OPTION",
            users[0]
        ),
    );
    let run = ws.run_env(&["rotate", "shop"], &env);
    run.expect_failure(Class::Config, "GRANT OPTION");
    assert_eq!(
        read_fields(&ws.path("secrets/shop.json")).unwrap()["username"],
        users[1].as_str()
    );
    // With root as the admin (it may read any account's grants), it is refused up front.
    let text = std::fs::read_to_string(ws.path("jobs/passwords.toml")).unwrap();
    ws.write(
        "jobs/passwords.toml",
        &text
            .replace(
                &format!("admin_user = \"{rotator}\""),
                "admin_user = \"root\"",
            )
            .replace("admin_password = \"env:ROTATOR_PW\"\n", ""),
    );
    let check = ws.run(&["config", "check"]);
    check.expect_failure(Class::Config, "GRANT OPTION");
    mariadb(
        "",
        &format!(
            "DROP DATABASE {db}; DROP USER '{rotator}'@'%', '{}'@'%', '{}'@'%'",
            users[0], users[1]
        ),
    );
}
