//! The secret stores behind one trait, each against its real server (OpenBao for Vault,
//! moto_server for AWS Secrets Manager) or, for Kubernetes, the test API server through the
//! real kube client: the same conditional-write rules for all, then a rotation published to
//! each, its admin password read through the same store, and what goes wrong with each.

mod support;

use coffre::secretstore::aws::{SecretsManagerConfig, SecretsManagerStore};
use coffre::secretstore::file_store::FileStore;
use coffre::secretstore::kubernetes::KubernetesStore;
use coffre::secretstore::vault::{VaultConfig, VaultStore};
use coffre::secretstore::{Fields, FileAccess, SecretRef, SecretStore, Written};
use serde_json::{Value, json};
use std::path::Path;

use coffre::error::Class;
use support::db::{pg_addr, pg_password, pg_rotation_job, psql, unique};
use support::kube_api::KubeApi;
use support::{Run, Workspace};

const SECRETS: &str = "v1/secrets";

fn vault_url() -> String {
    std::env::var("COFFRE_TEST_VAULT").expect("COFFRE_TEST_VAULT: run with scripts/test")
}

fn moto_url() -> String {
    std::env::var("COFFRE_TEST_S3").expect("COFFRE_TEST_S3: run with scripts/test")
}

/// A private file holding `text` (coffre refuses secret files others can read).
fn private_file(dir: &Path, name: &str, text: &str) -> SecretRef {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    SecretRef::File(path)
}

fn vault_store(dir: &Path) -> VaultStore {
    let config = VaultConfig {
        address: Some(vault_url()),
        token: Some(private_file(dir, "vault-token", "root\n")),
        ..Default::default()
    };
    VaultStore::new(&config, FileAccess::Owner).unwrap()
}

fn aws_store(dir: &Path) -> SecretsManagerStore {
    let config = SecretsManagerConfig {
        region: Some("eu-west-3".into()),
        endpoint: Some(moto_url()),
        access_key_id: Some(private_file(dir, "aws-key", "coffre-test")),
        secret_access_key: Some(private_file(dir, "aws-secret", "coffre-test")),
    };
    SecretsManagerStore::new(&config, FileAccess::Owner).unwrap()
}

fn kube_store(api: &KubeApi, dir: &Path) -> KubernetesStore {
    let path = dir.join("kubeconfig");
    api.kubeconfig(&path, "coffre");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).unwrap();
    let config = futures::executor::block_on(kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    ))
    .unwrap();
    KubernetesStore::new(coffre::k8s::Cluster::with_config(config, None).unwrap())
}

/// The rules every store keeps: create once, write only over the version read, one winner
/// among racing writers, a losing write changes nothing, delete is idempotent.
async fn conformance(store: &dyn SecretStore, name: &str) {
    assert!(store.read(name).await.unwrap().is_none(), "{name} exists");
    let first = Fields::new().with("username", "u1").with("password", "p1");
    let Written::Done(v1) = store.write(name, &first, None).await.unwrap() else {
        panic!("{name}: the first create conflicted");
    };
    assert_eq!(
        store.write(name, &first, None).await.unwrap(),
        Written::Conflict
    );
    let read = store.read(name).await.unwrap().unwrap();
    assert_eq!((read.version.as_str(), &read.fields), (v1.as_str(), &first));

    let second = Fields::new().with("username", "u2").with("password", "p2");
    let Written::Done(v2) = store.write(name, &second, Some(&v1)).await.unwrap() else {
        panic!("{name}: a write over the version read conflicted");
    };
    assert_ne!(v1, v2);
    assert_eq!(
        store.write(name, &first, Some(&v1)).await.unwrap(),
        Written::Conflict
    );
    assert_eq!(store.read(name).await.unwrap().unwrap().fields, second);

    // Eight writers over the same version: exactly one wins.
    let writes = (0..8).map(|i| {
        let fields = Fields::new().with("n", &i.to_string());
        let v2 = v2.clone();
        async move { store.write(name, &fields, Some(&v2)).await.unwrap() }
    });
    let results = futures::future::join_all(writes).await;
    let winners: Vec<usize> = (0..8)
        .filter(|i| matches!(results[*i], Written::Done(_)))
        .collect();
    assert_eq!(winners.len(), 1, "{name}: {results:?}");
    let now = store.read(name).await.unwrap().unwrap();
    assert_eq!(now.fields.get("n"), Some(winners[0].to_string().as_str()));

    store.delete(name).await.unwrap();
    store.delete(name).await.unwrap();
    assert!(store.read(name).await.unwrap().is_none());
    // A write over a version of a secret deleted since is a conflict, not a re-creation.
    assert_eq!(
        store.write(name, &first, Some(&now.version)).await.unwrap(),
        Written::Conflict
    );
}

#[tokio::test]
async fn every_store_keeps_the_conditional_write_rules() {
    let dir = tempfile::tempdir().unwrap();
    let id = unique("conf");
    conformance(
        &FileStore,
        &dir.path().join("s/app.json").display().to_string(),
    )
    .await;
    conformance(&vault_store(dir.path()), &format!("secret/{id}/app")).await;
    conformance(&aws_store(dir.path()), &format!("{id}/app")).await;
    let api = KubeApi::start();
    conformance(
        &kube_store(&api, dir.path()),
        &format!("coffre/{}", id.replace('_', "-")),
    )
    .await;
}

/// `vault kv delete` keeps a secret's version number: coffre reads it as absent and can create
/// it again (a deleted journal must not block a target for good).
#[tokio::test]
async fn a_soft_deleted_vault_secret_reads_as_absent_and_can_be_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let vault = vault_store(dir.path());
    let name = format!("secret/{}/journal", unique("softdel"));
    let fields = Fields::new().with("journal", "{}");
    assert!(matches!(
        vault.write(&name, &fields, None).await.unwrap(),
        Written::Done(_)
    ));
    let path = name.replacen("secret/", "secret/data/", 1);
    vault_admin(reqwest::Method::DELETE, &path, json!({})).await;
    assert!(vault.read(&name).await.unwrap().is_none());
    let Written::Done(version) = vault.write(&name, &fields, None).await.unwrap() else {
        panic!("a soft-deleted secret could not be created again");
    };
    assert_eq!(version, "2");
    // A live secret is still created only once.
    assert_eq!(
        vault.write(&name, &fields, None).await.unwrap(),
        Written::Conflict
    );
}

#[tokio::test]
async fn secrets_manager_versions_follow_the_aws_rotation_stages() {
    let dir = tempfile::tempdir().unwrap();
    let store = aws_store(dir.path());
    let name = unique("stages");
    let Written::Done(v1) = store
        .write(&name, &Fields::new().with("password", "p1"), None)
        .await
        .unwrap()
    else {
        panic!()
    };
    let Written::Done(v2) = store
        .write(&name, &Fields::new().with("password", "p2"), Some(&v1))
        .await
        .unwrap()
    else {
        panic!()
    };
    let out = support::interop("secretsmanager_stages.py", [moto_url(), name.clone()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stages: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stages[&v2], json!(["AWSCURRENT"]));
    assert_eq!(stages[&v1], json!(["AWSPREVIOUS"]));
}

/// A workspace with a rotation target over two fresh PostgreSQL roles, published to `publish`,
/// with `top` added to the main config; its target's name (unique: journals are per name).
fn target(publish: &str, admin_password: &str, top: &str) -> (Workspace, [String; 2], String) {
    let base = unique("st");
    let name = base.replace('_', "-");
    let users = [format!("{base}_a"), format!("{base}_b")];
    for user in &users {
        psql(
            "postgres",
            &format!("CREATE ROLE {user} LOGIN PASSWORD 'initial'"),
        );
    }
    let ws = Workspace::new();
    ws.write_config_with(top, r#"keys = [{ file = "backup.key" }]"#);
    ws.write(
        "jobs/passwords.toml",
        &pg_rotation_job(&name, &users, admin_password, publish, ""),
    );
    (ws, users, name)
}

fn pg_login(user: &str, password: &str) -> bool {
    let (host, port) = pg_addr();
    std::process::Command::new("psql")
        .args(["-X", "-q", "-c", "SELECT 1"])
        .env("PGHOST", host)
        .env("PGPORT", port.to_string())
        .env("PGUSER", user)
        .env("PGDATABASE", "postgres")
        .env("PGPASSWORD", password)
        .output()
        .unwrap()
        .status
        .success()
}

fn vault_top(dir: &Path) -> String {
    let token = private_file(dir, "vault-token", "root\n");
    format!(
        "[vault]\naddress = \"{}\"\ntoken = \"{token}\"\n",
        vault_url()
    )
}

fn aws_top(dir: &Path) -> String {
    let key = private_file(dir, "aws-key", "coffre-test");
    let secret = private_file(dir, "aws-secret", "coffre-test");
    format!(
        "[secrets_manager]\nregion = \"eu-west-3\"\nendpoint = \"{}\"\naccess_key_id = \"{key}\"\nsecret_access_key = \"{secret}\"\n",
        moto_url()
    )
}

#[tokio::test]
async fn rotations_publish_to_vault_and_read_their_admin_password_there() {
    let dir = tempfile::tempdir().unwrap();
    let id = unique("rv");
    let admin = format!("secret/{id}/admin");
    let vault = vault_store(dir.path());
    vault
        .write(
            &admin,
            &Fields::new().with("password", &pg_password()),
            None,
        )
        .await
        .unwrap();
    let (ws, users, name) = target(
        &format!("vault:secret/{id}/app-db"),
        &format!("vault:{admin}#password"),
        &vault_top(dir.path()),
    );
    for expected in [&users[0], &users[1]] {
        ws.run(&["rotate", &name]).ok();
        let published = vault
            .read(&format!("secret/{id}/app-db"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(published.fields.get("username"), Some(expected.as_str()));
        assert!(pg_login(
            expected,
            published.fields.get("password").unwrap()
        ));
    }
    let journal = vault
        .read(&format!("secret/coffre/journal/{id}/app-db/{name}"))
        .await
        .unwrap();
    let journal = journal.unwrap();
    let record: Value = serde_json::from_str(journal.fields.get("journal").unwrap()).unwrap();
    assert_eq!(record["state"], "FINISHED");
    // The journal's history held the pending passwords: every version before the last is
    // destroyed, so no version of it holds a password now.
    let current: u64 = journal.version.parse().unwrap();
    assert!(current > 6, "{current}");
    for version in 1..=current {
        let text = reqwest::Client::new()
            .get(format!(
                "{}/v1/secret/data/coffre/journal/{id}/app-db/{name}?version={version}",
                vault_url()
            ))
            .header("X-Vault-Token", "root")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let answer: Value = serde_json::from_str(&text).unwrap();
        let data = &answer["data"]["data"];
        assert!(
            data.get("pending_password").is_none(),
            "version {version} of {current} still holds the pending password"
        );
        if version < current {
            assert!(
                data.is_null(),
                "version {version} is not destroyed: {answer}"
            );
        }
    }
}

#[tokio::test]
async fn rotations_publish_to_secrets_manager() {
    let dir = tempfile::tempdir().unwrap();
    let id = unique("ra");
    let (ws, users, name) = target(
        &format!("aws-sm:{id}/app-db"),
        "env:COFFRE_TEST_ADMIN_PW",
        &aws_top(dir.path()),
    );
    let aws = aws_store(dir.path());
    for expected in [&users[0], &users[1]] {
        ws.run_env(
            &["rotate", &name],
            &[("COFFRE_TEST_ADMIN_PW", &pg_password())],
        )
        .ok();
        let published = aws.read(&format!("{id}/app-db")).await.unwrap().unwrap();
        assert_eq!(published.fields.get("username"), Some(expected.as_str()));
        assert!(pg_login(
            expected,
            published.fields.get("password").unwrap()
        ));
    }
    assert!(
        aws.read(&format!("coffre/journal/{id}/app-db/{name}"))
            .await
            .unwrap()
            .is_some()
    );
}

fn kube_env(ws: &Workspace) -> Vec<(&'static str, String)> {
    vec![
        ("KUBECONFIG", ws.path("kubeconfig").display().to_string()),
        ("COFFRE_TEST_ADMIN_PW", pg_password()),
    ]
}

fn run_kube(ws: &Workspace, args: &[&str]) -> Run {
    let env = kube_env(ws);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    ws.run_env(args, &env)
}

fn secret_field(object: &Value, key: &str) -> String {
    use base64::Engine;
    let encoded = object["data"][key].as_str().unwrap();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn rotations_publish_to_kubernetes_secrets_and_respect_their_versions() {
    let api = KubeApi::start();
    let (ws, users, name) = target("k8s:prod/app-db", "env:COFFRE_TEST_ADMIN_PW", "");
    api.kubeconfig(&ws.path("kubeconfig"), "coffre");
    run_kube(&ws, &["rotate", &name]).ok();
    let secret = api
        .object(SECRETS, "prod", "app-db")
        .expect("the published Secret");
    assert_eq!(secret_field(&secret, "username"), users[0]);
    assert!(pg_login(&users[0], &secret_field(&secret, "password")));
    assert_eq!(
        secret["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "coffre"
    );
    let journal = api
        .object(SECRETS, "prod", &format!("coffre-journal-{name}"))
        .expect("the journal");
    let record: Value = serde_json::from_str(&secret_field(&journal, "journal")).unwrap();
    assert_eq!(record["state"], "FINISHED");
    assert!(journal["data"].get("pending_password").is_none());

    // A label added by another controller bumps the resourceVersion, not the content.
    let mut labelled = secret.clone();
    labelled["metadata"]["labels"]["team"] = json!("payments");
    api.put(SECRETS, "prod", labelled);
    run_kube(&ws, &["rotate", &name]).ok();
    let secret = api.object(SECRETS, "prod", "app-db").unwrap();
    assert_eq!(secret_field(&secret, "username"), users[1]);
    // ... and what others set on the Secret stays.
    assert_eq!(secret["metadata"]["labels"]["team"], "payments");
}

#[test]
fn store_problems_are_clear_errors_that_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    // RBAC refuses creating Secrets: an auth error naming the Role, no password changed.
    let api = KubeApi::start();
    let (ws, users, name) = target("k8s:prod/app-db", "env:COFFRE_TEST_ADMIN_PW", "");
    api.kubeconfig(&ws.path("kubeconfig"), "coffre");
    api.forbid("create", "secrets");
    let run = run_kube(&ws, &["rotate", &name]);
    run.expect_class(Class::Auth);
    assert!(
        run.stderr.contains("forbidden") && run.stderr.contains("role.yaml"),
        "{}",
        run.stderr
    );
    assert!(pg_login(&users[0], "initial") && pg_login(&users[1], "initial"));
    assert!(api.object(SECRETS, "prod", "app-db").is_none());

    // The admin password's Secret does not exist.
    let (ws, _, name) = target("k8s:prod/app-db", "k8s:prod/missing#password", "");
    api.kubeconfig(&ws.path("kubeconfig"), "coffre");
    let run = run_kube(&ws, &["rotate", &name]);
    run.expect_failure(Class::Config, "k8s:prod/missing does not exist");

    // No Vault token anywhere.
    let top = format!("[vault]\naddress = \"{}\"\n", vault_url());
    let (ws, _, name) = target("vault:secret/x/app-db", "env:COFFRE_TEST_ADMIN_PW", &top);
    let run = ws.run_env(
        &["rotate", &name],
        &[("COFFRE_TEST_ADMIN_PW", &pg_password())],
    );
    run.expect_failure(Class::Config, "VAULT_TOKEN");

    // A wrong Vault token: refused, an auth error.
    let bad = private_file(dir.path(), "bad-token", "not-a-token");
    let top = format!(
        "[vault]\naddress = \"{}\"\ntoken = \"{bad}\"\n",
        vault_url()
    );
    let (ws, users, name) = target("vault:secret/x/app-db", "env:COFFRE_TEST_ADMIN_PW", &top);
    let run = ws.run_env(
        &["rotate", &name],
        &[("COFFRE_TEST_ADMIN_PW", &pg_password())],
    );
    run.expect_failure(Class::Auth, "permission denied");
    assert!(!run.stderr.contains("not-a-token"));
    assert!(pg_login(&users[0], "initial"));

    // Vault unreachable: a store error.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let token = private_file(dir.path(), "token2", "root");
    let top = format!("[vault]\naddress = \"http://127.0.0.1:{closed}\"\ntoken = \"{token}\"\n");
    let (ws, _, name) = target("vault:secret/x/app-db", "env:COFFRE_TEST_ADMIN_PW", &top);
    let run = ws.run_env(
        &["rotate", &name],
        &[("COFFRE_TEST_ADMIN_PW", &pg_password())],
    );
    run.expect_failure(Class::Store, "is it running and reachable");
}

/// Vault's API as root, for setting OpenBao up.
async fn vault_admin(method: reqwest::Method, path: &str, body: Value) {
    let response = reqwest::Client::new()
        .request(method, format!("{}/v1/{path}", vault_url()))
        .header("X-Vault-Token", "root")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert!(
        status.is_success(),
        "{path}: {status} {}",
        response.text().await.unwrap()
    );
}

/// coffre logs in to Vault with its service account token (the Kubernetes auth method, which
/// reviews the token with the API server) and rotates with the policy the role grants.
#[tokio::test]
async fn vault_kubernetes_auth_logs_in_as_the_service_account() {
    let api = KubeApi::start();
    let id = unique("k8sauth").replace('_', "-");
    let mount = format!("kubernetes-{id}");
    use reqwest::Method;
    vault_admin(
        Method::POST,
        &format!("sys/auth/{mount}"),
        json!({"type": "kubernetes"}),
    )
    .await;
    vault_admin(
        Method::POST,
        &format!("auth/{mount}/config"),
        // Any CA will do: the test API server speaks plain HTTP, but OpenBao insists on one.
        json!({"kubernetes_host": api.url, "disable_local_ca_jwt": true,
               "kubernetes_ca_cert": std::fs::read_to_string(std::env::var("COFFRE_TEST_PG_CA").unwrap()).unwrap()}),
    )
    .await;
    let policy = format!(
        "path \"secret/data/{id}/*\" {{ capabilities = [\"create\", \"read\", \"update\"] }}\npath \"secret/data/coffre/journal/{id}/*\" {{ capabilities = [\"create\", \"read\", \"update\"] }}"
    );
    vault_admin(
        Method::PUT,
        &format!("sys/policies/acl/{id}"),
        json!({"policy": policy}),
    )
    .await;
    vault_admin(
        Method::POST,
        &format!("auth/{mount}/role/coffre"),
        json!({"bound_service_account_names": ["coffre"], "bound_service_account_namespaces": ["coffre"], "token_policies": [id]}),
    )
    .await;

    let dir = tempfile::tempdir().unwrap();
    let jwt = private_file(dir.path(), "token", &api.issue_token("coffre", "coffre"));
    let top = format!(
        "[vault]\naddress = \"{}\"\nauth = \"kubernetes\"\nrole = \"coffre\"\nauth_mount = \"{mount}\"\njwt = \"{jwt}\"\n",
        vault_url()
    );
    let (ws, users, name) = target(
        &format!("vault:secret/{id}/app-db"),
        "env:COFFRE_TEST_ADMIN_PW",
        &top,
    );
    ws.run_env(
        &["rotate", &name],
        &[("COFFRE_TEST_ADMIN_PW", &pg_password())],
    )
    .ok();
    let published = vault_store(dir.path())
        .read(&format!("secret/{id}/app-db"))
        .await
        .unwrap()
        .expect("published through the Kubernetes login");
    assert!(pg_login(
        &users[0],
        published.fields.get("password").unwrap()
    ));
    // OpenBao asked the API server whether the token is the service account's.
    assert!(
        api.requests()
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/tokenreviews"))
    );

    // Another service account's token: Vault refuses the login, nothing changes.
    let other = private_file(dir.path(), "other", &api.issue_token("default", "web"));
    let top = top.replace(&jwt.to_string(), &other.to_string());
    let (ws, users, name) = target(
        &format!("vault:secret/{id}/other"),
        "env:COFFRE_TEST_ADMIN_PW",
        &top,
    );
    let run = ws.run_env(
        &["rotate", &name],
        &[("COFFRE_TEST_ADMIN_PW", &pg_password())],
    );
    run.expect_failure(Class::Auth, "refused the Kubernetes login");
    assert!(pg_login(&users[0], "initial"));
}
