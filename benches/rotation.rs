//! Rotation cost: 100 PostgreSQL roles rotated by one `coffre rotate --all`, published to
//! OpenBao (Vault KV v2) and to the Kubernetes test API server (through the real kube client),
//! each role a target of its own (single-user), with its journal, audit events, tests and
//! publish. Prints total time and per-role cost; target: 100 roles in at most 10 s.
//!
//! Run by `scripts/bench rotate`, which starts PostgreSQL and OpenBao and sets COFFRE_TEST_PG,
//! COFFRE_TEST_PG_PASSWORD, COFFRE_TEST_VAULT and COFFRE_BENCH_BIN (a release coffre).

mod common;

#[path = "../tests/support/kube_api.rs"]
#[allow(dead_code)]
mod kube_api;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{env, private, psql};

const ROLES: usize = 100;

/// A workspace rotating `prefix_0..prefix_99`, each published to `publish(i)`.
fn workspace(prefix: &str, top: &str, publish: impl Fn(usize) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let url = url::Url::parse(&env("COFFRE_TEST_PG")).unwrap();
    let roles: Vec<String> = (0..ROLES)
        .map(|i| format!("CREATE ROLE {prefix}_{i} LOGIN PASSWORD 'initial';"))
        .collect();
    psql(&roles.join(""));
    private(&dir.path().join("pgadmin"), &env("COFFRE_TEST_PG_PASSWORD"));
    std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
    let mut job = String::from("kind = \"rotation\"\n");
    for i in 0..ROLES {
        job += &format!(
            "\n[[target]]\nname = \"{}-{i}\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\nport = {}\nsslmode = \"disable\"\nadmin_user = \"postgres\"\nadmin_password = \"file:../pgadmin\"\nuser = \"{prefix}_{i}\"\npublish = \"{}\"\n",
            prefix.replace('_', "-"),
            url.port().unwrap(),
            publish(i)
        );
    }
    std::fs::write(dir.path().join("jobs/passwords.toml"), job).unwrap();
    std::fs::write(
        dir.path().join("coffre.toml"),
        format!("jobs = [\"jobs/*.toml\"]\n{top}\n[store]\nkind = \"local\"\npath = \"store\"\n[encryption]\nkeys = []\n"),
    )
    .unwrap();
    dir
}

/// Seconds for one `coffre rotate --all` in `dir`.
fn rotate_all(dir: &Path, extra_env: &[(&str, String)]) -> f64 {
    let start = Instant::now();
    let out = Command::new(common::coffre_bin())
        .args(["--quiet", "--config", "coffre.toml", "rotate", "--all"])
        .current_dir(dir)
        .envs(extra_env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .count();
    assert_eq!(events, ROLES * 6, "one event per state change of each role");
    secs
}

fn report(what: &str, first: f64, second: f64) {
    println!(
        "   {what:<44} first {first:6.2} s ({:5.1} ms/role)   again {second:6.2} s ({:5.1} ms/role)   {}",
        first * 1000.0 / ROLES as f64,
        second * 1000.0 / ROLES as f64,
        if first.max(second) <= 10.0 {
            "within 10 s"
        } else {
            "OVER the 10 s target"
        }
    );
}

fn main() {
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..6];
    println!("== rotate: {ROLES} PostgreSQL roles, one `coffre rotate --all` (4 at once)");

    let vault_prefix = format!("bv{tag}");
    let token_dir = tempfile::tempdir().unwrap();
    let token = token_dir.path().join("token");
    private(&token, "root");
    let top = format!(
        "[vault]\naddress = \"{}\"\ntoken = \"file:{}\"\n",
        env("COFFRE_TEST_VAULT"),
        token.display()
    );
    let dir = workspace(&vault_prefix, &top, |i| {
        format!("vault:secret/bench-{tag}/role-{i}")
    });
    let first = rotate_all(dir.path(), &[]);
    let second = rotate_all(dir.path(), &[]);
    report("published to OpenBao (KV v2, cas)", first, second);

    let api = kube_api::KubeApi::start();
    let kube_prefix = format!("bk{tag}");
    let dir = workspace(&kube_prefix, "", |i| format!("k8s:bench/role-{i}"));
    api.kubeconfig(&dir.path().join("kubeconfig"), "bench");
    let kubeconfig = [(
        "KUBECONFIG",
        dir.path().join("kubeconfig").display().to_string(),
    )];
    let first = rotate_all(dir.path(), &kubeconfig);
    let second = rotate_all(dir.path(), &kubeconfig);
    report("published to Kubernetes Secrets (test API)", first, second);
}
