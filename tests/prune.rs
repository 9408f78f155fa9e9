//! Pruning through the library, on a real local store, with store failures injected by a
//! wrapper around it: a failed listing or manifest read deletes nothing, a failed delete is
//! reported and deletes nothing else it should not.

mod support;

use chrono::{DateTime, Duration, Utc};

use coffre::config::Config;
use coffre::ops::prune;
use support::Workspace;
use support::faulty::faulty_store as store;

/// A workspace with six backups of one job, and their start times, oldest first.
fn six_backups() -> (Workspace, Vec<(String, DateTime<Utc>)>) {
    let ws = Workspace::new();
    ws.write("input.bin", "patient records");
    ws.write(
        "jobs/files.toml",
        "[retention]\nkeep_within_days = 30\nmin_keep = 2\n\n[source]\nkind = \"file\"\npath = \"../input.bin\"\n",
    );
    let mut backups = Vec::new();
    for _ in 0..6 {
        let id = ws.backup("files");
        let manifest = ws.manifest("files", &id);
        let started = DateTime::parse_from_rfc3339(manifest["started_at"].as_str().unwrap())
            .unwrap()
            .with_timezone(&Utc);
        backups.push((id, started));
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    (ws, backups)
}

fn remaining(ws: &Workspace) -> Vec<String> {
    let run = ws.run(&["list", "--json"]);
    run.ok();
    support::json_lines(&run)
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

fn ids(backups: &[(String, DateTime<Utc>)]) -> Vec<String> {
    backups.iter().map(|(id, _)| id.clone()).collect()
}

/// 30 days after the fourth backup: the three newest are within 30 days, the three oldest not.
fn now_for(backups: &[(String, DateTime<Utc>)]) -> DateTime<Utc> {
    backups[3].1 + Duration::days(30)
}

#[tokio::test]
async fn prune_deletes_exactly_what_the_policy_drops() {
    let (ws, backups) = six_backups();
    let config = Config::load(&ws.path("coffre.toml")).unwrap();
    let store = store(&ws, |_| {});
    let plan = prune::plan(&store, config.job("files").unwrap(), now_for(&backups))
        .await
        .unwrap();
    let report = prune::execute(&store, &[plan]).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.deleted.len(), 3);
    let mut left = remaining(&ws);
    left.sort();
    let mut expected = ids(&backups[3..]);
    expected.sort();
    assert_eq!(left, expected);
    // The deleted backups' own objects are gone; their sessions stay (a backup running now
    // may have read their manifests). The three left: manifests and recipes, and the one pack
    // (every backup holds the same bytes, stored once).
    let shared = |files: &[String], dir: &str| files.iter().filter(|f| f.contains(dir)).count();
    let files = ws.store_files();
    assert_eq!(shared(&files, "/_packs/"), 1, "{files:?}");
    assert_eq!(shared(&files, "/_sessions/"), 6, "{files:?}");
    assert_eq!(files.len(), 6 + 1 + 6, "{files:?}");
    ws.run(&["verify", &backups[3].0]).ok();

    // The next prune marks the two sessions no backup uses (the first backup's stays: its
    // chunk is in every backup); marks wait a day, then what they mark goes, and the marks.
    let start = now_for(&backups);
    // The three left are kept however late the prunes below run.
    ws.write(
        "jobs/files.toml",
        "[retention]\nkeep_within_days = 30\nmin_keep = 3\n\n[source]\nkind = \"file\"\npath = \"../input.bin\"\n",
    );
    let config = Config::load(&ws.path("coffre.toml")).unwrap();
    let sweep = |after: Duration| {
        let store = &store;
        let config = &config;
        async move {
            let plan = prune::plan(store, config.job("files").unwrap(), start + after)
                .await
                .unwrap();
            let report = prune::execute(store, &[plan]).await;
            assert!(report.failures.is_empty(), "{:?}", report.failures);
            report
        }
    };
    let report = sweep(Duration::hours(1)).await;
    assert_eq!((report.deleted_shared, report.marked_shared), (0, 2));
    let files = ws.store_files();
    assert_eq!(shared(&files, "/_marks/"), 2, "{files:?}");
    let report = sweep(Duration::hours(2)).await;
    assert_eq!((report.deleted_shared, report.marked_shared), (0, 0));
    assert_eq!(ws.store_files(), files);
    let report = sweep(Duration::hours(26)).await;
    assert_eq!(report.deleted_shared, 2);
    let after = ws.store_files();
    for session in [&backups[1].0, &backups[2].0] {
        assert!(
            !after.iter().any(|f| f.contains(session.as_str())),
            "{after:?}"
        );
    }
    assert!(!after.iter().any(|f| f.contains("/_marks/")), "{after:?}");
    assert_eq!(after.len(), 6 + 1 + 4, "{after:?}");
    ws.run(&["verify", "--all"]).ok();
}

#[tokio::test]
async fn a_mark_on_something_used_again_is_dropped_and_a_damaged_manifest_stops_the_sweep() {
    let (ws, backups) = six_backups();
    let config = Config::load(&ws.path("coffre.toml")).unwrap();
    let store = store(&ws, |_| {});
    let job = config.job("files").unwrap();
    let pack = ws
        .store_files()
        .into_iter()
        .find(|f| f.contains("/_packs/"))
        .unwrap();
    let pack_name = pack.rsplit_once('/').unwrap().1.to_string();
    // A mark a prune made while no manifest listed the pack, long ago (a backup then reused it).
    let mark = format!("store/backups/files/_marks/pack-{pack_name}-20200101T000000Z");
    ws.write(&mark, "");
    let plan = prune::plan(&store, job, backups[5].1).await.unwrap();
    let shared = plan.shared.as_ref().unwrap();
    assert!(shared.delete.is_empty(), "{shared:?}");
    assert_eq!(shared.stale_marks.len(), 1, "{shared:?}");
    prune::execute(&store, &[plan]).await;
    assert!(!ws.path(&mark).exists());
    assert!(ws.path(&format!("store/{pack}")).exists());

    // A damaged manifest may list packs: nothing of them is marked or deleted.
    ws.write(
        &format!(
            "store/backups/files/20200101T000000Z-{}/manifest.json",
            uuid::Uuid::new_v4()
        ),
        "{ not json",
    );
    let plan = prune::plan(&store, job, backups[5].1 + Duration::days(400))
        .await
        .unwrap();
    assert!(plan.shared.is_none());
    assert!(!plan.damaged.is_empty());
}

#[tokio::test]
async fn a_listing_that_fails_midway_deletes_nothing() {
    let (ws, backups) = six_backups();
    let config = Config::load(&ws.path("coffre.toml")).unwrap();
    let store = store(&ws, |f| f.list_ok = Some(5));
    let err = prune::plan(&store, config.job("files").unwrap(), now_for(&backups))
        .await
        .unwrap_err();
    assert!(err.message().contains("nothing deleted"), "{err}");
    assert!(err.message().contains("injected listing failure"), "{err}");
    assert_eq!(remaining(&ws).len(), 6);
}

#[tokio::test]
async fn a_manifest_that_cannot_be_read_stops_the_prune() {
    let (ws, backups) = six_backups();
    let config = Config::load(&ws.path("coffre.toml")).unwrap();
    let store = store(&ws, |f| f.fail_get = Some(backups[4].0.clone()));
    let err = prune::plan(&store, config.job("files").unwrap(), now_for(&backups))
        .await
        .unwrap_err();
    assert!(err.message().contains("injected read failure"), "{err}");
    assert_eq!(remaining(&ws).len(), 6);
}

#[tokio::test]
async fn a_failed_delete_is_reported_and_leaves_that_backup_whole() {
    let (ws, backups) = six_backups();
    let config = Config::load(&ws.path("coffre.toml")).unwrap();
    let store = store(&ws, |f| {
        f.fail_delete = Some(format!("{}/manifest.json", backups[1].0))
    });
    let plan = prune::plan(&store, config.job("files").unwrap(), now_for(&backups))
        .await
        .unwrap();
    let report = prune::execute(&store, &[plan]).await;
    assert_eq!(report.failures.len(), 1);
    assert!(
        report.failures[0]
            .message()
            .contains("injected delete failure")
    );
    assert_eq!(report.deleted.len(), 2);
    let left = remaining(&ws);
    assert_eq!(left.len(), 4);
    assert!(left.contains(&backups[1].0));
    // The backup whose delete failed still restores: its data was not touched.
    ws.run(&["verify", &backups[1].0]).ok();
}

#[tokio::test]
async fn incomplete_backups_are_removed_only_when_over_a_day_old() {
    let (ws, backups) = six_backups();
    let now = backups[5].1;
    let stamp = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
    let old = format!(
        "store/backups/files/{}-00000000-0000-4000-8000-000000000001/data.cfr",
        stamp(now - Duration::hours(25))
    );
    let fresh = format!(
        "store/backups/files/{}-00000000-0000-4000-8000-000000000002/data.cfr",
        stamp(now - Duration::hours(1))
    );
    ws.write(&old, "partial");
    ws.write(&fresh, "partial");
    let config = Config::load(&ws.path("coffre.toml")).unwrap();
    let store = store(&ws, |_| {});
    let plan = prune::plan(&store, config.job("files").unwrap(), now)
        .await
        .unwrap();
    assert_eq!(
        plan.deletions().count(),
        0,
        "every backup is within 30 days"
    );
    let report = prune::execute(&store, &[plan]).await;
    assert_eq!(report.cleaned_incomplete.len(), 1);
    assert!(!ws.path(&old).exists());
    assert!(ws.path(&fresh).exists());
}

#[test]
fn dry_run_prints_the_plan_with_the_rule_that_keeps_each_backup_and_deletes_nothing() {
    let (ws, backups) = six_backups();
    ws.write(
        "jobs/files.toml",
        "[retention]\nkeep_within_days = 0\nmin_keep = 2\n\n[source]\nkind = \"file\"\npath = \"../input.bin\"\n",
    );
    let run = ws.run(&["prune", "files", "--dry-run"]);
    run.ok();
    let text = run.stdout_text();
    let line = |id: &str| text.lines().find(|l| l.contains(id)).unwrap().to_string();
    assert!(line(&backups[5].0).contains("keep (newest"), "{text}");
    assert!(line(&backups[4].0).contains("keep (min_keep)"), "{text}");
    assert!(line(&backups[0].0).contains("delete"), "{text}");
    assert_eq!(remaining(&ws).len(), 6);

    let run = ws.run(&["prune", "files"]);
    run.ok();
    assert!(
        run.stdout_text().contains("4 backups deleted"),
        "{}",
        run.stdout_text()
    );
    let mut left = remaining(&ws);
    left.sort();
    let mut expected = ids(&backups[4..]);
    expected.sort();
    assert_eq!(left, expected);
}

#[test]
fn a_job_can_prune_itself_after_each_backup() {
    let ws = Workspace::new();
    ws.write("input.bin", "x");
    ws.write(
        "jobs/files.toml",
        "[retention]\nkeep_within_days = 0\nmin_keep = 2\nprune_after_backup = true\n\n[source]\nkind = \"file\"\npath = \"../input.bin\"\n",
    );
    let ids: Vec<String> = (0..4)
        .map(|_| {
            let run = ws.run(&["backup", "files", "--json"]);
            run.ok();
            std::thread::sleep(std::time::Duration::from_millis(5));
            // The first line is the backup; the prune plan follows.
            let text = run.stdout_text();
            let first: serde_json::Value =
                serde_json::from_str(text.lines().next().unwrap()).unwrap();
            first["id"].as_str().unwrap().to_string()
        })
        .collect();
    let mut left = remaining(&ws);
    left.sort();
    let mut newest: Vec<String> = ids[2..].to_vec();
    newest.sort();
    assert_eq!(left, newest);
}
