//! `[metrics]`, `[notify]` and `[audit]`: how runs are reported to monitoring and auditors.

use serde::Deserialize;
use std::net::SocketAddr;

use super::ObjectLockConfig;
use crate::secretstore::SecretRef;

/// The audit trail of rotations, kept in the store under `_audit/`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Lock each audit event object (S3 Object Lock) for this long after it is written.
    pub object_lock: Option<ObjectLockConfig>,
}

/// Prometheus metrics of job runs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// A Pushgateway (`http://pushgateway.monitoring:9091`): each `job run` pushes its metrics.
    pub pushgateway: Option<String>,
    /// Where the daemon serves `/metrics` (`0.0.0.0:9464`).
    pub listen: Option<SocketAddr>,
}

/// Who hears about runs.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// A heartbeat URL (healthchecks.io style), pinged at `/start`, on success, and at `/fail`.
    /// It names a check and is as good as a password: a secret reference.
    pub heartbeat: Option<SecretRef>,
    /// A webhook (Slack-compatible: `{"text": ...}`) told of every failed run: a secret
    /// reference, as webhook URLs carry their own credentials.
    pub webhook: Option<SecretRef>,
}
