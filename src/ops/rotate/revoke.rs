//! The last step of a rotation: once the grace period is over (at once in an incident), the
//! credential it replaced stops working: the old database user gets an unknown password, the
//! old API key is revoked at its issuer and dropped from the secret.

use chrono::Utc;

use super::{Setup, trail};
use crate::audit::fingerprint;
use crate::error::{Error, Result};
use crate::rotation::journal::Journal;
use crate::secretstore::Written;

/// Revoke what `journal`'s finished rotation replaced; the journal as written after, and what
/// was done. Safe to repeat: each part checks what is already done.
pub(super) async fn revoke(setup: &Setup<'_>, journal: Journal) -> Result<(Journal, String)> {
    let target = setup.target;
    let mut record = journal.record;
    let published = setup.store.read(&target.publish.name).await?;
    let ours = published.as_ref().filter(|p| {
        p.fields.get("rotation_id") == Some(record.rotation_id.to_string().as_str())
            && p.fields
                .get(setup.cred.key_field())
                .map(fingerprint)
                .as_ref()
                == Some(&record.fingerprint)
    });
    let Some(published) = ours else {
        return Err(Error::integrity(format!(
            "{} changed after rotation {} finished, so the credential it replaced was not revoked: check the secret, revoke the old credential by hand if needed, then run 'coffre rotate --abandon {}'",
            target.publish, record.rotation_id, target.name
        )));
    };
    let revoked = setup.cred.revoke(&record, &published.fields).await?;
    if let Some(fields) = &revoked.published {
        match setup
            .store
            .write(&target.publish.name, fields, Some(&published.version))
            .await?
        {
            Written::Done(_) => {}
            Written::Conflict => {
                return Err(Error::store(format!(
                    "{} changed while the old credential was being revoked: the next run tries again",
                    target.publish
                )));
            }
        }
    }
    record.revoked_at = Some(Utc::now());
    record.updated_at = Utc::now();
    trail::owe(
        &mut record,
        "FINISHED",
        "REVOKED",
        Some(revoked.detail.clone()),
    );
    let doing = ("revoking", "the next run tries again");
    let store = setup.store.as_ref();
    let version = super::rewrite_journal(
        store,
        target,
        &record,
        &journal.pending,
        &journal.version,
        doing,
    )
    .await?;
    trail::pay(setup.audit, &mut record).await;
    let version =
        super::rewrite_journal(store, target, &record, &journal.pending, &version, doing).await?;
    Ok((
        Journal {
            record,
            pending: journal.pending,
            version,
        },
        revoked.detail,
    ))
}
