//! Every operation called as a library function, the way the daemon and the incident command
//! will call them: no process is spawned, and each test asserts on the value returned.

mod support;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use coffre::config::Config;
use coffre::ops::pick::{Pick, pick_backup};
use coffre::ops::prune::Verdict;
use coffre::ops::restore::{RestoreOptions, Target};
use coffre::ops::{Context, backup, config_check, keys, prune, restore, verify};
use support::{Workspace, noise};

async fn context(ws: &Workspace) -> Context {
    let config = Config::load(&ws.path("coffre.toml")).unwrap();
    Context::open(config, CancellationToken::new())
        .await
        .unwrap()
}

/// A workspace with job `files` over 200 KiB of noise, and its context.
async fn workspace() -> (Workspace, Context, Vec<u8>) {
    let ws = Workspace::new();
    let data = noise(200_000, 11);
    std::fs::write(ws.path("input.bin"), &data).unwrap();
    ws.file_job("files", "input.bin");
    let ctx = context(&ws).await;
    (ws, ctx, data)
}

async fn back_up(ctx: &Context) -> String {
    let job = ctx.config.job("files").unwrap();
    let recipients = support::configured_keys(&ctx.config).await;
    let outcomes = backup::backup_jobs(ctx, &[job], &recipients).await;
    assert_eq!(outcomes.len(), 1);
    assert!(
        outcomes[0].failures.is_empty(),
        "{:?}",
        outcomes[0].failures
    );
    assert_eq!(outcomes[0].backups.len(), 1);
    outcomes[0].backups[0].location.id.to_string()
}

#[tokio::test]
async fn backup_returns_what_it_made_and_restore_returns_what_it_checked() {
    let (ws, ctx, data) = workspace().await;
    let job = ctx.config.job("files").unwrap();
    let recipients = support::configured_keys(&ctx.config).await;
    let outcomes = backup::backup_jobs(&ctx, &[job], &recipients).await;
    let made = &outcomes[0].backups[0];
    assert_eq!(made.manifest.job, "files");
    assert_eq!(made.manifest.plaintext_bytes, data.len() as u64);
    // 200,000 bytes in chunks of 64 KiB on average (16 KiB to 256 KiB).
    assert!(
        (1..=13).contains(&made.manifest.chunks),
        "{:?}",
        made.manifest
    );
    assert!(
        outcomes[0].prune.is_none(),
        "the job does not prune after backups"
    );

    let pick = Pick {
        id: Some(made.location.id.to_string()),
        ..Pick::default()
    };
    let found = pick_backup(&ctx.config, &ctx.store, &pick).await.unwrap();
    assert_eq!(found.location, made.location);
    let target = Target::parse(ws.path("out.bin").to_str().unwrap(), false).unwrap();
    let summary = restore::restore(
        &ctx.store,
        &found,
        &recipients,
        &target,
        RestoreOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(summary.plaintext_bytes, data.len() as u64);
    assert_eq!(summary.chunks, made.manifest.chunks);
    // What was read is what the first backup stored, but its session (the key, read apart).
    let session_bytes = std::fs::metadata(ws.path(&format!(
        "store/backups/files/_sessions/{}.json",
        made.location.id
    )))
    .unwrap()
    .len();
    assert!(
        summary.stored_bytes + session_bytes <= made.manifest.stored_bytes
            && summary.stored_bytes > data.len() as u64,
        "{summary:?} {:?}",
        made.manifest
    );
    assert_eq!(std::fs::read(ws.path("out.bin")).unwrap(), data);

    let verified = restore::verify(&ctx.store, &found, &recipients, false)
        .await
        .unwrap();
    assert_eq!(verified, summary);
}

#[tokio::test]
async fn verify_all_and_pick_latest_see_every_backup() {
    let (_ws, ctx, _) = workspace().await;
    let ids = [back_up(&ctx).await, back_up(&ctx).await];
    let keys = support::configured_keys(&ctx.config).await;
    let report = verify::verify_all(&ctx.config, &ctx.store, &keys, Some("files"), false)
        .await
        .unwrap();
    assert_eq!(report.totals(), (2, 0, 0));
    assert!(report.failure_class().is_none());
    let latest = pick_backup(&ctx.config, &ctx.store, &Pick::default())
        .await
        .unwrap();
    assert!(ids.contains(&latest.location.id.to_string()));
}

#[tokio::test]
async fn prune_returns_its_plan_and_deletes_only_outside_a_dry_run() {
    let (ws, _, _) = workspace().await;
    ws.write(
        "jobs/files.toml",
        "[retention]\nkeep_within_days = 0\nkeep_last = 1\nmin_keep = 1\n\n[source]\nkind = \"file\"\npath = \"../input.bin\"\n",
    );
    let ctx = context(&ws).await;
    for _ in 0..3 {
        back_up(&ctx).await;
    }
    let job = ctx.config.job("files").unwrap();
    let dry = prune::prune(&ctx.store, &[job], Utc::now(), true)
        .await
        .unwrap();
    assert!(dry.report.is_none());
    let items = dry.plans[0].items();
    let deleted = items
        .iter()
        .filter(|i| matches!(i.verdict, Verdict::Delete))
        .count();
    assert_eq!((items.len(), deleted), (3, 2));
    assert_eq!(ctx.store.list(None).await.unwrap().complete.len(), 3);

    let done = prune::prune(&ctx.store, &[job], Utc::now(), false)
        .await
        .unwrap();
    let report = done.report.unwrap();
    assert_eq!(report.deleted.len(), 2);
    assert!(report.failures.is_empty());
    assert_eq!(ctx.store.list(None).await.unwrap().complete.len(), 1);
}

#[tokio::test]
async fn key_operations_return_what_they_changed() {
    let (ws, ctx, _) = workspace().await;
    back_up(&ctx).await;
    back_up(&ctx).await;
    let new_id = keys::generate_key(&ws.path("new.key"), false).unwrap();
    assert_eq!(keys::key_id_of_file(&ws.path("new.key")).unwrap(), new_id);
    let old_id = keys::key_id_of_file(&ws.path("backup.key")).unwrap();
    let unlock = support::configured_keys(&ctx.config).await;
    let new = support::key_file(&ws, "new.key").await;

    let added = keys::add(&ctx.store, None, &unlock, &new).await.unwrap();
    assert_eq!((added.changed, added.already_done), (2, 0));
    let rotation = keys::rotate(&ctx.store, None, &unlock, &new, &old_id)
        .await
        .unwrap();
    assert_eq!(
        (rotation.added.changed, rotation.added.already_done),
        (0, 2)
    );
    assert_eq!(rotation.removed.changed, 2);
    let listing = ctx.store.list(None).await.unwrap();
    let usage = keys::usage(&ctx.store, &listing).await;
    assert_eq!(usage.len(), 1);
    assert_eq!(usage.get(&("key".to_string(), new_id)), Some(&2));

    let recipient = keys::generate_identity(&ws.path("id.identity"), false).unwrap();
    assert_eq!(
        keys::key_id_of_file(&ws.path("id.identity")).unwrap(),
        recipient.key_id()
    );
}

#[tokio::test]
async fn config_check_returns_the_store_keys_and_jobs() {
    let (ws, ctx, _) = workspace().await;
    let report = config_check::check(&ctx.config).await.unwrap();
    assert!(report.store.starts_with("local:"), "{}", report.store);
    assert_eq!(report.keys.len(), 1);
    assert!(report.can_restore());
    assert_eq!(report.jobs.len(), 1);
    assert_eq!(report.jobs[0].0, "files");
    assert!(report.jobs[0].1.ends_with("jobs/files.toml"));
    // A key that cannot be read fails the check, naming it.
    std::fs::remove_file(ws.path("backup.key")).unwrap();
    let err = config_check::check(&ctx.config).await.unwrap_err();
    assert!(err.message().contains("backup.key"), "{err}");
}
