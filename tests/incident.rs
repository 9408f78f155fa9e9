//! `coffre incident rotate`: twenty secrets (PostgreSQL passwords, API keys, certificates from
//! the internal CA) used by five workloads, against the real PostgreSQL and the Kubernetes test
//! API server. Each workload is patched once however many of its secrets change; an incident
//! killed in the middle and run again rotates every secret once and patches no workload twice.

mod support;

use coffre::error::Class;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use support::db::{pg_addr, pg_password, pg_rotation_job, psql, unique};
use support::kube_api::{KubeApi, container, workload};
use support::{Run, Workspace};

const ADMIN_ENV: &str = "COFFRE_TEST_ADMIN_PW";
const WORKLOADS: usize = 5;

struct Incident {
    api: KubeApi,
    ws: Workspace,
    /// The published Secrets of the 20 targets, in order: 10 databases, 6 API keys, 4 certificates.
    secrets: Vec<String>,
    roles: Vec<String>,
}

impl Incident {
    fn new() -> Self {
        let api = KubeApi::start();
        let base = unique("inc");
        let mut targets = String::new();
        let mut secrets = Vec::new();
        let mut roles = Vec::new();
        for i in 0..10 {
            let role = format!("{base}_{i}");
            psql(
                "postgres",
                &format!("CREATE ROLE {role} LOGIN PASSWORD 'initial'"),
            );
            let name = format!("db-{i}");
            let job = pg_rotation_job(
                &name,
                std::slice::from_ref(&role),
                &format!("env:{ADMIN_ENV}"),
                &format!("k8s:prod/{name}"),
                "discover_consumers = true",
            );
            targets.push_str(job.trim_start_matches("kind = \"rotation\"\n\n"));
            secrets.push(name);
            roles.push(role);
        }
        for i in 0..6 {
            let name = format!("key-{i}");
            targets.push_str(&format!(
                "[[target]]\nname = \"{name}\"\nkind = \"api_key\"\npublish = \"k8s:prod/{name}\"\ndiscover_consumers = true\n\n"
            ));
            secrets.push(name);
        }
        for i in 0..4 {
            let name = format!("tls-{i}");
            targets.push_str(&format!(
                "[[target]]\nname = \"{name}\"\nkind = \"tls\"\npublish = \"k8s:prod/{name}\"\nissuer = \"internal\"\nca = \"k8s:coffre/coffre-ca\"\ndns_names = [\"{name}.prod.svc\"]\ndiscover_consumers = true\n\n"
            ));
            secrets.push(name);
        }
        targets.push_str("[[target]]\nname = \"coffre-ca\"\nkind = \"ca\"\npublish = \"k8s:coffre/coffre-ca\"\ncommon_name = \"incident test CA\"\n");
        let ws = Workspace::new();
        api.kubeconfig(&ws.path("kubeconfig"), "coffre");
        ws.write(
            "jobs/creds.toml",
            &format!("kind = \"rotation\"\n\n{targets}"),
        );
        // Workload w reads secrets w, w+5, w+10 and w+15 (one of each kind at least once) and
        // w+1: twenty secrets, five workloads, each workload several secrets, shared.
        for w in 0..WORKLOADS {
            let used: Vec<&String> = [w, w + 5, w + 10, w + 15, w + 1]
                .iter()
                .map(|i| &secrets[*i])
                .collect();
            let env_from: Vec<Value> = used[..3]
                .iter()
                .map(|s| json!({"secretRef": {"name": s}}))
                .collect();
            let volumes: Vec<Value> = used[3..]
                .iter()
                .enumerate()
                .map(|(n, s)| json!({"name": format!("v{n}"), "secret": {"secretName": s}}))
                .collect();
            workload(
                &api,
                "deployments",
                &format!("app-{w}"),
                json!({"containers": [container(json!({"envFrom": env_from}))], "volumes": volumes}),
            );
        }
        let incident = Self {
            api,
            ws,
            secrets,
            roles,
        };
        incident.run(&["rotate", "coffre-ca"]).ok();
        incident
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            (ADMIN_ENV.into(), pg_password()),
            (
                "KUBECONFIG".into(),
                self.ws.path("kubeconfig").display().to_string(),
            ),
        ]
    }

    fn run(&self, args: &[&str]) -> Run {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.ws.run_env(args, &env)
    }

    fn command(&self, args: &[&str]) -> std::process::Command {
        let mut cmd = std::process::Command::new(support::coffre_bin());
        cmd.current_dir(self.ws.path(""))
            .env_remove("COFFRE_CONFIG")
            .args(["--config", "coffre.toml"])
            .args(args)
            .envs(self.env());
        cmd
    }

    fn patches(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for r in self.api.requests().iter().filter(|r| r.method == "PATCH") {
            *out.entry(r.path.rsplit('/').next().unwrap().to_string())
                .or_default() += 1;
        }
        out
    }

    fn annotation(&self, w: usize) -> Value {
        self.api
            .object("apps/v1/deployments", "prod", &format!("app-{w}"))
            .unwrap()["spec"]["template"]["metadata"]["annotations"]["coffre.io/rotation-id"]
            .clone()
    }

    fn published(&self) -> Vec<BTreeMap<String, String>> {
        self.secrets
            .iter()
            .map(|s| self.api.secret("prod", s).unwrap().0)
            .collect()
    }

    fn journal(&self, target: &str) -> (Value, BTreeMap<String, String>) {
        let (data, _) = self
            .api
            .secret("prod", &format!("coffre-journal-{target}"))
            .unwrap();
        (serde_json::from_str(&data["journal"]).unwrap(), data)
    }
}

fn pg_login(user: &str, password: &str) -> bool {
    let (host, port) = pg_addr();
    std::process::Command::new("psql")
        .args([
            "-h",
            &host,
            "-p",
            &port.to_string(),
            "-U",
            user,
            "-d",
            "postgres",
            "-tAc",
            "SELECT 1",
        ])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .unwrap()
        .status
        .success()
}

fn report(run: &Run) -> Value {
    support::json_lines(run)
        .into_iter()
        .find(|v| v["type"] == "incident_report")
        .unwrap_or_else(|| panic!("no incident report: {}{}", run.stdout_text(), run.stderr))
}

#[test]
fn an_incident_rotates_everything_in_scope_and_restarts_each_workload_once() {
    let inc = Incident::new();
    inc.run(&["rotate", "--all"]).ok();
    let before = inc.published();
    let patched_before = inc.patches();

    // The plan changes nothing.
    let plan = inc.run(&[
        "incident",
        "rotate",
        "--namespace",
        "prod",
        "--dry-run",
        "--json",
    ]);
    plan.ok();
    let planned = support::json_lines(&plan);
    let planned = planned
        .iter()
        .find(|v| v["type"] == "incident_plan")
        .unwrap();
    assert_eq!(planned["secrets"].as_array().unwrap().len(), 20);
    // The plan says what becomes of each old credential, and when: at once, in an incident.
    for s in planned["secrets"].as_array().unwrap() {
        if s["kind"] == "api_key" {
            assert!(
                s["action"]
                    .as_str()
                    .unwrap()
                    .contains("revoked as soon as the workloads rolled out"),
                "{s}"
            );
        }
    }
    assert_eq!(planned["workloads"].as_array().unwrap().len(), WORKLOADS);
    assert_eq!(inc.patches(), patched_before);
    assert_eq!(inc.published(), before);

    let run = inc.run(&["incident", "rotate", "--namespace", "prod", "--json"]);
    run.ok();
    let report = report(&run);
    assert_eq!(report["complete"], true, "{report}");
    let id = report["incident_id"].as_str().unwrap();
    let secrets = report["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 20);
    for s in secrets {
        assert_eq!(s["state"], "FINISHED", "{s}");
        assert_eq!(s["revoked"], true, "{s}");
        assert!(
            s["old_fingerprint"].is_string() && s["old_fingerprint"] != s["new_fingerprint"],
            "{s}"
        );
    }
    let after = inc.published();
    for (i, (old, new)) in before.iter().zip(&after).enumerate() {
        let key = ["password", "current", "tls.key"][usize::from(i >= 10) + usize::from(i >= 16)];
        assert_ne!(old[key], new[key], "{}", inc.secrets[i]);
    }
    // Each workload: one patch, carrying the incident's id, however many of its secrets changed.
    let patched = inc.patches();
    for w in 0..WORKLOADS {
        let name = format!("app-{w}");
        assert_eq!(patched[&name], patched_before[&name] + 1, "{name}");
        assert_eq!(inc.annotation(w), id);
    }
    for w in report["workloads"].as_array().unwrap() {
        assert_eq!(w["restarted"], true);
        assert_eq!(w["rollout_confirmed"], true);
    }
    // Revoked at once: the old database passwords and API keys no longer work or are gone.
    for (i, role) in inc.roles.iter().enumerate() {
        assert!(!pg_login(role, &before[i]["password"]));
        assert!(pg_login(role, &after[i]["password"]));
    }
    for fields in &after[10..16] {
        assert!(!fields.contains_key("previous"));
    }
    // The report is kept beside the audit events, and no secret value is in any output.
    let stored = walk(&inc.ws.path("store/backups/_audit/incident"));
    assert_eq!(stored.len(), 1, "one stored report");
    let kept: Value = serde_json::from_slice(&std::fs::read(&stored[0]).unwrap()).unwrap();
    assert_eq!(kept["incident_id"], id);
    // The trail says when it started and vouches for the report (its hash), after the
    // rotation events.
    let mut trail: Vec<_> = walk(&inc.ws.path("store/backups/_audit/events"));
    trail.sort();
    let trail: Vec<Value> = trail
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
        .collect();
    let own: Vec<&Value> = trail.iter().filter(|e| e["event"] == "incident").collect();
    assert_eq!(own.len(), 2, "{own:?}");
    assert_eq!(
        (own[0]["action"].as_str(), own[1]["action"].as_str()),
        (Some("started"), Some("reported"))
    );
    let (started, reported) = (own[0]["seq"].as_u64(), own[1]["seq"].as_u64());
    assert_eq!(reported, Some(trail.len() as u64 - 1));
    for e in trail
        .iter()
        .filter(|e| e["trigger"] == "incident" && e["event"] == "rotation")
    {
        assert!(
            e["seq"].as_u64() > started && e["seq"].as_u64() < reported,
            "{e}"
        );
    }
    assert_eq!(own[1]["complete"], true);
    assert_eq!(
        own[1]["report_sha256"],
        coffre::audit::link_hash(&std::fs::read(&stored[0]).unwrap())
    );
    let closed = inc.run(&["incident", "close", "--json"]);
    assert!(
        closed.stdout_text().contains("\"incident\":null"),
        "{}",
        closed.stdout_text()
    );
    // Nor in any stored audit event or report.
    let mut stored_text = String::new();
    for path in walk(&inc.ws.path("store/backups/_audit")) {
        stored_text.push_str(&String::from_utf8_lossy(&std::fs::read(path).unwrap()));
    }
    assert!(
        stored_text.contains(id),
        "the stored trail names the incident"
    );
    let output = format!("{}{}", run.stdout_text(), run.stderr);
    for fields in before.iter().chain(&after) {
        for (name, value) in fields {
            if ["password", "current", "previous", "tls.key"].contains(&name.as_str()) {
                let needle = support::secret_needle(value);
                assert!(!output.contains(needle), "{name} leaked");
                assert!(
                    !stored_text.contains(needle),
                    "{name} stored in the audit trail"
                );
            }
        }
    }
}

#[test]
fn an_incident_killed_midway_resumes_rotating_each_secret_once_and_patching_no_workload_twice() {
    let inc = Incident::new();
    // Killed while the rotations run (several are in flight), then again while they finish
    // after the restarts.
    for point in ["rotate.after.PUBLISHED@7", "rotate.after.ROLLED_OUT@4"] {
        let mut cmd = inc.command(&["incident", "rotate", "--namespace", "prod"]);
        let mut child = support::start_at_failpoint(&mut cmd, point);
        child.kill().unwrap();
        child.wait().unwrap();
    }
    // While it is open, an incident of another scope is refused, naming it.
    let other = inc.run(&["incident", "rotate", "--secret", "prod/key-1"]);
    other.expect_failure(Class::Config, "is still open");
    let run = inc.run(&["incident", "rotate", "--namespace", "prod", "--json"]);
    run.ok();
    let report = report(&run);
    assert_eq!(report["complete"], true, "{report}");
    let id = report["incident_id"].as_str().unwrap();
    let mut rotations = BTreeSet::new();
    for name in &inc.secrets {
        let (record, data) = inc.journal(name);
        assert_eq!(record["state"], "FINISHED", "{name}");
        assert_eq!(record["incident"], id, "{name}");
        assert!(
            data.keys().all(|k| !k.starts_with("pending_")),
            "{name} keeps a pending value"
        );
        rotations.insert(record["rotation_id"].as_str().unwrap().to_string());
    }
    assert_eq!(rotations.len(), 20);
    // One rotation per secret in the whole incident: no second pending value was ever made.
    let mut events = Vec::new();
    // A process killed while storing an event can leave the local store's staging file
    // (NAME.json#N) beside the events: only the events count.
    let stored = walk(&inc.ws.path("store/backups/_audit/events"));
    for entry in stored
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
    {
        let event: Value = serde_json::from_slice(&std::fs::read(entry).unwrap()).unwrap();
        if event["event"] == "rotation" && event["trigger"] == "incident" {
            events.push(event);
        }
    }
    let planned: Vec<&Value> = events.iter().filter(|e| e["to"] == "PLANNED").collect();
    assert_eq!(planned.len(), 20, "each secret was planned once");
    // Every workload was patched once by the whole incident, across the three runs.
    for w in 0..WORKLOADS {
        assert_eq!(inc.patches()[&format!("app-{w}")], 1, "app-{w}");
        assert_eq!(inc.annotation(w), id);
    }
    let after = inc.published();
    for (i, role) in inc.roles.iter().enumerate() {
        assert!(pg_login(role, &after[i]["password"]));
        assert!(!pg_login(role, "initial"));
    }
}

#[test]
fn an_incident_needs_a_scope_and_a_known_secret() {
    let inc = Incident::new();
    let none = inc.run(&["incident", "rotate"]);
    none.expect_class(Class::Config);
    assert!(
        none.stderr
            .contains("--all, --secret NAME, --namespace NS or --selector"),
        "{}",
        none.stderr
    );
    let unknown = inc.run(&["incident", "rotate", "--secret", "prod/nope"]);
    unknown.expect_failure(Class::Config, "--secret prod/nope");
    let bad = inc.run(&["incident", "rotate", "--selector", "app in (a)"]);
    bad.expect_class(Class::Config);
    // One secret by its published name: only it rotates, only its workloads restart.
    let one = inc.run(&["incident", "rotate", "--secret", "prod/key-3", "--json"]);
    one.ok();
    let report = report(&one);
    assert_eq!(report["secrets"].as_array().unwrap().len(), 1);
    let restarted: BTreeSet<&str> = report["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["workload"].as_str().unwrap())
        .collect();
    assert_eq!(restarted, BTreeSet::from(["Deployment/prod/app-3"]));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
