//! Vault (or OpenBao) KV version 2 secrets, `MOUNT/PATH` (`secret/app/db`; the API's own
//! spelling `secret/data/app/db` is accepted too). A conditional write uses KV v2's
//! check-and-set: `cas` is the version read (0: create only), and the server refuses a write
//! when the secret moved on. coffre logs in with a token, or with the Kubernetes auth method
//! (the pod's service account token exchanged for a Vault token).

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use zeroize::Zeroizing;

use super::versioned::{Fields, SecretStore, Versioned, Written};
use super::{FileAccess, SecretRef};
use crate::error::{Error, Result};

/// `[vault]` in the config.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// Default: `VAULT_ADDR`.
    pub address: Option<String>,
    /// How coffre logs in: `token` (default) or `kubernetes`.
    #[serde(default)]
    pub auth: VaultAuth,
    /// The token, with `auth = "token"`; default `env:VAULT_TOKEN`. An env: or file: reference.
    pub token: Option<SecretRef>,
    /// The Vault role, with `auth = "kubernetes"`.
    pub role: Option<String>,
    /// Where the Kubernetes auth method is mounted; default `kubernetes`.
    pub auth_mount: Option<String>,
    /// The service account token; default the pod's.
    pub jwt: Option<SecretRef>,
    /// A Vault Enterprise / OpenBao namespace.
    pub namespace: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VaultAuth {
    #[default]
    Token,
    Kubernetes,
}

const POD_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

pub struct VaultStore {
    config: VaultConfig,
    address: String,
    http: reqwest::Client,
    token: OnceCell<Zeroizing<String>>,
    file_access: FileAccess,
}

impl VaultStore {
    pub fn new(config: &VaultConfig, file_access: FileAccess) -> Result<Self> {
        let address = config
            .address
            .clone()
            .or_else(|| std::env::var("VAULT_ADDR").ok())
            .ok_or_else(|| {
                Error::config("no Vault address: set [vault] address in the config, or VAULT_ADDR")
            })?;
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(10))
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| Error::internal(format!("HTTP client: {e}")))?;
        Ok(Self {
            config: config.clone(),
            address: address.trim_end_matches('/').to_string(),
            http,
            token: OnceCell::new(),
            file_access,
        })
    }

    /// `MOUNT/PATH` as the KV v2 data and metadata URLs.
    fn urls(&self, name: &str) -> Result<(String, String)> {
        Ok((self.url(name, "data")?, self.url(name, "metadata")?))
    }

    /// `MOUNT/PATH` as the KV v2 URL of one of its endpoints (data, metadata, destroy).
    fn url(&self, name: &str, endpoint: &str) -> Result<String> {
        let (mount, path) = name
            .split_once('/')
            .filter(|(m, p)| !m.is_empty() && !p.is_empty())
            .ok_or_else(|| {
                Error::config(format!(
                    "vault:{name}: a Vault KV v2 secret is named MOUNT/PATH (secret/app/db)"
                ))
            })?;
        let path = path.strip_prefix("data/").unwrap_or(path);
        Ok(format!("{}/v1/{mount}/{endpoint}/{path}", self.address))
    }

    fn read_local(&self, r: &SecretRef, what: &str) -> Result<Zeroizing<String>> {
        super::read_local(r, what, self.file_access)
    }

    async fn token(&self) -> Result<&str> {
        let token = self
            .token
            .get_or_try_init(|| async {
                match self.config.auth {
                    VaultAuth::Token => {
                        let r = self
                            .config
                            .token
                            .clone()
                            .unwrap_or_else(|| SecretRef::Env("VAULT_TOKEN".into()));
                        self.read_local(&r, "the Vault token").map_err(|e| {
                            Error::config(format!(
                                "{}: set VAULT_TOKEN, or [vault] token, or use auth = \"kubernetes\"",
                                e.message()
                            ))
                        })
                    }
                    VaultAuth::Kubernetes => self.kubernetes_login().await,
                }
            })
            .await?;
        Ok(token.as_str())
    }

    async fn kubernetes_login(&self) -> Result<Zeroizing<String>> {
        let role = self.config.role.as_deref().ok_or_else(|| {
            Error::config("[vault] auth = \"kubernetes\" needs role = \"...\" (the Vault role bound to coffre's service account)")
        })?;
        let jwt_ref = self
            .config
            .jwt
            .clone()
            .unwrap_or_else(|| SecretRef::File(POD_TOKEN.into()));
        let jwt = self.read_local(&jwt_ref, "the service account token")?;
        let mount = self.config.auth_mount.as_deref().unwrap_or("kubernetes");
        let url = format!("{}/v1/auth/{mount}/login", self.address);
        let body = Zeroizing::new(json!({"role": role, "jwt": jwt.as_str()}).to_string());
        let (status, answer) = self
            .send(reqwest::Method::POST, &url, None, Some(&body))
            .await?;
        if !status.is_success() {
            return Err(Error::auth(format!(
                "Vault refused the Kubernetes login as role {role} (HTTP {status}): bind coffre's service account to that role"
            )));
        }
        answer["auth"]["client_token"]
            .as_str()
            .map(|t| Zeroizing::new(t.to_string()))
            .ok_or_else(|| Error::store("Vault's login answer holds no client_token"))
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Result<(reqwest::StatusCode, Value)> {
        let mut request = self.http.request(method, url);
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(ns) = &self.config.namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(|e| {
            Error::store(format!(
                "Vault at {}: {}: is it running and reachable?",
                self.address,
                e.without_url()
            ))
        })?;
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }

    /// A failed answer as an error naming the secret.
    fn refused(&self, status: reqwest::StatusCode, answer: &Value, doing: &str) -> Error {
        let why = answer["errors"]
            .as_array()
            .and_then(|e| e.first())
            .and_then(Value::as_str)
            .unwrap_or("no reason given")
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        match status.as_u16() {
            401 | 403 => Error::auth(format!(
                "Vault: {doing}: permission denied ({why}): give coffre's token a policy that allows it"
            )),
            _ => Error::store(format!("Vault: {doing}: HTTP {status}: {why}")),
        }
    }
}

#[async_trait]
impl SecretStore for VaultStore {
    async fn read(&self, name: &str) -> Result<Option<Versioned>> {
        let (data_url, _) = self.urls(name)?;
        let token = self.token().await?;
        let (status, answer) = self
            .send(reqwest::Method::GET, &data_url, Some(token), None)
            .await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.refused(status, &answer, &format!("reading {name}")));
        }
        let version = answer["data"]["metadata"]["version"]
            .as_u64()
            .ok_or_else(|| {
                Error::store(format!(
                    "Vault: {name}: the answer has no version: is the mount KV version 2?"
                ))
            })?;
        // The latest version deleted (not destroyed) reads as data: null; it still has a version.
        let fields = match &answer["data"]["data"] {
            Value::Null => Fields::new(),
            data => Fields::from_json(data).ok_or_else(|| {
                Error::store(format!(
                    "Vault: {name}: a field is not a string, so coffre did not write it"
                ))
            })?,
        };
        Ok(Some(Versioned {
            fields,
            version: version.to_string(),
        }))
    }

    async fn write(&self, name: &str, fields: &Fields, expected: Option<&str>) -> Result<Written> {
        let cas: u64 = match expected {
            None => 0,
            Some(v) => v
                .parse()
                .map_err(|_| Error::internal(format!("Vault version {v}")))?,
        };
        let written = self.write_cas(name, fields, cas).await?;
        if written != Written::Conflict || expected.is_some() {
            return Ok(written);
        }
        // A secret whose latest version was deleted reads as absent but keeps its version
        // number: creating it again is a write over that version.
        match self.deleted_version(name).await? {
            Some(version) => self.write_cas(name, fields, version).await,
            None => Ok(Written::Conflict),
        }
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let (_, metadata_url) = self.urls(name)?;
        let token = self.token().await?;
        let (status, answer) = self
            .send(reqwest::Method::DELETE, &metadata_url, Some(token), None)
            .await?;
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(self.refused(status, &answer, &format!("deleting {name}")))
    }

    async fn forget_older(&self, name: &str, version: &str) -> Result<()> {
        let Ok(version) = version.parse::<u64>() else {
            return Ok(());
        };
        if version <= 1 {
            return Ok(());
        }
        let destroy_url = self.url(name, "destroy")?;
        let older: Vec<u64> = (1..version).collect();
        let body = json!({ "versions": older }).to_string();
        let token = self.token().await?;
        let (status, answer) = self
            .send(
                reqwest::Method::POST,
                &destroy_url,
                Some(token),
                Some(&body),
            )
            .await?;
        if status.is_success() {
            return Ok(());
        }
        Err(self.refused(
            status,
            &answer,
            &format!("destroying the older versions of {name}"),
        ))
    }
}

impl VaultStore {
    /// The latest version of `name`, if that version is deleted or destroyed.
    async fn deleted_version(&self, name: &str) -> Result<Option<u64>> {
        let (_, metadata_url) = self.urls(name)?;
        let token = self.token().await?;
        let (status, answer) = self
            .send(reqwest::Method::GET, &metadata_url, Some(token), None)
            .await?;
        if !status.is_success() {
            return Ok(None);
        }
        let Some(current) = answer["data"]["current_version"].as_u64() else {
            return Ok(None);
        };
        let latest = &answer["data"]["versions"][current.to_string()];
        let deleted = latest["deletion_time"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
            || latest["destroyed"].as_bool() == Some(true);
        Ok(deleted.then_some(current))
    }

    async fn write_cas(&self, name: &str, fields: &Fields, cas: u64) -> Result<Written> {
        let (data_url, _) = self.urls(name)?;
        let data: Value = serde_json::from_str(&fields.to_json()).expect("fields are JSON");
        let body = Zeroizing::new(json!({"options": {"cas": cas}, "data": data}).to_string());
        drop(data);
        let token = self.token().await?;
        let (status, answer) = self
            .send(reqwest::Method::POST, &data_url, Some(token), Some(&body))
            .await?;
        if status.is_success() {
            let version = answer["data"]["version"].as_u64().ok_or_else(|| {
                Error::store(format!(
                    "Vault: {name}: the write's answer has no version: is the mount KV version 2?"
                ))
            })?;
            return Ok(Written::Done(version.to_string()));
        }
        let text = answer["errors"].to_string();
        if status == reqwest::StatusCode::BAD_REQUEST && text.contains("check-and-set") {
            return Ok(Written::Conflict);
        }
        Err(self.refused(status, &answer, &format!("writing {name}")))
    }
}
