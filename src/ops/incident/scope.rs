//! What an incident covers: every target, or those named, in a namespace, or whose published
//! Secret carries some labels (read with `get`, so no right to list Secrets is needed).

use crate::config::{Config, RotationTarget};
use crate::error::{Error, Result};
use crate::k8s::Selector;
use crate::ops::rotate;

/// Which targets an incident rotates.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub all: bool,
    /// Target names or published secrets (`k8s:NS/NAME`, `NS/NAME`, `vault:...`).
    pub secrets: Vec<String>,
    pub namespaces: Vec<String>,
    /// A label selector on the published Kubernetes Secrets.
    pub selector: Option<String>,
}

impl Scope {
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.all {
            parts.push("all".to_string());
        }
        parts.extend(self.secrets.iter().map(|s| format!("secret {s}")));
        parts.extend(self.namespaces.iter().map(|n| format!("namespace {n}")));
        parts.extend(self.selector.iter().map(|s| format!("selector {s}")));
        parts.join(", ")
    }
}

/// The targets in scope: those any part of the scope names.
pub async fn select<'a>(config: &'a Config, scope: &Scope) -> Result<Vec<&'a RotationTarget>> {
    if !scope.all
        && scope.secrets.is_empty()
        && scope.namespaces.is_empty()
        && scope.selector.is_none()
    {
        return Err(Error::config(
            "say what the incident covers: --all, --secret NAME, --namespace NS or --selector LABELS",
        ));
    }
    let all = rotate::select(config, &[])?;
    for wanted in &scope.secrets {
        if !all.iter().any(|t| names_secret(t, wanted)) {
            return Err(Error::config(format!(
                "--secret {wanted}: no rotation target is named so or publishes to it (coffre rotate status lists them)"
            )));
        }
    }
    let selector = scope.selector.as_deref().map(Selector::parse).transpose()?;
    let mut chosen = Vec::new();
    for target in all {
        let namespace = target.kubernetes_secret().map(|(ns, _)| ns);
        let by_selector = match (&selector, target.kubernetes_secret()) {
            (Some(selector), Some((ns, name))) => {
                let cluster = config.secrets.stores.cluster().await?;
                cluster
                    .secret_labels(ns, name)
                    .await?
                    .is_some_and(|labels| selector.matches(&labels))
            }
            _ => false,
        };
        if scope.all
            || scope.secrets.iter().any(|s| names_secret(target, s))
            || namespace.is_some_and(|ns| scope.namespaces.iter().any(|n| n == ns))
            || by_selector
        {
            chosen.push(target);
        }
    }
    if chosen.is_empty() {
        return Err(Error::config(format!(
            "no rotation target is in scope ({})",
            scope.describe()
        )));
    }
    Ok(chosen)
}

fn names_secret(target: &RotationTarget, wanted: &str) -> bool {
    target.name == wanted
        || target.publish.to_string() == wanted
        || target
            .kubernetes_secret()
            .is_some_and(|(ns, name)| format!("{ns}/{name}") == wanted)
}
