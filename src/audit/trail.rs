//! Reading the trail back: every event in order, and whether the chain holds. Event N must be
//! at `_audit/events/N.json`, say it is N, and name the hash of event N-1's bytes; the trail
//! must start at 0 and skip no number. The first place where that fails is the broken link.
//! What the chain alone cannot show is events cut from its end: Object Lock prevents that, and
//! an anchor (the end a report or an earlier verify printed) detects it.

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};

use super::{Event, link_hash};
use crate::error::{Error, Result};
use crate::store::Store;

/// Events read at once.
const READ_CONCURRENCY: usize = 64;

/// One stored event and the hash of its bytes.
#[derive(Clone, Debug)]
pub struct Stored {
    pub seq: u64,
    pub event: Option<Event>,
    pub hash: String,
}

/// The trail as read, and what verifying it found.
#[derive(Clone, Debug, Default)]
pub struct Trail {
    /// Every event that reads as one, in trail order.
    pub events: Vec<Event>,
    pub verification: Verification,
}

#[derive(Clone, Debug, Default)]
pub struct Verification {
    /// Objects in the trail's directory.
    pub count: u64,
    /// The last event: its number and hash (what an anchor records).
    pub head: Option<(u64, String)>,
    pub first_at: Option<DateTime<Utc>>,
    pub last_at: Option<DateTime<Utc>>,
    /// The first broken link, in words; None when the chain holds.
    pub broken: Option<String>,
    /// Objects in the trail's directory that are not events.
    pub strays: Vec<String>,
}

impl Verification {
    pub fn intact(&self) -> bool {
        self.broken.is_none()
    }
}

/// An end of the trail seen before (`SEQ:sha256:HEX`): the trail must still hold that event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anchor {
    pub seq: u64,
    pub hash: String,
}

impl std::str::FromStr for Anchor {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            Error::config(format!(
                "--anchor {s}: give SEQ:sha256:HEX, the head an earlier `audit verify` or report printed"
            ))
        };
        let (seq, hash) = s.split_once(':').ok_or_else(bad)?;
        let hex = hash.strip_prefix("sha256:").ok_or_else(bad)?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(Anchor {
            seq: seq.parse().map_err(|_| bad())?,
            hash: hash.to_ascii_lowercase(),
        })
    }
}

/// Read the whole trail and check every link (and `anchor`, when given).
pub async fn read(store: &Store, anchor: Option<&Anchor>) -> Result<Trail> {
    let listed = store.audit_objects(None).await?;
    let stored: Vec<Stored> = futures::stream::iter(listed.seqs.iter().copied())
        .map(|seq| async move {
            let bytes = store.read_audit_event(seq).await?.ok_or_else(|| {
                Error::store(format!(
                    "audit event {seq} was listed, then gone: run again once the trail is still"
                ))
            })?;
            Ok::<_, Error>(Stored {
                seq,
                event: serde_json::from_slice(&bytes).ok(),
                hash: link_hash(&bytes),
            })
        })
        .buffered(READ_CONCURRENCY)
        .try_collect()
        .await?;
    let mut verification = check(&stored, anchor);
    verification.strays = listed.strays;
    let events = stored.into_iter().filter_map(|s| s.event).collect();
    Ok(Trail {
        events,
        verification,
    })
}

/// Check the links of `stored` (in place order).
fn check(stored: &[Stored], anchor: Option<&Anchor>) -> Verification {
    let mut v = Verification {
        count: stored.len() as u64,
        head: stored.last().map(|s| (s.seq, s.hash.clone())),
        first_at: stored.iter().find_map(|s| s.event.as_ref()).map(|e| e.at),
        last_at: stored
            .iter()
            .rev()
            .find_map(|s| s.event.as_ref())
            .map(|e| e.at),
        ..Verification::default()
    };
    v.broken = first_break(stored).or_else(|| anchor.and_then(|a| anchor_break(stored, a)));
    v
}

fn first_break(stored: &[Stored]) -> Option<String> {
    let mut before: Option<&Stored> = None;
    for s in stored {
        let expected = before.map_or(0, |b| b.seq + 1);
        if s.seq != expected {
            return Some(match expected {
                0 => format!(
                    "events 0 to {} are missing: the trail starts at {}",
                    s.seq - 1,
                    s.seq
                ),
                _ if s.seq == expected + 1 => format!(
                    "event {expected} is missing (the trail goes from {} to {})",
                    expected - 1,
                    s.seq
                ),
                _ => format!(
                    "events {expected} to {} are missing (the trail goes from {} to {})",
                    s.seq - 1,
                    expected - 1,
                    s.seq
                ),
            });
        }
        let Some(event) = &s.event else {
            return Some(format!(
                "event {} is not an audit event: it was edited or replaced",
                s.seq
            ));
        };
        if event.seq != Some(s.seq) {
            return Some(format!(
                "event {} holds the content of event {}: events were moved or reordered",
                s.seq,
                event.seq.map_or("none".into(), |n| n.to_string())
            ));
        }
        let expected_prev = before.map(|b| b.hash.as_str());
        if event.prev.as_deref() != expected_prev {
            return Some(match before {
                Some(b) => format!(
                    "event {} does not follow event {}: event {} was edited or replaced after event {} was written",
                    s.seq, b.seq, b.seq, s.seq
                ),
                None => {
                    "event 0 names an event before it: events before it were removed".to_string()
                }
            });
        }
        before = Some(s);
    }
    None
}

fn anchor_break(stored: &[Stored], anchor: &Anchor) -> Option<String> {
    match stored.iter().find(|s| s.seq == anchor.seq) {
        Some(s) if s.hash == anchor.hash => None,
        Some(_) => Some(format!(
            "event {} is not the one anchored ({}): the trail was rewritten from there",
            anchor.seq, anchor.hash
        )),
        None => Some(format!(
            "the trail ends before event {}, which was anchored: events were cut from its end",
            anchor.seq
        )),
    }
}

/// Which events `audit list` shows.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub kinds: Vec<String>,
    pub job: Option<String>,
}

impl Filter {
    pub fn matches(&self, event: &Event) -> bool {
        self.since.is_none_or(|t| event.at >= t)
            && self.until.is_none_or(|t| event.at < t)
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == event.kind()))
            && self
                .job
                .as_deref()
                .is_none_or(|j| event.subject() == Some(j))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Origin, What};

    /// A trail of `n` linked events, as stored.
    fn trail(n: u64) -> Vec<(u64, Vec<u8>)> {
        let origin = Origin {
            actor: "a@h".into(),
            host: "h".into(),
            trigger: "manual".into(),
        };
        let mut prev = None;
        (0..n)
            .map(|seq| {
                let mut e = Event::new(
                    &origin,
                    What::LockTakeover {
                        job: "j".into(),
                        previous_holder: "x".into(),
                        expired_at: Utc::now(),
                    },
                    "ok",
                    None,
                );
                e.seq = Some(seq);
                e.prev = prev.take();
                let bytes = serde_json::to_vec(&e).unwrap();
                prev = Some(link_hash(&bytes));
                (seq, bytes)
            })
            .collect()
    }

    fn verify(objects: &[(u64, Vec<u8>)]) -> Option<String> {
        let stored: Vec<Stored> = objects
            .iter()
            .map(|(seq, bytes)| Stored {
                seq: *seq,
                event: serde_json::from_slice(bytes).ok(),
                hash: link_hash(bytes),
            })
            .collect();
        check(&stored, None).broken
    }

    #[test]
    fn an_intact_trail_verifies_and_each_tampering_names_its_link() {
        let t = trail(6);
        assert_eq!(verify(&t), None);
        let mut deleted = t.clone();
        deleted.remove(3);
        assert!(verify(&deleted).unwrap().starts_with("event 3 is missing"));
        let mut first_gone = t.clone();
        first_gone.remove(0);
        assert!(
            verify(&first_gone)
                .unwrap()
                .contains("events 0 to 0 are missing")
        );
        let mut edited = t.clone();
        edited[2].1 = String::from_utf8(edited[2].1.clone())
            .unwrap()
            .replace("\"job\":\"j\"", "\"job\":\"k\"")
            .into_bytes();
        assert!(
            verify(&edited)
                .unwrap()
                .starts_with("event 3 does not follow event 2")
        );
        let mut swapped = t.clone();
        let (a, b) = (swapped[1].1.clone(), swapped[2].1.clone());
        swapped[1].1 = b;
        swapped[2].1 = a;
        assert!(verify(&swapped).unwrap().contains("moved or reordered"));
        let mut garbled = t;
        garbled[4].1 = b"not json".to_vec();
        assert!(
            verify(&garbled)
                .unwrap()
                .starts_with("event 4 is not an audit event")
        );
    }
}
