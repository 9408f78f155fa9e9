//! The lock as a Kubernetes Lease `coffre-JOB`: holderIdentity, acquireTime, renewTime and
//! leaseDurationSeconds, as Kubernetes' own leader election writes them. Released by clearing
//! the holder (so the service account needs get, create and update, never delete).

use chrono::Utc;
use kube::api::ObjectMeta;

use super::{Acquired, Held, LOCK_TTL, LockGuard, LockRecord};
use crate::config::lease_name;
use crate::error::{Error, Result};
use crate::k8s::{Lease, LeaseSpec, Leases, from_micro_time, micro_time};

/// Who holds `lease` and until when; `None` when nobody does.
fn holder_of(lease: &Lease) -> Option<LockRecord> {
    let spec = lease.spec.as_ref()?;
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty())?;
    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref());
    let renewed = renewed.map(from_micro_time).unwrap_or_default();
    let duration = chrono::Duration::seconds(spec.lease_duration_seconds.unwrap_or(0).into());
    Some(LockRecord {
        holder,
        acquired_at: spec.acquire_time.as_ref().map_or(renewed, from_micro_time),
        expires_at: renewed + duration,
    })
}

fn spec_for(record: &LockRecord, transitions: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(record.holder.clone()),
        acquire_time: Some(micro_time(record.acquired_at)),
        renew_time: Some(micro_time(record.acquired_at)),
        lease_duration_seconds: Some(LOCK_TTL.as_secs() as i32),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

pub(super) async fn acquire<'a>(
    leases: &'a Leases,
    job: &str,
    holder: &str,
) -> Result<Acquired<'a>> {
    let name = lease_name(job)?;
    // A lost race (created or claimed by someone else between our read and our write) is
    // read again: it then shows who won.
    for _ in 0..3 {
        let record = LockRecord::new(holder, Utc::now());
        let mut took_over = None;
        let written = match leases.get(&name).await? {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec_for(&record, 0)),
                };
                leases.create(&lease).await?
            }
            Some(mut current) => {
                took_over = holder_of(&current);
                if let Some(held) = &took_over {
                    if held.expires_at > record.acquired_at {
                        return Ok(Acquired::Busy(held.clone()));
                    }
                    tracing::warn!(
                        "the Lease {name} held by {} expired at {}: taking it over",
                        held.holder,
                        held.expires_at
                    );
                }
                let transitions = current.spec.as_ref().and_then(|s| s.lease_transitions);
                current.spec = Some(spec_for(&record, transitions.unwrap_or(0) + 1));
                leases.replace(&current).await?
            }
        };
        if let Some(lease) = written {
            return Ok(Acquired::Taken(LockGuard {
                job: job.to_string(),
                record,
                held: Held::Lease(leases, Box::new(lease)),
                took_over,
            }));
        }
    }
    Err(Error::store(format!(
        "the Lease {name} keeps changing: another process is taking it"
    )))
}

pub(super) async fn renew(leases: &Leases, lease: &mut Lease, holder: &str) -> Result<()> {
    let now = micro_time(Utc::now());
    update(leases, lease, holder, |spec| {
        spec.renew_time = Some(now.clone())
    })
    .await
}

pub(super) async fn release(leases: &Leases, lease: &mut Lease, holder: &str) -> Result<()> {
    update(leases, lease, holder, |spec| spec.holder_identity = None).await
}

/// Change our Lease. If it changed since we wrote it, read it again: still ours (someone
/// edited a label), change that; someone else's (it had expired and was taken over), an error.
async fn update(
    leases: &Leases,
    lease: &mut Lease,
    holder: &str,
    change: impl Fn(&mut LeaseSpec),
) -> Result<()> {
    let name = lease.metadata.name.clone().unwrap_or_default();
    for _ in 0..3 {
        let mut next = lease.clone();
        change(next.spec.get_or_insert_with(LeaseSpec::default));
        if let Some(written) = leases.replace(&next).await? {
            *lease = written;
            return Ok(());
        }
        let Some(current) = leases.get(&name).await? else {
            return Err(Error::store(format!(
                "the Lease {name} was deleted while this run held it"
            )));
        };
        match holder_of(&current) {
            Some(held) if held.holder == holder => *lease = current,
            Some(held) => {
                return Err(Error::store(format!(
                    "the Lease {name} was taken over by {} (it had expired)",
                    held.holder
                )));
            }
            None => {
                return Err(Error::store(format!(
                    "the Lease {name} was released by someone else while this run held it"
                )));
            }
        }
    }
    Err(Error::store(format!(
        "the Lease {name} keeps changing: another process is writing it"
    )))
}
