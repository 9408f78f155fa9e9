//! Building the `object_store` backend a config names.

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
use std::sync::Arc;
use std::time::Duration;

use super::s3::S3Api;
use crate::config::{StoreConfig, UploadConfig};
use crate::error::{Error, Result};
use crate::secretstore::{Resolver, SecretRef};
use zeroize::Zeroizing;

/// A built backend: the store, a description for messages (never with credentials), and for
/// S3 the calls object_store does not make.
pub struct Backend {
    pub store: Arc<dyn ObjectStore>,
    pub description: String,
    pub s3: Option<S3Api>,
    /// The directory of a local store.
    pub local_root: Option<std::path::PathBuf>,
}

pub async fn build(
    config: &StoreConfig,
    upload: &UploadConfig,
    secrets: &Resolver,
) -> Result<Backend> {
    let retry = RetryConfig {
        backoff: BackoffConfig::default(),
        max_retries: upload.retries,
        retry_timeout: Duration::from_secs(upload.retry_timeout_secs),
    };
    match config {
        StoreConfig::Local { path, .. } => {
            std::fs::create_dir_all(path).map_err(|e| {
                Error::store(format!(
                    "cannot create the local store directory {}: {e}",
                    path.display()
                ))
            })?;
            // fsync every written file and directory entry: a power cut must not leave a
            // manifest pointing at data that never reached the disk.
            let fs = LocalFileSystem::new_with_prefix(path)
                .map_err(|e| {
                    Error::store(format!("cannot open local store {}: {e}", path.display()))
                })?
                .with_fsync(true)
                // Deleting a backup's last file removes its now empty directory.
                .with_automatic_cleanup(true);
            Ok(Backend {
                store: Arc::new(fs),
                description: format!("local:{}", path.display()),
                s3: None,
                local_root: Some(path.clone()),
            })
        }
        StoreConfig::S3 {
            bucket,
            region,
            endpoint,
            path_style,
            allow_http,
            access_key_id,
            secret_access_key,
            ..
        } => {
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_region(region)
                .with_virtual_hosted_style_request(!path_style)
                .with_allow_http(*allow_http)
                .with_retry(retry);
            if let Some(endpoint) = endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(r) = access_key_id {
                builder = builder.with_access_key_id(credential(secrets, r).await?.as_str());
            }
            if let Some(r) = secret_access_key {
                builder = builder.with_secret_access_key(credential(secrets, r).await?.as_str());
            }
            let store = Arc::new(
                builder
                    .build()
                    .map_err(|e| Error::config(format!("store (s3): {e}")))?,
            );
            let s3 = S3Api::new(
                Arc::clone(&store),
                bucket,
                region,
                endpoint.as_deref(),
                *path_style,
                *allow_http,
            )?;
            Ok(Backend {
                store,
                description: format!("s3://{bucket}"),
                s3: Some(s3),
                local_root: None,
            })
        }
        StoreConfig::Azure {
            account,
            container,
            endpoint,
            use_emulator,
            allow_http,
            access_key,
            ..
        } => {
            let mut builder = MicrosoftAzureBuilder::from_env()
                .with_account(account)
                .with_container_name(container)
                .with_use_emulator(*use_emulator)
                .with_allow_http(*allow_http)
                .with_retry(retry);
            if let Some(endpoint) = endpoint {
                builder = builder.with_endpoint(endpoint.clone());
            }
            if let Some(r) = access_key {
                builder = builder.with_access_key(credential(secrets, r).await?.as_str());
            }
            let store = builder
                .build()
                .map_err(|e| Error::config(format!("store (azure): {e}")))?;
            Ok(Backend {
                store: Arc::new(store),
                description: format!("azure://{account}/{container}"),
                s3: None,
                local_root: None,
            })
        }
        StoreConfig::Gcs {
            bucket,
            service_account_key,
            ..
        } => {
            let mut builder = GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(bucket)
                .with_retry(retry);
            if let Some(r) = service_account_key {
                builder = builder.with_service_account_key(credential(secrets, r).await?.as_str());
            }
            let store = builder
                .build()
                .map_err(|e| Error::config(format!("store (gcs): {e}")))?;
            Ok(Backend {
                store: Arc::new(store),
                description: format!("gs://{bucket}"),
                s3: None,
                local_root: None,
            })
        }
    }
}

/// A store credential; object_store keeps its own copy, which coffre cannot zeroize.
async fn credential(secrets: &Resolver, r: &SecretRef) -> Result<Zeroizing<String>> {
    let what = "a store credential";
    secrets.resolve(r, what).await?.text(what)
}
