//! API keys as rotation credentials: a new random key registered with its issuer (a hook),
//! published as `current` with the old key as `previous`, which the issuer stops accepting
//! (the revoke hook) once the grace period is over.

use async_trait::async_trait;
use std::time::Duration;

use crate::audit::fingerprint;
use crate::config::ApiKeyTarget;
use crate::error::{Error, Result};
use crate::rotation::credential::{Begun, Credential, Revoked};
use crate::rotation::hook::Request;
use crate::rotation::journal::Record;
use crate::rotation::password::api_key;
use crate::secretstore::{Fields, Resolver};

pub(super) struct ApiKey {
    pub target_name: String,
    pub settings: ApiKeyTarget,
    pub secrets: Resolver,
}

/// The subject of every API key rotation.
const SUBJECT: &str = "key";

#[async_trait]
impl Credential for ApiKey {
    fn key_field(&self) -> &'static str {
        "current"
    }

    fn describe(&self) -> String {
        match &self.settings.register {
            Some(h) => format!("API key registered by {}", h.describe()),
            None => "API key (no issuer hook)".into(),
        }
    }

    async fn check(&self) -> Result<()> {
        Ok(())
    }

    fn plan(&self, published: Option<&Fields>, revoke_after: Option<Duration>) -> String {
        match (published.and_then(|p| p.get("current")), revoke_after) {
            (None, _) => "first key (nothing is published yet)".into(),
            (Some(_), Some(d)) if d.is_zero() => {
                "new key; the current one is revoked as soon as the workloads rolled out with the new one".into()
            }
            (Some(_), Some(d)) => format!(
                "new key; the current one stays as previous for {} after the rotation finishes, then is revoked",
                crate::duration::HumanDuration(d)
            ),
            (Some(_), None) => {
                "new key; the current one stays as previous until the next rotation".into()
            }
        }
    }

    async fn begin(&self, _: Option<&Fields>) -> Result<Begun> {
        Ok(Begun {
            subject: SUBJECT.into(),
            note: None,
        })
    }

    fn generate(&self, _: &str) -> Result<Fields> {
        let key = api_key(&self.settings.prefix, self.settings.bytes);
        Ok(Fields::new().with("current", &key))
    }

    async fn apply(&self, rotation: &Record, pending: &mut Fields) -> Result<Option<String>> {
        let Some(hook) = &self.settings.register else {
            return Ok(Some("no register hook: the key is only published".into()));
        };
        let key = pending_key(pending)?;
        hook.call(
            &Request {
                event: "register",
                target: &self.target_name,
                rotation_id: rotation.rotation_id,
                key,
                fingerprint: &fingerprint(key),
            },
            &self.secrets,
        )
        .await?;
        Ok(Some("registered with the issuer".into()))
    }

    async fn test(&self, _: &Record, pending: &Fields) -> Result<()> {
        pending_key(pending).map(|_| ())
    }

    fn published(&self, rotation: &Record, pending: &Fields, current: Option<&Fields>) -> Fields {
        let mut fields = Fields::new()
            .with("current", pending.get("current").unwrap_or_default())
            .with("rotation_id", &rotation.rotation_id.to_string());
        // A resumed publish reads its own write: the previous key is the one before it.
        let before = current.and_then(|c| {
            if c.get("current") == pending.get("current") {
                c.get("previous")
            } else {
                c.get("current")
            }
        });
        if let Some(previous) = before {
            fields.insert("previous", previous);
        }
        fields
    }

    async fn revoke(&self, rotation: &Record, published: &Fields) -> Result<Revoked> {
        let previous = published.get("previous");
        match (&rotation.previous_fingerprint, previous) {
            // Nothing was published before this rotation: a `previous` there is not its to revoke.
            (None, _) => {
                return Ok(Revoked {
                    detail: "no previous key to revoke".into(),
                    published: None,
                });
            }
            // The key this rotation replaced is not the one the secret keeps as previous (someone
            // removed or changed it): revoking by hand is the only way to be sure it is gone.
            (Some(expected), found) if found.map(fingerprint).as_ref() != Some(expected) => {
                return Err(Error::integrity(format!(
                    "the secret no longer holds the key rotation {} replaced (fingerprint {expected}) as previous: revoke that key at its issuer by hand, then run 'coffre rotate --abandon {}'",
                    rotation.rotation_id, self.target_name
                )));
            }
            _ => {}
        }
        let previous = previous.expect("checked above");
        let mut detail = "previous key dropped from the secret".to_string();
        if let Some(hook) = &self.settings.revoke {
            hook.call(
                &Request {
                    event: "revoke",
                    target: &self.target_name,
                    rotation_id: rotation.rotation_id,
                    key: previous,
                    fingerprint: &fingerprint(previous),
                },
                &self.secrets,
            )
            .await?;
            detail = "previous key revoked at the issuer and dropped from the secret".into();
        }
        let mut kept = Fields::new();
        for (name, value) in published.iter().filter(|(n, _)| *n != "previous") {
            kept.insert(name, value);
        }
        Ok(Revoked {
            detail,
            published: Some(kept),
        })
    }
}

fn pending_key(pending: &Fields) -> Result<&str> {
    pending.get("current").ok_or_else(|| {
        Error::integrity(
            "the journal holds no pending key: see docs/ROTATION.md, recovering by hand",
        )
    })
}
