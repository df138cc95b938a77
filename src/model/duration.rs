//! Durations written the human way.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A positive duration written the human way: `30s`, `90m`, `2h`, `7d`, `1w`, or a sum
/// such as `1h30m`. Stored with second precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration {
    secs: u64,
}

/// Longest duration accepted anywhere (about 100 years); keeps time arithmetic far from overflow.
const MAX_DURATION_SECS: u64 = 100 * 365 * 86_400;

impl HumanDuration {
    /// No time at all (never parsed from input, which must be positive).
    pub const ZERO: HumanDuration = HumanDuration { secs: 0 };

    pub fn from_secs(secs: u64) -> Self {
        HumanDuration { secs }
    }

    pub fn as_secs(self) -> u64 {
        self.secs
    }

    pub fn to_chrono(self) -> chrono::TimeDelta {
        // Bounded by MAX_DURATION_SECS, so the cast cannot wrap.
        chrono::TimeDelta::seconds(self.secs as i64)
    }

    pub fn parse(input: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid duration `{input}`: expected a positive whole number followed by s, m, h, d or w (e.g. 90m, 2h, 7d)"
            )
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(bad());
        }
        let mut total: u64 = 0;
        let mut digits = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                's' => 1,
                'm' => 60,
                'h' => 3_600,
                'd' => 86_400,
                'w' => 7 * 86_400,
                _ => return Err(bad()),
            };
            if digits.is_empty() {
                return Err(bad());
            }
            let n: u64 = digits.parse().map_err(|_| bad())?;
            digits.clear();
            total = n
                .checked_mul(unit)
                .and_then(|v| total.checked_add(v))
                .ok_or_else(bad)?;
        }
        if !digits.is_empty() || total == 0 {
            return Err(bad());
        }
        if total > MAX_DURATION_SECS {
            return Err(format!("duration `{input}` is longer than 100 years"));
        }
        Ok(HumanDuration { secs: total })
    }
}

impl fmt::Display for HumanDuration {
    /// Canonical form, largest units first: `90s` → `1m30s`, `24h` → `24h`, `7d` → `7d`.
    /// Days are used from three days up, so a limit written `24h` or `48h` reads back the same.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.secs;
        if rest == 0 {
            return f.write_str("0s");
        }
        let day = if rest >= 3 * 86_400 { 86_400 } else { u64::MAX };
        for (unit, name) in [(day, 'd'), (3_600, 'h'), (60, 'm'), (1, 's')] {
            if rest >= unit {
                write!(f, "{}{}", rest / unit, name)?;
                rest %= unit;
            }
        }
        Ok(())
    }
}

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        HumanDuration::parse(s)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HumanDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// The wait before retry number `attempts + 1`: `base`, doubled per failed attempt, at most
/// `max`. The one back-off of the crate (mail delivery, deletes that failed).
pub fn backoff(
    base: chrono::TimeDelta,
    attempts: u32,
    max: chrono::TimeDelta,
) -> chrono::TimeDelta {
    let factor = 1i32 << attempts.min(16);
    (base * factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let (m, h) = (chrono::TimeDelta::minutes(1), chrono::TimeDelta::hours(1));
        assert_eq!(backoff(m, 0, h), m);
        assert_eq!(backoff(m, 1, h), chrono::TimeDelta::minutes(2));
        assert_eq!(backoff(m, 5, h), chrono::TimeDelta::minutes(32));
        assert_eq!(backoff(m, 6, h), h);
        assert_eq!(backoff(m, 40, h), h);
        assert_eq!(
            backoff(chrono::TimeDelta::days(2), 0, chrono::TimeDelta::days(1)),
            chrono::TimeDelta::days(1)
        );
    }

    #[test]
    fn durations() {
        let check = |input: &str, want: Option<u64>| {
            let got = HumanDuration::parse(input).ok().map(HumanDuration::as_secs);
            assert_eq!(got, want, "parsing {input:?}");
        };
        check("30s", Some(30));
        check("90m", Some(5_400));
        check("2h", Some(7_200));
        check("7d", Some(604_800));
        check("1w", Some(604_800));
        check("1h30m", Some(5_400));
        check(" 2h ", Some(7_200));
        check("-1h", None);
        check("forever", None);
        check("0h", None);
        check("", None);
        check("h", None);
        check("12", None);
        check("1.5h", None);
        check("2H", None);
        check("99999999999999999999d", None);
        check("36600d", None);
    }

    #[test]
    fn duration_display_round_trips() {
        for (secs, text) in [
            (90, "1m30s"),
            (7_200, "2h"),
            (93_600, "26h"),
            (86_400, "24h"),
            (266_400, "3d2h"),
            (59, "59s"),
        ] {
            let d = HumanDuration::from_secs(secs);
            assert_eq!(d.to_string(), text);
            assert_eq!(HumanDuration::parse(text), Ok(d));
        }
    }
}
