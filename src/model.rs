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

/// An AWS resource ARN, with the parts inventory and metrics need.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Arn(String);

impl Arn {
    /// Accepts `arn:PARTITION:SERVICE:REGION:ACCOUNT:RESOURCE`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.splitn(6, ':').collect();
        if parts.len() == 6
            && parts[0] == "arn"
            && !parts[1].is_empty()
            && !parts[2].is_empty()
            && !parts[5].is_empty()
        {
            Ok(Arn(s.to_owned()))
        } else {
            Err(format!("`{s}` is not an ARN"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn part(&self, i: usize) -> &str {
        self.0.splitn(6, ':').nth(i).unwrap_or_default()
    }

    pub fn service(&self) -> &str {
        self.part(2)
    }

    /// Empty for global resources such as S3 buckets.
    pub fn region(&self) -> &str {
        self.part(3)
    }

    /// Empty for S3 buckets.
    pub fn account(&self) -> &str {
        self.part(4)
    }

    /// The resource part after the account: `instance/i-0abc`, `my-bucket`, `table/t`.
    pub fn resource(&self) -> &str {
        self.part(5)
    }

    /// `service:type`, e.g. `ec2:instance`, `s3:bucket`, `sqs:queue`, `logs:log-group`: a
    /// bounded set, fit for a metric label.
    pub fn resource_type(&self) -> String {
        let service = self.service();
        let implicit = match service {
            "s3" if !self.resource().contains('/') => Some("bucket"),
            "sqs" => Some("queue"),
            "sns" => Some("topic"),
            _ => None,
        };
        let kind = implicit.unwrap_or_else(|| {
            let r = self.resource();
            r.split(['/', ':']).next().unwrap_or(r)
        });
        format!("{service}:{kind}")
    }

    /// The last part of the resource: the id or name (`i-0abc`, `my-bucket`).
    pub fn resource_id(&self) -> &str {
        let r = self.resource();
        r.rsplit(['/', ':']).next().unwrap_or(r)
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a pass concludes about one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Its lease is active.
    Leased,
    /// Its lease is active but ends inside the warning window.
    Expiring,
    /// Its lease is past `expires_at`, or missed its heartbeat.
    Expired,
    /// Its lease was released but the resource is still alive.
    Released,
    /// Its lease tag names no lease we know.
    UnknownLease,
    /// A required identity tag is missing (or the tag list is empty).
    Untagged,
    /// An exclusion tag or an allowlist entry keeps it out of reach.
    Protected,
}

impl Verdict {
    pub const ALL: [Verdict; 7] = [
        Verdict::Leased,
        Verdict::Expiring,
        Verdict::Expired,
        Verdict::Released,
        Verdict::UnknownLease,
        Verdict::Untagged,
        Verdict::Protected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Leased => "leased",
            Verdict::Expiring => "expiring",
            Verdict::Expired => "expired",
            Verdict::Released => "released",
            Verdict::UnknownLease => "unknown-lease",
            Verdict::Untagged => "untagged",
            Verdict::Protected => "protected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Verdict::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether this verdict opens a finding. Leased and protected resources are fine.
    pub fn is_finding(self) -> bool {
        !matches!(self, Verdict::Leased | Verdict::Protected)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What policy does with a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Recorded and shown; nobody is bothered.
    Report,
    /// The owner (or on-call) is told.
    Notify,
    /// Deleted after the grace period, when enforcement is armed.
    Reap,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Report => "report",
            Action::Notify => "notify",
            Action::Reap => "reap",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Action::Report, Action::Notify, Action::Reap]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod arn_tests {
    use super::*;

    #[test]
    fn arn_parts_and_types() {
        let check = |arn: &str, ty: &str, id: &str, region: &str, account: &str| {
            let a = Arn::parse(arn).expect("valid arn");
            assert_eq!(a.resource_type(), ty, "{arn}");
            assert_eq!(a.resource_id(), id, "{arn}");
            assert_eq!(a.region(), region, "{arn}");
            assert_eq!(a.account(), account, "{arn}");
        };
        check(
            "arn:aws:ec2:us-east-1:123456789012:instance/i-0abc",
            "ec2:instance",
            "i-0abc",
            "us-east-1",
            "123456789012",
        );
        check(
            "arn:aws:ec2:eu-west-1:123456789012:volume/vol-1",
            "ec2:volume",
            "vol-1",
            "eu-west-1",
            "123456789012",
        );
        check("arn:aws:s3:::my-bucket", "s3:bucket", "my-bucket", "", "");
        check(
            "arn:aws:sqs:us-east-1:123456789012:jobs",
            "sqs:queue",
            "jobs",
            "us-east-1",
            "123456789012",
        );
        check(
            "arn:aws:sns:us-east-1:123456789012:alerts",
            "sns:topic",
            "alerts",
            "us-east-1",
            "123456789012",
        );
        check(
            "arn:aws:dynamodb:us-east-1:123456789012:table/t1",
            "dynamodb:table",
            "t1",
            "us-east-1",
            "123456789012",
        );
        check(
            "arn:aws:lambda:us-east-1:123456789012:function:f",
            "lambda:function",
            "f",
            "us-east-1",
            "123456789012",
        );
        check(
            "arn:aws:logs:us-east-1:123456789012:log-group:/aws/x",
            "logs:log-group",
            "x",
            "us-east-1",
            "123456789012",
        );
        assert!(Arn::parse("arn:aws:s3").is_err());
        assert!(Arn::parse("i-0abc").is_err());
    }

    #[test]
    fn verdict_names_round_trip() {
        for v in Verdict::ALL {
            assert_eq!(Verdict::parse(v.as_str()), Some(v));
        }
        assert!(!Verdict::Leased.is_finding());
        assert!(!Verdict::Protected.is_finding());
        assert!(Verdict::UnknownLease.is_finding());
    }
}

/// A resource's tags, packed into one allocation (inventory holds millions of these).
/// Keys and values are kept as AWS returned them; lookups scan, which is fastest for the
/// handful of tags a resource carries. Well-known keys are packed as one private-use
/// character each (see [`WELL_KNOWN_KEYS`]).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Tags(Box<str>);

const KV: char = '\u{1f}';
const PAIR: char = '\u{1e}';

/// Tag keys that nearly every resource carries: the default identity tags and common AWS and
/// house keys. Packed as the character `U+E000 + index` instead of their text, which saves
/// about 60 bytes on each of a million resources. Append only: the order is the encoding, in
/// memory and in the store.
pub const WELL_KNOWN_KEYS: &[&str] = &[
    "ephemera:lease-id",
    "ephemera:project",
    "ephemera:task",
    "ephemera:owner",
    "ephemera:protect",
    "Name",
    "aws:cloudformation:stack-name",
    "aws:cloudformation:stack-id",
    "aws:cloudformation:logical-id",
    "aws:autoscaling:groupName",
    "aws:ec2launchtemplate:id",
    "aws:ec2launchtemplate:version",
    "aws:eks:cluster-name",
    "Environment",
    "Owner",
    "Project",
    "Team",
];

const KEY_CODE_BASE: u32 = 0xE000;

/// Characters that never reach the packed text: the separators, and the private-use block the
/// key codes live in (AWS allows neither in tags).
fn packable(c: char) -> bool {
    c != KV && c != PAIR && !(KEY_CODE_BASE..KEY_CODE_BASE + 0x100).contains(&u32::from(c))
}

fn key_code(key: &str) -> Option<char> {
    let i = WELL_KNOWN_KEYS.iter().position(|k| *k == key)?;
    char::from_u32(KEY_CODE_BASE + i as u32)
}

fn unpack_key(k: &str) -> &str {
    let mut chars = k.chars();
    if let (Some(c), None) = (chars.next(), chars.next())
        && let Some(known) = u32::from(c)
            .checked_sub(KEY_CODE_BASE)
            .and_then(|i| WELL_KNOWN_KEYS.get(i as usize))
    {
        return known;
    }
    k
}

impl Tags {
    /// Builds from pairs, sorted by key so equal tag sets compare equal; characters AWS never
    /// allows in tags (our separators and key codes) are dropped.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut pairs: Vec<(&str, &str)> = pairs.into_iter().collect();
        pairs.sort_unstable();
        let codes: Vec<Option<char>> = pairs.iter().map(|(k, _)| key_code(k)).collect();
        // Sized once: millions of these live at a time, and growth would leave slack behind.
        let len = pairs
            .iter()
            .zip(&codes)
            .map(|((k, v), code)| code.map_or(k.len(), char::len_utf8) + v.len() + 2)
            .sum::<usize>()
            .saturating_sub(1); // no separator before the first pair
        let mut s = String::with_capacity(len);
        for ((k, v), code) in pairs.into_iter().zip(codes) {
            if !s.is_empty() {
                s.push(PAIR);
            }
            match code {
                Some(c) => s.push(c),
                None => s.extend(k.chars().filter(|c| packable(*c))),
            }
            s.push(KV);
            s.extend(v.chars().filter(|c| packable(*c)));
        }
        Tags(s.into_boxed_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.split(PAIR).filter(|p| !p.is_empty()).map(|p| {
            let (k, v) = p.split_once(KV).unwrap_or((p, ""));
            (unpack_key(k), v)
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Looks up several keys in one scan: `out[i]` is the value of `keys[i]`.
    pub fn get_many<'a, const N: usize>(&'a self, keys: [&str; N]) -> [Option<&'a str>; N] {
        let mut out = [None; N];
        for (k, v) in self.iter() {
            if let Some(i) = keys.iter().position(|key| *key == k) {
                out[i] = Some(v);
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Bytes the packed form takes (for memory accounting).
    pub fn packed_len(&self) -> usize {
        self.0.len()
    }

    /// The packed form, as the store keeps it (no serialisation on the hot path).
    pub fn packed(&self) -> &str {
        &self.0
    }

    /// Reads back what [`Tags::packed`] gave (any text is a readable packed form).
    pub fn from_packed(packed: &str) -> Self {
        Tags(packed.into())
    }
}

impl fmt::Debug for Tags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Tags {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = std::collections::BTreeMap::<String, String>::deserialize(d)?;
        Ok(Tags::from_pairs(
            m.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ))
    }
}

#[cfg(test)]
mod tags_tests {
    use super::*;

    #[test]
    fn packed_tags() {
        let t = Tags::from_pairs([("a", "1"), ("ephemera:owner", "x@y.z"), ("empty", "")]);
        assert_eq!(t.get("a"), Some("1"));
        assert_eq!(t.get("ephemera:owner"), Some("x@y.z"));
        assert_eq!(t.get("empty"), Some(""));
        assert_eq!(t.get("b"), None);
        assert_eq!(t.get_many(["empty", "b", "a"]), [Some(""), None, Some("1")]);
        assert_eq!(t.iter().count(), 3);
        assert!(Tags::default().is_empty());
        assert_eq!(Tags::default().iter().count(), 0);
        let json = serde_json::to_string(&t).expect("serialises");
        assert_eq!(serde_json::from_str::<Tags>(&json).ok(), Some(t));
        let weird = Tags::from_pairs([("k\u{1f}", "v\u{1e}w")]);
        assert_eq!(weird.get("k"), Some("vw"));
    }

    #[test]
    fn well_known_keys_are_packed_and_read_back() {
        let pairs = [
            ("ephemera:lease-id", "0194e0a1-0000-7000-8000-000000000001"),
            ("Name", "preview-1"),
            ("ephemera:projectx", "not well-known"),
            ("Team", ""),
        ];
        let t = Tags::from_pairs(pairs);
        let mut back: Vec<_> = t.iter().collect();
        back.sort_unstable();
        let mut want = pairs.to_vec();
        want.sort_unstable();
        assert_eq!(back, want);
        assert_eq!(t.get("Name"), Some("preview-1"));
        assert_eq!(t.get("ephemera:project"), None);
        // Four keys, two of them 17 and 4 bytes long, packed as 3-byte codes.
        let literal: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        assert_eq!(t.0.len(), literal - 1 - (17 - 3) - (4 - 3) - (4 - 3));
        // A key made of a lone code character cannot pose as a well-known key.
        let forged = Tags::from_pairs([("\u{e000}", "x")]);
        assert_eq!(forged.get("ephemera:lease-id"), None);
        assert_eq!(forged.iter().collect::<Vec<_>>(), vec![("", "x")]);
        let json = serde_json::to_string(&t).expect("serialises");
        assert!(json.contains("\"ephemera:lease-id\""), "{json}");
        assert_eq!(serde_json::from_str::<Tags>(&json).ok(), Some(t.clone()));
        assert_eq!(Tags::from_packed(t.packed()), t);
    }
}
