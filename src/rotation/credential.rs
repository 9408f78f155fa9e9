//! What the rotation state machine asks of each kind of credential (a database user's
//! password, an API key, a certificate, the internal CA): `ops::rotate` runs the same journaled
//! steps for all of them and calls these at each.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::time::Duration;

use super::journal::{Record, State};
use crate::error::Result;
use crate::secretstore::Fields;

/// What a new rotation is for, decided from the published secret.
pub struct Begun {
    /// Whose credential changes: the database user, "key", the certificate's first name.
    pub subject: String,
    /// Worth recording: the published credential no longer worked, say.
    pub note: Option<String>,
}

#[async_trait]
pub trait Credential: Send + Sync {
    /// The published field that is the credential; its fingerprint names the rotation.
    fn key_field(&self) -> &'static str;

    /// Where it is issued, for plans and messages: `postgres://db:5432`, "internal CA k8s:...".
    fn describe(&self) -> String;

    /// Check that a rotation could run, changing nothing (the admin logs in, the CA reads).
    async fn check(&self) -> Result<()>;

    /// Whether a scheduled run should rotate now, by the credential itself (a certificate's
    /// expiry); a target's `every` is checked besides.
    async fn due(&self, _published: Option<&Fields>, _now: DateTime<Utc>) -> Result<Due> {
        Ok(Due::Always)
    }

    /// In words, what a new rotation would do (`--dry-run`), and what becomes of the
    /// credential it replaces: revoked `revoke_after` the rotation finishes (zero: at once, as
    /// in an incident), or left until the next rotation (none).
    fn plan(&self, published: Option<&Fields>, revoke_after: Option<Duration>) -> String;

    /// Before anything is written: whom the rotation is for.
    async fn begin(&self, published: Option<&Fields>) -> Result<Begun>;

    /// The new secret material, journaled as pending before anything else changes.
    fn generate(&self, subject: &str) -> Result<Fields>;

    /// DB_SET: the issuer accepts the pending credential (the database user has the password,
    /// the issuer knows the key, the certificate is signed, added to `pending`). Safe to repeat.
    async fn apply(&self, rotation: &Record, pending: &mut Fields) -> Result<Option<String>>;

    /// TESTED: the pending credential works (a login, a chain that verifies).
    async fn test(&self, rotation: &Record, pending: &Fields) -> Result<()>;

    /// What consumers read once it is published, given what they read now.
    fn published(&self, rotation: &Record, pending: &Fields, current: Option<&Fields>) -> Fields;

    /// Make the credential this rotation replaced stop working (after its grace period, or at
    /// once in an incident). Returns the published fields without it, when they change.
    /// Safe to repeat.
    async fn revoke(&self, rotation: &Record, published: &Fields) -> Result<Revoked>;

    /// Whether dropping the pending credential at `reached` would lose the one in use.
    fn abandon_loses_live(&self, _reached: State) -> bool {
        false
    }
}

/// What the credential says about rotating it now.
pub enum Due {
    /// It does not expire: every scheduled run rotates it (unless the target sets `every`).
    Always,
    /// It should be rotated now, and why.
    Now(String),
    /// Not yet, and why.
    NotYet(String),
}

/// What revoking did.
pub struct Revoked {
    /// In words, for the audit event.
    pub detail: String,
    /// The published secret without the revoked credential, to write.
    pub published: Option<Fields>,
}
