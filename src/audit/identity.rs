//! Who is running this process, for audit events: the Kubernetes service account and pod (from
//! the downward API variables the deploy sets), or the local user and host; and what started
//! it.

use sha2::{Digest, Sha256};

/// Who and why, as every event of this process says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub actor: String,
    pub host: String,
    pub trigger: String,
}

impl Origin {
    /// This process, started by `trigger` unless `COFFRE_TRIGGER` names one (a CronJob sets
    /// `schedule`; a person running `job run` by hand may set `manual`).
    pub fn current(trigger: &str) -> Self {
        Self {
            actor: actor(),
            host: host(),
            trigger: self::trigger(trigger),
        }
    }
}

/// `COFFRE_TRIGGER` when it names a trigger, else `default`.
pub fn trigger(default: &str) -> String {
    std::env::var("COFFRE_TRIGGER")
        .ok()
        .filter(|t| ["schedule", "manual", "incident"].contains(&t.as_str()))
        .unwrap_or_else(|| default.to_string())
}

fn host() -> String {
    std::env::var("COFFRE_POD_NAME")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| {
            Some(crate::process::host_name())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "unknown-host".into())
        })
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Who runs this: `COFFRE_ACTOR` when set (a person acting through a shared account says who
/// they are); in a pod, `serviceaccount:NAMESPACE/NAME pod POD`; else `user@host`.
pub fn actor() -> String {
    if let Some(actor) = var("COFFRE_ACTOR") {
        return actor;
    }
    let host = host();
    let namespace = var("COFFRE_POD_NAMESPACE").or_else(|| {
        std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
            .ok()
            .map(|ns| ns.trim().to_string())
    });
    if let Some(namespace) = namespace {
        let account = var("COFFRE_SERVICE_ACCOUNT").unwrap_or_else(|| "?".into());
        return format!("serviceaccount:{namespace}/{account} pod {host}");
    }
    match var("USER").or_else(|| var("LOGNAME")) {
        Some(user) => format!("{user}@{host}"),
        None => format!("uid {}@{host}", process_uid()),
    }
}

fn process_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(u32::MAX)
}

/// An event id made from what identifies the event, so writing it again gives the same id.
pub fn stable_id(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..16])
}
