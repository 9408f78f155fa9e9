//! Every command's `--json` output against docs/JSON.md: each object has a documented type,
//! every documented field (and no other), each of the documented JSON type.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

use coffre::error::Class;
use support::{Run, Workspace, json_lines, three_backups};

/// Type name -> field -> allowed JSON kinds ("string", "null", ...), from docs/JSON.md.
fn documented() -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/JSON.md")).unwrap();
    let mut types = BTreeMap::new();
    for section in doc.split("\n### `").skip(1) {
        let name = section.split('`').next().unwrap().to_string();
        let mut fields = BTreeMap::new();
        for row in section.lines().filter(|l| l.starts_with("| `")) {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let field = cells[1].trim_matches('`').to_string();
            let kinds = cells[2].split(" or ").map(str::to_string).collect();
            fields.insert(field, kinds);
        }
        fields.insert("type".into(), vec!["string".into()]);
        fields.insert("version".into(), vec!["integer".into()]);
        types.insert(name, fields);
    }
    types
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Check `objects` against the documentation; returns the types seen.
fn check(objects: &[Value], what: &str) -> BTreeSet<String> {
    let docs = documented();
    let mut seen = BTreeSet::new();
    for object in objects {
        let kind = object["type"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no type: {object}"));
        let fields = docs
            .get(kind)
            .unwrap_or_else(|| panic!("{what}: type '{kind}' is not in docs/JSON.md"));
        assert_eq!(object["version"], 1, "{what}: {object}");
        let map = object.as_object().unwrap();
        for (field, kinds) in fields {
            let value = map.get(field).unwrap_or_else(|| {
                panic!("{what}: {kind} lacks documented field {field}: {object}")
            });
            assert!(
                kinds.iter().any(|k| k == kind_of(value)),
                "{what}: {kind}.{field} is {} ({value}), documented as {kinds:?}",
                kind_of(value)
            );
        }
        for field in map.keys() {
            assert!(
                fields.contains_key(field),
                "{what}: {kind}.{field} is not documented"
            );
        }
        seen.insert(kind.to_string());
    }
    seen
}

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
    // shape is checked in tests/hardening.rs through the library).
    let missing: Vec<_> = documented()
        .into_keys()
        .filter(|k| !seen.contains(k) && k != "pruned_meanwhile")
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
