//! The audit trail at scale: 10,000 events appended to a local store, then `coffre audit
//! verify` reads every one and checks every link. Target: under 2 s. The ratio printed is
//! against reading the same files with `cat` (the floor for any verifier that reads them all).
//!
//! Run by `scripts/bench audit`, which sets COFFRE_BENCH_BIN (a release coffre).

use std::process::Command;
use std::time::Instant;

use coffre::audit::{Audit, What};

const EVENTS: usize = 10_000;
const TARGET_SECONDS: f64 = 2.0;

fn main() {
    let bin = std::env::var("COFFRE_BENCH_BIN").expect("COFFRE_BENCH_BIN: a release coffre");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("coffre.toml"),
        "[store]\nkind = \"local\"\npath = \"store\"\n\n[encryption]\nkeys = []\n",
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        let config = coffre::config::Config::load(&dir.path().join("coffre.toml")).unwrap();
        let store = coffre::store::Store::open(&config.store, &config.upload, &config.secrets)
            .await
            .unwrap();
        let audit = Audit::new(Some(&store), None, |_| {});
        for i in 0..EVENTS {
            let what = What::JobRun {
                job: format!("job-{}", i % 20),
                kind: "backup".into(),
                started_at: chrono::Utc::now(),
                backups: vec![uuid::Uuid::new_v4()],
            };
            audit.record(audit.event(what, "ok", None)).await;
        }
        assert!(audit.unstored().is_empty());
    });
    let written = started.elapsed().as_secs_f64();
    println!(
        "  appended {EVENTS} events in {written:.2} s ({:.2} ms each, one process)",
        written * 1000.0 / EVENTS as f64
    );
    // Cold-ish: the page cache holds them, as it would after the run that wrote them.
    let started = Instant::now();
    let out = Command::new(&bin)
        .args(["--config", "coffre.toml", "audit", "verify"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let verify = started.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("intact: {EVENTS} events")));
    let started = Instant::now();
    let cat = Command::new("sh")
        .args(["-c", "cat store/_audit/events/*.json > /dev/null"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(cat.success());
    let floor = started.elapsed().as_secs_f64();
    println!(
        "  coffre audit verify of {EVENTS} events: {verify:.2} s (target {TARGET_SECONDS} s: {}); cat of the same files: {floor:.2} s (verify / cat = {:.1})",
        if verify < TARGET_SECONDS {
            "met"
        } else {
            "MISSED"
        },
        verify / floor
    );
}
