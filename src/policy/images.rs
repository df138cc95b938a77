//! The approved-image catalog: `[[images]]` entries in the rules, each approving AMIs by id,
//! by owner and by name pattern, until it expires.
//!
//! Architecture Invariant: pure. The catalog judges the [`Image`] inventory describes; it never
//! asks EC2 itself, and an image EC2 could not describe (deregistered, not shared with the
//! account) is judged by its id alone.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use toml::Spanned;

use super::glob;
use crate::diagnostic::{FileError, Source};
use crate::model::Image;

/// The owner aliases EC2 reports (`ImageOwnerAlias`) that an entry may name instead of an id.
/// `self` is not one: it would mean a different account in every account audited.
pub const OWNER_ALIASES: [&str; 2] = ["amazon", "aws-marketplace"];

/// Every `[[images]]` entry of the rules. Empty: the catalog is off and no image is judged,
/// so rules written before the catalog existed flag nothing new.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalog {
    entries: Vec<ImageEntry>,
}

/// One `[[images]]` entry. It approves an image when every criterion it states holds: one of
/// its ids, one of its owners, one of its name patterns (a criterion left out holds for any
/// image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    pub ids: BTreeSet<String>,
    pub owners: BTreeSet<String>,
    pub names: Vec<String>,
    /// After this instant the entry approves nothing.
    pub expires: Option<DateTime<Utc>>,
    pub reason: String,
    /// `FILE:LINE` of the entry, for messages.
    pub at: String,
}

impl ImageEntry {
    /// Whether this entry approves `image` at `now`. A name or owner EC2 could not tell
    /// (a deregistered AMI) never matches a pattern: such an image is approved only by its id.
    pub fn approves(&self, image: &Image, now: DateTime<Utc>) -> bool {
        self.expires.is_none_or(|e| now < e)
            && (self.ids.is_empty() || self.ids.contains(&image.id))
            && (self.owners.is_empty()
                || [&image.owner, &image.owner_alias]
                    .into_iter()
                    .flatten()
                    .any(|o| self.owners.contains(o)))
            && (self.names.is_empty()
                || image
                    .name
                    .as_deref()
                    .is_some_and(|n| self.names.iter().any(|p| glob(p, n))))
    }
}

impl Catalog {
    /// Whether the rules hold a catalog at all (even one whose entries have all expired).
    pub fn is_on(&self) -> bool {
        !self.entries.is_empty()
    }

    /// The first entry approving `image` at `now`, if any.
    pub fn approval(&self, image: &Image, now: DateTime<Utc>) -> Option<&ImageEntry> {
        self.entries.iter().find(|e| e.approves(image, now))
    }

    /// Whether `image` is judged and found wanting: the catalog is on and no entry approves it.
    pub fn rejects(&self, image: &Image, now: DateTime<Utc>) -> bool {
        self.is_on() && self.approval(image, now).is_none()
    }

    pub(super) fn push(&mut self, entry: ImageEntry) {
        self.entries.push(entry);
    }
}

/// `[[images]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawImages {
    #[serde(default)]
    ids: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    owners: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    names: Option<Spanned<Vec<String>>>,
    /// `YYYY-MM-DD` (midnight UTC) or RFC 3339.
    #[serde(default)]
    expires: Option<Spanned<String>>,
    reason: Spanned<String>,
}

/// `ami-` and 8 or 17 hex digits, as EC2 writes them.
fn is_ami_id(s: &str) -> bool {
    s.strip_prefix("ami-").is_some_and(|h| {
        (h.len() == 8 || h.len() == 17)
            && h.chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

fn is_owner(s: &str) -> bool {
    (s.len() == 12 && s.chars().all(|c| c.is_ascii_digit())) || OWNER_ALIASES.contains(&s)
}

/// Checks one list field: present means not empty, and every value passes `ok`.
fn list(
    src: &Source<'_>,
    field: &str,
    raw: Option<Spanned<Vec<String>>>,
    ok: impl Fn(&str) -> Result<(), String>,
) -> Result<Vec<String>, FileError> {
    let Some(raw) = raw else {
        return Ok(Vec::new());
    };
    let span = raw.span();
    let values = raw.into_inner();
    if values.is_empty() {
        return Err(src.error_for(
            span,
            field,
            "an empty list approves nothing; leave the field out",
        ));
    }
    for v in &values {
        ok(v).map_err(|m| src.error_for(span.clone(), field, m))?;
    }
    Ok(values)
}

impl RawImages {
    /// Validates one entry; errors name the file, the line and the field.
    pub(super) fn check(
        self,
        src: &Source<'_>,
        path: &std::path::Path,
        entry: std::ops::Range<usize>,
    ) -> Result<ImageEntry, FileError> {
        let ids = list(src, "images.ids", self.ids, |v| {
            if is_ami_id(v) {
                Ok(())
            } else {
                Err(format!(
                    "`{v}` is not an AMI id (ami- and 8 or 17 hex digits)"
                ))
            }
        })?;
        let owners = list(src, "images.owners", self.owners, |v| {
            if is_owner(v) {
                Ok(())
            } else {
                Err(format!(
                    "`{v}` is not an account id (12 digits) or an owner alias ({})",
                    OWNER_ALIASES.join(", ")
                ))
            }
        })?;
        let names = list(src, "images.names", self.names, |v| {
            // A lone `*` approves every name: say so by leaving `names` out instead.
            if v.trim_matches('*').is_empty() {
                Err(format!(
                    "`{v}` matches every name; leave `names` out instead"
                ))
            } else {
                Ok(())
            }
        })?;
        if ids.is_empty() && owners.is_empty() && names.is_empty() {
            return Err(src.error_for(
                entry,
                "images",
                "an entry needs at least one of `ids`, `owners` and `names`",
            ));
        }
        let expires = self
            .expires
            .map(|e| {
                let span = e.span();
                super::load::parse_time(e.get_ref())
                    .map_err(|m| src.error_for(span, "images.expires", m))
            })
            .transpose()?;
        let reason_span = self.reason.span();
        let reason = self.reason.into_inner();
        if reason.trim().is_empty() {
            return Err(src.error_for(
                reason_span,
                "images.reason",
                "say why these images are approved",
            ));
        }
        Ok(ImageEntry {
            ids: ids.into_iter().collect(),
            owners: owners.into_iter().collect(),
            names,
            expires,
            reason,
            at: format!("{}:{}", path.display(), src.line_col(entry.start).0),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::TimeZone;

    use super::*;
    use crate::policy::Policy;

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 0, 0, 0)
            .single()
            .expect("valid")
    }

    fn image(id: &str, owner: Option<&str>, alias: Option<&str>, name: Option<&str>) -> Image {
        Image {
            id: id.into(),
            owner: owner.map(Into::into),
            owner_alias: alias.map(Into::into),
            name: name.map(Into::into),
        }
    }

    fn catalog(text: &str) -> Catalog {
        Policy::parse([(Path::new("images.toml"), text)])
            .expect("valid catalog")
            .images()
            .clone()
    }

    const CATALOG: &str = r#"
[[images]]
ids = ["ami-0123456789abcdef0"]
reason = "the golden build image"

[[images]]
owners = ["111122223333"]
reason = "the platform team's image factory"
expires = "2027-01-01"

[[images]]
owners = ["amazon"]
names = ["ubuntu/images/*-24.04-*", "al2023-ami-*"]
reason = "stock images from Amazon"
"#;

    /// Each criterion alone, together, the expiry boundary, and a deregistered AMI (known by
    /// its id alone) — approved only by id.
    #[test]
    fn what_the_catalog_approves() {
        let c = catalog(CATALOG);
        let before = at(2026, 12, 31);
        let expiry = at(2027, 1, 1);
        let golden = "ami-0123456789abcdef0";
        let other = "ami-0fedcba9876543210";
        let ubuntu = "ubuntu/images/hvm-ssd/ubuntu-noble-24.04-amd64-server-20260101";
        // (image, now, approved)
        let table: Vec<(Image, DateTime<Utc>, bool)> = vec![
            // By id, however it was described, even gone.
            (image(golden, None, None, None), before, true),
            (
                image(golden, Some("999999999999"), None, Some("x")),
                expiry,
                true,
            ),
            // By owner id, until the entry expires (expiry itself no longer approves).
            (
                image(other, Some("111122223333"), None, Some("any")),
                before,
                true,
            ),
            (
                image(other, Some("111122223333"), None, Some("any")),
                expiry - chrono::TimeDelta::milliseconds(1),
                true,
            ),
            (
                image(other, Some("111122223333"), None, Some("any")),
                expiry,
                false,
            ),
            // By owner alias and name, both needed.
            (
                image(other, Some("099720109477"), Some("amazon"), Some(ubuntu)),
                expiry,
                true,
            ),
            (
                image(
                    other,
                    Some("137112412989"),
                    Some("amazon"),
                    Some("al2023-ami-2023.6"),
                ),
                expiry,
                true,
            ),
            (
                image(
                    other,
                    Some("099720109477"),
                    Some("amazon"),
                    Some("ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64"),
                ),
                expiry,
                false,
            ),
            // Someone else's image of the same name: the owner does not match.
            (
                image(other, Some("444455556666"), None, Some(ubuntu)),
                expiry,
                false,
            ),
            // Deregistered (or not visible): no owner or name to match.
            (image(other, None, None, None), before, false),
            (
                image("resolve:ssm:/aws/service/ami", None, None, None),
                before,
                false,
            ),
        ];
        for (img, now, want) in table {
            assert_eq!(!c.rejects(&img, now), want, "{img:?} at {now}");
        }
        // No catalog: nothing is judged.
        let off = Catalog::default();
        assert!(!off.is_on());
        assert!(!off.rejects(&image(other, None, None, None), before));
        // A catalog whose every entry expired is still on: nothing is approved any more.
        let expired = catalog(
            "[[images]]\nowners = [\"111122223333\"]\nreason = \"r\"\nexpires = \"2026-01-01\"\n",
        );
        assert!(expired.rejects(&image(other, Some("111122223333"), None, None), before));
    }

    #[test]
    fn bad_entries_name_file_line_and_field() {
        let check = |text: &str, want: &str| {
            let err = Policy::parse([(Path::new("images.toml"), text)])
                .expect_err(want)
                .to_string();
            assert!(err.contains(want), "{err} lacks {want}");
        };
        check(
            "[[images]]\nids = [\"ami-123\"]\nreason = \"r\"\n",
            "images.toml:2:7: field `images.ids`: `ami-123` is not an AMI id",
        );
        check(
            "[[images]]\nowners = [\"self\"]\nreason = \"r\"\n",
            "images.toml:2:10: field `images.owners`: `self` is not an account id",
        );
        // An account id is twelve characters *and* all digits: either alone is not one.
        check(
            "[[images]]\nowners = [\"accountowner\"]\nreason = \"r\"\n",
            "images.toml:2:10: field `images.owners`: `accountowner` is not an account id",
        );
        check(
            "[[images]]\nowners = [\"11112222333\"]\nreason = \"r\"\n",
            "images.toml:2:10: field `images.owners`: `11112222333` is not an account id",
        );
        check(
            "[[images]]\nnames = [\"*\"]\nreason = \"r\"\n",
            "images.toml:2:9: field `images.names`: `*` matches every name",
        );
        check(
            "[[images]]\nids = []\nreason = \"r\"\n",
            "field `images.ids`: an empty list approves nothing",
        );
        check(
            "\n[[images]]\nreason = \"r\"\n",
            "images.toml:2:1: field `images`: an entry needs at least one of",
        );
        check(
            "[[images]]\nids = [\"ami-12345678\"]\nreason = \"r\"\nexpires = \"soon\"\n",
            "images.toml:4:11: field `images.expires`: `soon` is not a date",
        );
        check(
            "[[images]]\nids = [\"ami-12345678\"]\nreason = \" \"\n",
            "images.toml:3:10: field `images.reason`: say why",
        );
        check(
            "[[images]]\nids = [\"ami-12345678\"]\n",
            "images.toml:1:1: missing field `reason`",
        );
        check(
            "[[images]]\nid = [\"ami-12345678\"]\nreason = \"r\"\n",
            "unknown field `id`",
        );
    }
}
