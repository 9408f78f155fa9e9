//! One run of a job at a time, across pods and machines. The lock names its holder and when it
//! expires; the holder extends it while it runs; a holder that dies without releasing it
//! (SIGKILL, a lost node) leaves a lock that expires, and the next run takes it over. It lives
//! in a Kubernetes Lease `coffre-JOB` in a cluster, or as an object in the store elsewhere
//! (`[lock] kind`): both decide races on the server (a conditional create, a resourceVersion).

mod lease_lock;
mod store_lock;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

use crate::config::{Config, RunLockKind};
use crate::error::Result;
use crate::k8s::{Cluster, Lease, Leases};
use crate::store::Store;

/// How long a lock lasts unless renewed; it is renewed every third of that.
pub const LOCK_TTL: Duration = Duration::from_secs(600);

/// Who holds a lock, since when and until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRecord {
    /// Who holds it: host (the pod's name in a cluster), process id and a random tag.
    pub holder: String,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl LockRecord {
    fn new(holder: &str, now: DateTime<Utc>) -> Self {
        Self {
            holder: holder.to_string(),
            acquired_at: now,
            expires_at: expiry(now),
        }
    }
}

fn expiry(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(LOCK_TTL).expect("a short duration")
}

/// Where this process keeps its locks, chosen once from `[lock]`.
pub enum Locks {
    Store,
    Kubernetes {
        leases: Box<Leases>,
        namespace: String,
    },
}

impl Locks {
    /// Connect to the Kubernetes API if the locks are Leases.
    pub async fn from_config(config: &Config) -> Result<Self> {
        match config.lock.kind.resolve() {
            RunLockKind::Kubernetes => {
                let cluster = Cluster::connect(config.lock.namespace.as_deref()).await?;
                Ok(Locks::Kubernetes {
                    leases: Box::new(cluster.leases()),
                    namespace: cluster.namespace().to_string(),
                })
            }
            _ => Ok(Locks::Store),
        }
    }

    /// Take the lock of job `job` for `holder`, taking over one that expired.
    pub async fn acquire<'a>(
        &'a self,
        store: &'a Store,
        job: &str,
        holder: &str,
    ) -> Result<Acquired<'a>> {
        match self {
            Locks::Store => store_lock::acquire(store, job, holder).await,
            Locks::Kubernetes { leases, .. } => lease_lock::acquire(leases, job, holder).await,
        }
    }

    /// Check that the locks of `jobs` can be read (the API answers, the Role allows it), and
    /// say where they live.
    pub async fn check(&self, jobs: impl Iterator<Item = &str>) -> Result<String> {
        match self {
            Locks::Store => Ok("objects in the store (_locks/)".into()),
            Locks::Kubernetes { leases, namespace } => {
                for job in jobs {
                    leases.get(&crate::config::lease_name(job)?).await?;
                }
                Ok(format!("Kubernetes Leases in namespace {namespace}"))
            }
        }
    }
}

/// The result of trying to take a lock.
pub enum Acquired<'a> {
    Taken(LockGuard<'a>),
    /// Someone else holds it until it expires.
    Busy(LockRecord),
}

/// A lock this process holds. Release it when done; if dropped instead, it expires.
pub struct LockGuard<'a> {
    job: String,
    record: LockRecord,
    held: Held<'a>,
    /// The expired lock this one replaced, if any: an audited takeover.
    pub took_over: Option<LockRecord>,
}

enum Held<'a> {
    Store(&'a Store),
    /// The Lease as last written, with its resourceVersion.
    Lease(&'a Leases, Box<Lease>),
}

impl LockGuard<'_> {
    pub fn record(&self) -> &LockRecord {
        &self.record
    }

    /// Extend the lock; an error when someone else took it over (it had expired).
    pub async fn renew(&mut self) -> Result<()> {
        let expires_at = expiry(Utc::now());
        match &mut self.held {
            Held::Store(store) => {
                let record = LockRecord {
                    expires_at,
                    ..self.record.clone()
                };
                store_lock::renew(store, &self.job, &record).await?;
            }
            Held::Lease(leases, lease) => {
                lease_lock::renew(leases, lease, &self.record.holder).await?;
            }
        }
        self.record.expires_at = expires_at;
        Ok(())
    }

    /// Release the lock, unless someone else holds it by now.
    pub async fn release(self) -> Result<()> {
        match self.held {
            Held::Store(store) => store_lock::release(store, &self.job, &self.record).await,
            Held::Lease(leases, mut lease) => {
                lease_lock::release(leases, &mut lease, &self.record.holder).await
            }
        }
    }
}

/// Who this process is, for lock records: host, pid and a random tag (pids repeat across pods).
pub fn holder_identity() -> String {
    let host = Some(crate::process::host_name())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into());
    let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!(
        "{host}/{}/{tag}/{}",
        std::process::id(),
        crate::process::pid_namespace()
    )
}
