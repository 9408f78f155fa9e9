//! The audit trail: every operation leaves its event (with who and why, never a secret), the
//! chain catches a deleted, edited or reordered event, and two writers at once lose nothing.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;

use coffre::audit::trail;
use coffre::audit::{Audit, What};
use coffre::error::Class;
use support::db::{pg_addr, pg_password, psql, unique};
use support::{Workspace, json_lines};

/// Every event of the workspace's trail, as `audit list --json` prints them.
fn events(ws: &Workspace) -> Vec<Value> {
    let run = ws.run(&["audit", "list", "--json"]);
    run.ok();
    json_lines(&run)
}

/// A PostgreSQL database with a table of `rows` rows, and a job `pg` backing it up.
fn pg_workspace(rows: u32) -> (Workspace, String) {
    let ws = Workspace::new();
    let db = unique("audited");
    psql("postgres", &format!("CREATE DATABASE {db}"));
    psql(
        &db,
        &format!(
            "CREATE TABLE patients AS SELECT g AS id, md5(g::text) AS name FROM generate_series(1, {rows}) g"
        ),
    );
    let (host, port) = pg_addr();
    ws.write(
        "jobs/pg.toml",
        &format!(
            "[retention]\nkeep_within_days = 0\nmin_keep = 1\n\n[source]\nkind = \"postgres\"\nhost = \"{host}\"\nport = {port}\nuser = \"postgres\"\npassword_env = \"TEST_PG_PASSWORD\"\ndatabase = \"{db}\"\n"
        ),
    );
    (ws, db)
}

#[test]
fn each_operation_leaves_one_event_with_actor_and_trigger_and_no_secret_anywhere() {
    let (ws, db) = pg_workspace(500);
    let password = pg_password();
    let env = [
        ("TEST_PG_PASSWORD", password.as_str()),
        ("PGPASSWORD", password.as_str()),
        ("USER", "alice"),
    ];
    let run = |args: &[&str]| {
        let r = ws.run_env(args, &env);
        r.ok();
        r
    };
    let mut outputs = vec![
        run(&["backup", "pg"]),
        run(&["verify", "--latest", "--job", "pg"]),
        run(&["verify", "--latest", "--job", "pg", "--restore"]),
    ];
    outputs.push(run(&[
        "restore", "--latest", "--job", "pg", "--to", "out.dump",
    ]));
    let (host, port) = pg_addr();
    let copy = unique("restored");
    let url = format!("postgres://postgres@{host}:{port}/{copy}");
    outputs.push(run(&[
        "restore", "--latest", "--job", "pg", "--to", &url, "--create",
    ]));
    assert_eq!(psql(&copy, "SELECT count(*) FROM patients"), "500");
    ws.run_raw(&["key", "generate", "new.key"], &[]).ok();
    let new_id = ws
        .run_raw(&["key", "id", "new.key"], &[])
        .stdout_text()
        .trim()
        .to_string();
    outputs.push(run(&["key", "add", "--new-key-file", "new.key"]));
    outputs.push(run(&["key", "remove", &new_id]));
    // A scheduled run that finds the lock of a run that died: taken over, and said so.
    ws.write(
        "store/backups/_locks/pg.json",
        r#"{"holder":"dead-pod/7/abcd/pid:[1]","acquired_at":"2026-01-01T00:00:00Z","expires_at":"2026-01-01T00:10:00Z"}"#,
    );
    let scheduled = [env.as_slice(), &[("COFFRE_ACTOR", "")]].concat();
    let r = ws.run_env(&["job", "run", "pg"], &scheduled);
    r.ok();
    outputs.push(r);
    outputs.push(run(&["prune", "pg"]));

    let trail = events(&ws);
    let kinds: Vec<&str> = trail.iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "backup",
            "verify",
            "drill",
            "restore",
            "restore",
            "key",
            "key",
            "lock_takeover",
            "backup",
            "job_run",
            "prune"
        ],
        "{trail:#?}"
    );
    // Each in its documented shape, numbered from 0, by alice by hand, or by the schedule.
    support::json_doc::check(&trail, "audit list");
    for (i, e) in trail.iter().enumerate() {
        assert_eq!(e["seq"], i as u64, "{e}");
        assert_eq!(e["outcome"], "ok", "{e}");
        let scheduled = matches!(kinds[i], "lock_takeover" | "job_run") || i == 8;
        assert_eq!(
            e["trigger"],
            if scheduled { "schedule" } else { "manual" },
            "{e}"
        );
        assert!(e["actor"].as_str().unwrap().starts_with("alice@"), "{e}");
    }
    let backup_id = trail[0]["backup_id"].as_str().unwrap();
    assert_eq!(trail[1]["backup_id"], backup_id);
    // The drill: what was found, how long it took, how old the backup was.
    let drill = &trail[2];
    assert_eq!(drill["rows"], 500, "{drill}");
    assert_eq!(drill["tables"], 1, "{drill}");
    assert!(drill["duration_seconds"].as_f64().unwrap() > 0.0);
    assert!(drill["backup_age_seconds"].as_i64().unwrap() >= 0);
    // Restores say where to: the file, the database (without a password).
    assert_eq!(
        trail[3]["to"],
        format!("file {}", ws.path("out.dump").display())
    );
    assert!(
        trail[4]["to"].as_str().unwrap().contains(&copy),
        "{}",
        trail[4]
    );
    assert_eq!(trail[5]["action"], "add");
    assert_eq!(trail[5]["key_id"], new_id);
    assert_eq!(trail[6]["action"], "remove");
    assert_eq!(trail[7]["previous_holder"], "dead-pod/7/abcd/pid:[1]");
    assert_eq!(trail[9]["backups"][0], trail[8]["backup_id"]);
    // The prune deleted the first backup (min_keep 1 keeps the newest), and says why.
    assert_eq!(trail[10]["deleted"][0]["backup_id"], backup_id);
    assert_eq!(
        trail[10]["deleted"][0]["reason"],
        "kept by no retention rule"
    );
    // The chain holds.
    run(&["audit", "verify"]);

    // No secret value in the trail, in any output, or in the log lines that carry the events.
    let mut stored = String::new();
    for file in ws.all_store_files().iter().filter(|f| f.contains("_audit")) {
        stored.push_str(&std::fs::read_to_string(ws.path("store").join(file)).unwrap());
    }
    let mut printed = String::new();
    for r in &outputs {
        printed.push_str(&r.stdout_text());
        printed.push_str(&r.stderr);
        // The log carries each event too.
        assert!(r.stderr.contains("coffre::audit"), "{}", r.stderr);
    }
    let keys = [
        std::fs::read_to_string(ws.path("backup.key")).unwrap(),
        std::fs::read_to_string(ws.path("new.key")).unwrap(),
    ];
    for secret in keys
        .iter()
        .map(|k| k.trim().to_string())
        .chain([password.clone()])
    {
        let needle = support::secret_needle(&secret);
        assert!(!stored.contains(needle), "a secret in the stored trail");
        assert!(!printed.contains(needle), "a secret in the output");
    }
    psql("postgres", &format!("DROP DATABASE {db}"));
    psql("postgres", &format!("DROP DATABASE {copy}"));
}

/// A workspace whose trail has `n` events (one `verify` each, after one backup).
fn trail_of(n: usize) -> Workspace {
    let ws = Workspace::new();
    ws.write("data.bin", "patient records");
    ws.file_job("files", "data.bin");
    ws.backup("files");
    for _ in 1..n {
        ws.run(&["verify", "--latest", "--job", "files"]).ok();
    }
    ws
}

fn event_path(ws: &Workspace, seq: u64) -> std::path::PathBuf {
    ws.path(&format!("store/backups/_audit/events/{seq:012}.json"))
}

#[test]
fn a_deleted_edited_or_reordered_event_is_caught_and_its_link_named() {
    let ws = trail_of(6);
    let verified = ws.run(&["audit", "verify", "--json"]);
    verified.ok();
    let report = &json_lines(&verified)[0];
    assert_eq!(report["intact"], true);
    assert_eq!(report["events"], 6);
    let head = report["head"].as_str().unwrap().to_string();
    assert!(head.starts_with("5:sha256:"), "{head}");
    let originals: Vec<Vec<u8>> = (0..6)
        .map(|s| std::fs::read(event_path(&ws, s)).unwrap())
        .collect();
    let restore = || {
        for (seq, bytes) in originals.iter().enumerate() {
            std::fs::write(event_path(&ws, seq as u64), bytes).unwrap();
        }
        ws.run(&["audit", "verify"]).ok();
    };

    // Deleted.
    std::fs::remove_file(event_path(&ws, 2)).unwrap();
    ws.run(&["audit", "verify"])
        .expect_failure(Class::Integrity, "event 2 is missing");
    restore();
    // Edited: one character of its outcome.
    let edited = String::from_utf8(originals[3].clone())
        .unwrap()
        .replace("\"outcome\":\"ok\"", "\"outcome\":\"failed\"");
    std::fs::write(event_path(&ws, 3), edited).unwrap();
    ws.run(&["audit", "verify"])
        .expect_failure(Class::Integrity, "event 4 does not follow event 3");
    restore();
    // Reordered: two events swapped.
    std::fs::write(event_path(&ws, 1), &originals[4]).unwrap();
    std::fs::write(event_path(&ws, 4), &originals[1]).unwrap();
    ws.run(&["audit", "verify"])
        .expect_failure(Class::Integrity, "event 1 holds the content of event 4");
    restore();
    // The first event gone.
    std::fs::remove_file(event_path(&ws, 0)).unwrap();
    ws.run(&["audit", "verify"])
        .expect_failure(Class::Integrity, "events 0 to 0 are missing");
    restore();
    // The last event cut: the chain alone cannot tell, the anchor an earlier verify printed can.
    std::fs::remove_file(event_path(&ws, 5)).unwrap();
    ws.run(&["audit", "verify"]).ok();
    ws.run(&["audit", "verify", "--anchor", &head])
        .expect_failure(Class::Integrity, "events were cut from its end");
    restore();
    ws.run(&["audit", "verify", "--anchor", &head]).ok();
    // An anchor that is not one is a usage error naming the form.
    let bad = ws.run(&["audit", "verify", "--anchor", "5:md5:00"]);
    bad.expect_code(2);
    assert!(bad.stderr.contains("SEQ:sha256:HEX"), "{}", bad.stderr);
    // The next writer carries on after the trail's end, whatever the hint says.
    ws.write("store/backups/_runs/_audit-head.json", r#"{"seq": 999}"#);
    ws.run(&["verify", "--latest", "--job", "files"]).ok();
    let trail = events(&ws);
    assert_eq!(trail.len(), 7);
    assert_eq!(trail[6]["seq"], 6);
    ws.run(&["audit", "verify"]).ok();
}

#[test]
fn list_filters_by_time_kind_and_job() {
    let ws = trail_of(3);
    ws.write("other.bin", "x");
    ws.file_job("other", "other.bin");
    ws.backup("other");
    let by = |args: &[&str]| {
        let mut full = vec!["audit", "list", "--json"];
        full.extend_from_slice(args);
        let r = ws.run(&full);
        r.ok();
        json_lines(&r)
            .iter()
            .map(|e| e["seq"].as_u64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(by(&[]), [0, 1, 2, 3]);
    assert_eq!(by(&["--kind", "backup"]), [0, 3]);
    assert_eq!(
        by(&["--kind", "verify,backup", "--job", "files"]),
        [0, 1, 2]
    );
    assert_eq!(by(&["--job", "other"]), [3]);
    assert_eq!(by(&["--since", "2099-01-01"]), Vec::<u64>::new());
    assert_eq!(by(&["--since", "1h"]).len(), 4);
    let bad = ws.run(&["audit", "list", "--kind", "nonsense"]);
    bad.expect_code(2);
    assert!(bad.stderr.contains("lock_takeover"), "{}", bad.stderr);
    // Text: one line each, with number, kind and actor.
    let text = ws.run(&["audit", "list"]).stdout_text();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.lines().nth(3).unwrap().contains("backup"), "{text}");
}

/// Two writers at once (two pods, each with its own idea of where the trail ends) append 40
/// events each: one chain, every event there once.
async fn two_writers(store: &coffre::store::Store) {
    let write = |who: &'static str| async move {
        let audit = Audit::new(Some(store), None, |_| {});
        let mut ids = Vec::new();
        for i in 0..40 {
            let what = What::LockTakeover {
                job: who.into(),
                previous_holder: format!("{who}-{i}"),
                expired_at: chrono::Utc::now(),
            };
            let event = audit.event(what, "ok", None);
            ids.push(event.id.clone());
            audit.record(event).await;
        }
        assert!(audit.unstored().is_empty(), "{:?}", audit.unstored());
        ids
    };
    let (a, b) = tokio::join!(write("pod-a"), write("pod-b"));
    let read = trail::read(store, None).await.unwrap();
    assert!(read.verification.intact(), "{:?}", read.verification.broken);
    assert_eq!(read.verification.count, 80);
    let stored: BTreeSet<String> = read.events.iter().map(|e| e.id.clone()).collect();
    let written: BTreeSet<String> = a.into_iter().chain(b).collect();
    assert_eq!(stored, written);
    // Each writer's events in the order it wrote them.
    for who in ["pod-a", "pod-b"] {
        let order: Vec<String> = read
            .events
            .iter()
            .filter(|e| e.subject() == Some(who))
            .map(|e| match &e.what {
                What::LockTakeover {
                    previous_holder, ..
                } => previous_holder.clone(),
                _ => unreachable!(),
            })
            .collect();
        let expected: Vec<String> = (0..40).map(|i| format!("{who}-{i}")).collect();
        assert_eq!(order, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_writers_at_once_on_a_local_store_keep_one_chain_and_every_event() {
    let ws = Workspace::new();
    let (_, store) = support::open_store(&ws).await;
    two_writers(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_writers_at_once_on_s3_keep_one_chain_and_every_event() {
    let ws = support::s3::workspace_with_store(&support::s3::s3_store(&unique("trail")));
    for (name, value) in support::s3::S3_ENV {
        // SAFETY: set before any thread of this test reads the environment.
        unsafe { std::env::set_var(name, value) };
    }
    let (_, store) = support::open_store(&ws).await;
    two_writers(&store).await;
}
