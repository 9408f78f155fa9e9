//! Every command's `--json` output against docs/JSON.md: each object has a documented type,
//! every documented field (and no other), each of the documented JSON type.

mod support;

use serde_json::Value;
use std::collections::BTreeSet;

use coffre::error::Class;
use support::json_doc::{check, documented};
use support::{Run, Workspace, json_lines, three_backups};

/// Run with --json, require success, check every stdout line.
fn checked(ws: &Workspace, args: &[&str]) -> (Run, BTreeSet<String>) {
    let mut full = args.to_vec();
    full.push("--json");
    let run = ws.run(&full);
    run.ok();
    let seen = check(&json_lines(&run), &args.join(" "));
    (run, seen)
}

#[test]
fn every_json_output_matches_its_documented_shape() {
    let (ws, ids) = three_backups();
    let mut seen = BTreeSet::new();
    let mut run = |args: &[&str]| {
        let (r, types) = checked(&ws, args);
        seen.extend(types);
        r
    };
    run(&["config", "check"]);
    run(&["key", "generate", "new.key"]);
    run(&["key", "generate", "--x25519", "restore.identity"]);
    run(&["key", "id", "new.key"]);
    run(&["backup", "files"]);
    run(&["verify", &ids[0]]);
    run(&["restore", &ids[0], "--to", "out.bin"]);
    // A pack no manifest lists (a killed backup's): pruning marks it.
    ws.write(
        "store/backups/files/_packs/00000000000000000000000000000000.cfp",
        "left by a killed backup",
    );
    run(&["prune", "files", "--dry-run"]);
    run(&["prune", "--all"]);
    run(&["key", "add", "--new-key-file", "new.key"]);
    let old = ws.run_raw(&["key", "id", "backup.key"], &[]).stdout_text();
    ws.write_config("keys = [{ key = \"file:new.key\" }]");
    run(&[
        "key",
        "rotate",
        "--new-key-file",
        "new.key",
        "--remove",
        old.trim(),
    ]);
    run(&["key", "remove", old.trim()]);
    run(&["job", "list"]);
    run(&["job", "run", "files"]);
    // A report, by hand and as a job.
    ws.write(
        "jobs/monthly-report.toml",
        "kind = \"report\"\nperiod = \"31d\"\n",
    );
    run(&["report"]);
    run(&["job", "run", "monthly-report"]);

    // Password rotation: a plan, a rotation (its events and result), and its status.
    let user = support::db::unique("json");
    support::db::psql("postgres", &format!("CREATE ROLE {user} LOGIN"));
    let (host, port) = support::db::pg_addr();
    ws.write("pgadmin", &support::db::pg_password());
    std::fs::set_permissions(
        ws.path("pgadmin"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    ws.write(
        "jobs/passwords.toml",
        &format!(
            "kind = \"rotation\"\n[[target]]\nname = \"app\"\nkind = \"postgres\"\nhost = \"{host}\"\nport = {port}\nsslmode = \"disable\"\nadmin_user = \"postgres\"\nadmin_password = \"file:../pgadmin\"\nuser = \"{user}\"\npublish = \"file:../secrets/app.json\"\n"
        ),
    );
    run(&["rotate", "--all", "--dry-run"]);
    run(&["rotate", "app"]);
    run(&["rotate", "status"]);
    // An incident over the same target: its plan, its report, and closing (nothing open).
    run(&["incident", "rotate", "--secret", "app", "--dry-run"]);
    run(&["incident", "rotate", "--secret", "app"]);
    run(&["incident", "close"]);
    // The trail of all the above: intact, and each event in its documented shape.
    run(&["audit", "verify"]);
    run(&["audit", "list"]);

    // A damaged manifest shows in list, key list and verify --all.
    std::fs::write(ws.backup_dir("files", &ids[1]).join("manifest.json"), "{").unwrap();
    run(&["list"]);
    run(&["key", "list"]);
    let all = ws.run(&["verify", "--all", "--json"]);
    all.expect_class(Class::Integrity);
    seen.extend(check(&json_lines(&all), "verify --all"));

    // The JSON report of a restore to stdout goes to stderr, after the data.
    let to_stdout = ws.run(&["restore", &ids[0], "--to", "-", "--json"]);
    to_stdout.ok();
    let report: Value = serde_json::from_str(to_stdout.stderr.lines().last().unwrap()).unwrap();
    seen.extend(check(&[report], "restore --to -"));

    // A failure with JSON logs ends with one error object.
    let failed = ws.run(&["--log-format", "json", "restore", "ffffffff", "--to", "x"]);
    assert_eq!(failed.code, 6, "{}", failed.stderr);
    let error: Value = serde_json::from_str(failed.stderr.lines().last().unwrap()).unwrap();
    seen.extend(check(std::slice::from_ref(&error), "error"));
    assert_eq!(error["exit_code"], 6);
    assert_eq!(error["retryable"], true);
    for line in failed.stderr.lines() {
        let log: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(!line.contains("\"None\""), "{log}");
    }

    // Every documented type was produced, but the one only a concurrent prune makes (its
    // shape is checked in tests/hardening.rs through the library), and the drill and lock
    // takeover events (tests/audit.rs checks them against the same tables).
    let elsewhere = [
        "pruned_meanwhile",
        "audit_event.drill",
        "audit_event.lock_takeover",
    ];
    let missing: Vec<_> = documented()
        .into_keys()
        .filter(|k| !seen.contains(k) && !elsewhere.contains(&k.as_str()))
        .collect();
    assert!(missing.is_empty(), "never produced: {missing:?}");
}

#[test]
fn backup_json_after_a_prune_lists_the_plan_after_the_backup() {
    let ws = Workspace::new();
    ws.write("input.bin", "x");
    ws.write(
        "jobs/files.toml",
        "[retention]\nkeep_within_days = 0\nmin_keep = 1\nprune_after_backup = true\n\n[source]\nkind = \"file\"\npath = \"../input.bin\"\n",
    );
    ws.run(&["backup", "files"]).ok();
    let (run, seen) = checked(&ws, &["backup", "files"]);
    let lines = json_lines(&run);
    assert_eq!(lines[0]["type"], "backup");
    assert_eq!(lines.last().unwrap()["type"], "prune_summary");
    assert_eq!(lines.last().unwrap()["deleted"], 1);
    assert!(seen.contains("prune_item"));
}
