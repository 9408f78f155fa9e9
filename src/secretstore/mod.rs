//! Where a secret comes from, written one way everywhere: encryption keys, database passwords,
//! store credentials and a dump command's secret environment all name it as a `SecretRef`:
//!
//! ```text
//! env:NAME                   an environment variable of coffre's
//! file:PATH                  a file (a mounted Kubernetes Secret, say), read whole
//! k8s:NAMESPACE/NAME#KEY     a key of a Kubernetes Secret
//! vault:MOUNT/PATH#FIELD     a field of a Vault KV v2 secret
//! aws-sm:SECRET_ID#FIELD     a field of an AWS Secrets Manager secret (a JSON SecretString)
//! ```
//!
//! One resolver reads any of them into a `SecretValue`, which zeroizes its bytes when dropped and
//! never shows them in `Debug`. A reference names where a secret is, never the secret, so it may
//! appear in messages. The same stores, written through one trait (`versioned`), are where
//! rotated credentials are published.

pub mod aws;
pub mod env_file;
pub mod file_store;
pub mod kubernetes;
mod location;
mod stores;
pub mod vault;
pub mod versioned;

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
pub use aws::SecretsManagerConfig;
pub use env_file::FileAccess;
pub use location::{Backend, Location};
pub use stores::SecretStores;
pub use vault::VaultConfig;
pub use versioned::{Fields, SecretStore, Versioned, Written};

/// Where a secret is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
    Kubernetes {
        namespace: String,
        name: String,
        key: String,
    },
    Vault {
        path: String,
        field: String,
    },
    AwsSecretsManager {
        secret_id: String,
        field: String,
    },
}

impl SecretRef {
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        // Never echo the text: it may be the secret itself, written where its reference belongs.
        let bad = |why: &str| {
            format!(
                "the value is not a secret reference ({why}): write env:NAME, file:PATH, k8s:NAMESPACE/NAME#KEY, vault:MOUNT/PATH#FIELD or aws-sm:ID#FIELD"
            )
        };
        let (scheme, rest) = text.split_once(':').ok_or_else(|| bad("no scheme"))?;
        let split_field = |rest: &str| -> std::result::Result<(String, String), String> {
            match rest.rsplit_once('#') {
                Some((a, b)) if !a.is_empty() && !b.is_empty() => Ok((a.into(), b.into())),
                _ => Err(bad("it needs '#' and a field")),
            }
        };
        match scheme {
            "env"
                if !rest.is_empty()
                    && rest.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
            {
                Ok(SecretRef::Env(rest.into()))
            }
            "env" => Err(bad("a variable name is letters, digits and '_'")),
            "file" if !rest.is_empty() => Ok(SecretRef::File(rest.into())),
            "file" => Err(bad("no path")),
            "k8s" => {
                let (object, key) = split_field(rest)?;
                match object.split_once('/') {
                    Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => {
                        Ok(SecretRef::Kubernetes {
                            namespace: namespace.into(),
                            name: name.into(),
                            key,
                        })
                    }
                    _ => Err(bad("it needs NAMESPACE/NAME")),
                }
            }
            "vault" => {
                let (path, field) = split_field(rest)?;
                Ok(SecretRef::Vault { path, field })
            }
            "aws-sm" => {
                let (secret_id, field) = split_field(rest)?;
                Ok(SecretRef::AwsSecretsManager { secret_id, field })
            }
            _ => Err(bad("unknown scheme")),
        }
    }

    /// A file reference relative to `base` (the directory of the config that names it).
    pub fn relative_to(self, base: &Path, resolve: impl Fn(&Path, &Path) -> PathBuf) -> Self {
        match self {
            SecretRef::File(path) => SecretRef::File(resolve(base, &path)),
            other => other,
        }
    }

    /// The secret a store reference points into, and the field: `None` for env: and file:.
    pub fn location(&self) -> Option<(Location, &str)> {
        let (backend, name, field) = match self {
            SecretRef::Env(_) | SecretRef::File(_) => return None,
            SecretRef::Kubernetes {
                namespace,
                name,
                key,
            } => (Backend::Kubernetes, format!("{namespace}/{name}"), key),
            SecretRef::Vault { path, field } => (Backend::Vault, path.clone(), field),
            SecretRef::AwsSecretsManager { secret_id, field } => {
                (Backend::SecretsManager, secret_id.clone(), field)
            }
        };
        Some((Location { backend, name }, field.as_str()))
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(name) => write!(f, "env:{name}"),
            SecretRef::File(path) => write!(f, "file:{}", path.display()),
            SecretRef::Kubernetes {
                namespace,
                name,
                key,
            } => write!(f, "k8s:{namespace}/{name}#{key}"),
            SecretRef::Vault { path, field } => write!(f, "vault:{path}#{field}"),
            SecretRef::AwsSecretsManager { secret_id, field } => {
                write!(f, "aws-sm:{secret_id}#{field}")
            }
        }
    }
}

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        SecretRef::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A secret's bytes: zeroized when dropped, never shown by `Debug`.
#[derive(Clone)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value as text, without a final newline (which files usually end with): how
    /// passwords, passphrases and environment values are read.
    pub fn text(&self, what: &str) -> Result<Zeroizing<String>> {
        let text = std::str::from_utf8(&self.0)
            .map_err(|_| Error::config(format!("{what} is not UTF-8 text")))?;
        let text = text.strip_suffix('\n').unwrap_or(text);
        Ok(Zeroizing::new(
            text.strip_suffix('\r').unwrap_or(text).to_string(),
        ))
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(..)")
    }
}

/// A secret store's own credential (a Vault token, an AWS key), which cannot come from a
/// store: an env: or file: reference, read as text without trailing whitespace.
pub(crate) fn read_local(
    r: &SecretRef,
    what: &str,
    access: FileAccess,
) -> Result<Zeroizing<String>> {
    let bytes = match r {
        SecretRef::Env(name) => env_file::read_env(name, what)?,
        SecretRef::File(path) => env_file::read(path, what, access)?,
        other => {
            return Err(Error::config(format!(
                "{what} at {other}: a secret store's own credentials come from env: or file:"
            )));
        }
    };
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::config(format!("{what} is not UTF-8 text")))?;
    Ok(Zeroizing::new(text.trim_end().to_string()))
}

/// Reads secrets from where their references say.
#[derive(Clone, Debug, Default)]
pub struct Resolver {
    /// Who besides the owner may read a file a secret comes from.
    pub file_access: FileAccess,
    /// The stores behind k8s:, vault: and aws-sm: references, connected on first use.
    pub stores: std::sync::Arc<SecretStores>,
}

impl Resolver {
    /// Read the secret `r` names; `what` says what it is in errors ("the database password").
    pub async fn resolve(&self, r: &SecretRef, what: &str) -> Result<SecretValue> {
        let value = match r {
            SecretRef::Env(name) => env_file::read_env(name, what)?,
            SecretRef::File(path) => env_file::read(path, what, self.file_access)?,
            other => {
                let (location, field) = other.location().expect("a store reference");
                let store = self.stores.open(location.backend).await?;
                let secret = store
                    .read(&location.name)
                    .await
                    .map_err(|e| e.context(what))?
                    .ok_or_else(|| {
                        Error::config(format!(
                            "{what}: {location} does not exist: create it, or fix the reference {other}"
                        ))
                    })?;
                let value = secret.fields.get(field).ok_or_else(|| {
                    Error::config(format!(
                        "{what}: {location} has no field {field} (it has: {}): fix the reference {other}",
                        secret.fields.names().collect::<Vec<_>>().join(", ")
                    ))
                })?;
                zeroize::Zeroizing::new(value.as_bytes().to_vec())
            }
        };
        Ok(SecretValue(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scheme_parses_and_prints_back() {
        for text in [
            "env:DB_PASSWORD",
            "file:/var/run/secrets/db/password",
            "k8s:prod/app-db#password",
            "vault:secret/data/app#password",
            "aws-sm:prod/app#password",
        ] {
            assert_eq!(SecretRef::parse(text).unwrap().to_string(), text);
        }
        for bad in [
            "",
            "DB_PASSWORD",
            "env:",
            "env:A-B",
            "file:",
            "k8s:app#x",
            "vault:x",
            "s3:x",
        ] {
            assert!(SecretRef::parse(bad).is_err(), "{bad}");
        }
        // A password written where its reference belongs is not repeated in the error.
        let err = SecretRef::parse("hunter2-secret:x").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn values_are_read_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "hunter2-secret\n").unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let value = Resolver::default()
            .resolve(&SecretRef::File(path), "the password")
            .await
            .unwrap();
        assert_eq!(
            value.text("the password").unwrap().as_str(),
            "hunter2-secret"
        );
        assert!(!format!("{value:?}").contains("hunter2"));
        // A store that is not configured says how to configure it.
        if std::env::var_os("VAULT_ADDR").is_none() {
            let err = Resolver::default()
                .resolve(&SecretRef::parse("vault:a/b#c").unwrap(), "the password")
                .await
                .unwrap_err();
            assert!(err.message().contains("[vault] address"), "{err}");
        }
    }
}
