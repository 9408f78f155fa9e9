//! Kubernetes Secrets (`NAMESPACE/NAME`), through the kube client. A conditional write is a
//! create (409 AlreadyExists when the name is taken) or a replace carrying the resourceVersion
//! read (409 Conflict when the Secret changed since): the API server decides the race.

use async_trait::async_trait;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use std::collections::BTreeMap;

use super::versioned::{Fields, SecretStore, Versioned, Written};
use crate::error::{Error, Result};
use crate::k8s::{Cluster, api_error, is_status};

/// Marks the Secrets coffre writes, so `kubectl get secrets -l` finds them.
const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "coffre");

pub struct KubernetesStore {
    cluster: Cluster,
}

impl KubernetesStore {
    pub fn new(cluster: Cluster) -> Self {
        Self { cluster }
    }

    /// The Secret `name`, if it exists.
    async fn get(&self, name: &str) -> Result<Option<Secret>> {
        let (api, secret) = self.api(name)?;
        api.get_opt(&secret)
            .await
            .map_err(|e| api_error(e, &format!("reading Secret {name}")))
    }

    fn api(&self, name: &str) -> Result<(kube::Api<Secret>, String)> {
        let (namespace, secret) = split(name)?;
        Ok((self.cluster.secrets(namespace), secret.to_string()))
    }
}

fn split(name: &str) -> Result<(&str, &str)> {
    match name.split_once('/') {
        Some((ns, secret)) if !ns.is_empty() && !secret.is_empty() && !secret.contains('/') => {
            Ok((ns, secret))
        }
        _ => Err(Error::config(format!(
            "k8s:{name}: a Kubernetes Secret is named NAMESPACE/NAME"
        ))),
    }
}

fn fields_of(secret: &Secret, name: &str) -> Result<Fields> {
    let mut fields = Fields::new();
    for (key, value) in secret.data.iter().flatten() {
        let text = std::str::from_utf8(&value.0).map_err(|_| {
            Error::store(format!(
                "Kubernetes Secret {name}: key {key} is not UTF-8 text, so it is not a credential coffre wrote"
            ))
        })?;
        fields.insert(key, text);
    }
    for (key, value) in secret.string_data.iter().flatten() {
        fields.insert(key, value);
    }
    Ok(fields)
}

fn data_of(fields: &Fields) -> BTreeMap<String, ByteString> {
    fields
        .iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect()
}

/// A new Secret holding `fields`, marked as coffre's.
fn new_secret(name: &str, fields: &Fields) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY.0.to_string(),
                MANAGED_BY.1.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(data_of(fields)),
        type_: Some(secret_type(fields).into()),
        ..Default::default()
    }
}

/// A certificate and its key make a kubernetes.io/tls Secret (what Ingresses and service meshes
/// read); anything else is Opaque. The type is set at creation and kept after.
fn secret_type(fields: &Fields) -> &'static str {
    match (fields.get("tls.crt"), fields.get("tls.key")) {
        (Some(_), Some(_)) => "kubernetes.io/tls",
        _ => "Opaque",
    }
}

/// Overwrite encoded values about to be dropped (they are plain bytes there).
fn scrub(mut data: Option<BTreeMap<String, ByteString>>) {
    for value in data.iter_mut().flat_map(|d| d.values_mut()) {
        zeroize::Zeroize::zeroize(&mut value.0);
    }
}

#[async_trait]
impl SecretStore for KubernetesStore {
    async fn read(&self, name: &str) -> Result<Option<Versioned>> {
        let Some(found) = self.get(name).await? else {
            return Ok(None);
        };
        let fields = fields_of(&found, name)?;
        let version = found.metadata.resource_version.clone().unwrap_or_default();
        scrub(found.data);
        Ok(Some(Versioned { fields, version }))
    }

    async fn write(&self, name: &str, fields: &Fields, expected: Option<&str>) -> Result<Written> {
        let (api, secret) = self.api(name)?;
        let object = match expected {
            None => new_secret(&secret, fields),
            // Replace the data only: labels, annotations and owners others set are kept. The
            // replace carries the resourceVersion read, so it stays conditional.
            Some(version) => {
                let Some(mut current) = self.get(name).await? else {
                    return Ok(Written::Conflict);
                };
                if current.metadata.resource_version.as_deref() != Some(version) {
                    scrub(current.data);
                    return Ok(Written::Conflict);
                }
                current
                    .metadata
                    .labels
                    .get_or_insert_default()
                    .insert(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string());
                scrub(current.data.replace(data_of(fields)));
                current.string_data = None;
                current
            }
        };
        let result = match expected {
            None => api.create(&PostParams::default(), &object).await,
            Some(_) => api.replace(&secret, &PostParams::default(), &object).await,
        };
        scrub(object.data);
        match result {
            Ok(written) => {
                let version = written
                    .metadata
                    .resource_version
                    .clone()
                    .unwrap_or_default();
                scrub(written.data);
                Ok(Written::Done(version))
            }
            Err(e) if is_status(&e, 409) => Ok(Written::Conflict),
            // A replace of a Secret deleted since it was read: it changed, so it is a conflict.
            Err(e) if expected.is_some() && is_status(&e, 404) => Ok(Written::Conflict),
            Err(e) => Err(api_error(e, &format!("writing Secret {name}"))),
        }
    }

    async fn delete(&self, name: &str) -> Result<()> {
        let (api, secret) = self.api(name)?;
        match api.delete(&secret, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(api_error(e, &format!("deleting Secret {name}"))),
        }
    }
}
