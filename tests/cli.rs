//! End-to-end behaviour of the `coffre` binary on the local store.

mod support;

use coffre::error::Class;
use support::exit::INTEGRITY;
use support::{Workspace, noise};

/// A workspace holding a backup of incompressible data (320 KiB) in format `format`: in
/// format 1, six chunks of 64 KiB.
fn with_backup_in(format: u8) -> (Workspace, Vec<u8>, String) {
    let ws = Workspace::new();
    let data = noise(5 * 65536 + 123, 7);
    std::fs::write(ws.path("input.bin"), &data).unwrap();
    match format {
        1 => ws.v1_file_job("files", "input.bin", 16),
        _ => ws.file_job("files", "input.bin"),
    }
    let id = ws.backup("files");
    (ws, data, id)
}

/// The same in the default format.
fn with_backup() -> (Workspace, Vec<u8>, String) {
    with_backup_in(2)
}

/// A field of the manifest of backup `id` of job `files`.
fn manifest_field(ws: &Workspace, id: &str, field: &str) -> serde_json::Value {
    ws.manifest("files", id)[field].clone()
}

#[test]
fn backup_verify_restore_round_trip_to_file_and_stdout() {
    let (ws, data, id) = with_backup();
    let verify = ws.run(&["verify", &id]);
    verify.ok();
    let chunks = manifest_field(&ws, &id, "chunks");
    assert!(chunks.as_u64().unwrap() > 1);
    assert!(
        verify.stdout_text().contains(&format!("{chunks} chunks")),
        "{}",
        verify.stdout_text()
    );

    ws.run(&["restore", &id, "--to", "out.bin"]).ok();
    assert!(std::fs::read(ws.path("out.bin")).unwrap() == data);

    let stdout = ws.run(&["restore", "--latest", "--to", "-"]);
    stdout.ok();
    assert!(stdout.stdout == data);

    // An id prefix works too, and an existing file is not replaced without --force.
    ws.run(&["restore", &id[..8], "--to", "out.bin"])
        .expect_class(Class::Target);
    ws.run(&["restore", &id[..8], "--to", "out.bin", "--force"])
        .ok();
}

#[test]
fn list_shows_complete_backups_only() {
    let (ws, data, id) = with_backup();
    // A backup directory without a manifest (a backup in progress or a crashed one).
    ws.write(
        "store/backups/files/20200101T000000Z-00000000-0000-4000-8000-000000000000/data.cfr",
        "partial",
    );
    let run = ws.run(&["list", "--json"]);
    run.ok();
    let items = support::json_lines(&run);
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["id"], id.as_str());
    assert_eq!(items[0]["job"], "files");
    assert_eq!(items[0]["plaintext_bytes"], data.len() as u64);
    assert_eq!(items[0]["chunks"], manifest_field(&ws, &id, "chunks"));
    let text = ws.run(&["list"]).stdout_text();
    assert!(
        text.contains(&id) && !text.contains("00000000-0000-4000"),
        "{text}"
    );
    // A file source has no database: the column says so, not the source's kind.
    let row = text.lines().find(|l| l.contains(&id)).unwrap();
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns[2], "-", "{text}");
}

#[test]
fn failing_dump_command_leaves_no_backup_and_exits_with_source_code() {
    let ws = Workspace::new();
    ws.shell_job(
        "broken",
        "head -c 3000000 /dev/urandom; echo 'pg_dump: error: connection refused' >&2; exit 3",
    );
    let run = ws.run(&["backup", "broken"]);
    run.expect_failure(Class::Source, "exit code 3");
    assert!(run.stderr.contains("connection refused"), "{}", run.stderr);
    assert!(
        ws.store_files().is_empty(),
        "left behind: {:?}",
        ws.store_files()
    );
    let list = ws.run(&["list", "--json"]);
    assert!(
        support::json_lines(&list).is_empty(),
        "{}",
        list.stdout_text()
    );
}

#[test]
fn dump_killed_by_a_signal_is_a_failed_backup() {
    let ws = Workspace::new();
    ws.shell_job("killed", "head -c 2000000 /dev/zero; kill -9 $$");
    let run = ws.run(&["backup", "killed"]);
    run.expect_failure(Class::Source, "signal 9");
    assert!(
        ws.store_files().is_empty(),
        "left behind: {:?}",
        ws.store_files()
    );
}

#[test]
fn missing_dump_program_is_a_source_error() {
    let ws = Workspace::new();
    ws.write(
        "jobs/nope.toml",
        "[source]\nkind = \"command\"\ncommand = [\"coffre-no-such-dump-tool\"]\n",
    );
    let run = ws.run(&["backup", "nope"]);
    run.expect_failure(Class::Source, "coffre-no-such-dump-tool");
}

#[test]
fn wrong_key_is_a_clear_auth_error() {
    let (ws, _, id) = with_backup();
    ws.run_raw(&["key", "generate", "other.key"], &[]).ok();
    ws.write_config(r#"keys = [{ file = "other.key" }]"#);
    let run = ws.run(&["restore", &id, "--to", "out.bin"]);
    run.expect_class(Class::Auth);
    assert!(
        run.stderr
            .contains("no key in this backup's manifest opens it"),
        "{}",
        run.stderr
    );
    assert!(!ws.path("out.bin").exists());
    // The right key given on the command line opens it.
    ws.run(&[
        "restore",
        &id,
        "--to",
        "out.bin",
        "--key-file",
        "backup.key",
    ])
    .ok();
}

#[test]
fn passphrase_backups_restore_with_the_passphrase_only() {
    let ws = Workspace::new();
    ws.write_config(
        "keys = [{ passphrase_env = \"BACKUP_PASSPHRASE\" }]\nargon2 = { m_kib = 1024, t = 1, p = 1 }",
    );
    ws.write("input.bin", "hello from a passphrase backup");
    ws.file_job("files", "input.bin");
    let good = [("BACKUP_PASSPHRASE", "correct horse battery staple")];
    let run = ws.run_env(&["backup", "files", "--json"], &good);
    run.ok();
    let stdout = ws.run_env(&["restore", "--latest", "--to", "-"], &good);
    stdout.ok();
    assert_eq!(stdout.stdout, b"hello from a passphrase backup");
    let bad = [("BACKUP_PASSPHRASE", "correct horse battery stapler")];
    let run = ws.run_env(&["restore", "--latest", "--to", "-"], &bad);
    run.expect_class(Class::Auth);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr
            .contains("no key in this backup's manifest opens it")
    );
}

/// Apply `tamper` to a fresh backup and check restore and verify fail as integrity errors
/// without leaving anything at (or beside) the restore path.
fn assert_tamper_detected(what: &str, tamper: impl Fn(&Workspace, &std::path::Path)) {
    assert_tamper_detected_in(1, what, tamper)
}

fn assert_tamper_detected_in(
    format: u8,
    what: &str,
    tamper: impl Fn(&Workspace, &std::path::Path),
) {
    let (ws, _, id) = with_backup_in(format);
    let dir = ws.backup_dir("files", &id);
    tamper(&ws, &dir);
    std::fs::create_dir(ws.path("restored")).unwrap();
    let verify = ws.run(&["verify", &id]);
    verify.expect_class(Class::Integrity);
    let restore = ws.run(&["restore", &id, "--to", "restored/out.bin"]);
    assert_eq!(
        restore.code, INTEGRITY,
        "{what}: restore exit {}: {}",
        restore.code, restore.stderr
    );
    assert!(
        restore.stderr.lines().count() >= 1 && restore.stderr.contains("integrity error"),
        "{what}: {}",
        restore.stderr
    );
    let left: Vec<_> = std::fs::read_dir(ws.path("restored"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{what}: restore left {left:?}");
}

fn edit_bytes(path: &std::path::Path, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut bytes = std::fs::read(path).unwrap();
    edit(&mut bytes);
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn tampered_v1_data_objects_are_integrity_errors_and_restore_nothing() {
    let chunk = 65536 + 16;
    assert_tamper_detected("header bit", |_, d| {
        edit_bytes(&d.join("data.cfr"), |b| b[40] ^= 1)
    });
    assert_tamper_detected("chunk bit", |_, d| {
        edit_bytes(&d.join("data.cfr"), |b| b[92 + chunk + 7] ^= 1)
    });
    assert_tamper_detected("tag bit", |_, d| {
        edit_bytes(&d.join("data.cfr"), |b| b[92 + 2 * chunk - 1] ^= 1)
    });
    assert_tamper_detected("truncated at a chunk boundary", |_, d| {
        edit_bytes(&d.join("data.cfr"), |b| b.truncate(92 + 4 * chunk))
    });
    assert_tamper_detected("truncated inside a chunk", |_, d| {
        edit_bytes(&d.join("data.cfr"), |b| b.truncate(92 + 4 * chunk + 100))
    });
    assert_tamper_detected("dropped chunk", |_, d| {
        edit_bytes(&d.join("data.cfr"), |b| {
            b.drain(92 + chunk..92 + 2 * chunk);
        })
    });
    assert_tamper_detected("duplicated chunk", |_, d| {
        edit_bytes(&d.join("data.cfr"), |b| {
            let copy = b[92 + chunk..92 + 2 * chunk].to_vec();
            b.splice(92 + chunk..92 + chunk, copy);
        })
    });
    assert_tamper_detected("swapped chunks", |_, d| {
        edit_bytes(&d.join("data.cfr"), |b| {
            let first = b[92..92 + chunk].to_vec();
            let second = b[92 + chunk..92 + 2 * chunk].to_vec();
            b[92..92 + chunk].copy_from_slice(&second);
            b[92 + chunk..92 + 2 * chunk].copy_from_slice(&first);
        })
    });
    assert_tamper_detected("bytes appended", |_, d| {
        edit_bytes(&d.join("data.cfr"), |b| b.extend_from_slice(b"more"))
    });
}

#[test]
fn v1_data_object_swapped_between_backups_is_an_integrity_error() {
    assert_tamper_detected("data object of another backup", |ws, d| {
        let other = ws.backup("files");
        let other_dir = ws.backup_dir("files", &other);
        std::fs::copy(other_dir.join("data.cfr"), d.join("data.cfr")).unwrap();
    });
}

/// The pack files of job `files`, next to backup directory `dir`.
fn packs_beside(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut packs: Vec<_> = std::fs::read_dir(dir.parent().unwrap().join("_packs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    packs.sort();
    packs
}

#[test]
fn tampered_v2_packs_recipes_and_sessions_are_integrity_errors_and_restore_nothing() {
    let pack = |d: &std::path::Path| packs_beside(d)[0].clone();
    // The first blob starts after the pack's 40-byte header: nonce, then ciphertext.
    assert_tamper_detected_in(2, "pack blob bit", |_, d| {
        edit_bytes(&pack(d), |b| b[40 + 12 + 100] ^= 1)
    });
    assert_tamper_detected_in(2, "pack truncated", |_, d| {
        edit_bytes(&pack(d), |b| b.truncate(b.len() / 2))
    });
    assert_tamper_detected_in(2, "pack emptied", |_, d| {
        edit_bytes(&pack(d), |b| b.clear())
    });
    assert_tamper_detected_in(2, "pack deleted", |_, d| {
        std::fs::remove_file(pack(d)).unwrap()
    });
    assert_tamper_detected_in(2, "pack renamed to another id", |_, d| {
        let from = pack(d);
        let to = from.with_file_name("00000000000000000000000000000000.cfp");
        std::fs::copy(&from, to).unwrap();
        let other = "ffffffffffffffffffffffffffffffff.cfp";
        std::fs::rename(&from, from.with_file_name(other)).unwrap();
        // The original name now holds another pack's bytes.
        std::fs::copy(from.with_file_name(other), &from).unwrap();
        edit_bytes(&from, |b| b[30] ^= 1);
    });
    assert_tamper_detected_in(2, "recipe bit", |_, d| {
        edit_bytes(&d.join("recipe.cfr"), |b| b[100] ^= 1)
    });
    assert_tamper_detected_in(2, "recipe truncated", |_, d| {
        edit_bytes(&d.join("recipe.cfr"), |b| b.truncate(b.len() - 20))
    });
    assert_tamper_detected_in(2, "recipe of another backup", |ws, d| {
        let other = ws.backup("files");
        let other_dir = ws.backup_dir("files", &other);
        std::fs::copy(other_dir.join("recipe.cfr"), d.join("recipe.cfr")).unwrap();
    });
    assert_tamper_detected_in(
        2,
        "pack and recipe of another job's backup of the same data",
        |ws, d| {
            // Same key, same bytes: only the job differs (its dedup secret and sessions).
            let job = std::fs::read_to_string(ws.path("jobs/files.toml")).unwrap();
            ws.write("jobs/other.toml", &job);
            let other = ws.backup("other");
            let other_dir = ws.backup_dir("other", &other);
            std::fs::copy(other_dir.join("recipe.cfr"), d.join("recipe.cfr")).unwrap();
            std::fs::copy(&packs_beside(&other_dir)[0], pack(d)).unwrap();
        },
    );
    assert_tamper_detected_in(2, "session bit in the wrapped dedup secret", |ws, d| {
        let id = d.file_name().unwrap().to_string_lossy()[17..].to_string();
        let path = ws.path(&format!("store/backups/files/_sessions/{id}.json"));
        let mut session: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let dedup = session["dedup"].as_str().unwrap().to_string();
        let flipped = if dedup.starts_with('A') { "B" } else { "A" };
        session["dedup"] = format!("{flipped}{}", &dedup[1..]).into();
        std::fs::write(&path, serde_json::to_vec(&session).unwrap()).unwrap();
    });
}

/// Which backups `verify --all` fails, by id, and the errors it gave.
fn failing_backups(ws: &Workspace) -> (Vec<String>, String) {
    let run = ws.run(&["verify", "--all", "--json"]);
    let failed: Vec<_> = support::json_lines(&run)
        .into_iter()
        .filter(|o| o["type"] == "verify_failed")
        .collect();
    let ids = failed.iter().map(|o| o["id"].as_str().unwrap().to_string());
    let errors = failed
        .iter()
        .map(|o| o["error"].as_str().unwrap().to_string());
    (ids.collect(), errors.collect::<Vec<_>>().join("\n"))
}

#[test]
fn a_damaged_pack_breaks_exactly_the_backups_that_use_it() {
    let ws = Workspace::new();
    ws.file_job("files", "input.bin");
    let first = noise(300_000, 21);
    std::fs::write(ws.path("input.bin"), &first).unwrap();
    let a = ws.backup("files");
    let packs_of = |id: &str| -> Vec<String> {
        let packs = manifest_field(&ws, id, "packs");
        let mut packs: Vec<String> = packs
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        packs.sort();
        packs
    };
    // B holds A's data and more: it uses A's pack and one of its own. C shares nothing.
    let mut second = first.clone();
    second.extend_from_slice(&noise(300_000, 31));
    std::fs::write(ws.path("input.bin"), &second).unwrap();
    let b = ws.backup("files");
    std::fs::write(ws.path("input.bin"), noise(300_000, 41)).unwrap();
    let c = ws.backup("files");
    let pack_a = packs_of(&a)[0].clone();
    assert!(packs_of(&b).contains(&pack_a) && packs_of(&b).len() == 2);
    let pack_b = packs_of(&b).into_iter().find(|p| *p != pack_a).unwrap();
    assert!(!packs_of(&c).contains(&pack_a) && !packs_of(&c).contains(&pack_b));

    let pack_file = |p: &str| ws.path(&format!("store/backups/files/_packs/{p}.cfp"));
    for (pack, broken) in [
        (&pack_b, vec![b.clone()]),
        (&pack_a, vec![a.clone(), b.clone()]),
    ] {
        let saved = std::fs::read(pack_file(pack)).unwrap();
        edit_bytes(&pack_file(pack), |bytes| bytes[60] ^= 1);
        let (mut failed, errors) = failing_backups(&ws);
        failed.sort();
        let mut expected = broken.clone();
        expected.sort();
        assert_eq!(failed, expected, "{errors}");
        assert_eq!(
            errors.matches(pack.as_str()).count(),
            broken.len(),
            "{errors}"
        );
        for id in [&a, &b, &c] {
            let run = ws.run(&["restore", id, "--to", "-"]);
            assert_eq!(run.code == 0, !broken.contains(id), "{id}: {}", run.stderr);
        }
        std::fs::write(pack_file(pack), saved).unwrap();
    }
    assert_eq!(failing_backups(&ws).0, Vec::<String>::new());
}

#[test]
fn a_missing_v2_session_or_pack_is_named() {
    let (ws, _, id) = with_backup();
    let dir = ws.backup_dir("files", &id);
    let pack = packs_beside(&dir)[0].clone();
    let pack_id = pack.file_stem().unwrap().to_string_lossy().to_string();
    std::fs::rename(&pack, ws.path("pack.saved")).unwrap();
    let run = ws.run(&["restore", &id, "--to", "-"]);
    run.expect_class(Class::Integrity);
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.contains(&pack_id) && run.stderr.contains(&id),
        "{}",
        run.stderr
    );
    std::fs::rename(ws.path("pack.saved"), &pack).unwrap();
    let session = ws.path(&format!("store/backups/files/_sessions/{id}.json"));
    std::fs::remove_file(session).unwrap();
    let run = ws.run(&["verify", &id]);
    run.expect_class(Class::Integrity);
    assert!(
        run.stderr.contains("session") && run.stderr.contains(&id),
        "{}",
        run.stderr
    );
}

#[test]
fn edited_v2_manifest_fields_are_integrity_errors() {
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 5] = [
        ("plaintext_bytes", |m| m["plaintext_bytes"] = 1.into()),
        ("packs", |m| m["packs"] = serde_json::json!([])),
        ("dedup_key_id", |m| {
            m["dedup_key_id"] = "0000000000000000".into()
        }),
        ("chunking", |m| m["chunking"]["avg"] = 131072.into()),
        ("references_locked_until", |m| {
            m["references_locked_until"] = "2099-01-01T00:00:00Z".into()
        }),
    ];
    for (what, edit) in edits {
        assert_tamper_detected_in(2, what, |_, d| {
            let path = d.join("manifest.json");
            let mut m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            edit(&mut m);
            std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        });
    }
}

#[test]
fn edited_manifest_fields_are_integrity_errors() {
    type Edit = fn(&mut serde_json::Value);
    let edits: [(&str, Edit); 6] = [
        ("plaintext_bytes", |m| m["plaintext_bytes"] = 1.into()),
        ("chunks", |m| m["chunks"] = 5.into()),
        ("started_at", |m| {
            m["started_at"] = "2020-01-01T00:00:00.000Z".into()
        }),
        ("source.kind", |m| m["source"]["kind"] = "postgres".into()),
        ("added field", |m| m["retain_until"] = "2099-01-01".into()),
        ("data_sha256", |m| m["data_sha256"] = "00".repeat(32).into()),
    ];
    for (what, edit) in edits {
        assert_tamper_detected(what, |_, d| {
            let path = d.join("manifest.json");
            let mut m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            edit(&mut m);
            std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
        });
    }
}

#[test]
fn key_id_command_matches_the_stanza_of_a_backup() {
    let (ws, _, id) = with_backup();
    let key_id = ws.run_raw(&["key", "id", "backup.key"], &[]);
    key_id.ok();
    assert_eq!(ws.stanza_ids(&id), vec![key_id.stdout_text().trim()]);
    // Generating over an existing key is refused.
    ws.run_raw(&["key", "generate", "backup.key"], &[])
        .expect_class(Class::Config);
}

#[test]
fn no_secret_appears_in_any_output_log_or_stored_object() {
    let ws = Workspace::new();
    let passphrase = "s3cret-Passphrase-for-leak-test";
    ws.write_config(
        "keys = [{ file = \"backup.key\" }, { passphrase_env = \"LEAK_PASSPHRASE\" }]\nargon2 = { m_kib = 1024, t = 1, p = 1 }",
    );
    ws.write("input.bin", "payload");
    ws.file_job("files", "input.bin");
    let env = [("LEAK_PASSPHRASE", passphrase)];
    let key_text = std::fs::read_to_string(ws.path("backup.key")).unwrap();
    let key_b64 = key_text
        .trim()
        .trim_start_matches("coffre-key-v1:")
        .to_string();
    let key_hex = {
        use base64::Engine;
        hex::encode(
            base64::engine::general_purpose::STANDARD
                .decode(&key_b64)
                .unwrap(),
        )
    };
    let secrets = [passphrase.to_string(), key_b64, key_hex];

    let mut outputs = Vec::new();
    for args in [
        vec!["config", "check"],
        vec!["backup", "files"],
        vec!["backup", "--all", "--json"],
        vec!["list", "--json"],
        vec!["verify", "--latest"],
        vec!["restore", "--latest", "--to", "out.bin"],
        vec!["restore", "--latest", "--to", "-"],
        vec!["--log-format", "json", "verify", "--latest", "--json"],
    ] {
        let run = ws.run_env(&args, &env);
        run.ok();
        outputs.push(run.stdout_text() + &run.stderr);
    }
    // Failures print too: wrong passphrase, missing key file.
    let bad = ws.run_env(&["verify", "--latest", "--key-file", "missing.key"], &env);
    outputs.push(bad.stdout_text() + &bad.stderr);
    let wrong = [("LEAK_PASSPHRASE", "not-it")];
    ws.write_config("keys = [{ passphrase_env = \"LEAK_PASSPHRASE\" }]\nargon2 = { m_kib = 1024, t = 1, p = 1 }");
    let run = ws.run_env(&["verify", "--latest"], &wrong);
    run.expect_class(Class::Auth);
    outputs.push(run.stdout_text() + &run.stderr);

    for file in ws.store_files() {
        outputs.push(
            String::from_utf8_lossy(&std::fs::read(ws.path("store").join(file)).unwrap())
                .into_owned(),
        );
    }
    for out in &outputs {
        for secret in &secrets {
            assert!(
                !out.contains(secret.as_str()),
                "a secret leaked into: {out}"
            );
        }
    }
}

/// A config error: exit code 3 and one line on stderr naming every one of `needles`.
fn assert_config_error(run: &support::Run, needles: &[&str]) {
    run.expect_class(Class::Config);
    let line = run.stderr.trim();
    assert_eq!(line.lines().count(), 1, "{line}");
    for needle in needles {
        assert!(line.contains(needle), "'{needle}' missing from: {line}");
    }
}

#[test]
fn bad_config_names_the_file_the_key_and_the_fix() {
    let ws = Workspace::new();
    ws.write("input.bin", "x");
    ws.file_job("files", "input.bin");
    let check = || ws.run(&["config", "check"]);
    let job = |text: &str| ws.write("jobs/files.toml", text);

    ws.write_config("keys = [{ file = \"backup.key\" }]\nkdf = \"argon2\"");
    assert_config_error(&check(), &["coffre.toml", "unknown field `kdf`"]);

    ws.write_config("keys = [{ file = \"backup.key\" }]");
    job("chunk_log2 = 30\n[source]\nkind = \"file\"\npath = \"../input.bin\"\n");
    assert_config_error(&check(), &["files.toml", "chunk_log2 = 30", "16..=24"]);

    job("[source]\nkind = \"file\"\n");
    assert_config_error(&check(), &["files.toml", "source", "missing field `path`"]);

    job("[source]\nkind = \"oracle\"\n");
    assert_config_error(&check(), &["files.toml", "oracle"]);

    job("[source]\nkind = \"file\"\npath = \"${COFFRE_TEST_NOT_SET}\"\n");
    assert_config_error(
        &check(),
        &[
            "files.toml",
            "source.path",
            "COFFRE_TEST_NOT_SET is not set",
        ],
    );
    // ...which is fine once set.
    ws.run_env(
        &["config", "check"],
        &[("COFFRE_TEST_NOT_SET", "input.bin")],
    )
    .ok();

    job("[source]\nkind = \"postgres\"\nhost = \"db\"\n");
    assert_config_error(&check(), &["files.toml", "all_databases = true"]);

    job("[source]\nkind = \"file\"\npath = \"../input.bin\"\n");
    ws.write_config("keys = [{ file = \"nope.key\" }]");
    assert_config_error(
        &ws.run(&["backup", "files"]),
        &["nope.key", "coffre key generate"],
    );

    ws.write_config("keys = [{ file = \"backup.key\", env = \"X\" }]");
    assert_config_error(&check(), &["encryption.keys[0]", "exactly one"]);

    assert_config_error(
        &ws.run_raw(&["--config", "missing.toml", "list"], &[]),
        &["missing.toml"],
    );

    ws.write_config("keys = [{ file = \"backup.key\" }]");
    assert_config_error(
        &ws.run(&["backup", "nosuchjob"]),
        &["nosuchjob", "jobs: files"],
    );
}

#[test]
fn an_independent_decoder_reads_what_coffre_writes() {
    for format in [1, 2] {
        an_independent_decoder_reads(format);
    }
}

fn an_independent_decoder_reads(format: u8) {
    let (ws, data, id) = with_backup_in(format);
    // In format 2 the second backup reuses the first one's chunks: decode that one.
    let id = match format {
        1 => id,
        _ => {
            let mut more = data.clone();
            more.extend_from_slice(&noise(70_000, 8));
            std::fs::write(ws.path("input.bin"), &more).unwrap();
            let second = ws.backup("files");
            let reused = manifest_field(&ws, &second, "new_chunks").as_u64().unwrap();
            let chunks = manifest_field(&ws, &second, "chunks").as_u64().unwrap();
            assert!(
                reused < chunks,
                "{reused} new of {chunks}: nothing was reused"
            );
            return decoded_equals(&ws, &second, &more);
        }
    };
    decoded_equals(&ws, &id, &data);
}

/// The reference decoder turns backup `id` into `data`, and rejects it once its manifest is
/// edited.
fn decoded_equals(ws: &Workspace, id: &str, data: &[u8]) {
    let dir = ws.backup_dir("files", id);
    let decode = || {
        support::interop(
            "coffre_decrypt.py",
            [dir.clone(), "--key-file".into(), ws.path("backup.key")],
        )
    };
    let out = decode();
    assert!(
        out.status.success(),
        "reference decoder failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == data, "reference decoder output differs");

    // The same decoder rejects an edited manifest: it checks the mac too.
    edit_bytes(&dir.join("manifest.json"), |b| {
        let text = String::from_utf8(b.clone())
            .unwrap()
            .replace("\"files\"", "\"filez\"");
        *b = text.into_bytes();
    });
    let out = decode();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("manifest mac mismatch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_command_has_help_with_an_example() {
    let ws = Workspace::new();
    let top = ws.run_raw(&["--help"], &[]);
    let summary = top
        .stdout_text()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        summary.contains("rotate database passwords") && !summary.contains("Planned"),
        "{summary}"
    );
    for command in [
        "",
        "backup",
        "restore",
        "verify",
        "list",
        "prune",
        "key",
        "key generate",
        "key id",
        "key list",
        "key add",
        "key remove",
        "key rotate",
        "config",
        "config check",
        "completions",
        "man",
        "job",
        "job run",
        "job list",
        "run",
        "rotate",
        "incident",
        "incident rotate",
        "incident close",
    ] {
        let mut args: Vec<&str> = command.split_whitespace().collect();
        args.push("--help");
        // An 80-column terminal: no example wraps mid-line.
        let run = ws.run_raw(&args, &[("COLUMNS", "80")]);
        run.ok();
        let text = run.stdout_text();
        let examples = text.lines().skip_while(|l| !l.starts_with("Example"));
        for line in examples.skip(1).take_while(|l| !l.is_empty()) {
            assert!(
                line.starts_with("  coffre "),
                "'coffre {command} --help': an example wraps at 80 columns:\n{text}"
            );
        }
        assert!(
            text.contains("Example"),
            "'coffre {command} --help' has no example:\n{text}"
        );
        assert!(
            text.contains("coffre "),
            "'coffre {command} --help' example runs nothing:\n{text}"
        );
    }
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}

#[test]
fn readme_by_hand_steps_work_before_and_after_the_quick_start_and_leave_the_tree_clean() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = readme
        .split("By hand, with the quick-start config")
        .nth(1)
        .unwrap();
    let block = section
        .split("```sh\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    // Building and the alias are replaced by the binary under test.
    let steps: Vec<&str> = block
        .lines()
        .filter(|l| !l.starts_with("cargo build") && !l.starts_with("alias"))
        .collect();
    assert!(
        steps.iter().any(|s| s.contains("coffre restore")),
        "{block}"
    );
    let tree = tempfile::tempdir().unwrap();
    let copied = ["src", "docs", "jobs", "config", "Cargo.toml"];
    for name in copied {
        copy_tree(&root.join(name), &tree.path().join(name));
    }
    // Twice: a fresh checkout, then one where the quick start already ran.
    for round in 0..2 {
        for step in &steps {
            let script = format!(
                "coffre() {{ '{}' \"$@\"; }}\n{step}\n",
                support::coffre_bin()
            );
            let out = std::process::Command::new("sh")
                .args(["-c", &script])
                .current_dir(tree.path())
                .env_remove("COFFRE_CONFIG")
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "round {round}: '{step}' failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let mut top: Vec<String> = std::fs::read_dir(tree.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    let mut expected: Vec<String> = copied.iter().map(|s| s.to_string()).collect();
    expected.push(".coffre".into());
    expected.sort();
    assert_eq!(
        top, expected,
        "the by-hand steps left files outside .coffre"
    );
}

#[test]
fn every_argument_and_flag_has_help_text() {
    use clap::CommandFactory;
    fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in command.get_arguments() {
            let builtin = matches!(arg.get_id().as_str(), "help" | "version");
            if !builtin && arg.get_help().is_none() {
                missing.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in command.get_subcommands() {
            if sub.get_about().is_none() {
                missing.push(format!("{path} {} (no about)", sub.get_name()));
            }
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let mut missing = Vec::new();
    walk(&coffre::cli::Cli::command(), "coffre", &mut missing);
    assert!(missing.is_empty(), "without help: {missing:#?}");
}

#[test]
fn version_names_the_commit_and_completions_and_man_pages_are_generated() {
    let ws = Workspace::new();
    let version = ws.run_raw(&["--version"], &[]);
    version.ok();
    assert!(
        version.stdout_text().contains(", built 20"),
        "{}",
        version.stdout_text()
    );
    let bash = ws.run_raw(&["completions", "bash"], &[]);
    bash.ok();
    assert!(
        bash.stdout_text().contains("_coffre()"),
        "{}",
        bash.stdout_text()
    );
    let man = ws.run_raw(&["man"], &[]);
    man.ok();
    assert!(man.stdout_text().starts_with(".ie") || man.stdout_text().contains(".TH coffre"));
    ws.run_raw(&["man", "--dir", "pages"], &[]).ok();
    assert!(ws.path("pages/coffre.1").exists() && ws.path("pages/coffre-backup.1").exists());
}

#[test]
fn logs_have_no_colour_off_a_terminal_and_the_environment_can_make_them_json() {
    let (ws, _, _) = with_backup();
    // A backup logs when it starts and ends.
    let run = ws.run(&["backup", "files"]);
    run.ok();
    assert!(run.stderr.lines().count() >= 2, "{}", run.stderr);
    assert!(!run.stderr.contains('\x1b'), "{}", run.stderr);
    let run = ws.run_env(&["backup", "files"], &[("COFFRE_LOG_FORMAT", "json")]);
    run.ok();
    assert!(run.stderr.contains("backup started"), "{}", run.stderr);
    for line in run.stderr.lines() {
        let log: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(log["level"].is_string(), "{log}");
    }
}

#[test]
fn sigint_stops_a_backup_with_exit_130_and_says_interrupted() {
    let ws = Workspace::new();
    ws.shell_job("slow", "head -c 1000 /dev/zero; sleep 30");
    let child = std::process::Command::new(support::coffre_bin())
        .args(["--config", "coffre.toml", "backup", "slow"])
        .current_dir(ws.dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by SIGINT"), "{stderr}");
    assert!(!stderr.contains("internal"), "{stderr}");
    assert!(ws.store_files().is_empty(), "{:?}", ws.store_files());
}
