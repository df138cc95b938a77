//! Leasing policy as code: `rules/policy/*.toml`, one `[[project]]` table per project, with
//! `[[test]]` cases beside the rules they exercise.
//!
//! Architecture Invariant: decisions here are pure: they take the request, the caller and the
//! counts they need, and read no clock, store or network. Loading reads files and nothing else.

mod cases;
mod evaluate;
mod images;
mod load;
mod routing;

use std::collections::{BTreeMap, BTreeSet};

pub use cases::{CaseOutcome, CaseReport};
pub use evaluate::{Evaluation, Place, Reason, evaluate};
pub use images::{Catalog, ImageEntry};
pub use load::PolicyError;
pub use routing::{Directory, Route, Team, Via, handle_key, is_address};

use chrono::{DateTime, Utc};

use crate::auth::Role;
use crate::model::{Action, HumanDuration, ProjectName, Verdict};

/// All projects' leasing and audit rules, plus the test cases found beside them.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    projects: BTreeMap<ProjectName, ProjectPolicy>,
    defaults: Defaults,
    allow: Vec<AllowEntry>,
    directory: Directory,
    images: Catalog,
    cases: Vec<cases::TestCase>,
}

/// What a finding of one verdict leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub action: Action,
    pub grace: HumanDuration,
}

/// Rules for resources of no known project, and fallbacks for every project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defaults {
    /// A leased resource whose lease ends within this window is `expiring`.
    pub warning_window: HumanDuration,
    /// Grace when neither the project nor a rule names one.
    pub grace: HumanDuration,
    pub on: BTreeMap<Verdict, Rule>,
    /// Refuse an acquire whose owner the directory cannot reach (an address, a known handle,
    /// a team or a member of one); accepted by default, so a CI job never fails over a
    /// missing table entry (its mail goes to the project's team instead).
    pub refuse_unknown_owners: bool,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            warning_window: HumanDuration::from_secs(3_600),
            grace: HumanDuration::from_secs(86_400),
            on: BTreeMap::new(),
            refuse_unknown_owners: false,
        }
    }
}

/// An allowlist entry: protects an ARN (or every ARN with a prefix, written `prefix*`), or
/// every resource whose name matches a pattern, until it expires. Names are what never-tagged
/// resources carry instead of tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    pub what: AllowMatch,
    pub reason: String,
    pub expires: DateTime<Utc>,
}

/// What an allowlist entry protects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowMatch {
    Arn {
        arn: String,
        prefix: bool,
    },
    /// The resource's name or id (`i-0abc`, the bucket or queue name, the whole log group
    /// name), `*` matching any run of characters; of one type when `resource_type` is set.
    Name {
        pattern: String,
        resource_type: Option<String>,
    },
}

impl AllowEntry {
    pub fn matches(&self, arn: &str, now: DateTime<Utc>) -> bool {
        now < self.expires
            && match &self.what {
                AllowMatch::Arn { arn: a, prefix } => {
                    if *prefix {
                        arn.starts_with(a.as_str())
                    } else {
                        arn == a
                    }
                }
                AllowMatch::Name {
                    pattern,
                    resource_type,
                } => crate::model::Arn::parse(arn).is_ok_and(|a| {
                    resource_type
                        .as_deref()
                        .is_none_or(|t| a.resource_type() == t)
                        && glob(pattern, a.name())
                }),
            }
    }
}

/// `*` matches any run of characters (none included); everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// A project's `overrun_factor` when it sets none: twice its recent p95 lease duration.
pub const DEFAULT_OVERRUN_PERMILLE: u32 = 2000;

/// The rules of one project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectPolicy {
    pub name: ProjectName,
    /// Principal names that may lease here; `*` admits every lessee scoped to the project.
    /// Operators may always lease.
    pub lessees: BTreeSet<String>,
    pub default_ttl: HumanDuration,
    pub max_ttl: HumanDuration,
    /// How long a flagged resource is kept after its lease ended before it may be reaped.
    pub grace: HumanDuration,
    /// At most this many active leases at once; none means no quota.
    pub max_active_leases: Option<u32>,
    /// Regions a lease may declare; none means any region.
    pub allowed_regions: Option<BTreeSet<String>>,
    /// Overrides the default warning window.
    pub warning_window: Option<HumanDuration>,
    /// `overrun_factor` in thousandths (2.0 is 2000): an active lease older than the
    /// project's recent p95 lease duration times the factor is overrunning.
    pub overrun_permille: u32,
    /// Per-verdict action and grace, over the defaults.
    pub on: BTreeMap<Verdict, Rule>,
    /// Per resource type (`ec2:instance`), per-verdict action and grace, over `on`.
    pub on_type: BTreeMap<String, BTreeMap<Verdict, Rule>>,
    /// The accounts (12-digit ids) and OUs (`ou-…`, `r-…`) its resources may live in; none:
    /// anywhere. A resource claiming the project elsewhere is `misplaced`.
    pub accounts: Option<BTreeSet<String>>,
}

impl ProjectPolicy {
    /// Whether the project's resources may live at `place`.
    pub fn allows(&self, place: &Place<'_>) -> bool {
        self.accounts.as_ref().is_none_or(|set| {
            set.contains(place.account) || place.ous.iter().any(|o| set.contains(o))
        })
    }
}

/// The caller as far as policy cares.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub name: &'a str,
    pub role: Role,
}

/// What an acquire asks for.
#[derive(Debug, Clone)]
pub struct AcquireAsk<'a> {
    pub project: &'a ProjectName,
    pub ttl: Option<HumanDuration>,
    pub heartbeat: Option<HumanDuration>,
    pub regions: &'a [String],
    /// The lease's owner as asked (an address, a handle or a team).
    pub owner: &'a str,
}

/// What policy grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub ttl: HumanDuration,
    pub max_active_leases: Option<u32>,
}

/// Why policy refused. Each has a stable code, used by the API and by rules test cases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("no policy defines project `{0}`")]
    UnknownProject(ProjectName),
    #[error("principal `{principal}` may not lease in project `{project}`")]
    NotALessee {
        principal: String,
        project: ProjectName,
    },
    #[error("ttl {ttl} exceeds the max_ttl of {max} for project `{project}`")]
    TtlAboveMax {
        ttl: HumanDuration,
        max: HumanDuration,
        project: ProjectName,
    },
    #[error("heartbeat interval {heartbeat} is longer than the ttl {ttl}")]
    HeartbeatAboveTtl {
        heartbeat: HumanDuration,
        ttl: HumanDuration,
    },
    #[error("region `{region}` is not allowed for project `{project}` (allowed: {allowed})")]
    RegionNotAllowed {
        region: String,
        project: ProjectName,
        allowed: String,
    },
    #[error(
        "owner `{0}` is not an e-mail address, a handle of [handles], a team or a team member (the rules refuse unknown owners)"
    )]
    UnknownOwner(String),
    #[error(
        "project `{project}` already has {active} active leases, its max_active_leases is {max}"
    )]
    QuotaExceeded {
        project: ProjectName,
        active: u64,
        max: u32,
    },
}

impl Denial {
    pub fn code(&self) -> &'static str {
        match self {
            Denial::UnknownProject(_) => "unknown-project",
            Denial::NotALessee { .. } => "project-forbidden",
            Denial::TtlAboveMax { .. } => "ttl-above-max",
            Denial::HeartbeatAboveTtl { .. } => "heartbeat-above-ttl",
            Denial::RegionNotAllowed { .. } => "region-not-allowed",
            Denial::QuotaExceeded { .. } => "quota-exceeded",
            Denial::UnknownOwner(_) => "unknown-owner",
        }
    }
}

impl Policy {
    /// The OUs projects bind themselves to: the organization walk says which accounts sit
    /// under each.
    pub fn bound_ous(&self) -> BTreeSet<String> {
        self.projects
            .values()
            .flat_map(|p| p.accounts.iter().flatten())
            .filter(|a| !a.chars().all(|c| c.is_ascii_digit()))
            .cloned()
            .collect()
    }

    /// Checks the principals against the policy's projects: a lessee scoped to a project no
    /// policy defines is a typo, and typos in access control are refused, not guessed at.
    /// A project bound to an OU needs `[aws.organization]` to know what lies under it.
    pub fn check_config(&self, config: &crate::config::Config) -> Result<(), String> {
        if config.aws.organization.is_none()
            && let Some(ou) = self.bound_ous().into_iter().next()
        {
            return Err(format!(
                "{}: a project is bound to OU `{ou}`, but without [aws.organization] no account \
                 is known to be under it",
                config.path.display()
            ));
        }
        for p in &config.principals {
            for project in &p.projects {
                if self.project(project).is_none() {
                    return Err(format!(
                        "{}: principal `{}` names project `{project}`, which no file in {} defines",
                        config.path.display(),
                        p.name,
                        config.rules.dir.join("policy").display()
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn project(&self, name: &ProjectName) -> Option<&ProjectPolicy> {
        self.projects.get(name)
    }

    pub fn projects(&self) -> impl Iterator<Item = &ProjectPolicy> {
        self.projects.values()
    }

    /// Decides an acquire. The quota is checked again, atomically, when the lease is stored.
    pub fn decide_acquire(
        &self,
        caller: Caller<'_>,
        ask: &AcquireAsk<'_>,
        active_leases: u64,
    ) -> Result<Grant, Denial> {
        let p = self
            .project(ask.project)
            .ok_or_else(|| Denial::UnknownProject(ask.project.clone()))?;
        let admitted = match caller.role {
            Role::Operator => true,
            Role::Lessee => p.lessees.contains("*") || p.lessees.contains(caller.name),
            Role::Viewer => false,
        };
        if !admitted {
            return Err(Denial::NotALessee {
                principal: caller.name.to_owned(),
                project: p.name.clone(),
            });
        }
        let ttl = p.check_ttl(ask.ttl)?;
        if let Some(hb) = ask.heartbeat
            && hb > ttl
        {
            return Err(Denial::HeartbeatAboveTtl { heartbeat: hb, ttl });
        }
        if let Some(allowed) = &p.allowed_regions
            && let Some(bad) = ask.regions.iter().find(|r| !allowed.contains(*r))
        {
            return Err(Denial::RegionNotAllowed {
                region: bad.clone(),
                project: p.name.clone(),
                allowed: allowed.iter().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        if self.defaults.refuse_unknown_owners && !self.directory.knows(ask.owner) {
            return Err(Denial::UnknownOwner(ask.owner.to_owned()));
        }
        p.check_quota(active_leases)?;
        Ok(Grant {
            ttl,
            max_active_leases: p.max_active_leases,
        })
    }

    /// Decides the new TTL of a renewal (counted from the renewal).
    pub fn decide_renew(
        &self,
        project: &ProjectName,
        ttl: Option<HumanDuration>,
    ) -> Result<HumanDuration, Denial> {
        let p = self
            .project(project)
            .ok_or_else(|| Denial::UnknownProject(project.clone()))?;
        p.check_ttl(ttl)
    }

    /// The approved-image catalog (`[[images]]`); off when the rules hold no entry.
    pub fn images(&self) -> &Catalog {
        &self.images
    }

    /// The test cases written in the rules files.
    pub fn run_cases(&self) -> CaseReport {
        cases::run(self)
    }

    /// The allowlist entry protecting `arn` at `now`, if any.
    pub fn allowed(&self, arn: &str, now: DateTime<Utc>) -> Option<&AllowEntry> {
        self.allow.iter().find(|a| a.matches(arn, now))
    }

    /// The action and grace for a verdict of a resource of `resource_type` in `project`
    /// (None: no known project). Precedence: the project's rule for the type, the project's
    /// rule, the defaults' rule, then `report` (`notify` for `unapproved-image`) with the
    /// project's (or the default) grace. A `misplaced` resource is never reaped, whatever a
    /// rule says; an `unapproved-image` one only where its project's own rule says reap.
    pub fn rule_for(
        &self,
        project: Option<&ProjectPolicy>,
        verdict: Verdict,
        resource_type: &str,
    ) -> Rule {
        let own = project
            .and_then(|p| p.on_type.get(resource_type).and_then(|on| on.get(&verdict)))
            .or_else(|| project.and_then(|p| p.on.get(&verdict)));
        let fallback = Rule {
            // Whoever can rebuild on an approved image should hear of it: a catalog that only
            // reports would be one nobody reads.
            action: if verdict == Verdict::UnapprovedImage {
                Action::Notify
            } else {
                Action::Report
            },
            grace: project.map_or(self.defaults.grace, |p| p.grace),
        };
        let rule = own
            .or_else(|| self.defaults.on.get(&verdict))
            .copied()
            .unwrap_or(fallback);
        match (verdict, rule.action) {
            (Verdict::Misplaced, Action::Reap) => Rule {
                action: Action::Report,
                ..rule
            },
            (Verdict::UnapprovedImage, Action::Reap) if own.is_none() => Rule {
                action: Action::Notify,
                ..rule
            },
            _ => rule,
        }
    }

    pub fn warning_window(&self, project: Option<&ProjectPolicy>) -> HumanDuration {
        project
            .and_then(|p| p.warning_window)
            .unwrap_or(self.defaults.warning_window)
    }
}

impl ProjectPolicy {
    fn check_ttl(&self, ttl: Option<HumanDuration>) -> Result<HumanDuration, Denial> {
        let ttl = ttl.unwrap_or(self.default_ttl);
        if ttl > self.max_ttl {
            return Err(Denial::TtlAboveMax {
                ttl,
                max: self.max_ttl,
                project: self.name.clone(),
            });
        }
        Ok(ttl)
    }

    /// Whether one more lease fits, given how many are active now.
    pub fn check_quota(&self, active_leases: u64) -> Result<(), Denial> {
        match self.max_active_leases {
            Some(max) if active_leases >= u64::from(max) => Err(Denial::QuotaExceeded {
                project: self.name.clone(),
                active: active_leases,
                max,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> HumanDuration {
        HumanDuration::parse(s).expect("valid fixture duration")
    }

    fn policy() -> Policy {
        let web = ProjectName::parse("web").expect("valid");
        let mut projects = BTreeMap::new();
        projects.insert(
            web.clone(),
            ProjectPolicy {
                name: web,
                lessees: ["ci-web".to_owned()].into(),
                default_ttl: d("2h"),
                max_ttl: d("24h"),
                grace: d("1h"),
                max_active_leases: Some(2),
                allowed_regions: Some(["us-east-1".to_owned()].into()),
                warning_window: None,
                overrun_permille: DEFAULT_OVERRUN_PERMILLE,
                on: BTreeMap::new(),
                on_type: BTreeMap::new(),
                accounts: None,
            },
        );
        Policy {
            projects,
            ..Policy::default()
        }
    }

    #[test]
    fn acquire_decisions() {
        let p = policy();
        let web = ProjectName::parse("web").expect("valid");
        let other = ProjectName::parse("other").expect("valid");
        let east = ["us-east-1".to_owned()];
        let west = ["us-west-2".to_owned()];
        // (caller, role, project, ttl, heartbeat, regions, active) -> Ok(ttl) | Err(code)
        type Row<'a> = (
            &'a str,
            Role,
            &'a ProjectName,
            Option<&'a str>,
            Option<&'a str>,
            &'a [String],
            u64,
            Result<&'a str, &'a str>,
        );
        let table: Vec<Row<'_>> = vec![
            ("ci-web", Role::Lessee, &web, None, None, &[], 0, Ok("2h")),
            (
                "ci-web",
                Role::Lessee,
                &web,
                Some("24h"),
                None,
                &east,
                1,
                Ok("24h"),
            ),
            (
                "ci-web",
                Role::Lessee,
                &web,
                Some("25h"),
                None,
                &[],
                0,
                Err("ttl-above-max"),
            ),
            (
                "ci-web",
                Role::Lessee,
                &web,
                Some("1h"),
                Some("2h"),
                &[],
                0,
                Err("heartbeat-above-ttl"),
            ),
            // A heartbeat interval equal to the ttl is allowed.
            (
                "ci-web",
                Role::Lessee,
                &web,
                Some("1h"),
                Some("1h"),
                &[],
                0,
                Ok("1h"),
            ),
            (
                "ci-web",
                Role::Lessee,
                &web,
                None,
                None,
                &west,
                0,
                Err("region-not-allowed"),
            ),
            (
                "ci-web",
                Role::Lessee,
                &web,
                None,
                None,
                &[],
                2,
                Err("quota-exceeded"),
            ),
            (
                "ci-data",
                Role::Lessee,
                &web,
                None,
                None,
                &[],
                0,
                Err("project-forbidden"),
            ),
            (
                "viewer",
                Role::Viewer,
                &web,
                None,
                None,
                &[],
                0,
                Err("project-forbidden"),
            ),
            ("op", Role::Operator, &web, None, None, &[], 0, Ok("2h")),
            (
                "op",
                Role::Operator,
                &other,
                None,
                None,
                &[],
                0,
                Err("unknown-project"),
            ),
        ];
        for (name, role, project, ttl, hb, regions, active, want) in table {
            let ask = AcquireAsk {
                project,
                ttl: ttl.map(d),
                heartbeat: hb.map(d),
                regions,
                owner: "o@example.com",
            };
            let got = p.decide_acquire(Caller { name, role }, &ask, active);
            let got = got.map(|g| g.ttl.to_string()).map_err(|e| e.code());
            assert_eq!(
                got,
                want.map(str::to_owned),
                "{name} {project} {ttl:?} {regions:?} {active}"
            );
        }
    }

    #[test]
    fn renew_is_bounded_by_max_ttl() {
        let p = policy();
        let web = ProjectName::parse("web").expect("valid");
        assert_eq!(p.decide_renew(&web, None), Ok(d("2h")));
        assert_eq!(p.decide_renew(&web, Some(d("24h"))), Ok(d("24h")));
        assert_eq!(
            p.decide_renew(&web, Some(d("2d"))).map_err(|e| e.code()),
            Err("ttl-above-max")
        );
        let msg = p
            .decide_renew(&web, Some(d("2d")))
            .expect_err("above max")
            .to_string();
        assert!(msg.contains("max_ttl of 24h"), "{msg}");
    }
}
