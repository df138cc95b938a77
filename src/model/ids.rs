//! Identities: a lease's id and a project's name.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

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

impl LeaseId {
    /// When the id was made, from its UUIDv7 timestamp (the system clock's at acquire);
    /// `None` for an id that is no UUIDv7 (made up, or another tool's).
    pub fn created_at(self) -> Option<chrono::DateTime<chrono::Utc>> {
        if self.0.get_version_num() != 7 {
            return None;
        }
        let (secs, nanos) = self.0.get_timestamp()?.to_unix();
        chrono::DateTime::from_timestamp(i64::try_from(secs).ok()?, nanos)
    }
}

impl fmt::Display for LeaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl LeaseId {
    /// Reads a lease id however it is spelt: surrounding whitespace trimmed, hex digits in
    /// either case, and the hyphenated, simple (no hyphens), braced (`{…}`) and URN
    /// (`urn:uuid:…`, prefix in either case) forms all name the same id. This is the one way a
    /// tag value, a path segment or a filter meets the registry: ids are compared parsed, never
    /// as strings.
    pub fn parse_loose(s: &str) -> Option<LeaseId> {
        let s = s.trim();
        // `Uuid::parse_str` takes the URN prefix in lower case only.
        let s = match s.get(..9) {
            Some(p) if p.eq_ignore_ascii_case("urn:uuid:") => &s[9..],
            _ => s,
        };
        uuid::Uuid::try_parse(s).ok().map(LeaseId)
    }
}

impl FromStr for LeaseId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LeaseId::parse_loose(s).ok_or_else(|| format!("`{s}` is not a lease id"))
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

impl std::borrow::Borrow<str> for ProjectName {
    fn borrow(&self) -> &str {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A generated id carries the time it was made; a UUID of another version carries none.
    #[test]
    fn a_lease_id_knows_when_it_was_made() {
        let before = chrono::Utc::now() - chrono::TimeDelta::milliseconds(1);
        let id = LeaseId::generate();
        let after = chrono::Utc::now() + chrono::TimeDelta::milliseconds(1);
        let at = id.created_at().expect("a v7 id has a time");
        assert!(before <= at && at <= after, "{before} {at} {after}");
        let v4 = LeaseId::parse_loose("0b6a7c35-2f3f-4a8e-9d6a-1c2b3d4e5f60").expect("a uuid");
        assert_eq!(v4.created_at(), None);
        // 0x0194e0a1 7c2d ms after the epoch: 2025-02-10.
        let old = LeaseId::parse_loose("0194e0a1-7c2d-7000-8000-00000000beef").expect("id");
        assert_eq!(
            old.created_at().map(|t| t.timestamp_millis()),
            Some(0x0194_e0a1_7c2d)
        );
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
    fn lease_ids_round_trip() {
        let id = LeaseId::generate();
        assert_eq!(id.to_string().parse::<LeaseId>().ok(), Some(id));
        assert!("not-a-lease".parse::<LeaseId>().is_err());
    }

    /// Every spelling AWS would store of one id is that id; anything else is no id.
    #[test]
    fn lease_ids_parse_however_spelt() {
        let id: LeaseId = "0194e0a1-7c2d-7000-8000-00000000beef"
            .parse()
            .expect("canonical form");
        for spelt in [
            "0194e0a1-7c2d-7000-8000-00000000beef",
            "0194E0A1-7C2D-7000-8000-00000000BEEF",
            "{0194e0a1-7c2d-7000-8000-00000000beef}",
            "urn:uuid:0194e0a1-7c2d-7000-8000-00000000beef",
            "URN:UUID:0194E0A1-7C2D-7000-8000-00000000BEEF",
            "0194e0a17c2d7000800000000000beef",
            " 0194e0a1-7c2d-7000-8000-00000000beef ",
            "\t{0194E0A1-7C2D-7000-8000-00000000BEEF}\n",
        ] {
            assert_eq!(LeaseId::parse_loose(spelt), Some(id), "{spelt:?}");
        }
        assert_eq!(id.to_string(), "0194e0a1-7c2d-7000-8000-00000000beef");
        for not_an_id in [
            "",
            "  ",
            "build-42",
            "0194e0a1-7c2d-7000-8000-00000000bee",
            "0194e0a1-7c2d-7000-8000-00000000beefa",
            "urn:uuid:",
            "uuid:0194e0a1-7c2d-7000-8000-00000000beef",
            "{0194e0a1-7c2d-7000-8000-00000000beef",
            "0194e0a1 7c2d 7000 8000 00000000beef",
        ] {
            assert_eq!(LeaseId::parse_loose(not_an_id), None, "{not_an_id:?}");
        }
    }
}
