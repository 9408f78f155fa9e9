//! Consumer restarts: once a rotated credential is published to a Kubernetes Secret, the
//! workloads that use it (configured, or found from their pod templates) get one pod-template
//! annotation patch, and the rotation waits for their rollouts. Against the test API server
//! through the real kube client, with the real PostgreSQL.

mod support;

use coffre::error::Class;
use serde_json::{Value, json};
use support::db::{pg_addr, pg_password, pg_rotation_job, psql, unique};
use support::kube_api::{KubeApi, container, workload};
use support::{Run, Workspace};

const ADMIN_ENV: &str = "COFFRE_TEST_ADMIN_PW";

/// Patches the API server received for workload `name`.
fn patches(api: &KubeApi, name: &str) -> usize {
    api.requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with(&format!("/{name}")))
        .count()
}

fn annotation(api: &KubeApi, resource: &str, name: &str) -> Value {
    api.object(&format!("apps/v1/{resource}"), "prod", name)
        .unwrap()["spec"]["template"]["metadata"]["annotations"]["coffre.io/rotation-id"]
        .clone()
}

struct Setup {
    api: KubeApi,
    ws: Workspace,
    name: String,
}

impl Setup {
    fn new(extra: &str) -> Self {
        let api = KubeApi::start();
        let base = unique("cons");
        let name = base.replace('_', "-");
        let users = [format!("{base}_a"), format!("{base}_b")];
        for user in &users {
            psql(
                "postgres",
                &format!("CREATE ROLE {user} LOGIN PASSWORD 'initial'"),
            );
        }
        let ws = Workspace::new();
        api.kubeconfig(&ws.path("kubeconfig"), "coffre");
        ws.write(
            "jobs/passwords.toml",
            &pg_rotation_job(
                &name,
                &users,
                &format!("env:{ADMIN_ENV}"),
                "k8s:prod/app-db",
                extra,
            ),
        );
        // Uses the Secret: from env, envFrom, a volume, a projected volume; one does not.
        let env = json!({"env": [{"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "app-db", "key": "password"}}}]});
        workload(
            &api,
            "deployments",
            "api",
            json!({"containers": [container(env)]}),
        );
        let env_from = json!({"envFrom": [{"secretRef": {"name": "app-db"}}]});
        workload(
            &api,
            "deployments",
            "reports",
            json!({"containers": [container(env_from)]}),
        );
        workload(
            &api,
            "statefulsets",
            "worker",
            json!({"containers": [container(json!({}))], "volumes": [{"name": "db", "secret": {"secretName": "app-db"}}]}),
        );
        workload(
            &api,
            "daemonsets",
            "agent",
            json!({"containers": [container(json!({}))], "volumes": [{"name": "db", "projected": {"sources": [{"secret": {"name": "app-db"}}]}}]}),
        );
        let other = json!({"envFrom": [{"secretRef": {"name": "other-secret"}}]});
        workload(
            &api,
            "deployments",
            "unrelated",
            json!({"containers": [container(other)]}),
        );
        Self { api, ws, name }
    }

    fn rotate(&self, env: &[(&str, &str)]) -> Run {
        let password = pg_password();
        let kubeconfig = self.ws.path("kubeconfig").display().to_string();
        let mut all = vec![
            (ADMIN_ENV, password.as_str()),
            ("KUBECONFIG", kubeconfig.as_str()),
        ];
        all.extend_from_slice(env);
        self.ws.run_env(&["rotate", &self.name, "--json"], &all)
    }

    /// `coffre rotate` started in the background, its stdout as given, stderr dropped.
    fn spawn_rotate(&self, stdout: std::process::Stdio) -> std::process::Child {
        std::process::Command::new(support::coffre_bin())
            .args(["--config", "coffre.toml", "rotate", &self.name])
            .current_dir(self.ws.dir.path())
            .env(ADMIN_ENV, pg_password())
            .env("KUBECONFIG", self.ws.path("kubeconfig"))
            .stdout(stdout)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Wait (up to 30 s) until workload `name` was patched: the restart step is under way.
    fn wait_for_patch(&self, name: &str) {
        let start = std::time::Instant::now();
        while patches(&self.api, name) == 0 && start.elapsed().as_secs() < 30 {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn journal(&self) -> Value {
        use base64::Engine;
        let secret = self
            .api
            .object(
                "v1/secrets",
                "prod",
                &format!("coffre-journal-{}", self.name),
            )
            .unwrap();
        let text = base64::engine::general_purpose::STANDARD
            .decode(secret["data"]["journal"].as_str().unwrap())
            .unwrap();
        serde_json::from_slice(&text).unwrap()
    }
}

#[test]
fn every_workload_using_the_secret_is_restarted_once_and_rolled_out() {
    let s = Setup::new("discover_consumers = true");
    let run = s.rotate(&[]);
    run.ok();
    let rotation_id = s.journal()["rotation_id"].clone();
    for (resource, name) in [
        ("deployments", "api"),
        ("deployments", "reports"),
        ("statefulsets", "worker"),
        ("daemonsets", "agent"),
    ] {
        assert_eq!(patches(&s.api, name), 1, "{name}");
        assert_eq!(annotation(&s.api, resource, name), rotation_id, "{name}");
    }
    assert_eq!(patches(&s.api, "unrelated"), 0);
    let events = support::json_lines(&run);
    let rolled = events
        .iter()
        .find(|e| e["to"] == "ROLLED_OUT")
        .expect("a ROLLED_OUT event");
    let detail = rolled["detail"].as_str().unwrap();
    for name in ["api", "reports", "worker", "agent"] {
        assert!(detail.contains(&format!("/prod/{name}")), "{detail}");
    }
}

#[test]
fn a_rollout_that_does_not_finish_fails_the_rotation_and_the_rerun_does_not_patch_again() {
    let s = Setup::new("consumers = [\"deployment/api\"]\nrollout_timeout = \"2s\"");
    s.api.stall("api", true);
    let run = s.rotate(&[]);
    run.expect_failure(Class::Store, "rollout did not finish");
    assert_eq!(patches(&s.api, "api"), 1);
    // Configured consumers only: the others are left alone.
    assert_eq!(patches(&s.api, "reports"), 0);
    let journal = s.journal();
    assert_eq!(journal["state"], "PUBLISHED");
    assert!(
        journal["failure"]["error"]
            .as_str()
            .unwrap()
            .contains("rollout")
    );
    // The rollout finishes; the next run sees the annotation set and only waits.
    s.api.stall("api", false);
    s.rotate(&[]).ok();
    assert_eq!(patches(&s.api, "api"), 1);
    assert_eq!(s.journal()["state"], "FINISHED");
}

#[test]
fn consumers_need_a_kubernetes_secret() {
    let ws = Workspace::new();
    let (host, port) = pg_addr();
    ws.write(
        "jobs/passwords.toml",
        &format!(
            "kind = \"rotation\"\n[[target]]\nname = \"x\"\nkind = \"postgres\"\nhost = \"{host}\"\nport = {port}\nadmin_user = \"postgres\"\nuser = \"x\"\npublish = \"vault:secret/x\"\nconsumers = [\"deployment/api\"]\n"
        ),
    );
    let run = ws.run(&["config", "check"]);
    run.expect_failure(Class::Config, "publish to k8s:");
    ws.write(
        "jobs/passwords.toml",
        &std::fs::read_to_string(ws.path("jobs/passwords.toml"))
            .unwrap()
            .replace("vault:secret/x", "k8s:prod/x")
            .replace("deployment/api", "cronjob/api"),
    );
    let run = ws.run(&["config", "check"]);
    run.expect_failure(Class::Config, "deployment/NAME");
}

/// SIGTERM while coffre waits for a rollout: it stops waiting at once, releases the journal
/// (kept at PUBLISHED) and exits 143; the next run waits again without a second patch.
#[test]
fn sigterm_during_a_rollout_wait_stops_at_once_and_releases_the_journal() {
    use std::io::{BufRead, BufReader};
    let s = Setup::new("consumers = [\"deployment/api\"]\nrollout_timeout = \"10m\"");
    s.api.stall("api", true);
    let mut child = s.spawn_rotate(std::process::Stdio::piped());
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines().map_while(Result::ok) {
        if line.contains("\"to\":\"PUBLISHED\"") {
            break;
        }
    }
    // The next step (the restart and the wait) is under way once the patch arrives.
    s.wait_for_patch("api");
    std::thread::sleep(std::time::Duration::from_millis(700));
    let sent = std::time::Instant::now();
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    assert!(sent.elapsed().as_secs() < 5, "it kept waiting");
    let journal = s.journal();
    assert_eq!(journal["state"], "PUBLISHED");
    assert!(journal["holder"].is_null(), "{journal}");
    s.api.stall("api", false);
    s.rotate(&[]).ok();
    assert_eq!(patches(&s.api, "api"), 1);
    assert_eq!(s.journal()["state"], "FINISHED");
}

/// A rollout slower than the journal's 2-minute hold: the hold is renewed while coffre waits
/// (every 40 s), so no other run can take the rotation over meanwhile.
#[test]
fn a_long_rollout_wait_keeps_renewing_the_hold() {
    let s = Setup::new("consumers = [\"deployment/api\"]\nrollout_timeout = \"10m\"");
    s.api.stall("api", true);
    let mut child = s.spawn_rotate(std::process::Stdio::null());
    s.wait_for_patch("api");
    let held = |j: &Value| {
        chrono::DateTime::parse_from_rfc3339(j["held_until"].as_str().unwrap()).unwrap()
    };
    let first = s.journal();
    assert_eq!(first["state"], "PUBLISHED");
    std::thread::sleep(std::time::Duration::from_secs(42));
    let later = s.journal();
    assert_eq!(later["state"], "PUBLISHED");
    assert!(
        held(&later) > held(&first) + chrono::Duration::seconds(30),
        "the hold was not renewed: {} then {}",
        first["held_until"],
        later["held_until"]
    );
    s.api.stall("api", false);
    assert!(child.wait().unwrap().success());
    assert_eq!(s.journal()["state"], "FINISHED");
    assert_eq!(patches(&s.api, "api"), 1);
}

/// Two targets of one run used by the same workload: it is restarted once, after both are
/// published; a rollout that does not finish fails both at ROLLED_OUT with the old credentials
/// kept, and the next run finishes them.
#[test]
fn a_run_of_several_targets_restarts_a_shared_workload_once() {
    let s = Setup::new("consumers = [\"deployment/api\"]\nrollout_timeout = \"3s\"");
    s.ws.write(
        "jobs/keys.toml",
        "kind = \"rotation\"\n[[target]]\nname = \"api-key\"\nkind = \"api_key\"\npublish = \"k8s:prod/api-key\"\nconsumers = [\"deployment/api\"]\nrollout_timeout = \"3s\"\n",
    );
    let run_all = || {
        let kubeconfig = s.ws.path("kubeconfig").display().to_string();
        let password = pg_password();
        s.ws.run_env(
            &["rotate", "--all", "--json"],
            &[
                (ADMIN_ENV, password.as_str()),
                ("KUBECONFIG", kubeconfig.as_str()),
            ],
        )
    };
    let run = run_all();
    run.ok();
    assert_eq!(patches(&s.api, "api"), 1);
    let events = support::json_lines(&run);
    let rolled: Vec<&Value> = events.iter().filter(|e| e["to"] == "ROLLED_OUT").collect();
    assert_eq!(rolled.len(), 2);
    for e in &rolled {
        assert!(
            e["detail"]
                .as_str()
                .unwrap()
                .contains("restarted once for this run"),
            "{e}"
        );
    }
    // Both were published before the one restart: the restart came after the last PUBLISHED.
    let last_published = events.iter().rposition(|e| e["to"] == "PUBLISHED").unwrap();
    let first_rolled = events.iter().position(|e| e["to"] == "ROLLED_OUT").unwrap();
    assert!(last_published < first_rolled);

    s.api.stall("api", true);
    let stalled = run_all();
    stalled.expect_class(Class::Store);
    assert_eq!(
        patches(&s.api, "api"),
        2,
        "one more patch for the second run"
    );
    assert_eq!(s.journal()["state"], "PUBLISHED");
    assert!(
        s.journal()["failure"]["error"]
            .as_str()
            .unwrap()
            .contains("rollout")
    );
    s.api.stall("api", false);
    run_all().ok();
    assert_eq!(s.journal()["state"], "FINISHED");
    assert_eq!(patches(&s.api, "api"), 3);
}
