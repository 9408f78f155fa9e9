//! Incident cost: `coffre incident rotate --all` over 100 secrets (50 PostgreSQL passwords and
//! 25 certificates from the internal CA published to the Kubernetes test API server, 25 API
//! keys published to OpenBao) used by 10 workloads, end to end: plan, rotate, one restart per
//! workload, rollouts confirmed, old credentials revoked, report. Target: at most 30 s. Then
//! the plan alone (`--dry-run`) for 1,000 secrets; target: under 2 s.
//!
//! Run by `scripts/bench incident`, which starts PostgreSQL and OpenBao and sets COFFRE_TEST_PG,
//! COFFRE_TEST_PG_PASSWORD, COFFRE_TEST_VAULT and COFFRE_BENCH_BIN (a release coffre).

mod common;

#[path = "../tests/support/kube_api.rs"]
#[allow(dead_code)]
mod kube_api;

use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{env, private, psql};

/// A workspace with `n` secrets: half database passwords (their roles created when `roles`),
/// a quarter API keys in OpenBao, a quarter certificates; plus the CA.
fn workspace(tag: &str, n: usize, roles: bool, api: &kube_api::KubeApi) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let port = url::Url::parse(&env("COFFRE_TEST_PG"))
        .unwrap()
        .port()
        .unwrap();
    private(&dir.path().join("pgadmin"), &env("COFFRE_TEST_PG_PASSWORD"));
    private(&dir.path().join("token"), "root");
    api.kubeconfig(&dir.path().join("kubeconfig"), "bench");
    let mut job = String::from(
        "kind = \"rotation\"\n\n[[target]]\nname = \"ca\"\nkind = \"ca\"\npublish = \"k8s:coffre/ca\"\ncommon_name = \"bench CA\"\n",
    );
    let mut create = String::new();
    for i in 0..n / 2 {
        let role = format!("bi{tag}_{i}");
        create += &format!("CREATE ROLE {role} LOGIN PASSWORD 'initial';");
        job += &format!(
            "\n[[target]]\nname = \"db-{i}\"\nkind = \"postgres\"\nport = {port}\nsslmode = \"disable\"\nadmin_user = \"postgres\"\nadmin_password = \"file:../pgadmin\"\nuser = \"{role}\"\npublish = \"k8s:bench/db-{i}\"\ndiscover_consumers = true\n"
        );
    }
    for i in 0..n / 4 {
        job += &format!(
            "\n[[target]]\nname = \"key-{i}\"\nkind = \"api_key\"\npublish = \"vault:secret/bench-{tag}/key-{i}\"\n"
        );
        job += &format!(
            "\n[[target]]\nname = \"tls-{i}\"\nkind = \"tls\"\npublish = \"k8s:bench/tls-{i}\"\nissuer = \"internal\"\nca = \"k8s:coffre/ca\"\ndns_names = [\"tls-{i}.bench.svc\"]\ndiscover_consumers = true\n"
        );
    }
    if roles {
        psql(&create);
    }
    std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
    std::fs::write(dir.path().join("jobs/all.toml"), job).unwrap();
    std::fs::write(
        dir.path().join("coffre.toml"),
        format!(
            "jobs = [\"jobs/*.toml\"]\n[vault]\naddress = \"{}\"\ntoken = \"file:token\"\n[store]\nkind = \"local\"\npath = \"store\"\n[encryption]\nkeys = []\n",
            env("COFFRE_TEST_VAULT")
        ),
    )
    .unwrap();
    dir
}

/// Ten workloads, each reading a tenth of the Kubernetes-published secrets.
fn workloads(api: &kube_api::KubeApi, n: usize) {
    let names: Vec<String> = (0..n / 2)
        .map(|i| format!("db-{i}"))
        .chain((0..n / 4).map(|i| format!("tls-{i}")))
        .collect();
    for w in 0..10 {
        let refs: Vec<serde_json::Value> = names
            .iter()
            .skip(w)
            .step_by(10)
            .map(|s| json!({"secretRef": {"name": s}}))
            .collect();
        kube_api::workload_in(
            api,
            "deployments",
            "bench",
            &format!("app-{w}"),
            json!({"containers": [kube_api::container(json!({"envFrom": refs}))]}),
        );
    }
}

fn coffre(dir: &Path, args: &[&str]) -> (f64, String) {
    let start = Instant::now();
    let out = Command::new(common::coffre_bin())
        .args(["--quiet", "--config", "coffre.toml"])
        .args(args)
        .current_dir(dir)
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .output()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (secs, String::from_utf8_lossy(&out.stdout).into_owned())
}

fn main() {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..6];
    println!("== incident: `coffre incident rotate --all` (8 rotations at once)");
    let api = kube_api::KubeApi::start();
    let dir = workspace(tag, 100, true, &api);
    workloads(&api, 100);
    coffre(dir.path(), &["rotate", "ca"]);
    let (secs, out) = coffre(dir.path(), &["incident", "rotate", "--all", "--json"]);
    let report: serde_json::Value = out
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["type"] == "incident_report")
        .expect("a report");
    assert_eq!(report["complete"], true);
    let patches = api
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH")
        .count();
    println!(
        "   100 secrets (50 passwords, 25 API keys, 25 certificates) + the CA, 10 workloads ({patches} patches): {secs:6.2} s   {}",
        if secs <= 30.0 {
            "within 30 s"
        } else {
            "OVER the 30 s target"
        }
    );

    let big = kube_api::KubeApi::start();
    let dir = workspace(&format!("{tag}p"), 1000, false, &big);
    workloads(&big, 1000);
    let (secs, out) = coffre(dir.path(), &["incident", "rotate", "--all", "--dry-run"]);
    let planned = out.lines().filter(|l| l.starts_with("  secret ")).count();
    assert_eq!(planned, 1001, "every secret is in the plan");
    println!(
        "   plan for 1,000 secrets (+ the CA), 10 workloads, nothing changed: {secs:6.2} s   {}",
        if secs < 2.0 {
            "under 2 s"
        } else {
            "OVER the 2 s target"
        }
    );
}
