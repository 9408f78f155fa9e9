//! When scheduled jobs run: a cron expression read on the local clock of a time zone, as a pure
//! function of (schedule, now).
//!
//! The clock a person reads is what counts, so daylight saving time is handled the way people
//! expect of a nightly job: a run whose local time does not exist (the hour skipped in spring)
//! runs at the first local time after the gap, and a local time that happens twice (the hour
//! repeated in autumn) runs once, the first time.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer};
use std::str::FromStr;

/// A cron expression: five fields (minute hour day-of-month month day-of-week), or six with
/// seconds first.
#[derive(Clone, Debug)]
pub struct Cron {
    text: String,
    schedule: cron::Schedule,
}

impl Cron {
    pub fn parse(text: &str) -> Result<Self, String> {
        let fields = text.split_whitespace().count();
        let full = match fields {
            5 => format!("0 {text}"),
            6 => text.to_string(),
            _ => {
                return Err(format!(
                    "'{text}' is not a cron expression: write five fields, minute hour day month weekday, like \"0 2 * * *\""
                ));
            }
        };
        let schedule = cron::Schedule::from_str(&full)
            .map_err(|e| format!("'{text}' is not a cron expression: {e}"))?;
        Ok(Self {
            text: text.to_string(),
            schedule,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl<'de> Deserialize<'de> for Cron {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Cron::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A job's `[schedule]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub cron: Cron,
    /// Whose clock the expression is read on (default UTC).
    #[serde(default = "utc")]
    pub timezone: Tz,
    /// When the daemon starts after missing runs: run once at start (never once per run missed).
    #[serde(default)]
    pub catch_up: bool,
}

fn utc() -> Tz {
    Tz::UTC
}

impl Schedule {
    /// The first run strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Walk the expression on the local wall clock (carried as UTC-naive times), and map each
        // wall-clock time to the instant it names in the zone.
        let mut local = t.with_timezone(&self.timezone).naive_local();
        for _ in 0..1000 {
            let next = self.schedule_after_naive(local)?;
            let instant = self.instant_of(next);
            if instant > t {
                return Some(instant);
            }
            local = next;
        }
        None
    }

    /// The next `n` runs after `t`.
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n);
        let mut at = t;
        while out.len() < n {
            let Some(next) = self.next_after(at) else {
                break;
            };
            out.push(next);
            at = next;
        }
        out
    }

    /// Whether a run was due after `last` and at or before `now`: what a daemon that was down
    /// missed. However many were missed, the answer is one run.
    pub fn missed(&self, last: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.next_after(last).is_some_and(|next| next <= now)
    }

    fn schedule_after_naive(&self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        let carrier = Utc.from_utc_datetime(&local);
        self.cron
            .schedule
            .after(&carrier)
            .next()
            .map(|t| t.naive_utc())
    }

    /// The instant a local wall-clock time names: the first of two in a repeated hour, the end
    /// of the gap for a time the clock skipped.
    fn instant_of(&self, local: NaiveDateTime) -> DateTime<Utc> {
        let mut probe = local;
        loop {
            match self.timezone.from_local_datetime(&probe) {
                LocalResult::Single(t) => return t.with_timezone(&Utc),
                LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
                LocalResult::None => probe += Duration::minutes(1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn schedule(cron: &str, tz: &str) -> Schedule {
        Schedule {
            cron: Cron::parse(cron).unwrap(),
            timezone: tz.parse().unwrap(),
            catch_up: false,
        }
    }

    /// (expression, zone, from, the next runs as UTC instants)
    const CASES: &[(&str, &str, &str, &[&str])] = &[
        (
            "0 2 * * *",
            "UTC",
            "2026-11-24T10:00:00Z",
            &[
                "2026-11-25T02:00:00Z",
                "2026-11-26T02:00:00Z",
                "2026-11-27T02:00:00Z",
            ],
        ),
        (
            "*/15 * * * *",
            "UTC",
            "2026-11-24T10:07:00Z",
            &[
                "2026-11-24T10:15:00Z",
                "2026-11-24T10:30:00Z",
                "2026-11-24T10:45:00Z",
            ],
        ),
        // Sundays at 05:00 Paris time: CET is UTC+1 in November.
        (
            "0 5 * * SUN",
            "Europe/Paris",
            "2026-11-24T00:00:00Z",
            &[
                "2026-11-29T04:00:00Z",
                "2026-12-06T04:00:00Z",
                "2026-12-13T04:00:00Z",
            ],
        ),
        // Spring forward in Paris (2026-03-29, 02:00 CET -> 03:00 CEST): 02:30 does not exist
        // that day, and runs at 03:00 CEST (01:00 UTC); the days around are untouched.
        (
            "30 2 * * *",
            "Europe/Paris",
            "2026-03-27T12:00:00Z",
            &[
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-30T00:30:00Z",
            ],
        ),
        // Fall back (2026-10-25, 03:00 CEST -> 02:00 CET): 02:30 happens twice, runs once.
        (
            "30 2 * * *",
            "Europe/Paris",
            "2026-10-23T12:00:00Z",
            &[
                "2026-10-24T00:30:00Z",
                "2026-10-25T00:30:00Z",
                "2026-10-26T01:30:00Z",
            ],
        ),
        // Hourly across the repeated hour: 02:00 once, then 03:00 CET.
        (
            "0 * * * *",
            "Europe/Paris",
            "2026-10-24T23:30:00Z",
            &[
                "2026-10-25T00:00:00Z",
                "2026-10-25T02:00:00Z",
                "2026-10-25T03:00:00Z",
            ],
        ),
        // Hourly across the skipped hour: 02:00 becomes 03:00 CEST, which runs once.
        (
            "0 * * * *",
            "Europe/Paris",
            "2026-03-28T23:30:00Z",
            &[
                "2026-03-29T00:00:00Z",
                "2026-03-29T01:00:00Z",
                "2026-03-29T02:00:00Z",
            ],
        ),
        // Six fields: seconds first.
        (
            "30 0 2 * * *",
            "UTC",
            "2026-11-24T10:00:00Z",
            &[
                "2026-11-25T02:00:30Z",
                "2026-11-26T02:00:30Z",
                "2026-11-27T02:00:30Z",
            ],
        ),
    ];

    #[test]
    fn next_runs_match_the_table_including_dst_changes() {
        for (expr, tz, from, expected) in CASES {
            let runs: Vec<String> = schedule(expr, tz)
                .upcoming(at(from), expected.len())
                .iter()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .collect();
            assert_eq!(&runs, expected, "{expr} in {tz} from {from}");
        }
    }

    #[test]
    fn a_daemon_down_over_several_runs_misses_them_as_one() {
        let nightly = schedule("0 2 * * *", "UTC");
        let last = at("2026-11-20T02:00:05Z");
        assert!(nightly.missed(last, at("2026-11-24T10:00:00Z")));
        assert!(!nightly.missed(last, at("2026-11-21T01:59:59Z")));
        assert!(nightly.missed(last, at("2026-11-21T02:00:00Z")));
    }

    #[test]
    fn bad_expressions_are_refused_with_an_example() {
        for bad in ["", "* * *", "61 * * * *", "0 2 * * * * * *", "every night"] {
            let err = Cron::parse(bad).unwrap_err();
            assert!(err.contains("cron expression"), "{bad}: {err}");
        }
    }
}
