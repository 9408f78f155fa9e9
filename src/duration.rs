//! Durations in configuration files, written as a whole number and a unit: "90s", "30m",
//! "24h", "7d".

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

const UNITS: [(char, u64); 4] = [('d', 86400), ('h', 3600), ('m', 60), ('s', 1)];

impl HumanDuration {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || {
            format!(
                "'{text}' is not a duration: write a whole number and s, m, h or d, like \"90s\" or \"24h\""
            )
        };
        let unit = text.chars().last().ok_or_else(bad)?;
        let seconds = UNITS
            .iter()
            .find(|(u, _)| *u == unit)
            .map(|(_, s)| *s)
            .ok_or_else(bad)?;
        let number: u64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
        let total = number.checked_mul(seconds).ok_or_else(bad)?;
        if total == 0 {
            return Err(format!("'{text}': a duration must be more than zero"));
        }
        Ok(Self(Duration::from_secs(total)))
    }

    pub fn as_chrono(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.0).unwrap_or(chrono::Duration::MAX)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// In the largest unit that divides it: "24h", "90s".
impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let (unit, size) = UNITS
            .iter()
            .find(|(_, size)| secs.is_multiple_of(*size))
            .copied()
            .unwrap_or(('s', 1));
        write!(f, "{}{unit}", secs / size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit_and_prints_back() {
        for (text, secs) in [("90s", 90), ("30m", 1800), ("5h", 18000), ("7d", 604800)] {
            let d = HumanDuration::parse(text).unwrap();
            assert_eq!(d.0.as_secs(), secs);
            assert_eq!(d.to_string(), text);
        }
        assert_eq!(HumanDuration::parse("120m").unwrap().to_string(), "2h");
        assert_eq!(HumanDuration::parse("24h").unwrap().to_string(), "1d");
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in [
            "",
            "24",
            "h",
            "1.5h",
            "-1h",
            "0s",
            "24 hours",
            "99999999999999999999d",
        ] {
            assert!(HumanDuration::parse(bad).is_err(), "{bad}");
        }
    }
}
