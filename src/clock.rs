//! The time that backups, drills, prunes and audit events are stamped with. Debug builds take
//! `COFFRE_TEST_NOW` (RFC 3339) instead of the system clock, so a test can make a month of
//! daily runs in a minute; release builds always read the system clock.

use chrono::{DateTime, Utc};

pub fn now() -> DateTime<Utc> {
    #[cfg(debug_assertions)]
    if let Some(fixed) = std::env::var("COFFRE_TEST_NOW")
        .ok()
        .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
    {
        // Each call a little later, as the real clock would be: events keep their order.
        let ticks = TICKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return fixed.with_timezone(&Utc) + chrono::Duration::milliseconds(ticks as i64);
    }
    Utc::now()
}

#[cfg(debug_assertions)]
static TICKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
