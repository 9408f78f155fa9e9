//! `[store]` and `[upload]`: where backups go and how they are uploaded.

use serde::Deserialize;
use std::path::{Path, PathBuf};

use super::{fold_older_spelling, resolve};
use crate::error::Result;
use crate::secretstore::SecretRef;

/// Where backups go.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum StoreConfig {
    /// A directory on local disk (or a mounted volume).
    Local {
        path: PathBuf,
        #[serde(default)]
        prefix: String,
    },
    /// Amazon S3 or any S3-compatible service. Credentials come from the standard AWS
    /// environment (AWS_ACCESS_KEY_ID, web identity, instance metadata) unless named here.
    S3 {
        bucket: String,
        #[serde(default = "default_region")]
        region: String,
        /// For S3-compatible services, e.g. "https://minio.internal:9000".
        endpoint: Option<String>,
        /// Path-style requests (most S3-compatible services need them).
        #[serde(default)]
        path_style: bool,
        /// Allow plain-HTTP endpoints. Off: backups travel over TLS only.
        #[serde(default)]
        allow_http: bool,
        /// The access key id and secret (`env:NAME` or `file:PATH`).
        access_key_id: Option<SecretRef>,
        secret_access_key: Option<SecretRef>,
        /// Older spellings of `access_key_id = "env:NAME"` and `secret_access_key = "env:NAME"`.
        access_key_id_env: Option<String>,
        secret_access_key_env: Option<String>,
        #[serde(default)]
        prefix: String,
    },
    /// Azure Blob Storage. Credentials come from the standard Azure environment
    /// (AZURE_STORAGE_ACCOUNT_KEY, workload identity, ...) unless named here.
    Azure {
        account: String,
        container: String,
        endpoint: Option<String>,
        /// Use the Azurite emulator's well-known account and key.
        #[serde(default)]
        use_emulator: bool,
        #[serde(default)]
        allow_http: bool,
        /// The account access key (`env:NAME` or `file:PATH`).
        access_key: Option<SecretRef>,
        /// Older spelling of `access_key = "env:NAME"`.
        access_key_env: Option<String>,
        #[serde(default)]
        prefix: String,
    },
    /// Google Cloud Storage. Credentials from GOOGLE_APPLICATION_CREDENTIALS or the service
    /// account key named here.
    Gcs {
        bucket: String,
        /// The service account key, JSON (`file:PATH`, say).
        service_account_key: Option<SecretRef>,
        /// Older spelling of `service_account_key = "file:PATH"`.
        service_account_path: Option<PathBuf>,
        #[serde(default)]
        prefix: String,
    },
}

fn default_region() -> String {
    "us-east-1".into()
}

impl StoreConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            StoreConfig::Local { .. } => "local",
            StoreConfig::S3 { .. } => "s3",
            StoreConfig::Azure { .. } => "azure",
            StoreConfig::Gcs { .. } => "gcs",
        }
    }

    pub fn prefix(&self) -> &str {
        match self {
            StoreConfig::Local { prefix, .. }
            | StoreConfig::S3 { prefix, .. }
            | StoreConfig::Azure { prefix, .. }
            | StoreConfig::Gcs { prefix, .. } => prefix,
        }
    }

    /// Fold older spellings into the secret references and make paths relative to `base`.
    pub(super) fn normalize(&mut self, base: &Path) -> Result<()> {
        match self {
            StoreConfig::Local { path, .. } => *path = resolve(base, path),
            StoreConfig::S3 {
                access_key_id,
                secret_access_key,
                access_key_id_env,
                secret_access_key_env,
                ..
            } => {
                let older = access_key_id_env.take().map(SecretRef::Env);
                fold_older_spelling(access_key_id, older, "store.access_key_id")?;
                let older = secret_access_key_env.take().map(SecretRef::Env);
                fold_older_spelling(secret_access_key, older, "store.secret_access_key")?;
            }
            StoreConfig::Azure {
                access_key,
                access_key_env,
                ..
            } => {
                let older = access_key_env.take().map(SecretRef::Env);
                fold_older_spelling(access_key, older, "store.access_key")?;
            }
            StoreConfig::Gcs {
                service_account_key,
                service_account_path,
                ..
            } => {
                let older = service_account_path.take().map(SecretRef::File);
                fold_older_spelling(service_account_key, older, "store.service_account_key")?;
            }
        }
        for secret in self.secret_refs_mut() {
            *secret = secret.clone().relative_to(base, resolve);
        }
        Ok(())
    }

    fn secret_refs_mut(&mut self) -> Vec<&mut SecretRef> {
        match self {
            StoreConfig::Local { .. } => Vec::new(),
            StoreConfig::S3 {
                access_key_id,
                secret_access_key,
                ..
            } => [access_key_id, secret_access_key]
                .into_iter()
                .flatten()
                .collect(),
            StoreConfig::Azure { access_key, .. } => access_key.iter_mut().collect(),
            StoreConfig::Gcs {
                service_account_key,
                ..
            } => service_account_key.iter_mut().collect(),
        }
    }
}

/// How data objects are uploaded.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadConfig {
    /// Size of the first parts; parts double every 1000 so 1 TiB fits S3's 10,000-part limit.
    #[serde(default = "default_part_size_mib")]
    pub part_size_mib: usize,
    /// Parts in flight at once (memory is about (concurrency + 1) x part size).
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Retries of a failed request, with exponential backoff.
    #[serde(default = "default_retries")]
    pub retries: usize,
    /// Give up retrying a request after this long.
    #[serde(default = "default_retry_timeout")]
    pub retry_timeout_secs: u64,
}

fn default_part_size_mib() -> usize {
    8
}
fn default_concurrency() -> usize {
    2
}
fn default_retries() -> usize {
    10
}
fn default_retry_timeout() -> u64 {
    180
}

/// Well within `retention::ABANDON_MARGIN`: a write still retrying when a backup's time runs
/// out must land within the margin after which its leftovers are cleaned.
pub(super) const MAX_RETRY_TIMEOUT_SECS: u64 = 600;

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            part_size_mib: default_part_size_mib(),
            concurrency: default_concurrency(),
            retries: default_retries(),
            retry_timeout_secs: default_retry_timeout(),
        }
    }
}
