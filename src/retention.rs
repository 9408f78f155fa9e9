//! Retention: which backups of one series a policy keeps, as a pure function of
//! (backups, now, policy). Every kept backup carries the rules that keep it, so a dry run can
//! say why; a backup no rule keeps is deleted.
//!
//! Calendar rules (daily, weekly, monthly, yearly) keep the newest backup of each of the N most
//! recent days (ISO weeks, months, years) that have one, counted in the policy's time zone, so a
//! DST change never merges or splits a local day.

use chrono::{DateTime, Datelike, Duration, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use std::fmt;
use uuid::Uuid;

/// A retention policy, as written under `[retention]` in a job file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Keep everything younger than this many days (default 30).
    #[serde(default = "default_keep_within_days")]
    pub keep_within_days: u32,
    #[serde(default)]
    pub keep_last: u32,
    #[serde(default)]
    pub keep_daily: u32,
    #[serde(default)]
    pub keep_weekly: u32,
    #[serde(default)]
    pub keep_monthly: u32,
    #[serde(default)]
    pub keep_yearly: u32,
    /// Never keep fewer than this many backups, whatever the rules say (default 3).
    #[serde(default = "default_min_keep")]
    pub min_keep: u32,
    /// Time zone of the calendar rules, e.g. "Europe/Paris" (default UTC).
    #[serde(default = "default_timezone")]
    pub timezone: Tz,
    /// Prune the job right after each successful backup.
    #[serde(default)]
    pub prune_after_backup: bool,
}

fn default_keep_within_days() -> u32 {
    30
}
fn default_min_keep() -> u32 {
    3
}
fn default_timezone() -> Tz {
    Tz::UTC
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            keep_within_days: default_keep_within_days(),
            keep_last: 0,
            keep_daily: 0,
            keep_weekly: 0,
            keep_monthly: 0,
            keep_yearly: 0,
            min_keep: default_min_keep(),
            timezone: default_timezone(),
            prune_after_backup: false,
        }
    }
}

/// Why a backup is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// The newest complete backup is never deleted.
    Newest,
    /// Dated after `now` (a clock was wrong): kept and reported, never judged by age.
    Future,
    Within,
    Last,
    Daily,
    Weekly,
    Monthly,
    Yearly,
    /// Kept to stay at `min_keep`.
    MinKeep,
    /// Under an object lock (retain-until in the future): the store would refuse the delete.
    Locked,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Newest => "newest",
            Rule::Future => "dated in the future",
            Rule::Within => "within",
            Rule::Last => "last",
            Rule::Daily => "daily",
            Rule::Weekly => "weekly",
            Rule::Monthly => "monthly",
            Rule::Yearly => "yearly",
            Rule::MinKeep => "min_keep",
            Rule::Locked => "object lock",
        })
    }
}

/// A backup as retention sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub id: Uuid,
    pub time: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
}

/// The verdict on one backup: kept by `rules`, or deleted when there are none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub entry: Entry,
    pub rules: Vec<Rule>,
}

impl Decision {
    pub fn keep(&self) -> bool {
        !self.rules.is_empty()
    }
}

/// The calendar period a local time falls in, as comparable numbers.
type PeriodOf = fn(DateTime<Tz>) -> (i32, u32);

/// Decide, newest first, which backups of one series `policy` keeps at `now`.
pub fn decide(entries: &[Entry], now: DateTime<Utc>, policy: &Policy) -> Vec<Decision> {
    let mut decisions: Vec<Decision> = entries
        .iter()
        .map(|e| Decision {
            entry: e.clone(),
            rules: Vec::new(),
        })
        .collect();
    decisions.sort_by_key(|d| std::cmp::Reverse((d.entry.time, d.entry.id)));

    let within = Duration::days(i64::from(policy.keep_within_days));
    for d in &mut decisions {
        let age = now - d.entry.time;
        if age < Duration::zero() {
            d.rules.push(Rule::Future);
        } else if age <= within {
            d.rules.push(Rule::Within);
        }
        if d.entry.locked_until.is_some_and(|until| until > now) {
            d.rules.push(Rule::Locked);
        }
    }
    if let Some(newest) = decisions.iter_mut().find(|d| d.entry.time <= now) {
        newest.rules.push(Rule::Newest);
    }
    for d in decisions.iter_mut().take(policy.keep_last as usize) {
        d.rules.push(Rule::Last);
    }

    let tz = policy.timezone;
    let calendar: [(Rule, u32, PeriodOf); 4] = [
        (Rule::Daily, policy.keep_daily, |t| (t.year(), t.ordinal())),
        (Rule::Weekly, policy.keep_weekly, |t| {
            (t.iso_week().year(), t.iso_week().week())
        }),
        (Rule::Monthly, policy.keep_monthly, |t| {
            (t.year(), t.month())
        }),
        (Rule::Yearly, policy.keep_yearly, |t| (t.year(), 0)),
    ];
    for (rule, count, bucket_of) in calendar {
        let mut kept = 0;
        let mut last_bucket = None;
        for d in &mut decisions {
            if kept >= count {
                break;
            }
            let bucket = bucket_of(d.entry.time.with_timezone(&tz));
            if last_bucket != Some(bucket) {
                d.rules.push(rule);
                kept += 1;
                last_bucket = Some(bucket);
            }
        }
    }

    let mut kept = decisions.iter().filter(|d| d.keep()).count();
    for d in &mut decisions {
        if kept >= policy.min_keep as usize {
            break;
        }
        if !d.keep() {
            d.rules.push(Rule::MinKeep);
            kept += 1;
        }
    }
    for d in &mut decisions {
        d.rules.sort();
    }
    decisions
}

/// How long past its job's timeout an unfinished backup may still be writing, as other hosts
/// see it: clocks that differ by a little, and a manifest write that was still retrying (up to
/// `upload.retry_timeout_secs`, at most 10 minutes) when the backup's time ran out.
pub const ABANDON_MARGIN: Duration = Duration::minutes(15);

/// Whether a backup without a manifest that started at `started` is abandoned at `now`: a
/// backup stops itself at its job's `timeout`, so after that (and the margin) nothing is
/// writing it any more, and what it left (objects, staging files, open multipart uploads)
/// can go.
pub fn is_abandoned(started: DateTime<Utc>, timeout: Duration, now: DateTime<Utc>) -> bool {
    now - started > timeout + ABANDON_MARGIN
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn entry(n: u128, time: DateTime<Utc>) -> Entry {
        Entry {
            id: Uuid::from_u128(n),
            time,
            locked_until: None,
        }
    }

    /// One backup a day at 02:00 UTC for `days` days before `now`'s day.
    fn nightly(now: DateTime<Utc>, days: i64) -> Vec<Entry> {
        (1..=days)
            .map(|d| {
                let day = (now - Duration::days(d)).date_naive();
                entry(
                    d as u128,
                    Utc.from_utc_datetime(&day.and_hms_opt(2, 0, 0).unwrap()),
                )
            })
            .collect()
    }

    /// The table a dry run would print: "date rules" per backup, newest first.
    fn table(decisions: &[Decision]) -> Vec<String> {
        decisions
            .iter()
            .map(|d| {
                let rules: Vec<String> = d.rules.iter().map(Rule::to_string).collect();
                let verdict = if d.keep() {
                    rules.join(",")
                } else {
                    "DELETE".into()
                };
                format!("{} {verdict}", d.entry.time.format("%Y-%m-%d"))
            })
            .collect()
    }

    fn policy(f: impl FnOnce(&mut Policy)) -> Policy {
        let mut p = Policy::default();
        f(&mut p);
        p
    }

    fn kept_dates(decisions: &[Decision]) -> Vec<String> {
        decisions
            .iter()
            .filter(|d| d.keep())
            .map(|d| d.entry.time.format("%Y-%m-%d").to_string())
            .collect()
    }

    #[test]
    fn default_policy_keeps_thirty_days() {
        let now = at("2026-11-23T01:00:00Z");
        let decisions = decide(&nightly(now, 40), now, &Policy::default());
        assert_eq!(decisions.iter().filter(|d| d.keep()).count(), 30);
        assert_eq!(decisions[0].rules, vec![Rule::Newest, Rule::Within]);
        let oldest_kept = decisions.iter().rfind(|d| d.keep()).unwrap();
        assert_eq!(oldest_kept.entry.time, at("2026-10-24T02:00:00Z"));
    }

    #[test]
    fn exactly_thirty_days_old_is_kept_one_second_more_is_not() {
        let now = at("2026-11-23T12:00:00Z");
        let entries = vec![
            entry(1, now - Duration::hours(1)),
            entry(2, now - Duration::days(30)),
            entry(3, now - Duration::days(30) - Duration::seconds(1)),
            entry(4, now - Duration::days(31)),
            entry(5, now - Duration::days(32)),
        ];
        let p = policy(|p| p.min_keep = 0);
        let decisions = decide(&entries, now, &p);
        let verdicts: Vec<bool> = decisions.iter().map(Decision::keep).collect();
        assert_eq!(verdicts, vec![true, true, false, false, false]);
    }

    #[test]
    fn newest_is_kept_even_when_every_rule_would_drop_it() {
        let now = at("2026-11-23T12:00:00Z");
        let entries = vec![
            entry(1, now - Duration::days(400)),
            entry(2, now - Duration::days(500)),
        ];
        let p = policy(|p| {
            p.keep_within_days = 0;
            p.min_keep = 0;
        });
        let decisions = decide(&entries, now, &p);
        assert_eq!(
            table(&decisions),
            vec!["2025-10-19 newest", "2025-07-11 DELETE"]
        );
    }

    #[test]
    fn min_keep_holds_when_everything_is_old() {
        let now = at("2026-11-23T12:00:00Z");
        let entries: Vec<Entry> = (0..6)
            .map(|i| entry(i, now - Duration::days(100 + i as i64)))
            .collect();
        let decisions = decide(&entries, now, &Policy::default());
        assert_eq!(
            table(&decisions),
            vec![
                "2026-08-15 newest",
                "2026-08-14 min_keep",
                "2026-08-13 min_keep",
                "2026-08-12 DELETE",
                "2026-08-11 DELETE",
                "2026-08-10 DELETE",
            ]
        );
    }

    #[test]
    fn a_backup_dated_in_the_future_is_kept_and_does_not_hide_the_real_newest() {
        let now = at("2026-11-23T12:00:00Z");
        let entries = vec![
            entry(1, now + Duration::days(3)),
            entry(2, now - Duration::days(90)),
            entry(3, now - Duration::days(91)),
        ];
        let p = policy(|p| p.min_keep = 0);
        let decisions = decide(&entries, now, &p);
        assert_eq!(
            table(&decisions),
            vec![
                "2026-11-26 dated in the future",
                "2026-08-25 newest",
                "2026-08-24 DELETE"
            ]
        );
    }

    #[test]
    fn locked_backups_are_kept_until_their_lock_expires() {
        let now = at("2026-11-23T12:00:00Z");
        let mut old = entry(2, now - Duration::days(60));
        old.locked_until = Some(now + Duration::days(1));
        let mut expired = entry(3, now - Duration::days(61));
        expired.locked_until = Some(now - Duration::days(1));
        let entries = vec![entry(1, now), old, expired];
        let p = policy(|p| p.min_keep = 0);
        assert_eq!(
            table(&decide(&entries, now, &p)),
            vec![
                "2026-11-23 newest,within",
                "2026-09-24 object lock",
                "2026-09-23 DELETE"
            ]
        );
    }

    /// Named policy combinations over 400 nightly backups: the dates each keeps.
    #[test]
    fn calendar_policies_keep_the_newest_backup_of_each_period() {
        let now = at("2026-11-23T12:00:00Z");
        let entries = nightly(now, 400);
        let quiet = |f: fn(&mut Policy)| {
            policy(|p| {
                p.keep_within_days = 0;
                p.min_keep = 0;
                f(p);
            })
        };
        let cases: [(&str, Policy, Vec<&str>); 4] = [
            (
                "keep_last 3",
                quiet(|p| p.keep_last = 3),
                vec!["2026-11-22", "2026-11-21", "2026-11-20"],
            ),
            (
                "keep_daily 2, keep_weekly 3",
                quiet(|p| {
                    p.keep_daily = 2;
                    p.keep_weekly = 3;
                }),
                // 2026-11-22 is a Sunday: weeks end on Sundays.
                vec!["2026-11-22", "2026-11-21", "2026-11-15", "2026-11-08"],
            ),
            (
                "keep_monthly 3",
                quiet(|p| p.keep_monthly = 3),
                vec!["2026-11-22", "2026-10-31", "2026-09-30"],
            ),
            (
                "keep_yearly 3",
                quiet(|p| p.keep_yearly = 3),
                vec!["2026-11-22", "2025-12-31"],
            ),
        ];
        for (name, p, expected) in cases {
            assert_eq!(kept_dates(&decide(&entries, now, &p)), expected, "{name}");
        }
    }

    #[test]
    fn daily_buckets_follow_the_local_calendar_across_a_dst_change() {
        // Paris switches to summer time at 02:00 on 2026-03-29. 23:30 local on the 28th and
        // 00:30 local on the 29th are both on 2026-03-28 in UTC, but on two local days.
        let paris: Tz = "Europe/Paris".parse().unwrap();
        let local = |y, m, d, h, min| {
            paris
                .with_ymd_and_hms(y, m, d, h, min, 0)
                .unwrap()
                .with_timezone(&Utc)
        };
        let entries = vec![
            entry(1, local(2026, 3, 29, 0, 30)),
            entry(2, local(2026, 3, 28, 23, 30)),
            entry(3, local(2026, 3, 28, 1, 0)),
            // After the switch: 03:30 and 23:59 local on the 29th are one local day.
            entry(4, local(2026, 3, 29, 23, 59)),
            entry(5, local(2026, 3, 29, 3, 30)),
        ];
        let now = at("2026-06-01T00:00:00Z");
        let daily = |tz| {
            policy(|p| {
                p.keep_within_days = 0;
                p.min_keep = 0;
                p.keep_daily = 10;
                p.timezone = tz;
            })
        };
        let kept = |tz| -> Vec<u128> {
            decide(&entries, now, &daily(tz))
                .iter()
                .filter(|d| d.keep())
                .map(|d| d.entry.id.as_u128())
                .collect()
        };
        // Paris days: 4, 5 and 1 are on the 29th, 2 and 3 on the 28th.
        assert_eq!(kept(paris), vec![4, 2]);
        // UTC days: 4 and 5 are on the 29th, 1, 2 and 3 on the 28th.
        assert_eq!(kept(Tz::UTC), vec![4, 1]);
    }

    #[test]
    fn unfinished_backups_are_abandoned_only_after_their_timeout_and_the_margin() {
        let now = at("2026-11-23T12:00:00Z");
        let day = Duration::hours(24);
        let limit = day + ABANDON_MARGIN;
        assert!(!is_abandoned(now - limit, day, now));
        assert!(is_abandoned(now - limit - Duration::seconds(1), day, now));
        assert!(!is_abandoned(now + Duration::hours(1), day, now));
        // A job with a shorter timeout is cleaned sooner.
        assert!(is_abandoned(
            now - Duration::hours(2),
            Duration::hours(1),
            now
        ));
    }
}
