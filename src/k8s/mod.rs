//! The Kubernetes API, through the kube client: in a pod as its service account, elsewhere as
//! the kubeconfig says (`KUBECONFIG`, `~/.kube/config`). Only what coffre needs of it.

mod labels;
mod leases;
mod workloads;

pub use labels::Selector;
pub use leases::{Lease, LeaseSpec, Leases, MicroTime, from_micro_time, micro_time};
pub use workloads::{ROTATION_ANNOTATION, Rollout, Workload, WorkloadKind, uses_secret};

use std::time::Duration;

use crate::error::{Error, Result};

/// A connection to one namespace of a cluster.
#[derive(Clone)]
pub struct Cluster {
    client: kube::Client,
    namespace: String,
}

impl Cluster {
    /// Connect in the pod's namespace, the kubeconfig context's, or `namespace` when given.
    pub async fn connect(namespace: Option<&str>) -> Result<Self> {
        let config = kube::Config::infer().await.map_err(|e| {
            Error::config(format!(
                "no Kubernetes API to talk to ({e}): run coffre in a pod, or point KUBECONFIG at a kubeconfig"
            ))
        })?;
        Self::with_config(config, namespace)
    }

    /// Connect with a client configuration made elsewhere (a kubeconfig read by the caller).
    pub fn with_config(mut config: kube::Config, namespace: Option<&str>) -> Result<Self> {
        // A hung API server must not hang a job: these calls are small.
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(30));
        config.write_timeout = Some(Duration::from_secs(30));
        let namespace = namespace.map_or_else(|| config.default_namespace.clone(), str::to_string);
        let client = kube::Client::try_from(config).map_err(|e| {
            Error::config(format!(
                "the Kubernetes API client could not be set up: {e}"
            ))
        })?;
        Ok(Self { client, namespace })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// The Secrets of `namespace` (any namespace the service account may reach).
    pub fn secrets(&self, namespace: &str) -> kube::Api<k8s_openapi::api::core::v1::Secret> {
        kube::Api::namespaced(self.client.clone(), namespace)
    }

    pub fn leases(&self) -> Leases {
        Leases::new(kube::Api::namespaced(self.client.clone(), &self.namespace))
    }
}

/// A failed API call as a coffre error: a refusal is an auth error naming the permission the
/// service account lacks; anything else (unreachable, a server error) may pass on a retry.
pub(crate) fn api_error(e: kube::Error, doing: &str) -> Error {
    let error = match &e {
        kube::Error::Api(status) if status.code == 401 => Error::auth(format!(
            "Kubernetes API: {doing}: not authenticated ({}): check the pod's service account token or the kubeconfig's credentials",
            status.message
        )),
        kube::Error::Api(status) if status.code == 403 => Error::auth(format!(
            "Kubernetes API: {doing}: forbidden ({}): grant it in coffre's Role (deploy/base/role.yaml)",
            status.message
        )),
        _ => Error::store(format!("Kubernetes API: {doing}: {e}")),
    };
    error.caused_by(e)
}

/// Whether an API call failed with this HTTP status (404 not found, 409 conflict).
pub(crate) fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == code)
}
