//! Before a new rotation: whether a scheduled run has anything due, and what the last,
//! finished rotation still owes (revoking the credential it replaced).

use chrono::Utc;

use super::{Outcome, Setup, revoke};
use crate::config::RotationTarget;
use crate::error::Result;
use crate::rotation::credential::{Credential, Due};
use crate::rotation::journal::{Journal, Record};
use crate::secretstore::Fields;

/// Before a new rotation: what a finished one still owes.
pub(super) enum Begin {
    Start(Option<Box<Journal>>),
    Done(Outcome),
}

/// A finished rotation whose grace period is over has its replaced credential revoked; a new
/// rotation revokes it first in any case (it is about to be replaced twice). A scheduled run
/// starts a rotation only when one is due.
pub(super) async fn start_or_revoke(setup: &Setup<'_>, finished: Option<Journal>) -> Result<Begin> {
    let (target, options) = (setup.target, setup.options);
    let published = setup.store.read(&target.publish.name).await?;
    let last = finished.as_ref().map(|j| &j.record);
    let why = match options.only_due {
        true => {
            due(
                target,
                setup.cred.as_ref(),
                last,
                published.as_ref().map(|p| &p.fields),
            )
            .await?
        }
        false => Ok(options.trigger.clone()),
    };
    let owes = last.is_some_and(|r| r.revoke_after.is_some() && r.revoked_at.is_none());
    // An incident run again after a failed revocation revokes; it does not rotate twice.
    if let Some(j) = finished
        .as_ref()
        .filter(|j| options.incident.is_some() && j.record.incident == options.incident)
    {
        let rotation_id = j.record.rotation_id;
        let detail = match owes {
            true => revoke::revoke(setup, finished.expect("checked")).await?.1,
            false => "already rotated by this incident".to_string(),
        };
        return Ok(Begin::Done(Outcome::Revoked {
            target: target.name.clone(),
            rotation_id,
            detail,
        }));
    }
    let overdue = last.is_some_and(|r| r.revoke_after.is_some_and(|t| t <= Utc::now()));
    let finished = match (finished, owes && (why.is_ok() || overdue)) {
        (Some(j), true) => {
            let (journal, detail) = revoke::revoke(setup, j).await?;
            if why.is_err() {
                return Ok(Begin::Done(Outcome::Revoked {
                    target: target.name.clone(),
                    rotation_id: journal.record.rotation_id,
                    detail,
                }));
            }
            Some(journal)
        }
        (finished, _) => finished,
    };
    match why {
        Ok(_) => Ok(Begin::Start(finished.map(Box::new))),
        Err(why) => Ok(Begin::Done(Outcome::NotDue {
            target: target.name.clone(),
            why,
        })),
    }
}

/// Why a scheduled run should rotate now; `Err(why not)` when nothing is due.
async fn due(
    target: &RotationTarget,
    cred: &dyn Credential,
    last: Option<&Record>,
    published: Option<&Fields>,
) -> Result<std::result::Result<String, String>> {
    let now = Utc::now();
    let last_finished = last.and_then(|r| r.finished_at);
    let by_age = match (target.every, last_finished) {
        (None, _) => None,
        (Some(_), None) => Some(Ok("never rotated".to_string())),
        (Some(every), Some(at)) => {
            let next = at + chrono::Duration::from_std(every).unwrap_or(chrono::Duration::MAX);
            Some(if now >= next {
                Ok(format!("last rotated {}", at.format("%Y-%m-%d %H:%M UTC")))
            } else {
                Err(format!(
                    "next rotation due {}",
                    next.format("%Y-%m-%d %H:%M UTC")
                ))
            })
        }
    };
    Ok(match (cred.due(published, now).await?, by_age) {
        (Due::Now(why), _) | (_, Some(Ok(why))) => Ok(why),
        (Due::Always, None) => Ok("scheduled".into()),
        (Due::NotYet(why), _) | (Due::Always, Some(Err(why))) => Err(why),
    })
}
