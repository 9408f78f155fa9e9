//! deploy/ as a cluster would take it: the kustomize base and each overlay build (with the
//! kubectl that scripts/test installs), every object validates against the Kubernetes schemas
//! (kubernetes-validate --strict), a security scan (checkov) of the manifests and the
//! Dockerfile fails no check (each skip is justified in place), and the manifests agree with
//! the example jobs: one CronJob per job with the job's schedule and time zone, a Lease per job
//! in the Role, the job files shipped as they are in jobs/.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A tool from the deploy-tools environment scripts/test installs.
fn tool(name: &str) -> Command {
    let bin = std::env::var("COFFRE_TEST_DEPLOY_TOOLS")
        .expect("scripts/test installs the deploy tools (tests/deploy-requirements.txt)");
    let mut cmd = Command::new(Path::new(&bin).join(name));
    // checkov: offline, no guideline download.
    cmd.env("BC_SKIP_MAPPING", "TRUE");
    cmd
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `kubectl kustomize DIR`, as YAML and as a list of objects.
fn kustomize(dir: &Path) -> (String, Vec<Value>) {
    let yaml = run_ok(tool("kubectl").args(["kustomize"]).arg(dir));
    let mut to_json = tool("python");
    to_json.args([
        "-c",
        "import json, sys, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
    ]);
    let json = pipe(&mut to_json, &yaml);
    (yaml, serde_json::from_str(&json).unwrap())
}

fn pipe(cmd: &mut Command, input: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{cmd:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

fn named<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// deploy/ copied into a temporary directory, with placeholder files for the key-secret
/// overlay (which generates Secrets from files that never belong in version control).
fn deploy_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        Command::new("cp")
            .arg("-r")
            .arg(root().join("deploy"))
            .arg(dir.path()),
    );
    let overlay = dir.path().join("deploy/overlays/key-secret");
    for (file, text) in [
        ("backup.key", "placeholder"),
        ("app-db-password", "placeholder"),
        ("shop-db-password", "placeholder"),
        ("ca.crt", "placeholder"),
        ("s3-access-key-id", "placeholder"),
        ("s3-secret-access-key", "placeholder"),
    ] {
        std::fs::write(overlay.join(file), text).unwrap();
    }
    dir
}

fn overlays(deploy: &Path) -> Vec<PathBuf> {
    vec![
        deploy.join("base"),
        deploy.join("overlays/s3-irsa"),
        deploy.join("overlays/key-secret"),
        deploy.join("overlays/daemon"),
    ]
}

/// Every pod template: a CronJob's, a Deployment's or a Job's, with the object's name.
fn pods(objects: &[Value]) -> Vec<(String, &Value)> {
    let mut pods = Vec::new();
    for object in objects {
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match object["kind"].as_str() {
            Some("CronJob") => pods.push((
                name,
                &object["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            )),
            Some("Deployment" | "Job") => pods.push((name, &object["spec"]["template"]["spec"])),
            _ => {}
        }
    }
    pods
}

/// Validate manifests (written to `file`) against the oldest Kubernetes coffre supports (its
/// API client's) and the newest.
fn validate(yaml: &str, file: &Path) {
    std::fs::write(file, yaml).unwrap();
    for version in ["1.33.0", "1.37.0"] {
        run_ok(
            tool("kubernetes-validate")
                .args(["--strict", "--quiet", "--kubernetes-version", version])
                .arg(file),
        );
    }
}

#[test]
fn the_base_and_every_overlay_build_and_validate_against_the_kubernetes_schemas() {
    let copy = deploy_copy();
    let deploy = copy.path().join("deploy");
    for dir in overlays(&deploy) {
        let (yaml, objects) = kustomize(&dir);
        validate(&yaml, &copy.path().join("out.yaml"));
        // What every variant holds: a namespace under the restricted Pod Security Standard, a
        // CronJob per job, the least-privilege identity, the network policy, the config.
        let namespace = named(&objects, "Namespace", "coffre");
        assert_eq!(
            namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "restricted",
            "{}",
            dir.display()
        );
        let daemon = dir.ends_with("daemon");
        let (cronjobs, deployments) = if daemon { (0, 1) } else { (8, 0) };
        assert_eq!(
            of_kind(&objects, "CronJob").len(),
            cronjobs,
            "{}",
            dir.display()
        );
        assert_eq!(
            of_kind(&objects, "Deployment").len(),
            deployments,
            "{}",
            dir.display()
        );
        // One image everywhere, with its tag (kustomize sets it per kustomization).
        let images: BTreeSet<&str> = pods(&objects)
            .iter()
            .flat_map(|(_, pod)| pod["containers"].as_array().unwrap())
            .map(|c| c["image"].as_str().unwrap())
            .collect();
        assert_eq!(images.len(), 1, "{}: {images:?}", dir.display());
        assert!(
            images.iter().all(|i| i.contains(':')),
            "{}: {images:?}",
            dir.display()
        );
        for kind in ["ServiceAccount", "Role", "RoleBinding", "NetworkPolicy"] {
            named(&objects, kind, "coffre");
        }
        assert_eq!(of_kind(&objects, "ConfigMap").len(), 3, "{}", dir.display());
        for object in &objects {
            if object["kind"] != "Namespace" {
                assert_eq!(object["metadata"]["namespace"], "coffre", "{object}");
            }
        }
    }
    // The overlays do what they say.
    let (_, irsa) = kustomize(&deploy.join("overlays/s3-irsa"));
    let account = named(&irsa, "ServiceAccount", "coffre");
    assert!(
        account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
            .as_str()
            .is_some_and(|arn| arn.starts_with("arn:aws:iam::")),
        "{account}"
    );
    let (_, secrets) = kustomize(&deploy.join("overlays/key-secret"));
    let names: BTreeSet<&str> = of_kind(&secrets, "Secret")
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    // Generated Secrets carry a hash suffix, which kustomize also writes into the CronJobs.
    for prefix in ["coffre-keys-", "coffre-db-", "coffre-s3-"] {
        assert!(names.iter().any(|n| n.starts_with(prefix)), "{names:?}");
    }
    for cronjob in of_kind(&secrets, "CronJob") {
        let pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        // The report decrypts nothing: only the others mount the keys.
        let keys = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "keys");
        assert_eq!(
            keys.is_none(),
            cronjob["metadata"]["name"] == "coffre-monthly-report",
            "{cronjob}"
        );
        if let Some(keys) = keys {
            let secret = keys["secret"]["secretName"].as_str().unwrap();
            assert!(names.contains(secret), "{secret} is not generated");
        }
        // The S3 keys are files where the overlay's config reads them.
        let s3 = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == "s3")
            .expect("an s3 volume");
        assert!(
            s3["secret"]["secretName"]
                .as_str()
                .is_some_and(|n| n.starts_with("coffre-s3-")),
            "{cronjob}"
        );
        let mounts = pod["containers"][0]["volumeMounts"].as_array().unwrap();
        assert!(
            mounts
                .iter()
                .any(|m| m["name"] == "s3" && m["mountPath"] == "/var/run/secrets/coffre/s3"),
            "{cronjob}"
        );
    }
    // Generated ConfigMaps carry a hash suffix too.
    let config = of_kind(&secrets, "ConfigMap")
        .into_iter()
        .find(|c| c["data"]["coffre.toml"].is_string())
        .expect("the coffre-config ConfigMap");
    let config = config["data"]["coffre.toml"].as_str().unwrap();
    for line in [
        "access_key_id = \"file:/var/run/secrets/coffre/s3/access-key-id\"",
        "secret_access_key = \"file:/var/run/secrets/coffre/s3/secret-access-key\"",
    ] {
        assert!(config.contains(line), "{config}");
    }
}

#[test]
fn every_pod_runs_under_the_restricted_pod_security_standard() {
    let (_, base) = kustomize(&root().join("deploy/base"));
    for cronjob in of_kind(&base, "CronJob") {
        let name = &cronjob["metadata"]["name"];
        let spec = &cronjob["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Forbid", "{name}");
        for field in ["startingDeadlineSeconds", "successfulJobsHistoryLimit"] {
            assert!(spec[field].as_u64().is_some(), "{name}: {field}");
        }
        assert!(spec["timeZone"].as_str().is_some(), "{name}");
        let job = &spec["jobTemplate"]["spec"];
        assert!(job["backoffLimit"].as_u64().is_some(), "{name}");
        assert!(job["activeDeadlineSeconds"].as_u64().is_some(), "{name}");
    }
    let (_, daemon) = kustomize(&root().join("deploy/overlays/daemon"));
    let deployment = named(&daemon, "Deployment", "coffre");
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");
    let policy = named(&daemon, "NetworkPolicy", "coffre");
    assert_eq!(
        policy["spec"]["ingress"][0]["ports"][0]["port"], 9464,
        "{policy}"
    );
    // The incident Job: the same pod as the CronJobs', validated with them.
    let copy = deploy_copy();
    let (yaml, incident) = kustomize(&copy.path().join("deploy/incident"));
    validate(&yaml, &copy.path().join("incident.yaml"));
    let job = named(&incident, "Job", "coffre-incident");
    assert_eq!(job["spec"]["backoffLimit"], 0);
    let mut all = pods(&base);
    all.extend(pods(&daemon));
    all.extend(pods(&incident));
    assert_eq!(all.len(), 10);
    for (name, pod) in all {
        assert_eq!(pod["serviceAccountName"], "coffre", "{name}");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(pod["securityContext"]["runAsUser"], 1000, "{name}");
        assert_eq!(
            pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1, "{name}");
        let container = &containers[0];
        let security = &container["securityContext"];
        assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(security["capabilities"]["drop"][0], "ALL", "{name}");
        for limit in ["cpu", "memory"] {
            assert!(
                container["resources"]["limits"][limit].is_string(),
                "{name}: {limit}"
            );
            assert!(
                container["resources"]["requests"][limit].is_string(),
                "{name}: {limit}"
            );
        }
        // Secrets only mounted read-only; the only writable place is /tmp.
        for mount in container["volumeMounts"].as_array().unwrap() {
            let writable = mount["readOnly"] != true;
            assert_eq!(writable, mount["mountPath"] == "/tmp", "{name}: {mount}");
        }
    }
}

/// The number in a checkov JSON report's summary (one report, or one per framework).
fn checkov_summary(report: &str) -> Vec<Value> {
    let value: Value = serde_json::from_str(report).unwrap();
    match value {
        Value::Array(reports) => reports.into_iter().map(|r| r["summary"].clone()).collect(),
        report => vec![report["summary"].clone()],
    }
}

fn checkov(file: &Path, framework: &str) -> Vec<Value> {
    let out = tool("checkov")
        .args(["--quiet", "--compact", "--skip-download", "-o", "json"])
        .args(["--framework", framework, "-f"])
        .arg(file)
        .output()
        .unwrap();
    let report = String::from_utf8(out.stdout).unwrap();
    checkov_summary(&report)
}

#[test]
fn checkov_fails_no_check_of_the_manifests_or_the_dockerfile() {
    let copy = deploy_copy();
    let deploy = copy.path().join("deploy");
    for dir in overlays(&deploy) {
        let (yaml, _) = kustomize(&dir);
        let file = copy.path().join("manifests.yaml");
        std::fs::write(&file, yaml).unwrap();
        for summary in checkov(&file, "kubernetes") {
            assert_eq!(summary["failed"], 0, "{}: {summary}", dir.display());
            assert_eq!(summary["parsing_errors"], 0, "{}: {summary}", dir.display());
            assert!(summary["passed"].as_u64().unwrap() > 100, "{summary}");
        }
    }
    // The incident Job runs beside the base, whose NetworkPolicy covers its pod too.
    let (yaml, _) = kustomize(&deploy.join("incident"));
    let (base, _) = kustomize(&deploy.join("base"));
    let file = copy.path().join("incident.yaml");
    std::fs::write(&file, format!("{base}\n---\n{yaml}")).unwrap();
    for summary in checkov(&file, "kubernetes") {
        assert_eq!(summary["failed"], 0, "deploy/incident: {summary}");
        assert_eq!(summary["parsing_errors"], 0, "deploy/incident: {summary}");
    }
    for summary in checkov(&root().join("deploy/Dockerfile"), "dockerfile") {
        assert_eq!(summary["failed"], 0, "Dockerfile: {summary}");
        assert!(summary["passed"].as_u64().unwrap() > 5, "{summary}");
    }
    // Each skip says why, in place.
    let (_, objects) = kustomize(&root().join("deploy/base"));
    for object in &objects {
        let annotations = object["metadata"]["annotations"].as_object();
        for (key, value) in annotations.into_iter().flatten() {
            if key.starts_with("checkov.io/skip") {
                let (check, why) = value.as_str().unwrap().split_once('=').unwrap_or_default();
                assert!(
                    check.starts_with("CKV_") && why.len() > 20,
                    "{key}: {value}"
                );
            }
        }
    }
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    for skip in dockerfile.lines().filter(|l| l.contains("checkov:skip=")) {
        let why = skip.split_once(':').map(|x| x.1).unwrap_or_default();
        assert!(
            why.split_once(':')
                .is_some_and(|(_, w)| w.trim().len() > 20),
            "{skip}"
        );
    }
}

/// The container args of a CronJob name the job it runs: `... job run NAME`.
fn job_of(cronjob: &Value) -> String {
    let args = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"];
    let args: Vec<&str> = args
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = args
        .windows(2)
        .position(|w| w == ["job", "run"])
        .expect("job run NAME");
    args[at + 2].to_string()
}

/// The example rotation jobs, loaded.
fn rotation_config() -> coffre::config::Config {
    let ws = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(ws.path().join("jobs")).unwrap();
    for job in ["weekly-passwords", "monthly-api-keys", "tls-certificates"] {
        std::fs::copy(
            root().join(format!("jobs/{job}.toml")),
            ws.path().join(format!("jobs/{job}.toml")),
        )
        .unwrap();
    }
    std::fs::write(
        ws.path().join("coffre.toml"),
        "jobs = [\"jobs/*.toml\"]\n[store]\nkind = \"local\"\npath = \"store\"\n[encryption]\nkeys = []\n",
    )
    .unwrap();
    coffre::config::Config::load(&ws.path().join("coffre.toml")).unwrap()
}

/// deploy/rotation grants, in each namespace, exactly the Secrets the example rotation
/// targets publish, journal and keep an ACME account in, and exactly the workloads they
/// restart, to coffre's service account; it validates too.
#[test]
fn the_rotation_rbac_covers_the_example_targets_and_no_more() {
    let copy = deploy_copy();
    let dir = copy.path().join("deploy/rotation");
    let (yaml, objects) = kustomize(&dir);
    validate(&yaml, &copy.path().join("rotation.yaml"));
    let mut granted = BTreeSet::new();
    let mut restartable = BTreeSet::new();
    for role in of_kind(&objects, "Role") {
        let namespace = role["metadata"]["namespace"].as_str().unwrap();
        for rule in role["rules"].as_array().unwrap() {
            let names = rule["resourceNames"].as_array();
            if rule["apiGroups"] == serde_json::json!(["apps"]) {
                assert_eq!(
                    rule["resources"],
                    serde_json::json!(["deployments"]),
                    "{role}"
                );
                assert_eq!(rule["verbs"], serde_json::json!(["get", "patch"]), "{role}");
                for name in names.expect("named workloads only") {
                    restartable
                        .insert(format!("Deployment/{namespace}/{}", name.as_str().unwrap()));
                }
                continue;
            }
            assert_eq!(rule["resources"], serde_json::json!(["secrets"]), "{role}");
            match names {
                Some(names) => {
                    assert_eq!(
                        rule["verbs"],
                        serde_json::json!(["get", "update"]),
                        "{role}"
                    );
                    for name in names {
                        granted.insert(format!("{namespace}/{}", name.as_str().unwrap()));
                    }
                }
                None => assert_eq!(rule["verbs"], serde_json::json!(["create"]), "{role}"),
            }
        }
    }
    for binding in of_kind(&objects, "RoleBinding") {
        assert_eq!(
            binding["subjects"],
            serde_json::json!([{"kind": "ServiceAccount", "name": "coffre", "namespace": "coffre"}])
        );
    }
    let config = rotation_config();
    let mut needed = BTreeSet::new();
    let mut consumers = BTreeSet::new();
    for target in config.targets.values() {
        let mut locations = vec![target.publish.clone(), target.journal()];
        if let coffre::config::TargetKind::Certificate(c) = &target.kind
            && let coffre::config::CertificateIssuer::Acme(acme) = &c.issuer
        {
            locations.extend(acme.account.clone());
        }
        for location in locations {
            assert_eq!(location.backend, coffre::secretstore::Backend::Kubernetes);
            needed.insert(location.name.clone());
        }
        consumers.extend(target.consumers.iter().map(|w| w.to_string()));
    }
    assert_eq!(granted, needed);
    assert_eq!(restartable, consumers);
}

#[test]
fn the_manifests_agree_with_the_example_jobs() {
    // The job files shipped are those of jobs/ (all but the quick start's).
    let shipped = root().join("deploy/base/jobs");
    let mut shipped_names = BTreeSet::new();
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            std::fs::read_to_string(root().join("jobs").join(&name))
                .unwrap_or_else(|_| panic!("deploy/base/jobs/{name} is not in jobs/")),
            "deploy/base/jobs/{name} differs from jobs/{name}: copy it again"
        );
        shipped_names.insert(name);
    }
    for entry in std::fs::read_dir(root().join("jobs")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            name == "quickstart.toml" || shipped_names.contains(&name),
            "jobs/{name} is not shipped in deploy/base/jobs"
        );
    }

    // The config loads as the pods load it: with the variables of the coffre-env ConfigMap
    // that every CronJob takes its environment from, and every job.
    let (_, objects) = kustomize(&root().join("deploy/base"));
    let cronjobs = of_kind(&objects, "CronJob");
    let settings = of_kind(&objects, "ConfigMap")
        .into_iter()
        .find(|c| {
            c["metadata"]["name"]
                .as_str()
                .unwrap()
                .starts_with("coffre-env-")
        })
        .expect("the coffre-env ConfigMap");
    for cronjob in &cronjobs {
        let container =
            &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            container["envFrom"][0]["configMapRef"]["name"], settings["metadata"]["name"],
            "{cronjob}"
        );
    }
    let settings = settings["data"].as_object().unwrap().clone();
    // ${VAR} and ${VAR:-default} as the pod's environment resolves them.
    let resolve = |text: String| {
        let mut text = text;
        for (name, value) in &settings {
            let pattern = format!("${{{name}");
            while let Some(at) = text.find(&pattern) {
                let end = at + text[at..].find('}').unwrap();
                text.replace_range(at..=end, value.as_str().unwrap());
            }
        }
        text
    };
    let load = |config: &str| {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["config", "jobs"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let text = std::fs::read_to_string(root().join(config)).unwrap();
        std::fs::write(dir.path().join("config/coffre.toml"), resolve(text)).unwrap();
        for entry in std::fs::read_dir(&shipped).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            std::fs::write(
                dir.path().join("jobs").join(path.file_name().unwrap()),
                resolve(text),
            )
            .unwrap();
        }
        coffre::config::Config::load(&dir.path().join("config/coffre.toml"))
            .unwrap_or_else(|e| panic!("{config} does not load: {e}"))
    };
    let config = load("deploy/base/config/coffre.toml");
    let bucket = settings["COFFRE_BUCKET"].as_str().unwrap();
    assert!(
        format!("{:?}", config.store).contains(&format!("bucket: \"{bucket}\"")),
        "{:?}",
        config.store
    );
    // The key-secret overlay's config is the base's with S3 keys: nothing else may drift.
    let overlay = load("deploy/overlays/key-secret/coffre.toml");
    assert_eq!(overlay.tasks.len(), config.tasks.len());
    assert_eq!(
        format!("{:?}", overlay.encryption),
        format!("{:?}", config.encryption)
    );
    assert_eq!(
        format!("{:?}", overlay.metrics),
        format!("{:?}", config.metrics)
    );

    // One CronJob per job, running it on its schedule, in its time zone.
    let mut run_by_cronjobs = BTreeSet::new();
    for cronjob in &cronjobs {
        let job = job_of(cronjob);
        assert_eq!(cronjob["metadata"]["name"], format!("coffre-{job}"));
        let task = config
            .tasks
            .get(&job)
            .unwrap_or_else(|| panic!("a CronJob runs job '{job}', which no job file defines"));
        let schedule = task.schedule.as_ref().expect("a scheduled job");
        assert_eq!(cronjob["spec"]["schedule"], schedule.cron.as_str(), "{job}");
        assert_eq!(
            cronjob["spec"]["timeZone"],
            schedule.timezone.name(),
            "{job}"
        );
        run_by_cronjobs.insert(job);
    }
    let jobs: BTreeSet<String> = config.tasks.keys().cloned().collect();
    assert_eq!(
        run_by_cronjobs, jobs,
        "a job without a CronJob, or the reverse"
    );

    // The Role names exactly the Leases of these jobs and the Secrets in coffre's namespace
    // that the jobs read through the API (get only), and allows nothing else.
    let role = named(&objects, "Role", "coffre");
    let mut leases = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        if rule["resources"] == serde_json::json!(["secrets"]) {
            assert_eq!(rule["verbs"], serde_json::json!(["get"]), "{rule}");
            for name in rule["resourceNames"]
                .as_array()
                .expect("named Secrets only")
            {
                secrets.insert(name.as_str().unwrap().to_string());
            }
            continue;
        }
        assert_eq!(rule["resources"], serde_json::json!(["leases"]), "{rule}");
        let verbs: Vec<&str> = rule["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert!(
            verbs
                .iter()
                .all(|v| ["create", "get", "update"].contains(v)),
            "{rule}"
        );
        if let Some(names) = rule["resourceNames"].as_array() {
            leases.extend(names.iter().map(|n| n.as_str().unwrap().to_string()));
        } else {
            assert_eq!(verbs, ["create"], "only create may go unnamed: {rule}");
        }
    }
    let expected: BTreeSet<String> = jobs
        .iter()
        .map(|j| coffre::config::lease_name(j).unwrap())
        .collect();
    assert_eq!(leases, expected);
    // Admin passwords and issuer hook tokens.
    let mut references = Vec::new();
    for target in config.targets.values() {
        match &target.kind {
            coffre::config::TargetKind::Database(d) => references.extend(d.admin_password.clone()),
            coffre::config::TargetKind::ApiKey(a) => references.extend(
                [&a.register, &a.revoke]
                    .into_iter()
                    .flatten()
                    .filter_map(|h| h.bearer.clone()),
            ),
            _ => {}
        }
    }
    let read_through_the_api: BTreeSet<String> = references
        .iter()
        .filter_map(|r| r.location())
        .filter_map(|(location, _)| location.name.strip_prefix("coffre/").map(str::to_string))
        .collect();
    assert_eq!(secrets, read_through_the_api);
}

#[test]
fn every_pod_tells_the_audit_trail_who_it_is_and_cronjobs_say_they_are_scheduled() {
    let deploy = deploy_copy();
    let mut dirs = overlays(&deploy.path().join("deploy"));
    dirs.push(deploy.path().join("deploy/incident"));
    for dir in dirs {
        let (_, objects) = kustomize(&dir);
        for (name, pod) in pods(&objects) {
            let env = pod["containers"][0]["env"]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: no env"));
            let field = |var: &str| {
                env.iter()
                    .find(|e| e["name"] == var)
                    .unwrap_or_else(|| panic!("{name}: no {var}"))["valueFrom"]["fieldRef"]
                    ["fieldPath"]
                    .clone()
            };
            assert_eq!(field("COFFRE_POD_NAME"), "metadata.name", "{name}");
            assert_eq!(
                field("COFFRE_POD_NAMESPACE"),
                "metadata.namespace",
                "{name}"
            );
            assert_eq!(
                field("COFFRE_SERVICE_ACCOUNT"),
                "spec.serviceAccountName",
                "{name}"
            );
            let trigger = env.iter().find(|e| e["name"] == "COFFRE_TRIGGER");
            let cronjob = of_kind(&objects, "CronJob")
                .iter()
                .any(|c| c["metadata"]["name"] == name.as_str());
            assert_eq!(
                trigger.map(|t| t["value"].clone()),
                cronjob.then(|| "schedule".into()),
                "{name}: a CronJob's runs are scheduled; the daemon and the incident Job say so themselves"
            );
        }
    }
}

#[test]
fn the_alert_rules_name_only_metrics_coffre_exports() {
    let text = std::fs::read_to_string(root().join("deploy/monitoring/alerts.yaml")).unwrap();
    let mut to_json = tool("python");
    to_json.args([
        "-c",
        "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))",
    ]);
    let rules: Value = serde_json::from_str(&pipe(&mut to_json, &text)).unwrap();
    // The metrics of a drill run, as the Pushgateway or the daemon serves them.
    let t = |s: &str| s.parse().unwrap();
    let run = coffre::store::RunRecord {
        task: "daily-drill".into(),
        kind: "drill".into(),
        holder: "pod/1/x".into(),
        started_at: t("2026-11-24T05:00:00Z"),
        finished_at: t("2026-11-24T05:01:00Z"),
        status: "ok".into(),
        class: None,
        error: None,
        backups: 0,
        plaintext_bytes: 0,
        stored_bytes: 0,
        last_success_at: Some(t("2026-11-24T05:01:00Z")),
        drills: vec![coffre::store::DrillResult {
            job: "app-db".into(),
            database: Some("app".into()),
            passed: true,
            duration_seconds: Some(12.5),
            rows: Some(1000),
            backup_age_seconds: 10_800,
            last_passed_at: Some(t("2026-11-24T05:01:00Z")),
        }],
    };
    let metrics = coffre::metrics::Metrics::new();
    metrics.record(&run, true);
    let exported = metrics.encode();
    let mut alerts = BTreeSet::new();
    for rule in rules["groups"][0]["rules"].as_array().unwrap() {
        alerts.insert(rule["alert"].as_str().unwrap().to_string());
        let expr = rule["expr"].as_str().unwrap();
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("coffre_") {
                assert!(
                    exported.contains(&format!("\n{word}{{")),
                    "{} uses {word}, which coffre does not export:\n{exported}",
                    rule["alert"]
                );
            }
        }
    }
    for needed in [
        "CoffreBackupMissing",
        "CoffreDrillFailing",
        "CoffreDrillOverdue",
    ] {
        assert!(alerts.contains(needed), "{needed}");
    }
}
