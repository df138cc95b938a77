//! Evaluation: one resource, the leases, the rules and `now` in; a verdict, an action and a
//! reason out.
//!
//! Architecture Invariant: pure and allocation-light (it runs for every resource of every
//! pass): no clock, no store, no I/O; the lease lookup is passed in.

use std::fmt;

use chrono::{DateTime, Utc};

use super::{Policy, ProjectPolicy, Rule};
use crate::model::{IdentityTags, Image};
use crate::model::{Lease, LeaseState};
use crate::model::{LeaseId, ProjectName, Tags, Verdict};

/// Why a verdict was reached, in words an owner understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    LeaseActive,
    LeaseEndsSoon,
    LeaseExpired,
    MissedHeartbeat,
    LeaseReleased,
    NoSuchLease,
    NotALeaseId,
    NoTags,
    /// Found by a service's own list call, with no tags: the tagging API never listed it.
    NeverTagged,
    MissingTag(&'static str),
    ProtectTag,
    Allowlisted,
    /// Its project may not have resources in its account.
    OutsideProjectAccounts,
    /// Its image is in no `[[images]]` entry (or only in expired ones).
    UnapprovedImage,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::LeaseActive => f.write_str("lease is active"),
            Reason::LeaseEndsSoon => f.write_str("lease ends within the warning window"),
            Reason::LeaseExpired => f.write_str("lease expired"),
            Reason::MissedHeartbeat => f.write_str("lease missed its heartbeat"),
            Reason::LeaseReleased => f.write_str("lease was released but the resource is alive"),
            Reason::NoSuchLease => f.write_str("lease tag names no known lease"),
            Reason::NotALeaseId => f.write_str("lease tag is not a lease id"),
            Reason::NoTags => f.write_str("resource has no tags"),
            Reason::NeverTagged => f.write_str("never tagged"),
            Reason::MissingTag(which) => write!(f, "identity tag `{which}` is missing"),
            Reason::ProtectTag => f.write_str("carries the protect tag"),
            Reason::Allowlisted => f.write_str("on the allowlist"),
            Reason::OutsideProjectAccounts => {
                f.write_str("its project may not have resources in this account")
            }
            Reason::UnapprovedImage => f.write_str("its image is not in the approved catalog"),
        }
    }
}

/// The outcome for one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation<'p, 't> {
    pub verdict: Verdict,
    pub reason: Reason,
    /// The policy project the resource belongs to (from its lease, else its project tag),
    /// when policy knows it.
    pub project: Option<&'p ProjectName>,
    /// Action and grace; meaningful for verdicts that open a finding.
    pub rule: Rule,
    /// When the lease stopped being active (expired: its end; released: the release).
    pub lease_ended_at: Option<DateTime<Utc>>,
    /// The lease tag's value when present and not empty, whatever the verdict.
    pub lease_tag: Option<&'t str>,
    /// The lease tag read as a lease id (however it is spelt), when it is one.
    pub lease_id: Option<LeaseId>,
    /// The catalog is on and rejects the resource's image, whatever the verdict (a lease
    /// verdict that wins over `unapproved-image` still says so in its reason).
    pub unapproved_image: bool,
}

/// Where a resource lives, as far as the rules care.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    /// Its account, as the walk that found it says (an S3 bucket's ARN names none).
    pub account: &'a str,
    /// The OUs above the account that projects bind themselves to.
    pub ous: &'a [String],
    /// `ec2:instance`, as [`crate::model::Arn::resource_type`] says.
    pub resource_type: &'a str,
    /// The image it runs (an instance) or launches (a launch template); none for other types,
    /// or when inventory could not tell.
    pub image: Option<&'a Image>,
}

/// Evaluates one resource. `lease` looks a lease up by the id the lease tag names (the tag
/// is parsed first: the same id spelt another way is the same lease).
pub fn evaluate<'p, 'l, 't>(
    arn: &str,
    tags: &'t Tags,
    lease: impl Fn(LeaseId) -> Option<&'l Lease>,
    policy: &'p Policy,
    keys: &IdentityTags,
    place: &Place<'_>,
    now: DateTime<Utc>,
) -> Evaluation<'p, 't> {
    // One scan of the tags for every key evaluation needs (this runs per resource per pass).
    let [lease_tag, project_tag, task_tag, owner_tag, protect_tag] = tags.get_many([
        &keys.lease,
        &keys.project,
        &keys.task,
        &keys.owner,
        &keys.protect,
    ]);
    let tag_project = project_tag.and_then(|p| policy.projects.get_key_value(p));
    let lease_id = lease_tag.and_then(LeaseId::parse_loose);
    let unapproved_image = place.image.is_some_and(|i| policy.images.rejects(i, now));
    let verdict_in = |verdict: Verdict,
                      reason: Reason,
                      project: Option<(&'p ProjectName, &'p ProjectPolicy)>,
                      ended: Option<DateTime<Utc>>| {
        // Whatever else is true of it, a resource claiming a project where that project may
        // not live is reported, never reaped (unless it is protected anyway).
        let (verdict, reason) = match project {
            Some((_, p)) if verdict != Verdict::Protected && !p.allows(place) => {
                (Verdict::Misplaced, Reason::OutsideProjectAccounts)
            }
            _ => (verdict, reason),
        };
        Evaluation {
            verdict,
            reason,
            project: project.map(|(k, _)| k),
            rule: policy.rule_for(project.map(|(_, v)| v), verdict, place.resource_type),
            lease_ended_at: ended,
            lease_tag: lease_tag.filter(|v| !v.is_empty()),
            lease_id,
            unapproved_image,
        }
    };

    if protect_tag.is_some() {
        return verdict_in(Verdict::Protected, Reason::ProtectTag, tag_project, None);
    }
    if policy.allowed(arn, now).is_some() {
        return verdict_in(Verdict::Protected, Reason::Allowlisted, tag_project, None);
    }
    // Untagged wins over an unapproved image (the reason still names the image): a resource
    // of no project is under no project's image rule, and `untagged` opens a finding whose own
    // rule — reap where never-tagged resources may be reaped — already decides its fate.
    if tags.is_empty() {
        return verdict_in(Verdict::Untagged, Reason::NoTags, None, None);
    }
    for (which, value) in [
        ("lease", lease_tag),
        ("project", project_tag),
        ("task", task_tag),
        ("owner", owner_tag),
    ] {
        if value.is_none_or(|v| v.trim().is_empty()) {
            return verdict_in(
                Verdict::Untagged,
                Reason::MissingTag(which),
                tag_project,
                None,
            );
        }
    }
    let Some(id) = lease_id else {
        return verdict_in(
            Verdict::UnknownLease,
            Reason::NotALeaseId,
            tag_project,
            None,
        );
    };
    let Some(l) = lease(id) else {
        return verdict_in(
            Verdict::UnknownLease,
            Reason::NoSuchLease,
            tag_project,
            None,
        );
    };
    // The registry, not the tag, says which project a leased resource belongs to.
    let project = policy.projects.get_key_value(&l.project);
    match l.state(now) {
        LeaseState::Released => verdict_in(
            Verdict::Released,
            Reason::LeaseReleased,
            project,
            l.released_at,
        ),
        LeaseState::Expired => {
            let reason = if l.ends_at() < l.expires_at {
                Reason::MissedHeartbeat
            } else {
                Reason::LeaseExpired
            };
            verdict_in(Verdict::Expired, reason, project, Some(l.ends_at()))
        }
        // Precedence: what the lease says wins when it opens a finding of its own (that
        // finding's rule already decides the resource's fate); over a live lease, the image.
        LeaseState::Active if unapproved_image => verdict_in(
            Verdict::UnapprovedImage,
            Reason::UnapprovedImage,
            project,
            None,
        ),
        LeaseState::Active => {
            let window = policy.warning_window(project.map(|(_, p)| p));
            if l.ends_at() - now <= window.to_chrono() {
                verdict_in(Verdict::Expiring, Reason::LeaseEndsSoon, project, None)
            } else {
                verdict_in(Verdict::Leased, Reason::LeaseActive, project, None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{TimeDelta, TimeZone};

    use super::*;
    use crate::model::{Action, HumanDuration};

    const ID: &str = "0194e0a1-7c2d-7000-8000-00000000beef";

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 8, 0, 0)
            .single()
            .expect("valid")
    }

    fn policy() -> Policy {
        Policy::parse([(
            std::path::Path::new("p.toml"),
            r#"
[[project]]
name = "web"
lessees = ["ci"]
default_ttl = "2h"
max_ttl = "1d"
grace = "1h"
warning_window = "30m"
"#,
        )])
        .expect("valid policy")
    }

    /// A lease of `web` from t0 to t0 + 2h, with a 10m heartbeat when `hb`.
    fn lease(hb: bool) -> Lease {
        Lease {
            id: ID.parse().expect("id"),
            project: crate::model::ProjectName::parse("web").expect("name"),
            task: "t".into(),
            owner: "o@example.com".into(),
            principal: "ci".into(),
            created_at: t0(),
            expires_at: t0() + TimeDelta::hours(2),
            heartbeat_interval: hb.then(|| HumanDuration::from_secs(600)),
            last_heartbeat_at: hb.then(|| t0() + TimeDelta::minutes(100)),
            released_at: None,
            labels: BTreeMap::new(),
            regions: vec![],
        }
    }

    fn check(lease_tag: &str, l: &Lease, at: DateTime<Utc>) -> (Verdict, Reason) {
        let keys = IdentityTags::default();
        let tags = Tags::from_pairs([
            (keys.lease.as_str(), lease_tag),
            (keys.project.as_str(), "web"),
            (keys.task.as_str(), "t"),
            (keys.owner.as_str(), "o@example.com"),
        ]);
        let p = policy();
        let e = evaluate(
            "arn:aws:ec2:us-east-1:111111111111:volume/vol-1",
            &tags,
            |id| Some(l).filter(|l| l.id == id),
            &p,
            &keys,
            &HERE,
            at,
        );
        (e.verdict, e.reason)
    }

    const HERE: Place<'static> = Place {
        account: "111111111111",
        ous: &[],
        resource_type: "ec2:volume",
        image: None,
    };

    /// The boundaries of the warning window and of the lease's end, and why it ended: the
    /// heartbeat deadline (t0+110m) before `expires_at` (t0+120m), or `expires_at` itself.
    #[test]
    fn boundaries_and_reasons() {
        let ms = TimeDelta::milliseconds;
        let m = TimeDelta::minutes;
        let plain = lease(false);
        let beating = lease(true);
        let table: &[(&Lease, DateTime<Utc>, Verdict, Reason)] = &[
            // Warning window 30m before the end at t0+2h: leased until then, expiring at it.
            (
                &plain,
                t0() + m(90) - ms(1),
                Verdict::Leased,
                Reason::LeaseActive,
            ),
            (
                &plain,
                t0() + m(90),
                Verdict::Expiring,
                Reason::LeaseEndsSoon,
            ),
            (
                &plain,
                t0() + m(120) - ms(1),
                Verdict::Expiring,
                Reason::LeaseEndsSoon,
            ),
            (
                &plain,
                t0() + m(120),
                Verdict::Expired,
                Reason::LeaseExpired,
            ),
            // Heartbeat deadline t0+110m, before expires_at: a missed heartbeat.
            (
                &beating,
                t0() + m(80) - ms(1),
                Verdict::Leased,
                Reason::LeaseActive,
            ),
            (
                &beating,
                t0() + m(80),
                Verdict::Expiring,
                Reason::LeaseEndsSoon,
            ),
            (
                &beating,
                t0() + m(110),
                Verdict::Expired,
                Reason::MissedHeartbeat,
            ),
        ];
        for (l, at, verdict, reason) in table {
            assert_eq!(check(ID, l, *at), (*verdict, *reason), "at {at}");
        }
        // A heartbeat deadline at expires_at itself is an expiry, not a missed heartbeat.
        let mut even = lease(true);
        even.last_heartbeat_at = Some(t0() + m(110));
        assert_eq!(
            check(ID, &even, t0() + m(120)),
            (Verdict::Expired, Reason::LeaseExpired)
        );
    }

    /// The evaluation carries the lease tag as written (not when empty) and the id it names.
    #[test]
    fn the_lease_tag_and_its_id_travel_with_the_evaluation() {
        let keys = IdentityTags::default();
        let p = policy();
        let l = lease(false);
        let at = t0();
        for (tag, want_tag, want_id) in [
            (" {X} ", Some(" {X} "), None),
            ("build-7", Some("build-7"), None),
            ("", None, None),
            (ID, Some(ID), Some(l.id)),
        ] {
            let tag = tag.replace('X', ID);
            let tags = Tags::from_pairs([(keys.lease.as_str(), tag.as_str())]);
            let e = evaluate("arn:aws:s3:::b", &tags, |_| Some(&l), &p, &keys, &HERE, at);
            let want_tag = want_tag.map(|t| t.replace('X', ID));
            assert_eq!(e.lease_tag.map(str::to_owned), want_tag, "{tag:?}");
            let want_id = if tag.contains(ID) {
                Some(l.id)
            } else {
                want_id
            };
            assert_eq!(e.lease_id, want_id, "{tag:?}");
        }
    }

    /// Reasons are what owners read in mail and on-call reads in the audit log.
    #[test]
    fn reasons_read_as_words() {
        for (reason, text) in [
            (Reason::LeaseActive, "lease is active"),
            (
                Reason::LeaseEndsSoon,
                "lease ends within the warning window",
            ),
            (Reason::LeaseExpired, "lease expired"),
            (Reason::MissedHeartbeat, "lease missed its heartbeat"),
            (
                Reason::LeaseReleased,
                "lease was released but the resource is alive",
            ),
            (Reason::NoSuchLease, "lease tag names no known lease"),
            (Reason::NotALeaseId, "lease tag is not a lease id"),
            (Reason::NoTags, "resource has no tags"),
            (Reason::NeverTagged, "never tagged"),
            (
                Reason::MissingTag("owner"),
                "identity tag `owner` is missing",
            ),
            (Reason::ProtectTag, "carries the protect tag"),
            (Reason::Allowlisted, "on the allowlist"),
            (
                Reason::OutsideProjectAccounts,
                "its project may not have resources in this account",
            ),
            (
                Reason::UnapprovedImage,
                "its image is not in the approved catalog",
            ),
        ] {
            assert_eq!(reason.to_string(), text);
        }
    }

    /// The lease tag is parsed: any spelling of the id finds the lease, a tag that is no id is
    /// `unknown-lease` for that reason, an id nobody knows for its own.
    #[test]
    fn lease_tags_are_parsed() {
        let l = lease(false);
        let at = t0() + TimeDelta::minutes(10);
        for spelt in [
            ID.to_owned(),
            ID.to_uppercase(),
            format!("{{{ID}}}"),
            format!("urn:uuid:{ID}"),
            ID.replace('-', ""),
            format!(" {ID}\t"),
        ] {
            assert_eq!(
                check(&spelt, &l, at),
                (Verdict::Leased, Reason::LeaseActive),
                "{spelt:?}"
            );
        }
        assert_eq!(
            check("build-7", &l, at),
            (Verdict::UnknownLease, Reason::NotALeaseId)
        );
        assert_eq!(
            check("0194e0a1-7c2d-7000-8000-00000000cafe", &l, at),
            (Verdict::UnknownLease, Reason::NoSuchLease)
        );
    }

    /// A project bound to accounts and OUs: its resources elsewhere are `misplaced` whatever
    /// their lease says (expired included), reported and never reaped even where a rule says
    /// reap; protection still wins; an unbound project is at home anywhere.
    #[test]
    fn a_resource_outside_its_projects_accounts_is_misplaced_and_never_reaped() {
        let p = Policy::parse([(
            std::path::Path::new("p.toml"),
            r#"
[defaults.on]
misplaced = { action = "notify" }
untagged = { action = "reap" }

[[project]]
name = "web"
lessees = ["ci"]
default_ttl = "2h"
max_ttl = "1d"
grace = "1h"
accounts = ["111111111111", "ou-ab12-sandbox1"]

[project.on]
expired = { action = "reap" }
misplaced = { action = "notify" }

[[project]]
name = "data"
lessees = ["ci"]
default_ttl = "2h"
max_ttl = "1d"
grace = "1h"
"#,
        )])
        .expect("valid policy");
        let keys = IdentityTags::default();
        let l = lease(false);
        let expired_at = t0() + TimeDelta::hours(3);
        let full = |project: &str| {
            Tags::from_pairs([
                (keys.lease.as_str(), ID),
                (keys.project.as_str(), project),
                (keys.task.as_str(), "t"),
                (keys.owner.as_str(), "o@example.com"),
            ])
        };
        let sandbox = ["ou-ab12-sandbox1".to_owned()];
        let other_ou = ["ou-ab12-prod".to_owned()];
        let at = |account: &'static str, ous: &'static [String]| Place {
            account,
            ous,
            resource_type: "ec2:volume",
            image: None,
        };
        let sandbox: &'static [String] = Box::leak(Box::new(sandbox));
        let other_ou: &'static [String] = Box::leak(Box::new(other_ou));
        let web = full("web");
        // Claims `data`, which is bound nowhere (no lease tag: untagged, not misplaced).
        let data = Tags::from_pairs([(keys.project.as_str(), "data")]);
        // (tags, place) -> (verdict, action)
        let table: Vec<(&Tags, Place<'_>, Verdict, Action)> = vec![
            (
                &web,
                at("111111111111", &[]),
                Verdict::Expired,
                Action::Reap,
            ),
            (
                &web,
                at("222222222222", sandbox),
                Verdict::Expired,
                Action::Reap,
            ),
            (
                &web,
                at("222222222222", other_ou),
                Verdict::Misplaced,
                Action::Notify,
            ),
            (
                &web,
                at("333333333333", &[]),
                Verdict::Misplaced,
                Action::Notify,
            ),
            (
                &data,
                at("333333333333", &[]),
                Verdict::Untagged,
                Action::Reap,
            ),
        ];
        for (tags, place, verdict, action) in table {
            let e = evaluate(
                "arn:aws:s3:::b",
                tags,
                |_| Some(&l),
                &p,
                &keys,
                &place,
                expired_at,
            );
            assert_eq!((e.verdict, e.rule.action), (verdict, action), "{place:?}");
            if verdict == Verdict::Misplaced {
                assert_eq!(e.reason, Reason::OutsideProjectAccounts);
                assert_eq!(e.project.map(ProjectName::as_str), Some("web"));
            }
        }
        // Claimed by the tag alone (no lease known), missing tags: still misplaced.
        let tag_only = Tags::from_pairs([(keys.project.as_str(), "web")]);
        let e = evaluate(
            "arn:aws:s3:::b",
            &tag_only,
            |_| None,
            &p,
            &keys,
            &at("333333333333", &[]),
            t0(),
        );
        assert_eq!(e.verdict, Verdict::Misplaced);
        // Protection wins.
        let protected = Tags::from_pairs(web.iter().chain([(keys.protect.as_str(), "yes")]));
        let e = evaluate(
            "arn:aws:s3:::b",
            &protected,
            |_| Some(&l),
            &p,
            &keys,
            &at("333333333333", &[]),
            t0(),
        );
        assert_eq!(e.verdict, Verdict::Protected);
        // A rule cannot make a misplaced resource reapable.
        let mut forced = p.clone();
        forced.defaults.on.insert(
            Verdict::Misplaced,
            Rule {
                action: Action::Reap,
                grace: HumanDuration::from_secs(1),
            },
        );
        assert_eq!(
            forced
                .rule_for(None, Verdict::Misplaced, "ec2:volume")
                .action,
            Action::Report
        );
    }

    /// Rules per resource type within a project win over the project's own, which win over
    /// the defaults; a type without its own rule falls through.
    #[test]
    fn rules_per_resource_type_within_a_project() {
        let p = Policy::parse([(
            std::path::Path::new("p.toml"),
            r#"
[[project]]
name = "web"
lessees = ["ci"]
default_ttl = "2h"
max_ttl = "1d"
grace = "6h"

[project.on]
expired = { action = "notify" }

[project.on_type."ec2:instance"]
expired = { action = "reap", grace = "30m" }

[project.on_type."s3:bucket"]
released = { action = "reap" }
"#,
        )])
        .expect("valid policy");
        let web = p.project(&ProjectName::parse("web").expect("name"));
        let rule = |t: &str, v: Verdict| {
            let r = p.rule_for(web, v, t);
            (r.action, r.grace.to_string())
        };
        assert_eq!(
            rule("ec2:instance", Verdict::Expired),
            (Action::Reap, "30m".into())
        );
        assert_eq!(
            rule("ec2:volume", Verdict::Expired),
            (Action::Notify, "6h".into())
        );
        assert_eq!(
            rule("s3:bucket", Verdict::Released),
            (Action::Reap, "6h".into())
        );
        assert_eq!(
            rule("s3:bucket", Verdict::Expired),
            (Action::Notify, "6h".into())
        );
        assert_eq!(
            rule("ec2:instance", Verdict::Released),
            (Action::Report, "6h".into())
        );
    }

    /// The image catalog against every lease verdict: over a live lease (leased or expiring)
    /// an unapproved image is the verdict; a lease verdict that opens its own finding wins, and
    /// so does untagged (both say the image is not approved); protection and misplacement win
    /// over both. The
    /// action is the project's own rule, `notify` when no rule names it; the defaults may not
    /// make it `reap`. Without a catalog, or for a resource without an image, nothing changes.
    #[test]
    fn unapproved_images_and_their_precedence() {
        let rules = r#"
[defaults.on]
unapproved-image = { action = "report" }

[[images]]
ids = ["ami-00000000000000001"]
reason = "golden"

[[project]]
name = "web"
lessees = ["ci"]
default_ttl = "2h"
max_ttl = "1d"
grace = "1h"
warning_window = "30m"
accounts = ["111111111111"]

[project.on]
unapproved-image = { action = "reap", grace = "10m" }

[project.on_type."ec2:launch-template"]
unapproved-image = { action = "notify" }

[[project]]
name = "data"
lessees = ["ci"]
default_ttl = "2h"
max_ttl = "1d"
grace = "3h"
"#;
        let p = Policy::parse([(std::path::Path::new("p.toml"), rules)]).expect("valid");
        let keys = IdentityTags::default();
        let good = Image::by_id("ami-00000000000000001");
        let bad = Image::by_id("ami-00000000000000002");
        let tags = |project: &str, protect: bool| {
            let mut t = vec![
                (keys.lease.as_str(), ID),
                (keys.project.as_str(), project),
                (keys.task.as_str(), "t"),
                (keys.owner.as_str(), "o@example.com"),
            ];
            if protect {
                t.push((keys.protect.as_str(), "yes"));
            }
            Tags::from_pairs(t)
        };
        let web_lease = lease(false);
        let mut data_lease = lease(false);
        data_lease.project = ProjectName::parse("data").expect("name");
        let m = TimeDelta::minutes;
        let instance = "ec2:instance";
        let template = "ec2:launch-template";
        // (lease, tags, account, type, image, at) -> (verdict, action, unapproved_image)
        type Row<'a> = (
            &'a Lease,
            Tags,
            &'a str,
            &'a str,
            Option<&'a Image>,
            DateTime<Utc>,
            (Verdict, Action, bool),
        );
        let table: Vec<Row<'_>> = vec![
            // Leased: the image decides.
            (
                &web_lease,
                tags("web", false),
                "111111111111",
                instance,
                Some(&good),
                t0(),
                (Verdict::Leased, Action::Report, false),
            ),
            (
                &web_lease,
                tags("web", false),
                "111111111111",
                instance,
                Some(&bad),
                t0(),
                (Verdict::UnapprovedImage, Action::Reap, true),
            ),
            (
                &web_lease,
                tags("web", false),
                "111111111111",
                instance,
                None,
                t0(),
                (Verdict::Leased, Action::Report, false),
            ),
            // The type's own rule within the project.
            (
                &web_lease,
                tags("web", false),
                "111111111111",
                template,
                Some(&bad),
                t0(),
                (Verdict::UnapprovedImage, Action::Notify, true),
            ),
            // Expiring: the image wins over the warning.
            (
                &web_lease,
                tags("web", false),
                "111111111111",
                instance,
                Some(&bad),
                t0() + m(95),
                (Verdict::UnapprovedImage, Action::Reap, true),
            ),
            (
                &web_lease,
                tags("web", false),
                "111111111111",
                instance,
                Some(&good),
                t0() + m(95),
                (Verdict::Expiring, Action::Report, false),
            ),
            // Expired: the lease's finding wins, the image still told.
            (
                &web_lease,
                tags("web", false),
                "111111111111",
                instance,
                Some(&bad),
                t0() + m(121),
                (Verdict::Expired, Action::Report, true),
            ),
            // Untagged (never tagged, or an identity tag missing) wins, the image still told.
            (
                &web_lease,
                Tags::from_pairs(Vec::<(&str, &str)>::new()),
                "111111111111",
                instance,
                Some(&bad),
                t0(),
                (Verdict::Untagged, Action::Report, true),
            ),
            (
                &web_lease,
                Tags::from_pairs([
                    (keys.lease.as_str(), ID),
                    (keys.project.as_str(), "web"),
                    (keys.task.as_str(), "t"),
                ]),
                "111111111111",
                template,
                Some(&bad),
                t0(),
                (Verdict::Untagged, Action::Report, true),
            ),
            // Protected and misplaced win.
            (
                &web_lease,
                tags("web", true),
                "111111111111",
                instance,
                Some(&bad),
                t0(),
                (Verdict::Protected, Action::Report, true),
            ),
            (
                &web_lease,
                tags("web", false),
                "222222222222",
                instance,
                Some(&bad),
                t0(),
                (Verdict::Misplaced, Action::Report, true),
            ),
            // A project without a rule of its own: the defaults' report.
            (
                &data_lease,
                tags("data", false),
                "111111111111",
                instance,
                Some(&bad),
                t0(),
                (Verdict::UnapprovedImage, Action::Report, true),
            ),
        ];
        for (l, tags, account, resource_type, image, at, want) in table {
            let place = Place {
                account,
                ous: &[],
                resource_type,
                image,
            };
            let e = evaluate(
                "arn:aws:ec2:us-east-1:111111111111:instance/i-1",
                &tags,
                |id| Some(l).filter(|l| l.id == id),
                &p,
                &keys,
                &place,
                at,
            );
            assert_eq!(
                (e.verdict, e.rule.action, e.unapproved_image),
                want,
                "{account} {resource_type} {image:?} at {at}"
            );
            if e.verdict == Verdict::UnapprovedImage {
                assert_eq!(e.reason, Reason::UnapprovedImage);
            }
        }
        // The project's grace for its rule.
        let web = p.project(&ProjectName::parse("web").expect("name"));
        assert_eq!(
            p.rule_for(web, Verdict::UnapprovedImage, instance)
                .grace
                .to_string(),
            "10m"
        );
        // No rule anywhere: notify, with the project's grace.
        let bare = Policy::parse([(std::path::Path::new("p.toml"), "[[project]]\nname = \"web\"\nlessees = [\"ci\"]\ndefault_ttl = \"2h\"\nmax_ttl = \"1d\"\ngrace = \"5h\"\n")]).expect("valid");
        let web = bare.project(&ProjectName::parse("web").expect("name"));
        let r = bare.rule_for(web, Verdict::UnapprovedImage, instance);
        assert_eq!(
            (r.action, r.grace.to_string()),
            (Action::Notify, "5h".into())
        );
        assert_eq!(
            bare.rule_for(web, Verdict::Expired, instance).action,
            Action::Report
        );
        // Without a catalog the image is not judged.
        let web_tags = tags("web", false);
        let e = evaluate(
            "arn:aws:ec2:us-east-1:111111111111:instance/i-1",
            &web_tags,
            |_| Some(&web_lease),
            &bare,
            &keys,
            &Place {
                account: "1",
                ous: &[],
                resource_type: instance,
                image: Some(&bad),
            },
            t0(),
        );
        assert_eq!((e.verdict, e.unapproved_image), (Verdict::Leased, false));
        // Defaults may not make it reap: refused at load, and never honoured if forced in.
        let err = Policy::parse([(
            std::path::Path::new("d.toml"),
            "[defaults.on]\nunapproved-image = { action = \"reap\" }\n",
        )])
        .expect_err("reap in defaults")
        .to_string();
        assert!(
            err.contains(
                "field `defaults.on`: an unapproved image is reaped only where a project says so"
            ),
            "{err}"
        );
        let mut forced = bare.clone();
        forced.defaults.on.insert(
            Verdict::UnapprovedImage,
            Rule {
                action: Action::Reap,
                grace: HumanDuration::from_secs(1),
            },
        );
        let r = forced.rule_for(web, Verdict::UnapprovedImage, instance);
        assert_eq!(
            (r.action, r.grace.to_string()),
            (Action::Notify, "1s".into())
        );
        assert_eq!(
            forced
                .rule_for(None, Verdict::UnapprovedImage, instance)
                .action,
            Action::Notify
        );
    }
}
