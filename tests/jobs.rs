//! Jobs as production runs them: `coffre job run` (what a CronJob calls), one run of a job at a
//! time through its lock, the record of each run, and `coffre run`, the daemon that fires
//! scheduled jobs, catches up once after downtime, and stops cleanly on SIGTERM.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use coffre::error::Class;
use support::kube_api::KubeApi;
use support::s3::{S3_ENV, s3_store, workspace_with_store};
use support::{Workspace, coffre_bin, json_lines};

fn spawn(ws: &Workspace, args: &[&str]) -> Child {
    spawn_env(ws, args, &[])
}

fn spawn_env(ws: &Workspace, args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(coffre_bin())
        .args(["--config", "coffre.toml"])
        .args(args)
        .current_dir(ws.dir.path())
        .envs(S3_ENV)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigterm(child: &Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
}

fn backups(ws: &Workspace) -> usize {
    let run = ws.run_env(&["list", "--json"], &S3_ENV);
    run.ok();
    json_lines(&run).len()
}

fn job_list(ws: &Workspace) -> Vec<serde_json::Value> {
    let run = ws.run_env(&["job", "list", "--json"], &S3_ENV);
    run.ok();
    json_lines(&run)
}

#[test]
fn job_run_records_its_result_and_job_list_shows_schedule_and_last_run() {
    let ws = Workspace::new();
    ws.write("input.bin", "ward 7 admissions");
    ws.write(
        "jobs/files.toml",
        "[schedule]\ncron = \"0 2 * * *\"\ntimezone = \"Europe/Paris\"\n\n[source]\nkind = \"file\"\npath = \"../input.bin\"\n",
    );
    ws.write(
        "jobs/nightly-prune.toml",
        "kind = \"prune\"\njobs = [\"files\"]\n",
    );
    let before = job_list(&ws);
    assert_eq!(before.len(), 2);
    let files = before.iter().find(|j| j["job"] == "files").unwrap();
    assert_eq!(files["kind"], "backup");
    assert_eq!(files["timezone"], "Europe/Paris");
    assert_eq!(files["next_runs"].as_array().unwrap().len(), 3);
    assert!(files["last_run"].is_null());

    let run = ws.run(&["job", "run", "files", "--json"]);
    run.ok();
    let lines = json_lines(&run);
    assert_eq!(lines[0]["type"], "backup");
    assert_eq!(lines.last().unwrap()["type"], "job_run");
    assert_eq!(lines.last().unwrap()["status"], "ok");
    ws.run(&["job", "run", "nightly-prune"]).ok();

    let after = job_list(&ws);
    for job in &after {
        assert_eq!(job["last_run"]["status"], "ok", "{job}");
    }
    // A failing run is recorded as failed, with its class, and fails the command.
    std::fs::remove_file(ws.path("input.bin")).unwrap();
    ws.run(&["job", "run", "files"]).expect_class(Class::Source);
    let files = job_list(&ws)
        .into_iter()
        .find(|j| j["job"] == "files")
        .unwrap();
    assert_eq!(files["last_run"]["status"], "failed");
    assert_eq!(files["last_run"]["class"], "source");
}

#[test]
fn job_kinds_and_their_references_are_checked() {
    let ws = Workspace::new();
    ws.write("jobs/rotate.toml", "kind = \"rotate\"\n");
    let run = ws.run(&["job", "list"]);
    run.expect_failure(Class::Config, "kind = \"rotate\"");
    ws.write("jobs/rotate.toml", "kind = \"drill\"\njobs = [\"nope\"]\n");
    let run = ws.run(&["job", "list"]);
    run.expect_failure(Class::Config, "'nope' is not a backup job");
    ws.write(
        "jobs/rotate.toml",
        "kind = \"prune\"\n[schedule]\ncron = \"every night\"\n",
    );
    let run = ws.run(&["job", "list"]);
    run.expect_failure(Class::Config, "schedule.cron");
    // A backup command refuses an operation's name.
    ws.write("jobs/rotate.toml", "kind = \"prune\"\n");
    let run = ws.run(&["backup", "rotate"]);
    run.expect_failure(Class::Config, "is a prune job, not a backup job");
}

/// Two `job run` of one slow job at once: exactly one runs, the other exits 0 saying who
/// holds the lock.
fn only_one_of_two_runs_at_once(ws: Workspace) {
    only_one_of_two_runs_at_once_with(&ws, &[]);
}

fn only_one_of_two_runs_at_once_with(ws: &Workspace, env: &[(&str, &str)]) {
    let env: Vec<(&str, &str)> = S3_ENV.iter().chain(env).copied().collect();
    ws.shell_job("slow", "head -c 1000 /dev/zero; sleep 3");
    let first = spawn_env(ws, &["job", "run", "slow"], &env);
    std::thread::sleep(Duration::from_millis(1500));
    let second = ws.run_env(&["job", "run", "slow"], &env);
    second.ok();
    assert!(
        second
            .stdout_text()
            .contains("is running elsewhere: held by"),
        "{}",
        second.stdout_text()
    );
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(backups(ws), 1);
    // The lock was released: the next run runs.
    ws.run_env(&["job", "run", "slow"], &env).ok();
    assert_eq!(backups(ws), 2);
}

#[test]
fn two_runs_of_one_job_at_once_on_the_local_store_run_once() {
    only_one_of_two_runs_at_once(Workspace::new());
}

#[test]
fn two_runs_of_one_job_at_once_on_s3_run_once() {
    let prefix = support::db::unique("jobs");
    only_one_of_two_runs_at_once(workspace_with_store(&s3_store(&prefix)));
}

const LEASES: &str = "coordination.k8s.io/v1/leases";

/// A workspace whose job locks are Leases on the test API server, in namespace "coffre".
fn workspace_with_leases(api: &KubeApi) -> Workspace {
    let ws = workspace_with("[lock]\nkind = \"kubernetes\"");
    api.kubeconfig(&ws.path("kubeconfig"), "coffre");
    ws
}

fn kubeconfig_env(ws: &Workspace) -> [(&'static str, String); 1] {
    [("KUBECONFIG", ws.path("kubeconfig").display().to_string())]
}

#[test]
fn two_runs_of_one_job_at_once_with_a_kubernetes_lease_run_once() {
    let api = KubeApi::start();
    let ws = workspace_with_leases(&api);
    let [(name, value)] = kubeconfig_env(&ws);
    only_one_of_two_runs_at_once_with(&ws, &[(name, &value)]);
    // The lock was the Lease, released (no holder) after the last run, and taken by three
    // runs in turn; the store holds no lock object.
    let lease = api
        .object(LEASES, "coffre", "coffre-slow")
        .expect("a Lease");
    assert_eq!(
        lease["spec"]["holderIdentity"],
        serde_json::Value::Null,
        "{lease}"
    );
    assert_eq!(lease["spec"]["leaseDurationSeconds"], 600, "{lease}");
    assert_eq!(lease["spec"]["leaseTransitions"], 1, "{lease}");
    assert!(!ws.path("store/backups/_locks").exists());
    let verbs: Vec<String> = api.requests().iter().map(|r| r.method.clone()).collect();
    assert_eq!(
        verbs.iter().filter(|v| *v == "POST").count(),
        1,
        "{verbs:?}"
    );
}

#[test]
fn a_lease_held_elsewhere_is_respected_an_expired_one_taken_over_a_forbidden_one_refused() {
    let api = KubeApi::start();
    let ws = workspace_with_leases(&api);
    ws.shell_job("files", "echo data");
    let [(name, value)] = kubeconfig_env(&ws);
    let env = [(name, value.as_str())];
    let lease = |holder: &str, renewed: &str| {
        serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "coffre-files"},
            "spec": {
                "holderIdentity": holder,
                "acquireTime": renewed,
                "renewTime": renewed,
                "leaseDurationSeconds": 600,
                "leaseTransitions": 4,
            },
        })
    };
    // Held, and renewed just now: this run leaves it alone.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    api.put(LEASES, "coffre", lease("busy-pod/7/cafe0001", &now));
    let run = ws.run_env(&["job", "run", "files"], &env);
    run.ok();
    assert!(
        run.stdout_text().contains("held by busy-pod/7/cafe0001"),
        "{}",
        run.stdout_text()
    );
    assert_eq!(backups(&ws), 0);
    // Its holder died long ago: taken over.
    api.put(
        LEASES,
        "coffre",
        lease("lost-pod/1/deadbeef", "2026-01-01T00:00:00.000000Z"),
    );
    let run = ws.run_env(&["job", "run", "files"], &env);
    run.ok();
    assert!(
        run.stderr.contains("lost-pod/1/deadbeef") && run.stderr.contains("expired"),
        "{}",
        run.stderr
    );
    assert_eq!(backups(&ws), 1);
    let after = api.object(LEASES, "coffre", "coffre-files").unwrap();
    assert_eq!(after["spec"]["leaseTransitions"], 5, "{after}");
    assert_eq!(
        after["spec"]["holderIdentity"],
        serde_json::Value::Null,
        "{after}"
    );
    // A Role without update on Leases: an auth error naming the Role, and no backup.
    api.forbid("update", "leases");
    let run = ws.run_env(&["job", "run", "files"], &env);
    run.expect_class(Class::Auth);
    assert!(
        run.stderr.contains("forbidden") && run.stderr.contains("Role"),
        "{}",
        run.stderr
    );
    assert_eq!(backups(&ws), 1);
    // config check reaches the API too, and says where locks live.
    let check = ws.run_env(&["config", "check"], &env);
    check.ok();
    assert!(
        check
            .stdout_text()
            .contains("locks: Kubernetes Leases in namespace coffre"),
        "{}",
        check.stdout_text()
    );
}

#[test]
fn a_job_name_that_is_no_lease_name_is_a_config_error() {
    let api = KubeApi::start();
    let ws = workspace_with_leases(&api);
    ws.shell_job("files_daily", "echo data");
    let [(name, value)] = kubeconfig_env(&ws);
    let run = ws.run_env(&["job", "run", "files_daily"], &[(name, value.as_str())]);
    run.expect_failure(Class::Config, "cannot name a Kubernetes Lease");
}

#[test]
fn an_expired_lock_is_taken_over() {
    let ws = Workspace::new();
    ws.shell_job("files", "echo data");
    ws.write(
        "store/backups/_locks/files.json",
        r#"{"holder":"lost-pod/1/deadbeef","acquired_at":"2026-01-01T00:00:00Z","expires_at":"2026-01-01T00:10:00Z"}"#,
    );
    let run = ws.run(&["job", "run", "files"]);
    run.ok();
    assert!(
        run.stderr.contains("lost-pod/1/deadbeef") && run.stderr.contains("expired"),
        "{}",
        run.stderr
    );
    assert_eq!(backups(&ws), 1);
    assert!(!ws.path("store/backups/_locks/files.json").exists());
}

#[test]
fn the_daemon_fires_scheduled_jobs_and_stops_on_sigterm_with_143() {
    let ws = Workspace::new();
    ws.write(
        "jobs/often.toml",
        "[schedule]\ncron = \"*/2 * * * * *\"\n\n[source]\nkind = \"command\"\ncommand = [\"echo\", \"data\"]\n",
    );
    ws.shell_job("unscheduled", "echo never");
    let daemon = spawn(&ws, &["run"]);
    wait_for("two scheduled runs", 20, || backups(&ws) >= 2);
    sigterm(&daemon);
    let out = daemon.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("job 'often' (backup) ok"), "{text}");
    assert!(!text.contains("unscheduled"), "{text}");
}

#[test]
fn a_daemon_down_over_several_runs_catches_up_once() {
    let ws = Workspace::new();
    ws.write(
        "jobs/hourly.toml",
        "[schedule]\ncron = \"0 * * * *\"\ncatch_up = true\n\n[source]\nkind = \"command\"\ncommand = [\"echo\", \"data\"]\n",
    );
    // The last run was three hours ago: three runs were missed.
    let three_hours_ago = chrono::Utc::now() - chrono::Duration::hours(3);
    ws.write(
        "store/backups/_runs/hourly.json",
        &serde_json::json!({
            "task": "hourly", "kind": "backup", "holder": "old-pod/1/x",
            "started_at": three_hours_ago, "finished_at": three_hours_ago, "status": "ok",
            "class": null, "error": null, "backups": 1, "plaintext_bytes": 5, "stored_bytes": 100
        })
        .to_string(),
    );
    let daemon = spawn(&ws, &["run"]);
    wait_for("the catch-up run", 20, || backups(&ws) >= 1);
    // Long enough for a second catch-up, which must not come.
    std::thread::sleep(Duration::from_secs(2));
    sigterm(&daemon);
    daemon.wait_with_output().unwrap();
    assert_eq!(backups(&ws), 1);
}

#[test]
fn sigterm_to_the_daemon_during_a_backup_aborts_it_and_the_next_start_runs_normally() {
    let ws = Workspace::new();
    ws.write(
        "jobs/slow.toml",
        "[schedule]\ncron = \"* * * * * *\"\n\n[source]\nkind = \"command\"\ncommand = [\"sh\", \"-c\", \"head -c 12000000 /dev/urandom; sleep 60\"]\n",
    );
    let daemon = spawn(&ws, &["run"]);
    // The upload has started when a staging file exists.
    wait_for("the upload", 30, || {
        ws.store_files().iter().any(|f| f.contains('#'))
    });
    let signalled = Instant::now();
    sigterm(&daemon);
    let out = daemon.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(143),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(signalled.elapsed() < Duration::from_secs(15));
    assert_eq!(backups(&ws), 0, "no manifest for the interrupted backup");
    let left: Vec<String> = ws
        .store_files()
        .into_iter()
        .filter(|f| !f.starts_with("backups/_runs/") && !f.starts_with("backups/_audit/"))
        .collect();
    assert!(left.is_empty(), "the upload was not aborted: {left:?}");
    // The trail says the backup failed, and that the run did.
    let trail = ws.run(&["audit", "list", "--kind", "backup,job_run", "--json"]);
    let events: Vec<_> = json_lines(&trail)
        .iter()
        .map(|e| (e["event"].clone(), e["outcome"].clone()))
        .collect();
    assert_eq!(
        events,
        [
            ("backup".into(), "failed".into()),
            ("job_run".into(), "failed".into())
        ]
    );
    let record = std::fs::read_to_string(ws.path("store/backups/_runs/slow.json")).unwrap();
    assert!(record.contains("\"failed\""), "{record}");
    // The next start runs normally.
    ws.write(
        "jobs/slow.toml",
        "[source]\nkind = \"command\"\ncommand = [\"echo\", \"data\"]\n",
    );
    ws.run(&["job", "run", "slow"]).ok();
    assert_eq!(backups(&ws), 1);
}

/// A config whose store is local, with extra top-level sections.
fn workspace_with(sections: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write(
        "coffre.toml",
        &format!(
            "jobs = [\"jobs/*.toml\"]\n\n[store]\nkind = \"local\"\npath = \"store\"\nprefix = \"backups\"\n\n[encryption]\nkeys = [{{ key = \"file:backup.key\" }}]\n\n{sections}\n"
        ),
    );
    ws
}

fn http_get(url: &str) -> String {
    let out = Command::new("curl").args(["-sf", url]).output().unwrap();
    assert!(out.status.success(), "GET {url}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_job_run_pushes_its_metrics_and_a_failure_reaches_the_webhook_once_without_secrets() {
    let pushgateway = std::env::var("COFFRE_TEST_PUSHGATEWAY").expect("scripts/test starts one");
    let receiver = support::http::Receiver::start();
    let ws = workspace_with(&format!(
        "[metrics]\npushgateway = \"{pushgateway}\"\n\n[notify]\nwebhook = \"env:TEST_WEBHOOK\"\n"
    ));
    let job = support::db::unique("metrics").replace('_', "-");
    ws.write("input.bin", "ward 7 admissions");
    ws.write(
        &format!("jobs/{job}.toml"),
        "heartbeat = \"env:TEST_HEARTBEAT\"\n\n[source]\nkind = \"file\"\npath = \"../input.bin\"\n",
    );
    let env = [
        (
            "TEST_WEBHOOK",
            format!("{}/hooks/secret-token-123", receiver.url),
        ),
        (
            "TEST_HEARTBEAT",
            format!("{}/ping/hc-uuid-456", receiver.url),
        ),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ws.run_env(&["job", "run", &job], &env).ok();
    let metrics = http_get(&format!("{pushgateway}/metrics"));
    let line = |name: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && l.contains(&format!("coffre_job=\"{job}\"")))
            .unwrap_or_else(|| panic!("{name} for {job} is not in the Pushgateway:\n{metrics}"))
            .to_string()
    };
    let success: f64 = line("coffre_job_last_success_timestamp_seconds")
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!((chrono::Utc::now().timestamp() as f64 - success).abs() < 120.0);
    assert!(line("coffre_job_last_status").ends_with(" 1"));
    assert!(line("coffre_backup_last_plaintext_bytes").ends_with(" 17"));

    // A failed run: the webhook hears of it once, the success time stays, the class counts.
    std::fs::remove_file(ws.path("input.bin")).unwrap();
    ws.run_env(&["job", "run", &job], &env)
        .expect_class(Class::Source);
    let metrics = http_get(&format!("{pushgateway}/metrics"));
    assert!(
        metrics.contains(&format!(
            "coffre_job_failures_total{{class=\"source\",coffre_job=\"{job}\""
        )),
        "{metrics}"
    );
    let after: f64 = metrics
        .lines()
        .find(|l| l.starts_with("coffre_job_last_success_timestamp_seconds") && l.contains(&job))
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(after, success);

    let received = receiver.received();
    let hooks: Vec<_> = received
        .iter()
        .filter(|r| r.path.starts_with("/hooks/"))
        .collect();
    assert_eq!(hooks.len(), 1, "{received:?}");
    let body: serde_json::Value = serde_json::from_str(&hooks[0].body).unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains(&format!("job '{job}' (backup) failed"))
    );
    assert_eq!(body["coffre"]["class"], "source");
    let key = std::fs::read_to_string(ws.path("backup.key")).unwrap();
    for secret in [key.trim(), "secret-token-123", "hc-uuid-456"] {
        assert!(
            !hooks[0].body.contains(secret),
            "{secret} in {}",
            hooks[0].body
        );
    }
    let pings: Vec<&str> = received
        .iter()
        .filter(|r| r.path.starts_with("/ping/"))
        .map(|r| r.path.as_str())
        .collect();
    assert_eq!(
        pings,
        [
            "/ping/hc-uuid-456/start",
            "/ping/hc-uuid-456",
            "/ping/hc-uuid-456/start",
            "/ping/hc-uuid-456/fail"
        ]
    );
}

#[test]
fn the_daemon_serves_its_metrics() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ws = workspace_with(&format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"));
    ws.write(
        "jobs/often.toml",
        "[schedule]\ncron = \"*/2 * * * * *\"\n\n[source]\nkind = \"command\"\ncommand = [\"echo\", \"data\"]\n",
    );
    let daemon = spawn(&ws, &["run"]);
    let url = format!("http://127.0.0.1:{port}/metrics");
    wait_for("a run in the served metrics", 20, || {
        Command::new("curl")
            .args(["-sf", &url])
            .output()
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .contains("coffre_job_last_status{coffre_job=\"often\",kind=\"backup\"} 1")
            })
    });
    sigterm(&daemon);
    assert_eq!(daemon.wait_with_output().unwrap().status.code(), Some(143));
}
