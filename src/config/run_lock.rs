//! `[lock]`: where the lock that keeps two runs of one job apart lives.

use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunLockConfig {
    #[serde(default)]
    pub kind: RunLockKind,
    /// The namespace of the Leases; default: the pod's (or the kubeconfig context's).
    pub namespace: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunLockKind {
    /// A Kubernetes Lease in a pod (`KUBERNETES_SERVICE_HOST` is set), a store object elsewhere.
    #[default]
    Auto,
    /// A lock object in the store (`_locks/JOB.json`), wherever coffre runs.
    Store,
    /// A Kubernetes Lease `coffre-JOB`, in a pod or through a kubeconfig.
    Kubernetes,
}

impl RunLockKind {
    /// What `auto` means here and now.
    pub fn resolve(self) -> Self {
        match self {
            RunLockKind::Auto if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
                RunLockKind::Kubernetes
            }
            RunLockKind::Auto => RunLockKind::Store,
            other => other,
        }
    }
}

/// The Lease that locks job `job`: `coffre-JOB`, which must be a DNS subdomain name.
pub fn lease_name(job: &str) -> Result<String> {
    let name = format!("coffre-{job}");
    let valid = name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        return Ok(name);
    }
    Err(Error::config(format!(
        "job '{job}' cannot name a Kubernetes Lease ('{name}' is not a DNS name): rename the job without '_' and ending in a letter or digit, or set [lock] kind = \"store\""
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_dns_names() {
        assert_eq!(lease_name("app-db").unwrap(), "coffre-app-db");
        assert_eq!(lease_name("db.eu-1").unwrap(), "coffre-db.eu-1");
        for bad in ["app_db", "db-", "db.", &"x".repeat(250)] {
            assert!(lease_name(bad).is_err(), "{bad}");
        }
    }
}
