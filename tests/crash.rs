//! Crash safety: `coffre backup` killed with SIGKILL at every step of a backup, on the local
//! store and on S3 (moto_server). After each kill: no partial backup is listed, every older
//! backup still verifies, a prune right away leaves what the killed backup left alone (for all
//! it knows, that backup is still running), and a prune once the job's timeout has passed
//! leaves no staging file, open multipart upload or incomplete directory behind. A prune that
//! runs while a backup is between its packs and its manifest, and `coffre prune` killed while
//! it deletes backups, marks, and deletes what it marked, lose nothing either, on both stores.
//!
//! The steps are failpoints (`src/failpoint.rs`, debug builds only): the process stops there and
//! the test kills it, so each kill lands exactly where it is meant to.

mod support;

use chrono::{Duration, Utc};
use std::process::Command;

use coffre::ops::prune;
use support::db::unique;
use support::s3::{S3_ENV, s3_open_uploads, s3_store, workspace_with_store};
use support::{Workspace, coffre_bin, noise};

/// Before, during and after the packs and the recipe, and between session and manifest.
const POINTS: [&str; 11] = [
    "backup:before-dump",
    "backup:dump-started",
    "backup:upload-started",
    "backup:part-stored@1",
    "backup:part-stored@2",
    "backup:part-stored@3",
    "backup:pack-uploaded",
    "backup:data-complete",
    "backup:session-written",
    "backup:manifest-sealed",
    "backup:manifest-written",
];

/// Start `coffre backup JOB` stopping at `point`, wait until it is there, and SIGKILL it.
fn kill_at(ws: &Workspace, job: &str, point: &str) {
    let mut cmd = Command::new(coffre_bin());
    cmd.args(["--config", "coffre.toml", "backup", job])
        .current_dir(ws.dir.path())
        .envs(S3_ENV);
    let mut child = support::start_at_failpoint(&mut cmd, point);
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Ids `coffre list` shows, which must all verify.
fn listed_and_verified(ws: &Workspace) -> Vec<String> {
    let run = ws.run_env(&["list", "--json"], &S3_ENV);
    run.ok();
    let ids: Vec<String> = support::json_lines(&run)
        .iter()
        .map(|b| {
            assert_eq!(b["status"], "complete", "{b}");
            b["id"].as_str().unwrap().to_string()
        })
        .collect();
    ws.run_env(&["verify", "--all"], &S3_ENV).ok();
    ids
}

/// Prune every job as if it were `now`; returns how many leftovers were removed.
async fn prune_at(ws: &Workspace, now: chrono::DateTime<Utc>) -> usize {
    let (config, store) = support::open_store(ws).await;
    let mut plans = Vec::new();
    for job in config.jobs.values() {
        plans.push(prune::plan(&store, job, now).await.unwrap());
    }
    let report = prune::execute(&store, &plans).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert!(
        report.deleted.is_empty(),
        "nothing is old enough to be pruned"
    );
    report.cleaned_strays + report.cleaned_incomplete.len() + report.deleted_shared
}

/// Everything of unfinished backups a store holds: staging files and directories without a
/// manifest (local), open multipart uploads and recipes without a manifest (S3), and packs
/// and sessions no manifest lists (both).
type Leftovers = Box<dyn Fn(&Workspace) -> Vec<String>>;

fn local_leftovers() -> Leftovers {
    Box::new(|ws: &Workspace| {
        let files = ws.store_files();
        let mut left: Vec<String> = files.iter().filter(|f| f.contains('#')).cloned().collect();
        // Backup directories holding no manifest.
        for f in files.iter().filter(|f| !f.contains("/_")) {
            let dir = f.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
            if !files.contains(&format!("{dir}/manifest.json")) {
                left.push(f.clone());
            }
        }
        left.extend(unlisted_shared(&files, |f| {
            std::fs::read(ws.path("store").join(f)).unwrap()
        }));
        left.sort();
        left.dedup();
        left
    })
}

fn s3_leftovers(prefix: String) -> Leftovers {
    Box::new(move |_: &Workspace| {
        let mut left = s3_open_uploads(&prefix);
        let keys = support::s3::s3_keys(&prefix);
        left.extend(
            keys.iter()
                .filter(|k| k.ends_with("/recipe.cfr"))
                .filter(|k| !keys.contains(&k.replace("/recipe.cfr", "/manifest.json")))
                .cloned(),
        );
        left.extend(unlisted_shared(&keys, support::s3::s3_get));
        left
    })
}

/// Packs and sessions among `files` that no manifest among them lists (marks aside).
fn unlisted_shared(files: &[String], read: impl Fn(&str) -> Vec<u8>) -> Vec<String> {
    let mut listed = Vec::new();
    for f in files.iter().filter(|f| f.ends_with("/manifest.json")) {
        let m: serde_json::Value = serde_json::from_slice(&read(f)).unwrap();
        for p in m["packs"].as_array().into_iter().flatten() {
            listed.push(format!("/_packs/{}.cfp", p.as_str().unwrap()));
        }
        for s in m["sessions"].as_array().into_iter().flatten() {
            listed.push(format!("/_sessions/{}.json", s.as_str().unwrap()));
        }
    }
    files
        .iter()
        .filter(|f| (f.contains("/_packs/") || f.contains("/_sessions/")) && !f.contains('#'))
        .filter(|f| !listed.iter().any(|l| f.ends_with(l.as_str())))
        .cloned()
        .collect()
}

async fn kill_everywhere(ws: Workspace, leftovers: Leftovers) {
    // Two older backups that must survive every crash, and a big job to kill (six parts of
    // 5 MiB on S3, four of 8 MiB locally).
    std::fs::write(ws.path("small.bin"), noise(100_000, 3)).unwrap();
    std::fs::write(ws.path("big.bin"), noise(30 << 20, 4)).unwrap();
    ws.file_job("small", "small.bin");
    ws.file_job("big", "big.bin");
    for _ in 0..2 {
        ws.run_env(&["backup", "small"], &S3_ENV).ok();
    }
    let mut complete = listed_and_verified(&ws);
    assert_eq!(complete.len(), 2);

    for point in POINTS {
        kill_at(&ws, "big", point);
        let listed = listed_and_verified(&ws);
        // Only the kill after the manifest was written leaves a (whole) backup.
        let expected = complete.len() + usize::from(point == "backup:manifest-written");
        assert_eq!(
            listed.len(),
            expected,
            "after a kill at {point}: {listed:?}"
        );
        assert!(complete.iter().all(|id| listed.contains(id)));
        complete = listed;

        // Right away, what the kill left may be a backup still running: kept.
        let left = leftovers(&ws);
        let midway = !matches!(
            point,
            "backup:before-dump" | "backup:dump-started" | "backup:manifest-written"
        );
        assert_eq!(
            !left.is_empty(),
            midway,
            "after a kill at {point}: {left:?}"
        );
        assert_eq!(prune_at(&ws, Utc::now()).await, 0, "{point}");
        assert_eq!(
            leftovers(&ws),
            left,
            "a prune removed a fresh leftover at {point}"
        );

        // Once the job's timeout (24 h by default) and the margin have passed, nothing is left.
        prune_at(&ws, Utc::now() + Duration::hours(25)).await;
        assert_eq!(
            leftovers(&ws),
            Vec::<String>::new(),
            "after a kill at {point}"
        );
        assert_eq!(listed_and_verified(&ws), complete, "{point}");
    }
}

#[tokio::test]
async fn killed_local_backups_leave_nothing_visible_and_prune_cleans_what_they_left() {
    kill_everywhere(Workspace::new(), local_leftovers()).await;
}

#[tokio::test]
async fn killed_s3_backups_leave_nothing_visible_and_prune_aborts_their_uploads() {
    let prefix = unique("crash");
    let ws = workspace_with_store(&s3_store(&prefix));
    kill_everywhere(ws, s3_leftovers(prefix)).await;
}

/// A prune while a backup is between its packs and its manifest deletes nothing that backup
/// wrote or reuses: its new pack is only marked, and the mark goes once the manifest lists it.
async fn prune_while_a_backup_runs(ws: Workspace, leftovers: Leftovers) {
    let mut data = noise(3 << 20, 5);
    std::fs::write(ws.path("input.bin"), &data).unwrap();
    ws.file_job("files", "input.bin");
    ws.run_env(&["backup", "files"], &S3_ENV).ok();
    data.extend_from_slice(&noise(2 << 20, 7));
    std::fs::write(ws.path("input.bin"), &data).unwrap();

    let release = ws.path("release");
    let mut cmd = Command::new(coffre_bin());
    cmd.args(["--config", "coffre.toml", "backup", "files"])
        .current_dir(ws.dir.path())
        .envs(S3_ENV)
        .env("COFFRE_FAILPOINT_RELEASE", &release);
    let mut child = support::start_at_failpoint(&mut cmd, "backup:pack-uploaded");
    let unlisted = leftovers(&ws);
    assert!(
        unlisted.iter().any(|f| f.contains("/_packs/")),
        "{unlisted:?}"
    );
    // Within the job's timeout, however often it runs: nothing of the running backup goes.
    prune_at(&ws, Utc::now()).await;
    assert!(!all_marks(&ws).await.is_empty());
    prune_at(&ws, Utc::now() + Duration::hours(23)).await;
    assert_eq!(
        leftovers(&ws),
        unlisted,
        "a prune deleted what a running backup wrote"
    );

    std::fs::write(&release, "").unwrap();
    assert!(child.wait().unwrap().success());
    prune_at(&ws, Utc::now()).await;
    assert_eq!(all_marks(&ws).await, Vec::<String>::new());
    assert_eq!(leftovers(&ws), Vec::<String>::new());
    let ids = listed_and_verified(&ws);
    assert_eq!(ids.len(), 2);
    let restored = ws.run_env(&["restore", &ids[1], "--to", "-"], &S3_ENV);
    restored.ok();
    assert!(restored.stdout == data);
}

#[tokio::test]
async fn a_prune_while_a_local_backup_runs_loses_nothing() {
    prune_while_a_backup_runs(Workspace::new(), local_leftovers()).await;
}

#[tokio::test]
async fn a_prune_while_an_s3_backup_runs_loses_nothing() {
    let prefix = unique("prune-during");
    let ws = workspace_with_store(&s3_store(&prefix));
    prune_while_a_backup_runs(ws, s3_leftovers(prefix)).await;
}

/// The prune marks of job `files`, by name.
async fn all_marks(ws: &Workspace) -> Vec<String> {
    let (_, store) = support::open_store(ws).await;
    let marks = store.list_shared("files", "_marks").await.unwrap();
    marks.into_iter().map(|mark| mark.name).collect()
}

/// `coffre prune` killed with SIGKILL while it deletes backups, while it marks what no
/// backup lists, and while it deletes what it marked a day before: after each kill every
/// listed backup verifies, and the next prune finishes what the killed one started.
async fn kill_prunes(ws: Workspace, leftovers: Leftovers) {
    // Five backups of unrelated data: each has a pack and a session of its own.
    ws.write(
        "jobs/files.toml",
        "[retention]\nkeep_within_days = 0\nkeep_last = 5\n\n[source]\nkind = \"file\"\npath = \"../input.bin\"\n",
    );
    let mut kept = Vec::new();
    for seed in 0..5 {
        let data = noise(1 << 20, 41 + 2 * seed);
        std::fs::write(ws.path("input.bin"), &data).unwrap();
        ws.run_env(&["backup", "files"], &S3_ENV).ok();
        kept.push(data);
    }
    let ids = listed_and_verified(&ws);
    ws.write(
        "jobs/files.toml",
        "[retention]\nkeep_within_days = 0\nkeep_last = 2\nmin_keep = 2\n\n[source]\nkind = \"file\"\npath = \"../input.bin\"\n",
    );
    let kill_prune = |point: &str| {
        let mut cmd = Command::new(coffre_bin());
        cmd.args(["--config", "coffre.toml", "prune", "files"])
            .current_dir(ws.dir.path())
            .envs(S3_ENV);
        let mut child = support::start_at_failpoint(&mut cmd, point);
        child.kill().unwrap();
        child.wait().unwrap();
    };
    let check = |point: &str| {
        let listed = listed_and_verified(&ws);
        assert!(
            ids[3..].iter().all(|id| listed.contains(id)),
            "after a kill at {point}: {listed:?}"
        );
    };

    // Killed after deleting the first of three backups.
    kill_prune("prune:backup-deleted@1");
    check("prune:backup-deleted@1");
    assert_eq!(listed_and_verified(&ws).len(), 4);
    // Killed after its first mark: the two other old backups are gone, and no pack or
    // session yet.
    kill_prune("prune:marked@1");
    check("prune:marked@1");
    assert_eq!(listed_and_verified(&ws), ids[3..].to_vec());
    let unlisted = leftovers(&ws);
    assert_eq!(
        unlisted
            .iter()
            .filter(|f| f.contains("/_packs/") || f.contains("/_sessions/"))
            .count(),
        6,
        "{unlisted:?}"
    );
    // A prune two days ago marks the five others (the killed one marked one, now), so that
    // the prune now deletes those five; killed after the first.
    let (config, store) = support::open_store(&ws).await;
    let plan = prune::plan(
        &store,
        config.job("files").unwrap(),
        Utc::now() - Duration::days(2),
    )
    .await
    .unwrap();
    let report = prune::execute(&store, &[plan]).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    kill_prune("prune:shared-deleted@1");
    check("prune:shared-deleted@1");
    assert_eq!(leftovers(&ws).len(), 5, "{:?}", leftovers(&ws));

    // The next prune finishes: the four others go (and the mark of the one deleted before the
    // kill); the one marked now waits for its day, then goes too, and no mark is left.
    ws.run_env(&["prune", "files"], &S3_ENV).ok();
    assert_eq!(leftovers(&ws).len(), 1, "{:?}", leftovers(&ws));
    assert_eq!(all_marks(&ws).await.len(), 1);
    let plan = prune::plan(
        &store,
        config.job("files").unwrap(),
        Utc::now() + Duration::hours(25),
    )
    .await
    .unwrap();
    let report = prune::execute(&store, &[plan]).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(leftovers(&ws), Vec::<String>::new());
    assert_eq!(all_marks(&ws).await, Vec::<String>::new());
    for (id, data) in ids[3..].iter().zip(&kept[3..]) {
        let restored = ws.run_env(&["restore", id, "--to", "-"], &S3_ENV);
        restored.ok();
        assert!(&restored.stdout == data, "{id}");
    }
}

#[tokio::test]
async fn killed_local_prunes_lose_nothing_and_the_next_one_finishes() {
    kill_prunes(Workspace::new(), local_leftovers()).await;
}

#[tokio::test]
async fn killed_s3_prunes_lose_nothing_and_the_next_one_finishes() {
    let prefix = unique("prune-kill");
    let ws = workspace_with_store(&s3_store(&prefix));
    kill_prunes(ws, s3_leftovers(prefix)).await;
}
