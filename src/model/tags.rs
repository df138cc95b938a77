//! Tags: the packed tag set of a resource, the tag checks, and the identity tag keys.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// Appends `text` without the characters that never reach the packed text. Most tags have
/// none, copied whole: a million resources' tags go through here each pass.
fn push_packable(s: &mut String, text: &str) {
    if text.chars().all(packable) {
        s.push_str(text);
    } else {
        s.extend(text.chars().filter(|c| packable(*c)));
    }
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
                None => push_packable(&mut s, k),
            }
            s.push(KV);
            push_packable(&mut s, v);
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

    /// Looks up several keys in one scan: `out[i]` is the value of `keys[i]`, the first one
    /// as [`Tags::get`] finds it.
    pub fn get_many<'a, const N: usize>(&'a self, keys: [&str; N]) -> [Option<&'a str>; N] {
        let mut out = [None; N];
        for (k, v) in self.iter() {
            if let Some(i) = keys.iter().position(|key| *key == k) {
                out[i].get_or_insert(v);
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

/// Tag keys that carry a lease's identity on a resource, and the one that protects it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IdentityTags {
    pub lease: String,
    pub project: String,
    pub task: String,
    pub owner: String,
    /// A resource carrying this tag (any value) is `protected`: never flagged, never reaped.
    pub protect: String,
}

impl IdentityTags {
    /// The keys a resource must carry (any value) for ephemera to delete it in an account not
    /// dedicated to ephemeral work: the armed policy's tag condition (`ephemera iam-policy`)
    /// and the reaper's last-moment check name the same two, so AWS never refuses a delete the
    /// reaper makes. The lease and the project say "made under a lease of a project".
    pub fn delete_condition_keys(&self) -> [&str; 2] {
        [self.lease.as_str(), self.project.as_str()]
    }
}

impl Default for IdentityTags {
    fn default() -> Self {
        IdentityTags {
            lease: "ephemera:lease-id".into(),
            project: "ephemera:project".into(),
            task: "ephemera:task".into(),
            owner: "ephemera:owner".into(),
            protect: "ephemera:protect".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn packed_tags() {
        let t = Tags::from_pairs([("a", "1"), ("ephemera:owner", "x@y.z"), ("empty", "")]);
        assert_eq!(t.get("a"), Some("1"));
        assert_eq!(t.get("ephemera:owner"), Some("x@y.z"));
        assert_eq!(t.get("empty"), Some(""));
        assert_eq!(t.get("b"), None);
        assert_eq!(t.get_many(["empty", "b", "a"]), [Some(""), None, Some("1")]);
        // A key given twice: both lookups answer the same value.
        let twice = Tags::from_pairs([("a", "2"), ("a", "1")]);
        assert_eq!(twice.get_many(["a"]), [twice.get("a")]);
        assert_eq!(twice.get("a"), Some("1"));
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
