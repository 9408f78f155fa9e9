//! `[encryption]`: the keys every new backup is encrypted to, any one of which opens it.

use serde::Deserialize;
use std::path::{Path, PathBuf};

use super::resolve;
use crate::crypto::keys::{Argon2Params, Identity, Passphrase, Recipient, Secret, SymmetricKey};
use crate::error::{Error, Result};
use crate::secretstore::{Resolver, SecretRef};

/// Keys written to every new backup; any one of them opens it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    #[serde(default)]
    pub keys: Vec<KeyRef>,
    #[serde(default)]
    pub argon2: Argon2Params,
    /// A 32-byte key (`coffre key generate`) from which each job's dedup secret derives
    /// (format v2). Default: derived from the first key, identity or passphrase of `keys`;
    /// a job with only recipients needs it to store only what changed.
    pub dedup_key: Option<SecretRef>,
}

/// One key, and where it comes from.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "KeyEntry")]
pub enum KeyRef {
    /// A 32-byte key (`coffre key generate`): `{ key = "file:/etc/coffre/backup.key" }`.
    Key(SecretRef),
    /// A passphrase (argon2id): `{ passphrase = "env:COFFRE_PASSPHRASE" }`.
    Passphrase(SecretRef),
    /// An x25519 identity (`coffre key generate --x25519`): opens what its recipient wrote.
    Identity(SecretRef),
    /// An x25519 recipient (`coffre-x25519-v1:...`, public): backups are written to it, and
    /// only its identity opens them. A job with only recipients cannot restore.
    Recipient(String),
}

/// A `keys` entry as written: exactly one field set. The last five are older spellings.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    key: Option<SecretRef>,
    passphrase: Option<SecretRef>,
    identity: Option<SecretRef>,
    recipient: Option<String>,
    file: Option<PathBuf>,
    env: Option<String>,
    passphrase_env: Option<String>,
    passphrase_file: Option<PathBuf>,
    identity_file: Option<PathBuf>,
}

impl TryFrom<KeyEntry> for KeyRef {
    type Error = String;

    fn try_from(e: KeyEntry) -> std::result::Result<Self, String> {
        let set = [
            e.key.map(KeyRef::Key),
            e.passphrase.map(KeyRef::Passphrase),
            e.identity.map(KeyRef::Identity),
            e.recipient.map(KeyRef::Recipient),
            e.file.map(|p| KeyRef::Key(SecretRef::File(p))),
            e.env.map(|v| KeyRef::Key(SecretRef::Env(v))),
            e.passphrase_env
                .map(|v| KeyRef::Passphrase(SecretRef::Env(v))),
            e.passphrase_file
                .map(|p| KeyRef::Passphrase(SecretRef::File(p))),
            e.identity_file
                .map(|p| KeyRef::Identity(SecretRef::File(p))),
        ];
        let mut set = set.into_iter().flatten();
        match (set.next(), set.next()) {
            (Some(key), None) => Ok(key),
            _ => Err(
                "set exactly one of key, passphrase, identity (each \"env:NAME\" or \"file:PATH\") or recipient"
                    .into(),
            ),
        }
    }
}

impl KeyRef {
    /// "key file:backup.key", for messages (never a secret).
    pub fn describe(&self) -> String {
        match self {
            KeyRef::Key(r) => format!("key {r}"),
            KeyRef::Passphrase(r) => format!("passphrase {r}"),
            KeyRef::Identity(r) => format!("identity {r}"),
            KeyRef::Recipient(r) => format!("recipient {r}"),
        }
    }

    pub(super) fn relative_to(self, base: &Path) -> Self {
        match self {
            KeyRef::Key(r) => KeyRef::Key(r.relative_to(base, resolve)),
            KeyRef::Passphrase(r) => KeyRef::Passphrase(r.relative_to(base, resolve)),
            KeyRef::Identity(r) => KeyRef::Identity(r.relative_to(base, resolve)),
            recipient => recipient,
        }
    }

    /// Read the key this entry names.
    pub async fn load(&self, argon2: Argon2Params, secrets: &Resolver) -> Result<Secret> {
        let bad = |why: &str| Error::config(format!("{}: {why}", self.describe()));
        match self {
            KeyRef::Key(r) => {
                let value = secrets.resolve(r, "the key").await?;
                Ok(Secret::Key(
                    SymmetricKey::parse(value.bytes()).map_err(bad)?,
                ))
            }
            KeyRef::Passphrase(r) => {
                let value = secrets.resolve(r, "the passphrase").await?;
                Ok(Secret::Passphrase(
                    Passphrase::new(value.text("the passphrase")?)?,
                    argon2,
                ))
            }
            KeyRef::Identity(r) => {
                let value = secrets.resolve(r, "the identity").await?;
                let text = value.text("the identity")?;
                Ok(Secret::Identity(Identity::parse(&text).map_err(bad)?))
            }
            KeyRef::Recipient(text) => Ok(Secret::Recipient(Recipient::parse(text).map_err(bad)?)),
        }
    }
}

impl EncryptionConfig {
    /// Read every configured key; fails on the first that cannot be read.
    pub async fn load_keys(&self, secrets: &Resolver) -> Result<Vec<Secret>> {
        self.load_each(secrets).await.into_iter().collect()
    }

    /// Keys to open backups with: `extra` (given on the command line, already read) first,
    /// then the configured ones. A configured key that cannot be read is only an error when
    /// there is no extra key.
    pub async fn keys_with(&self, extra: Vec<Secret>, secrets: &Resolver) -> Result<Vec<Secret>> {
        let had_extra = !extra.is_empty();
        let mut keys = extra;
        for key in self.load_each(secrets).await {
            match key {
                Ok(secret) => keys.push(secret),
                Err(e) if !had_extra => return Err(e),
                Err(e) => tracing::warn!("{e}"),
            }
        }
        Ok(keys)
    }

    /// Read the dedup key, when one is configured.
    pub async fn load_dedup_key(&self, secrets: &Resolver) -> Result<Option<SymmetricKey>> {
        let Some(r) = &self.dedup_key else {
            return Ok(None);
        };
        let value = secrets.resolve(r, "the dedup key").await?;
        SymmetricKey::parse(value.bytes())
            .map(Some)
            .map_err(|why| Error::config(format!("[encryption] dedup_key {r}: {why}")))
    }

    /// Read every configured key, each with its own outcome.
    pub async fn load_each(&self, secrets: &Resolver) -> Vec<Result<Secret>> {
        let mut out = Vec::new();
        for key in &self.keys {
            let loaded = key.load(self.argon2, secrets).await;
            out.push(loaded.map_err(|e| e.context(format!("[encryption] {}", key.describe()))));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(toml_text: &str) -> std::result::Result<KeyRef, String> {
        toml::from_str::<KeyRef>(toml_text).map_err(|e| e.to_string())
    }

    #[test]
    fn new_and_older_spellings_name_the_same_key() {
        let file = KeyRef::Key(SecretRef::File("backup.key".into()));
        assert_eq!(entry("key = \"file:backup.key\"").unwrap(), file);
        assert_eq!(entry("file = \"backup.key\"").unwrap(), file);
        let pass = KeyRef::Passphrase(SecretRef::Env("P".into()));
        assert_eq!(entry("passphrase = \"env:P\"").unwrap(), pass);
        assert_eq!(entry("passphrase_env = \"P\"").unwrap(), pass);
        assert!(entry("key = \"file:a\"\npassphrase = \"env:P\"").is_err());
        assert!(entry("").unwrap_err().contains("exactly one"));
        assert!(
            entry("key = \"backup.key\"")
                .unwrap_err()
                .contains("not a secret reference")
        );
    }
}
