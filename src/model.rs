//! Domain newtypes shared by every module: lease ids, project names, human durations,
//! tag values.
//!
//! Architecture Invariant: this module does no I/O and reads no clock.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Identifier of a lease: a UUIDv7, so ids sort by creation time (kind to the store's b-tree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LeaseId(uuid::Uuid);

impl LeaseId {
    /// A fresh id; the timestamp part comes from the system clock, which only orders ids.
    pub fn generate() -> Self {
        LeaseId(uuid::Uuid::now_v7())
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for LeaseId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(LeaseId)
    }
}

/// A project name as used in policy, leases and the project tag: `[a-z0-9][a-z0-9_-]{0,62}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ProjectName(String);

impl ProjectName {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok_first = s
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let ok_rest = s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if ok_first && ok_rest && s.len() <= 63 {
            Ok(ProjectName(s.to_owned()))
        } else {
            Err(format!(
                "invalid project name `{s}`: expected 1 to 63 characters of a-z, 0-9, `-` or `_`, starting with a letter or digit"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ProjectName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ProjectName::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A positive duration written the human way: `30s`, `90m`, `2h`, `7d`, `1w`, or a sum
/// such as `1h30m`. Stored with second precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration {
    secs: u64,
}

/// Longest duration accepted anywhere (about 100 years); keeps time arithmetic far from overflow.
const MAX_DURATION_SECS: u64 = 100 * 365 * 86_400;

impl HumanDuration {
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

/// Checks a value that will be written as an AWS tag value (owner, task, labels).
/// AWS allows up to 256 Unicode characters of letters, digits, spaces and `_ . : / = + - @`.
pub fn check_tag_value(field: &str, value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{field} must not be empty"));
    }
    if value.chars().count() > 256 {
        return Err(format!("{field} is longer than 256 characters"));
    }
    if let Some(c) = value.chars().find(|c| !tag_char_ok(*c)) {
        return Err(format!(
            "{field} contains `{c}`, which AWS does not allow in a tag (letters, digits, spaces and _ . : / = + - @ are allowed)"
        ));
    }
    Ok(())
}

/// Checks an AWS tag key: 1 to 128 characters, the tag alphabet, not in the reserved `aws:` space.
pub fn check_tag_key(value: &str) -> Result<(), String> {
    if value.is_empty() || value.chars().count() > 128 {
        return Err(format!("tag key `{value}` must be 1 to 128 characters"));
    }
    if value.to_ascii_lowercase().starts_with("aws:") {
        return Err(format!(
            "tag key `{value}` is in the reserved `aws:` prefix"
        ));
    }
    if let Some(c) = value.chars().find(|c| !tag_char_ok(*c)) {
        return Err(format!(
            "tag key `{value}` contains `{c}`, which AWS does not allow"
        ));
    }
    Ok(())
}

fn tag_char_ok(c: char) -> bool {
    c.is_alphanumeric() || " _.:/=+-@".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn project_names() {
        for ok in ["web", "data-jobs", "a", "x_1"] {
            assert!(ProjectName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Web", "-web", "web app", "é", &"a".repeat(64)] {
            assert!(ProjectName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tag_values_and_keys() {
        assert!(check_tag_value("owner", "alice@example.com").is_ok());
        assert!(check_tag_value("task", "ci run 42/build:x=1+2").is_ok());
        assert!(check_tag_value("owner", "").is_err());
        assert!(check_tag_value("owner", "a;b").is_err());
        assert!(check_tag_value("owner", &"a".repeat(257)).is_err());
        assert!(check_tag_key("ephemera:lease-id").is_ok());
        assert!(check_tag_key("aws:createdBy").is_err());
        assert!(check_tag_key("").is_err());
        assert!(check_tag_key("a\"b").is_err());
    }

    #[test]
    fn lease_ids_round_trip() {
        let id = LeaseId::generate();
        assert_eq!(id.to_string().parse::<LeaseId>().ok(), Some(id));
        assert!("not-a-lease".parse::<LeaseId>().is_err());
    }
}
