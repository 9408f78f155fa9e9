//! The workloads that use a Secret (Deployments, StatefulSets, DaemonSets), found from their pod
//! templates (env, envFrom, volumes, projected volumes), restarted by one pod-template
//! annotation patch (`coffre.io/rotation-id`), and watched until their rollout finishes.

use k8s_openapi::api::core::v1::PodSpec;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use serde_json::json;
use std::fmt;
use std::time::Duration;

use super::{Cluster, api_error};
use crate::error::{Error, Result};

/// The pod-template annotation whose change restarts a workload's pods.
pub const ROTATION_ANNOTATION: &str = "coffre.io/rotation-id";

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WorkloadKind {
    Deployment,
    StatefulSet,
    DaemonSet,
}

/// One workload, by kind, namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}/{}/{}", self.kind, self.namespace, self.name)
    }
}

impl Workload {
    /// `deployment/NAME`, `statefulset/NAME` or `daemonset/NAME`, in `namespace`.
    pub fn parse(text: &str, namespace: &str) -> std::result::Result<Self, String> {
        let (kind, name) = text.split_once('/').unwrap_or(("", ""));
        let kind = match kind.to_ascii_lowercase().as_str() {
            "deployment" => WorkloadKind::Deployment,
            "statefulset" => WorkloadKind::StatefulSet,
            "daemonset" => WorkloadKind::DaemonSet,
            _ => {
                return Err(format!(
                    "'{text}' is not a workload: write deployment/NAME, statefulset/NAME or daemonset/NAME"
                ));
            }
        };
        if name.is_empty() || name.contains('/') {
            return Err(format!("'{text}': the workload needs a name"));
        }
        Ok(Self {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

/// Whether a pod spec reads Secret `secret`: from env, envFrom, a volume or a projected volume.
pub fn uses_secret(spec: &PodSpec, secret: &str) -> bool {
    let named = |n: Option<&String>| n.is_some_and(|n| n == secret);
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for c in containers {
        let from_env = c.env.iter().flatten().any(|e| {
            e.value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .is_some_and(|r| r.name == secret)
        });
        let from_env_from = c
            .env_from
            .iter()
            .flatten()
            .any(|e| e.secret_ref.as_ref().is_some_and(|r| r.name == secret));
        if from_env || from_env_from {
            return true;
        }
    }
    spec.volumes.iter().flatten().any(|v| {
        named(v.secret.as_ref().and_then(|s| s.secret_name.as_ref()))
            || v.projected.iter().any(|p| {
                p.sources
                    .iter()
                    .flatten()
                    .any(|s| s.secret.as_ref().is_some_and(|s| s.name == secret))
            })
    })
}

/// How a rollout stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollout {
    pub done: bool,
    /// In words, for a rollout that did not finish: "2 of 3 updated, 1 available".
    pub progress: String,
}

impl WorkloadKind {
    const ALL: [WorkloadKind; 3] = [
        WorkloadKind::Deployment,
        WorkloadKind::StatefulSet,
        WorkloadKind::DaemonSet,
    ];

    /// The kind's API resource (`apps/v1`, plural `deployments`...).
    fn resource(self) -> ApiResource {
        ApiResource::from_gvk(&GroupVersionKind::gvk("apps", "v1", &format!("{self:?}")))
    }
}

impl Cluster {
    /// The three workload kinds share the fields coffre reads (`spec.template`, the rollout
    /// counters in `status`), so they are handled as one dynamic object.
    fn workloads(&self, kind: WorkloadKind, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &kind.resource())
    }

    async fn workload(&self, w: &Workload) -> Result<DynamicObject> {
        self.workloads(w.kind, &w.namespace)
            .get(&w.name)
            .await
            .map_err(|e| api_error(e, &format!("reading {w}")))
    }

    /// Every workload of `namespace` with its pod template, sorted (one list call per kind).
    pub async fn pod_templates(&self, namespace: &str) -> Result<Vec<(Workload, PodSpec)>> {
        let mut found = Vec::new();
        for kind in WorkloadKind::ALL {
            let listed = self
                .workloads(kind, namespace)
                .list(&ListParams::default())
                .await
                .map_err(|e| {
                    api_error(
                        e,
                        &format!("listing the workloads of namespace {namespace}"),
                    )
                })?;
            for object in listed {
                let pod = serde_json::from_value::<PodSpec>(
                    object.data["spec"]["template"]["spec"].clone(),
                );
                if let Ok(pod) = pod {
                    let workload = Workload {
                        kind,
                        namespace: namespace.to_string(),
                        name: object.metadata.name.unwrap_or_default(),
                    };
                    found.push((workload, pod));
                }
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// Restart `w`'s pods for rotation `rotation_id` by setting the pod-template annotation;
    /// false when it already carries this rotation's id (a resumed run patches nothing).
    pub async fn restart(&self, w: &Workload, rotation_id: &str) -> Result<bool> {
        let object = self.workload(w).await?;
        let current =
            &object.data["spec"]["template"]["metadata"]["annotations"][ROTATION_ANNOTATION];
        if current.as_str() == Some(rotation_id) {
            return Ok(false);
        }
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {ROTATION_ANNOTATION: rotation_id}}}}});
        self.workloads(w.kind, &w.namespace)
            .patch(&w.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| api_error(e, &format!("restarting {w}")))?;
        Ok(true)
    }

    /// How `w`'s rollout stands: done when the controller has seen the latest spec and every
    /// replica is updated and available.
    pub async fn rollout(&self, w: &Workload) -> Result<Rollout> {
        let object = self.workload(w).await?;
        let (spec, status) = (&object.data["spec"], &object.data["status"]);
        let count = |v: &serde_json::Value| v.as_i64().unwrap_or(0);
        let (want, updated, available) = match w.kind {
            WorkloadKind::DaemonSet => (
                count(&status["desiredNumberScheduled"]),
                count(&status["updatedNumberScheduled"]),
                count(&status["numberAvailable"]),
            ),
            _ => (
                spec["replicas"].as_i64().unwrap_or(1),
                count(&status["updatedReplicas"]),
                count(&status["availableReplicas"]),
            ),
        };
        let observed = status["observedGeneration"].as_i64();
        let seen = observed.is_some() && observed >= object.metadata.generation;
        Ok(Rollout {
            done: seen && updated >= want && available >= want,
            progress: format!(
                "{updated} of {want} updated, {available} available{}",
                if seen {
                    ""
                } else {
                    ", the latest spec not yet seen by its controller"
                }
            ),
        })
    }

    /// Wait for `w`'s rollout, polling, until `timeout` after `start`; an error naming its
    /// progress if it did not finish, an interruption if `stop` is cancelled first.
    pub async fn wait_rollout(
        &self,
        w: &Workload,
        timeout: Duration,
        start: tokio::time::Instant,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<()> {
        loop {
            let rollout = self.rollout(w).await?;
            if rollout.done {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(Error::store(format!(
                    "{w}: the rollout did not finish within {}s ({}): see kubectl rollout status",
                    timeout.as_secs(),
                    rollout.progress
                )));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.cancelled() => {
                    return Err(Error::interrupted(format!(
                        "stopped while waiting for the rollout of {w} ({})",
                        rollout.progress
                    )));
                }
            }
        }
    }
}
