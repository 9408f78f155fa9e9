//! Leases (`coordination.k8s.io/v1`): read, create if absent, replace if unchanged since read.
//! The conditions are the API server's (a name is created once; a replace carries the
//! resourceVersion it read, and fails with 409 if the Lease changed since), so two pods racing
//! for one Lease cannot both win.

pub use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};

use super::{api_error, is_status};
use crate::error::Result;

pub struct Leases {
    api: Api<Lease>,
}

impl Leases {
    pub(super) fn new(api: Api<Lease>) -> Self {
        Self { api }
    }

    /// The Lease `name`, if it exists.
    pub async fn get(&self, name: &str) -> Result<Option<Lease>> {
        self.api
            .get_opt(name)
            .await
            .map_err(|e| api_error(e, &format!("reading Lease {name}")))
    }

    /// Create `lease`; `None` if a Lease of that name exists already.
    pub async fn create(&self, lease: &Lease) -> Result<Option<Lease>> {
        let name = lease.metadata.name.as_deref().unwrap_or_default();
        match self.api.create(&PostParams::default(), lease).await {
            Ok(created) => Ok(Some(created)),
            Err(e) if is_status(&e, 409) => Ok(None),
            Err(e) => Err(api_error(e, &format!("creating Lease {name}"))),
        }
    }

    /// Replace `lease` (which carries the resourceVersion it was read at); `None` if it
    /// changed since.
    pub async fn replace(&self, lease: &Lease) -> Result<Option<Lease>> {
        let name = lease.metadata.name.as_deref().unwrap_or_default();
        match self.api.replace(name, &PostParams::default(), lease).await {
            Ok(replaced) => Ok(Some(replaced)),
            Err(e) if is_status(&e, 409) => Ok(None),
            Err(e) => Err(api_error(e, &format!("updating Lease {name}"))),
        }
    }
}

/// A Lease's time from a chrono instant.
pub fn micro_time(at: chrono::DateTime<chrono::Utc>) -> MicroTime {
    let nanos = at.timestamp_subsec_nanos() as i32;
    MicroTime(
        k8s_openapi::jiff::Timestamp::new(at.timestamp(), nanos)
            .expect("a chrono instant is within jiff's range"),
    )
}

/// A Lease's time as a chrono instant.
pub fn from_micro_time(at: &MicroTime) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(at.0.as_second(), at.0.subsec_nanosecond() as u32)
        .unwrap_or_default()
}
