//! Secret stores that coffre writes as well as reads: where rotated credentials are published
//! and where rotation journals live. One trait for all of them (a Kubernetes Secret, Vault KV v2,
//! AWS Secrets Manager, a directory of files): read with a version, write only if the version is
//! still the one read, delete. The conditional write is what makes a journal a lock and what
//! catches an edit made behind coffre's back.

use async_trait::async_trait;
use std::collections::BTreeMap;
use std::fmt;
use zeroize::Zeroizing;

use crate::error::Result;

/// A secret's named fields (username, password, ...): values are zeroized when dropped and
/// never shown by `Debug`; the field names are not secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Fields(BTreeMap<String, Zeroizing<String>>);

impl Fields {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.insert(name, value);
        self
    }

    pub fn insert(&mut self, name: &str, value: &str) {
        self.0
            .insert(name.to_string(), Zeroizing::new(value.to_string()));
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| v.as_str())
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// As a JSON object of strings (what the file store and the HTTP stores send).
    pub fn to_json(&self) -> Zeroizing<String> {
        let map: BTreeMap<&str, &str> = self.iter().collect();
        Zeroizing::new(serde_json::to_string(&map).expect("strings serialize"))
    }

    /// From a JSON object whose values are strings; anything else is `None`.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        let mut fields = Fields::new();
        for (name, value) in value.as_object()? {
            fields.insert(name, value.as_str()?);
        }
        Some(fields)
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// A secret as read, with the version a conditional write must name.
#[derive(Clone, Debug)]
pub struct Versioned {
    pub fields: Fields,
    /// Opaque: a resourceVersion, a KV v2 version number, a Secrets Manager version id.
    pub version: String,
}

/// What a conditional write did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    /// Written; the new version.
    Done(String),
    /// Someone else wrote (or created) the secret since it was read: nothing was written.
    Conflict,
}

/// A store of named secrets. A name is what follows the scheme in a reference:
/// `NAMESPACE/NAME` for Kubernetes, `MOUNT/PATH` for Vault, the secret id for Secrets Manager,
/// a path for files.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The secret and its version, or `None` when there is none.
    async fn read(&self, name: &str) -> Result<Option<Versioned>>;

    /// Write `fields` if the secret is still at version `expected`, or, with `None`, if it does
    /// not exist yet.
    async fn write(&self, name: &str, fields: &Fields, expected: Option<&str>) -> Result<Written>;

    /// Delete the secret (every version); deleting one that is gone is not an error.
    async fn delete(&self, name: &str) -> Result<()>;

    /// Destroy the versions of `name` older than `version`, where the store keeps them (Vault
    /// KV v2): a finished rotation's journal must not keep its pending credential in history.
    async fn forget_older(&self, _name: &str, _version: &str) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_show_and_json_round_trips() {
        let fields = Fields::new()
            .with("username", "app_a")
            .with("password", "hunter2-secret");
        let shown = format!("{fields:?}");
        assert!(
            shown.contains("password") && !shown.contains("hunter2"),
            "{shown}"
        );
        let json: serde_json::Value = serde_json::from_str(&fields.to_json()).unwrap();
        assert_eq!(Fields::from_json(&json).unwrap(), fields);
        assert!(Fields::from_json(&serde_json::json!({"a": 1})).is_none());
    }
}
