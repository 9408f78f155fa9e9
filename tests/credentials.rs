//! API keys and certificates through the same rotation state machine as database passwords:
//! the internal CA and the certificates it signs (checked with openssl, an independent
//! verifier), certificates from pebble over a real HTTP-01 validation, API keys with issuer
//! hooks and a grace period, and what a scheduled run does when nothing is due.

mod support;

use coffre::error::Class;
use std::collections::BTreeMap;
use std::process::Command;
use support::http::Receiver;
use support::kube_api::KubeApi;
use support::{Run, Workspace};

/// A workspace whose jobs/creds.toml holds `targets`, talking to `api`.
fn workspace(api: &KubeApi, targets: &str) -> Workspace {
    let ws = Workspace::new();
    api.kubeconfig(&ws.path("kubeconfig"), "coffre");
    ws.write(
        "jobs/creds.toml",
        &format!("kind = \"rotation\"\n[schedule]\ncron = \"0 3 * * *\"\n\n{targets}"),
    );
    ws
}

fn run(ws: &Workspace, args: &[&str]) -> Run {
    let kubeconfig = ws.path("kubeconfig").display().to_string();
    ws.run_env(args, &[("KUBECONFIG", kubeconfig.as_str())])
}

/// Run openssl with `args` in `dir`; its output, or a panic with what it said.
fn openssl(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Check a published TLS secret with openssl: tls.crt verifies against ca.crt (with its own
/// intermediates), certifies tls.key's key, and names exactly `sans`.
fn check_tls(secret: &BTreeMap<String, String>, sans: &str) {
    let dir = tempfile::tempdir().unwrap();
    for (name, value) in secret {
        std::fs::write(dir.path().join(name), value).unwrap();
    }
    let verified = openssl(
        dir.path(),
        &[
            "verify",
            "-CAfile",
            "ca.crt",
            "-untrusted",
            "tls.crt",
            "tls.crt",
        ],
    );
    assert!(verified.contains("tls.crt: OK"), "{verified}");
    let cert_key = openssl(dir.path(), &["x509", "-in", "tls.crt", "-noout", "-pubkey"]);
    let key = openssl(dir.path(), &["pkey", "-in", "tls.key", "-pubout"]);
    assert_eq!(cert_key, key, "tls.crt does not certify tls.key");
    let text = openssl(
        dir.path(),
        &["x509", "-in", "tls.crt", "-noout", "-ext", "subjectAltName"],
    );
    assert!(text.contains(sans), "{text}");
}

fn assert_no_secret_in(runs: &[&Run], values: &[&str]) {
    for run in runs {
        for value in values {
            let needle = support::secret_needle(value);
            assert!(
                !run.stdout_text().contains(needle) && !run.stderr.contains(needle),
                "a secret value leaked into the output"
            );
        }
    }
}

const CA_TARGET: &str = "[[target]]\nname = \"coffre-ca\"\nkind = \"ca\"\npublish = \"k8s:coffre/coffre-ca\"\ncommon_name = \"coffre test CA\"\nvalidity = \"3650d\"\n";

#[test]
fn the_internal_ca_signs_certificates_that_verify_and_a_ca_rotation_keeps_both_cas() {
    let api = KubeApi::start();
    let web = "[[target]]\nname = \"web-tls\"\nkind = \"tls\"\npublish = \"k8s:prod/web-tls\"\nissuer = \"internal\"\nca = \"k8s:coffre/coffre-ca\"\ndns_names = [\"web.prod.svc\", \"web.example.org\"]\nip_addresses = [\"10.0.0.7\"]\nvalidity = \"30d\"\n";
    let ws = workspace(&api, &format!("{CA_TARGET}\n{web}"));
    let sans = "DNS:web.prod.svc, DNS:web.example.org, IP Address:10.0.0.7";

    // The leaf before its CA exists: a clear error, nothing written.
    let early = run(&ws, &["rotate", "web-tls"]);
    early.expect_class(Class::Config);
    assert!(
        early
            .stderr
            .contains("rotate its kind = \"ca\" target first"),
        "{}",
        early.stderr
    );
    assert!(api.secret("prod", "web-tls").is_none());

    let ca_run = run(&ws, &["rotate", "coffre-ca"]);
    ca_run.ok();
    let (ca, ca_type) = api.secret("coffre", "coffre-ca").unwrap();
    assert_eq!(ca_type, "kubernetes.io/tls");
    let first = run(&ws, &["rotate", "web-tls", "--json"]);
    first.ok();
    let (leaf, leaf_type) = api.secret("prod", "web-tls").unwrap();
    assert_eq!(leaf_type, "kubernetes.io/tls");
    check_tls(&leaf, sans);
    assert_eq!(leaf["ca.crt"], ca["tls.crt"]);

    // Every rotation makes a new key.
    let second = run(&ws, &["rotate", "web-tls"]);
    second.ok();
    let (renewed, _) = api.secret("prod", "web-tls").unwrap();
    check_tls(&renewed, sans);
    assert_ne!(renewed["tls.key"], leaf["tls.key"]);
    assert_ne!(renewed["tls.crt"], leaf["tls.crt"]);

    // A scheduled run finds nothing due: both were just issued.
    let scheduled = run(&ws, &["job", "run", "creds"]);
    scheduled.ok();
    assert_eq!(api.secret("prod", "web-tls").unwrap().0, renewed);
    assert_eq!(api.secret("coffre", "coffre-ca").unwrap().0, ca);

    // A new CA: ca.crt holds both, the old leaf still verifies against its own ca.crt, and
    // the next scheduled run reissues the leaf from the new CA, trusting both.
    run(&ws, &["rotate", "coffre-ca"]).ok();
    let (new_ca, _) = api.secret("coffre", "coffre-ca").unwrap();
    assert_ne!(new_ca["tls.key"], ca["tls.key"]);
    assert_eq!(new_ca["ca.crt"].matches("BEGIN CERTIFICATE").count(), 2);
    assert!(new_ca["ca.crt"].contains(ca["tls.crt"].trim()));
    check_tls(&api.secret("prod", "web-tls").unwrap().0, sans);
    let reissue = run(&ws, &["job", "run", "creds"]);
    reissue.ok();
    let (reissued, _) = api.secret("prod", "web-tls").unwrap();
    assert_ne!(reissued["tls.crt"], renewed["tls.crt"]);
    check_tls(&reissued, sans);
    assert_eq!(reissued["ca.crt"], new_ca["ca.crt"]);
    let mut only_new = reissued.clone();
    only_new.insert("ca.crt".into(), new_ca["tls.crt"].clone());
    check_tls(&only_new, sans);

    let keys = [
        ca["tls.key"].as_str(),
        new_ca["tls.key"].as_str(),
        leaf["tls.key"].as_str(),
        renewed["tls.key"].as_str(),
        reissued["tls.key"].as_str(),
    ];
    assert_no_secret_in(
        &[&early, &ca_run, &first, &second, &scheduled, &reissue],
        &keys,
    );
}

#[test]
fn pebble_issues_a_certificate_for_the_configured_names_after_a_real_http01_check() {
    let (Ok(directory), Ok(tls_root), Ok(root), Ok(http_port)) = (
        std::env::var("COFFRE_TEST_ACME"),
        std::env::var("COFFRE_TEST_ACME_TLS_ROOT"),
        std::env::var("COFFRE_TEST_ACME_ROOT"),
        std::env::var("COFFRE_TEST_ACME_HTTP_PORT"),
    ) else {
        panic!("run through scripts/test, which starts pebble");
    };
    let api = KubeApi::start();
    let target = format!(
        "[[target]]\nname = \"edge-tls\"\nkind = \"tls\"\npublish = \"k8s:prod/edge-tls\"\nissuer = \"acme\"\ndns_names = [\"localhost\"]\nip_addresses = [\"127.0.0.1\"]\n[target.acme]\ndirectory = \"{directory}\"\naccount = \"k8s:coffre/acme-account\"\nhttp01_listen = \"127.0.0.1:{http_port}\"\nserver_root = \"{tls_root}\"\nca_bundle = \"{root}\"\n"
    );
    let ws = workspace(&api, &target);
    let first = run(&ws, &["rotate", "edge-tls"]);
    first.ok();
    let (cert, kind) = api.secret("prod", "edge-tls").unwrap();
    assert_eq!(kind, "kubernetes.io/tls");
    check_tls(&cert, "DNS:localhost, IP Address:127.0.0.1");
    assert!(
        cert["tls.crt"].matches("BEGIN CERTIFICATE").count() >= 2,
        "tls.crt holds the full chain"
    );
    let (account, _) = api.secret("coffre", "acme-account").unwrap();

    let second = run(&ws, &["rotate", "edge-tls"]);
    second.ok();
    let (renewed, _) = api.secret("prod", "edge-tls").unwrap();
    check_tls(&renewed, "DNS:localhost, IP Address:127.0.0.1");
    assert_ne!(renewed["tls.key"], cert["tls.key"]);
    // The account made on the first order is reused, not made again.
    assert_eq!(api.secret("coffre", "acme-account").unwrap().0, account);
    assert_no_secret_in(
        &[&first, &second],
        &[&cert["tls.key"], &renewed["tls.key"], &account["account"]],
    );
}

/// The keys the issuer accepts, replaying the hook requests it received in order.
fn accepted(issuer: &Receiver) -> Vec<String> {
    let mut keys = Vec::new();
    for request in issuer.received() {
        let body: serde_json::Value = serde_json::from_str(&request.body).unwrap();
        let key = body["key"].as_str().unwrap().to_string();
        match body["event"].as_str().unwrap() {
            "register" if !keys.contains(&key) => keys.push(key),
            "revoke" => keys.retain(|k| *k != key),
            _ => {}
        }
    }
    keys
}

#[test]
fn an_api_key_rotation_keeps_both_keys_valid_for_the_grace_period_and_only_the_new_one_after() {
    let api = KubeApi::start();
    let issuer = Receiver::start();
    // Registered over HTTP; revoked by a command that gets the request on stdin.
    let target = format!(
        "[[target]]\nname = \"payments-key\"\nkind = \"api_key\"\npublish = \"k8s:prod/payments-key\"\nprefix = \"sk_live_\"\nevery = \"30d\"\ngrace = \"3s\"\nregister = {{ url = \"{url}/keys\", allow_http = true }}\nrevoke = {{ command = [\"sh\", \"-c\", \"curl -sf -X POST --data-binary @- {url}/revoke\"] }}\n",
        url = issuer.url
    );
    let ws = workspace(&api, &target);
    let first = run(&ws, &["rotate", "payments-key", "--json"]);
    first.ok();
    let (one, _) = api.secret("prod", "payments-key").unwrap();
    let k1 = one["current"].clone();
    assert!(
        k1.starts_with("sk_live_") && k1.len() == "sk_live_".len() + 43,
        "{k1}"
    );
    assert!(!one.contains_key("previous"));
    assert_eq!(accepted(&issuer), vec![k1.clone()]);

    let second = run(&ws, &["rotate", "payments-key", "--json"]);
    second.ok();
    let (two, _) = api.secret("prod", "payments-key").unwrap();
    let k2 = two["current"].clone();
    assert_ne!(k1, k2);
    assert_eq!(two["previous"], k1);
    // Within the grace period both keys work.
    assert_eq!(accepted(&issuer), [k1.clone(), k2.clone()]);
    let early = run(&ws, &["job", "run", "creds"]);
    early.ok();
    assert_eq!(accepted(&issuer), [k1.clone(), k2.clone()]);
    assert_eq!(api.secret("prod", "payments-key").unwrap().0, two);

    // After it, a scheduled run (nothing else due: every = 30d) revokes the old key.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    let after = run(&ws, &["job", "run", "creds"]);
    after.ok();
    assert_eq!(accepted(&issuer), vec![k2.clone()]);
    let (three, _) = api.secret("prod", "payments-key").unwrap();
    assert_eq!(three["current"], k2);
    assert!(!three.contains_key("previous"));
    let events = support::json_lines(&second);
    assert!(events.iter().any(|e| e["to"] == "FINISHED"));
    let revoked = issuer
        .received()
        .iter()
        .filter(|r| r.path == "/revoke")
        .count();
    assert_eq!(revoked, 1);
    assert_no_secret_in(&[&first, &second, &early, &after], &[&k1, &k2]);
}

#[test]
fn bad_credential_targets_are_config_errors_that_write_nothing() {
    let api = KubeApi::start();
    let base = "[[target]]\nname = \"k\"\nkind = \"api_key\"\npublish = \"k8s:prod/k\"\n";
    for (extra, says) in [
        ("bytes = 16\n", "32 to 128 random bytes"),
        ("prefix = \"sk live\"\n", "prefix 'sk live'"),
        ("register = { command = [] }\n", "register: set command"),
        ("register = { url = \"ftp://x\" }\n", "not an http(s) URL"),
        (
            "register = { url = \"http://issuer.example/keys\" }\n",
            "would send the key in clear",
        ),
        ("dns_names = [\"x\"]\n", "unknown field"),
    ] {
        let ws = workspace(&api, &format!("{base}{extra}"));
        let run = run(&ws, &["rotate", "k"]);
        run.expect_class(Class::Config);
        assert!(run.stderr.contains(says), "{says}: {}", run.stderr);
    }
    let tls = "[[target]]\nname = \"t\"\nkind = \"tls\"\npublish = \"k8s:prod/t\"\nissuer = \"internal\"\nca = \"k8s:coffre/ca\"\n";
    for (extra, says) in [
        ("", "needs dns_names"),
        ("dns_names = [\"bad name\"]\n", "is not a DNS name"),
        ("dns_names = [\"a.b\"]\nkey = \"dsa\"\n", "unknown variant"),
    ] {
        let ws = workspace(&api, &format!("{tls}{extra}"));
        let run = run(&ws, &["rotate", "t"]);
        run.expect_class(Class::Config);
        assert!(run.stderr.contains(says), "{says}: {}", run.stderr);
    }
    assert!(api.secret("prod", "k").is_none() && api.secret("prod", "t").is_none());
}

#[test]
fn an_incident_whose_revocation_failed_revokes_on_the_rerun_without_rotating_again() {
    let api = KubeApi::start();
    // The issuer's revoke endpoint is down until the file `issuer-up` exists.
    let target = "[[target]]\nname = \"partner-key\"\nkind = \"api_key\"\npublish = \"k8s:prod/partner-key\"\nrevoke = { command = [\"sh\", \"-c\", \"cat >/dev/null; test -f issuer-up || { echo issuer unavailable >&2; exit 1; }\"] }\n";
    let ws = workspace(&api, target);
    run(&ws, &["rotate", "partner-key"]).ok();
    let (before, _) = api.secret("prod", "partner-key").unwrap();
    let failed = run(&ws, &["incident", "rotate", "--all"]);
    assert_ne!(failed.code, 0);
    assert!(
        failed.stderr.contains("issuer unavailable"),
        "{}",
        failed.stderr
    );
    assert!(
        failed.stdout_text().contains("NOT complete"),
        "{}",
        failed.stdout_text()
    );
    let (rotated, _) = api.secret("prod", "partner-key").unwrap();
    assert_ne!(rotated["current"], before["current"]);
    assert_eq!(rotated["previous"], before["current"], "not revoked yet");

    ws.write("issuer-up", "");
    let rerun = run(&ws, &["incident", "rotate", "--all", "--json"]);
    rerun.ok();
    let (after, _) = api.secret("prod", "partner-key").unwrap();
    assert_eq!(
        after["current"], rotated["current"],
        "rotated once, not twice"
    );
    assert_eq!(after["rotation_id"], rotated["rotation_id"]);
    assert!(!after.contains_key("previous"));
    let status = run(&ws, &["rotate", "status", "--json"]);
    let status = &support::json_lines(&status)[0];
    assert!(status["revoked_at"].is_string(), "{status}");
    assert_no_secret_in(&[&failed, &rerun], &[&before["current"], &after["current"]]);
}

#[test]
fn a_previous_key_removed_by_hand_is_not_silently_left_unrevoked() {
    let api = KubeApi::start();
    let issuer = Receiver::start();
    let target = format!(
        "[[target]]\nname = \"ops-key\"\nkind = \"api_key\"\npublish = \"k8s:prod/ops-key\"\ngrace = \"1h\"\nrevoke = {{ url = \"{}/revoke\", allow_http = true }}\n",
        issuer.url
    );
    let ws = workspace(&api, &target);
    run(&ws, &["rotate", "ops-key"]).ok();
    run(&ws, &["rotate", "ops-key"]).ok();
    // Someone drops `previous` from the Secret during the grace period.
    let mut secret = api.object("v1/secrets", "prod", "ops-key").unwrap();
    secret["data"].as_object_mut().unwrap().remove("previous");
    api.put("v1/secrets", "prod", secret);
    let next = run(&ws, &["rotate", "ops-key"]);
    next.expect_class(Class::Integrity);
    assert!(
        next.stderr
            .contains("revoke that key at its issuer by hand"),
        "{}",
        next.stderr
    );
    assert!(issuer.received().is_empty(), "nothing was revoked by guess");
    // After a person revoked it, --abandon closes the revocation and rotations go on.
    run(&ws, &["rotate", "--abandon", "ops-key"]).ok();
    run(&ws, &["rotate", "ops-key"]).ok();
    let (after, _) = api.secret("prod", "ops-key").unwrap();
    assert!(after.contains_key("previous"));
}
