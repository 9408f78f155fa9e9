//! The secret stores one configuration can reach, each connected on first use (a config that
//! never names Vault never needs a Vault address).

use std::sync::Arc;
use tokio::sync::OnceCell;

use super::aws::{SecretsManagerConfig, SecretsManagerStore};
use super::file_store::FileStore;
use super::kubernetes::KubernetesStore;
use super::vault::{VaultConfig, VaultStore};
use super::{Backend, FileAccess, SecretStore};
use crate::error::Result;
use crate::k8s::Cluster;

#[derive(Default)]
pub struct SecretStores {
    vault_config: VaultConfig,
    aws_config: SecretsManagerConfig,
    file_access: FileAccess,
    cluster: OnceCell<Cluster>,
    kubernetes: OnceCell<Arc<dyn SecretStore>>,
    vault: OnceCell<Arc<dyn SecretStore>>,
    aws: OnceCell<Arc<dyn SecretStore>>,
}

impl std::fmt::Debug for SecretStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretStores").finish_non_exhaustive()
    }
}

impl SecretStores {
    pub fn new(vault: VaultConfig, aws: SecretsManagerConfig, file_access: FileAccess) -> Self {
        Self {
            vault_config: vault,
            aws_config: aws,
            file_access,
            ..Default::default()
        }
    }

    /// The Kubernetes API (in a pod as its service account, elsewhere as the kubeconfig says),
    /// connected the first time.
    pub async fn cluster(&self) -> Result<Cluster> {
        self.cluster
            .get_or_try_init(|| Cluster::connect(None))
            .await
            .cloned()
    }

    /// The store of this kind, connecting to it the first time.
    pub async fn open(&self, backend: Backend) -> Result<Arc<dyn SecretStore>> {
        let store = match backend {
            Backend::File => return Ok(Arc::new(FileStore)),
            Backend::Kubernetes => {
                self.kubernetes
                    .get_or_try_init(|| async {
                        let cluster = self.cluster().await?;
                        Ok::<_, crate::error::Error>(
                            Arc::new(KubernetesStore::new(cluster)) as Arc<dyn SecretStore>
                        )
                    })
                    .await?
            }
            Backend::Vault => {
                self.vault
                    .get_or_try_init(|| async {
                        let store = VaultStore::new(&self.vault_config, self.file_access)?;
                        Ok::<_, crate::error::Error>(Arc::new(store) as Arc<dyn SecretStore>)
                    })
                    .await?
            }
            Backend::SecretsManager => {
                self.aws
                    .get_or_try_init(|| async {
                        let store = SecretsManagerStore::new(&self.aws_config, self.file_access)?;
                        Ok::<_, crate::error::Error>(Arc::new(store) as Arc<dyn SecretStore>)
                    })
                    .await?
            }
        };
        Ok(Arc::clone(store))
    }
}
