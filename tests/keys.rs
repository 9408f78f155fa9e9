//! Key management over stored backups, and write-only (x25519) backups.

mod support;

use coffre::config::Config;
use coffre::error::Class;
use coffre::ops::keys as keyring;
use support::exit::AUTH;
use support::faulty::faulty_store;
use support::{Workspace, three_backups, three_backups_in};

fn key_id(ws: &Workspace, file: &str) -> String {
    let run = ws.run_raw(&["key", "id", file], &[]);
    run.ok();
    run.stdout_text().trim().to_string()
}

/// The object name of the stanza holder of backup `id` the faulty store should fail on.
fn holder_name(ws: &Workspace, id: &str) -> String {
    let path = ws.stanza_holder(id);
    let parent = path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy();
    let name = path.file_name().unwrap().to_string_lossy();
    match name.as_ref() {
        "manifest.json" => format!("{id}/manifest.json"),
        _ => format!("{parent}/{name}"),
    }
}

/// Whether backup `id` restores with only `key_file`.
fn restores_with(ws: &Workspace, id: &str, key_file: &str) -> bool {
    ws.write_config(&format!("keys = [{{ file = \"{key_file}\" }}]"));
    let run = ws.run(&["restore", id, "--to", "-"]);
    if run.code != 0 {
        assert_eq!(run.code, AUTH, "{}", run.stderr);
        assert!(
            run.stderr
                .contains("no key in this backup's manifest opens it")
        );
    }
    run.code == 0 && run.stdout == b"ward 7 admissions"
}

#[test]
fn rotation_moves_every_backup_to_the_new_key_without_touching_data() {
    for format in [1, 2] {
        rotation_moves_every_backup_to_the_new_key(format);
    }
}

/// Packs, recipes and v2 manifests stay byte-identical: only manifests (v1) and sessions (v2)
/// change.
fn rotation_moves_every_backup_to_the_new_key(format: u8) {
    let (ws, ids) = three_backups_in(format);
    ws.run_raw(&["key", "generate", "new.key"], &[]).ok();
    let old = key_id(&ws, "backup.key");
    let new = key_id(&ws, "new.key");
    let before = ws.key_independent_hashes();

    let run = ws.run(&[
        "key",
        "rotate",
        "--new-key-file",
        "new.key",
        "--remove",
        &old,
    ]);
    run.ok();
    assert!(
        run.stdout_text().contains("added to 3 backups"),
        "{}",
        run.stdout_text()
    );

    assert_eq!(
        ws.key_independent_hashes(),
        before,
        "format {format}: only the stanza holders may change"
    );
    for id in &ids {
        assert!(
            restores_with(&ws, id, "new.key"),
            "{id} does not restore with the new key"
        );
        assert!(
            !restores_with(&ws, id, "backup.key"),
            "{id} still opens with the removed key"
        );
    }
    ws.write_config("keys = [{ file = \"new.key\" }]");
    let list = ws.run(&["key", "list", "--json"]);
    list.ok();
    let items = support::json_lines(&list);
    let keys = support::of_type(&items, "key");
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["key_id"], new.as_str());
    assert_eq!(keys[0]["backups"], 3);
    // The manifests' macs still hold.
    ws.run(&["verify", "--all"]).ok();
}

#[tokio::test]
async fn an_interrupted_rotation_resumes_and_never_strands_a_backup() {
    for format in [1, 2] {
        an_interrupted_rotation_resumes(format).await;
    }
}

async fn an_interrupted_rotation_resumes(format: u8) {
    let (ws, ids) = three_backups_in(format);
    ws.run_raw(&["key", "generate", "new.key"], &[]).ok();
    let old = key_id(&ws, "backup.key");
    let new = key_id(&ws, "new.key");
    let config = Config::load(&ws.path("coffre.toml")).unwrap();
    let unlock = support::configured_keys(&config).await;
    let new_key = support::key_file(&ws, "new.key").await;

    // The store fails to rewrite the second backup's stanzas: the add phase stops there.
    let holder = holder_name(&ws, &ids[1]);
    let store = faulty_store(&ws, |f| f.fail_put = Some(holder));
    let err = keyring::add(&store, None, &unlock, &new_key)
        .await
        .unwrap_err();
    assert!(err.message().contains("injected write failure"), "{err}");
    let keys_of = |id: &str| ws.stanza_ids(id);
    assert_eq!(keys_of(&ids[1]), vec![old.clone()]);
    let mut done = 0;
    for id in &ids {
        let keys = keys_of(id);
        assert_eq!(keys[0], old, "{id} lost the old key mid-rotation");
        done += usize::from(keys.contains(&new));
        assert!(
            restores_with(&ws, id, "backup.key"),
            "{id} lost the old key"
        );
    }

    // The same rotation again finishes the job.
    ws.write_config("keys = [{ file = \"backup.key\" }]");
    let run = ws.run(&[
        "key",
        "rotate",
        "--new-key-file",
        "new.key",
        "--remove",
        &old,
    ]);
    run.ok();
    let added = 3 - done;
    let noun = if added == 1 { "backup" } else { "backups" };
    let expected = format!("added to {added} {noun} ({done} had it)");
    assert!(
        run.stdout_text().contains(&expected),
        "{}",
        run.stdout_text()
    );
    for id in &ids {
        assert_eq!(keys_of(id), vec![new.clone()]);
        assert!(restores_with(&ws, id, "new.key"));
        assert!(!restores_with(&ws, id, "backup.key"));
    }
}

#[test]
fn removing_the_last_key_of_a_backup_is_refused() {
    let (ws, ids) = three_backups();
    let old = key_id(&ws, "backup.key");
    let run = ws.run(&["key", "remove", &old]);
    run.expect_failure(Class::Config, "only key");
    assert!(restores_with(&ws, &ids[0], "backup.key"));
}

#[test]
fn a_passphrase_can_be_added_and_removed() {
    let (ws, ids) = three_backups();
    let env = [("NEW_PASSPHRASE", "correct horse battery staple")];
    ws.write_config("keys = [{ file = \"backup.key\" }]\nargon2 = { m_kib = 1024, t = 1, p = 1 }");
    ws.run_env(
        &["key", "add", "--new-passphrase-env", "NEW_PASSPHRASE"],
        &env,
    )
    .ok();
    // Running it again finds the passphrase already there.
    let again = ws.run_env(
        &["key", "add", "--new-passphrase-env", "NEW_PASSPHRASE"],
        &env,
    );
    again.ok();
    assert!(
        again
            .stdout_text()
            .contains("added to 0 backups (3 had it already)"),
        "{}",
        again.stdout_text()
    );
    ws.write_config(
        "keys = [{ passphrase_env = \"NEW_PASSPHRASE\" }]\nargon2 = { m_kib = 1024, t = 1, p = 1 }",
    );
    let run = ws.run_env(&["restore", &ids[2], "--to", "-"], &env);
    run.ok();
    assert_eq!(run.stdout, b"ward 7 admissions");
    ws.run_env(
        &["key", "remove", "--passphrase-env", "NEW_PASSPHRASE"],
        &env,
    )
    .ok();
    ws.run_env(&["restore", &ids[2], "--to", "-"], &env)
        .expect_class(Class::Auth);
}

#[test]
fn write_only_backups_need_the_identity_to_restore() {
    let ws = Workspace::new();
    let generated = ws.run_raw(&["key", "generate", "--x25519", "restore.identity"], &[]);
    generated.ok();
    let recipient = generated.stdout_text().trim().to_string();
    assert!(recipient.starts_with("coffre-x25519-v1:"), "{recipient}");
    let identity = std::fs::read_to_string(ws.path("restore.identity")).unwrap();
    assert!(!generated.stdout_text().contains(identity.trim()));

    ws.write_config(&format!("keys = [{{ recipient = \"{recipient}\" }}]"));
    ws.write("input.bin", "lab results");
    ws.file_job("files", "input.bin");
    let id = ws.backup("files");
    let run = ws.run(&["restore", &id, "--to", "-"]);
    run.expect_class(Class::Auth);
    assert!(run.stdout.is_empty());
    let restored_with_identity = |id: &str| {
        let run = ws.run(&[
            "restore",
            id,
            "--to",
            "-",
            "--identity-file",
            "restore.identity",
        ]);
        run.ok();
        run.stdout
    };
    assert_eq!(restored_with_identity(&id), b"lab results");
    // An independent implementation of the x25519 stanza opens it too.
    let dir = ws.backup_dir("files", &id);
    let out = support::interop(
        "coffre_decrypt.py",
        [dir, "--identity-file".into(), ws.path("restore.identity")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"lab results");
    // The identity's id is the recipient's id in the backup's stanzas.
    let holder: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.stanza_holder(&id)).unwrap()).unwrap();
    assert_eq!(holder["keys"][0]["type"], "x25519");
    assert_eq!(ws.stanza_ids(&id), vec![key_id(&ws, "restore.identity")]);

    // Without a dedup key, a job that can only write cannot name chunks the same way twice:
    // it says so, and stores everything again.
    let run = ws.run(&["backup", "files", "--json"]);
    run.ok();
    assert!(
        run.stderr.contains("no [encryption] dedup_key"),
        "{}",
        run.stderr
    );
    let copy: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let copy = copy["id"].as_str().unwrap().to_string();
    let manifest = ws.manifest("files", &copy);
    assert_eq!(manifest["new_chunks"], 1, "{manifest}");

    // With one, it deduplicates: the second backup stores no chunk again, and it never
    // needed a key that opens the first.
    ws.run_raw(&["key", "generate", "dedup.key"], &[]).ok();
    ws.write_config(&format!(
        "keys = [{{ recipient = \"{recipient}\" }}]\ndedup_key = \"file:dedup.key\""
    ));
    ws.backup("files");
    let again = ws.backup("files");
    let manifest = ws.manifest("files", &again);
    assert_eq!(manifest["new_chunks"], 0, "{manifest}");
    assert_eq!(manifest["chunks"], 1, "{manifest}");
    assert_eq!(restored_with_identity(&again), b"lab results");

    // A dedup secret that changed (the job re-keyed): the next backup stores everything once
    // and says why, the one after reuses again.
    ws.run_raw(&["key", "generate", "dedup2.key"], &[]).ok();
    ws.write_config(&format!(
        "keys = [{{ recipient = \"{recipient}\" }}]\ndedup_key = \"file:dedup2.key\""
    ));
    let run = ws.run(&["backup", "files", "--json"]);
    run.ok();
    assert!(
        run.stderr.contains("stores every chunk once")
            && run.stderr.contains("dedup secret changed"),
        "{}",
        run.stderr
    );
    let made: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(made["new_chunks"], 1, "{made}");
    let run = ws.run(&["backup", "files", "--json"]);
    run.ok();
    let made: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(made["new_chunks"], 0, "{made}");
}

#[test]
fn verify_all_checks_every_backup_and_summarises_in_one_line() {
    let (ws, ids) = three_backups();
    let run = ws.run(&["verify", "--all"]);
    run.ok();
    assert!(
        run.stdout_text().contains("verified 3 of 3 backups"),
        "{}",
        run.stdout_text()
    );
    let data = ws.backup_dir("files", &ids[1]).join("recipe.cfr");
    let mut bytes = std::fs::read(&data).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&data, bytes).unwrap();
    let run = ws.run(&["verify", "--all"]);
    run.expect_class(Class::Integrity);
    assert!(
        run.stdout_text()
            .contains("verified 2 of 3 backups: 1 failed"),
        "{}",
        run.stdout_text()
    );
    assert!(run.stderr.contains(&ids[1]), "{}", run.stderr);
}

#[test]
fn an_x25519_recipient_added_later_opens_old_backups_with_its_identity() {
    let (ws, ids) = three_backups();
    let generated = ws.run_raw(&["key", "generate", "--x25519", "offline.identity"], &[]);
    generated.ok();
    let recipient = generated.stdout_text().trim().to_string();
    ws.run(&["key", "add", "--new-recipient", &recipient]).ok();
    // Adding it again finds it in every backup: no second stanza.
    let again = ws.run(&["key", "add", "--new-recipient", &recipient]);
    again.ok();
    assert!(
        again
            .stdout_text()
            .contains("added to 0 backups (3 had it already)"),
        "{}",
        again.stdout_text()
    );
    ws.run_raw(&["key", "generate", "unrelated.key"], &[]).ok();
    ws.write_config("keys = [{ file = \"unrelated.key\" }]");
    for id in &ids {
        let run = ws.run(&[
            "restore",
            id,
            "--to",
            "-",
            "--identity-file",
            "offline.identity",
        ]);
        run.ok();
        assert_eq!(run.stdout, b"ward 7 admissions");
    }
}
