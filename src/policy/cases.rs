//! Test cases written in the rules files (`[[test]]`), run by `ephemera rules test` and by
//! `cargo test`, so a policy change that breaks an expectation fails before it ships.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use std::collections::BTreeMap;

use super::{AcquireAsk, Caller, Policy, evaluate};
use crate::auth::Role;
use crate::model::IdentityTags;
use crate::model::Lease;
use crate::model::{HumanDuration, Image, LeaseId, ProjectName, Tags};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Operation {
    #[default]
    Acquire,
    Renew,
    /// Evaluate a resource (and its lease, if any) at `now`.
    Evaluate,
    /// Route a notice of `owner` in `project` to its recipients.
    Route,
}

/// A resource in an evaluate case, by identity role (keys are the default tag keys).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CaseResource {
    #[serde(default = "default_arn")]
    arn: String,
    #[serde(default)]
    lease: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    task: Option<String>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    protected: bool,
    /// The account it lives in; default: the ARN's (or 123456789012 where the ARN names
    /// none, as an S3 bucket's).
    #[serde(default)]
    account: Option<String>,
    /// The OUs above that account.
    #[serde(default)]
    ous: Vec<String>,
    /// Other tags, verbatim.
    #[serde(default)]
    tags: BTreeMap<String, String>,
    /// The AMI it runs (an instance) or launches (a launch template).
    #[serde(default)]
    image: Option<CaseImage>,
}

/// An image as EC2 would describe it; without `owner` and `name`, one EC2 no longer knows
/// (deregistered).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CaseImage {
    id: String,
    /// An account id, or an owner alias (`amazon`).
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

impl CaseImage {
    fn image(&self) -> Image {
        let alias = self
            .owner
            .as_deref()
            .filter(|o| super::images::OWNER_ALIASES.contains(o));
        Image {
            id: self.id.clone(),
            owner: self.owner.clone().filter(|_| alias.is_none()),
            owner_alias: alias.map(str::to_owned),
            name: self.name.clone(),
        }
    }
}

fn default_arn() -> String {
    "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0".into()
}

/// The lease named by the resource's lease tag, as the registry holds it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CaseLease {
    project: ProjectName,
    created_at: String,
    expires_at: String,
    #[serde(default)]
    heartbeat_interval: Option<HumanDuration>,
    #[serde(default)]
    last_heartbeat_at: Option<String>,
    #[serde(default)]
    released_at: Option<String>,
}

/// One `[[test]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCase {
    name: String,
    #[serde(default)]
    operation: Operation,
    #[serde(default)]
    principal: Option<String>,
    #[serde(default = "default_role")]
    role: Role,
    #[serde(default)]
    project: Option<ProjectName>,
    #[serde(default)]
    ttl: Option<HumanDuration>,
    #[serde(default)]
    heartbeat: Option<HumanDuration>,
    #[serde(default)]
    regions: Vec<String>,
    /// Active leases the project already holds.
    #[serde(default)]
    active_leases: u64,
    /// The owner asked for (acquire), or whose notices are routed (route).
    #[serde(default)]
    owner: Option<String>,
    /// `granted`, or the code of the expected denial (e.g. `ttl-above-max`).
    #[serde(default)]
    expect: Option<String>,
    /// When granted: the TTL expected.
    #[serde(default)]
    expect_ttl: Option<HumanDuration>,
    // ---- evaluate ----
    #[serde(default)]
    now: Option<String>,
    #[serde(default)]
    resource: Option<CaseResource>,
    #[serde(default)]
    lease: Option<CaseLease>,
    #[serde(default)]
    expect_verdict: Option<String>,
    /// `report`, `notify`, `reap`, or `none` for verdicts that open no finding.
    #[serde(default)]
    expect_action: Option<String>,
    #[serde(default)]
    expect_grace: Option<HumanDuration>,
    // ---- route ----
    /// The addresses expected, in order; `[]`: nobody in the rules (the global on-call).
    #[serde(default)]
    expect_to: Option<Vec<String>>,
    /// How they were found: address, handle, team, member, project-team.
    #[serde(default)]
    expect_via: Option<String>,
}

fn default_role() -> Role {
    Role::Lessee
}

#[derive(Debug, Clone)]
pub(super) struct TestCase {
    raw: RawCase,
    path: PathBuf,
    line: usize,
}

impl TestCase {
    pub(super) fn from_raw(raw: RawCase, path: &Path, line: usize) -> Self {
        TestCase {
            raw,
            path: path.to_owned(),
            line,
        }
    }
}

/// The result of one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseOutcome {
    pub name: String,
    /// `FILE:LINE` of the `[[test]]` table.
    pub location: String,
    /// None when the case passed; otherwise what differed.
    pub failure: Option<String>,
}

/// The results of all cases.
#[derive(Debug, Clone, Default)]
pub struct CaseReport {
    pub outcomes: Vec<CaseOutcome>,
}

impl CaseReport {
    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.failure.is_some()).count()
    }

    pub fn passed(&self) -> usize {
        self.outcomes.len() - self.failed()
    }
}

impl fmt::Display for CaseReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for o in &self.outcomes {
            match &o.failure {
                None => writeln!(f, "ok    {} {}", o.location, o.name)?,
                Some(why) => writeln!(f, "FAIL  {} {}: {why}", o.location, o.name)?,
            }
        }
        writeln!(f, "{} passed, {} failed", self.passed(), self.failed())
    }
}

pub(super) fn run(policy: &Policy) -> CaseReport {
    let outcomes = policy
        .cases
        .iter()
        .map(|c| CaseOutcome {
            name: c.raw.name.clone(),
            location: format!("{}:{}", c.path.display(), c.line),
            failure: check(policy, &c.raw).err(),
        })
        .collect();
    CaseReport { outcomes }
}

fn check(policy: &Policy, c: &RawCase) -> Result<(), String> {
    match c.operation {
        Operation::Evaluate => return check_evaluate(policy, c),
        Operation::Route => return check_route(policy, c),
        Operation::Acquire | Operation::Renew => {}
    }
    let (Some(principal), Some(project), Some(expect)) = (&c.principal, &c.project, &c.expect)
    else {
        return Err("acquire and renew cases need `principal`, `project` and `expect`".into());
    };
    let got = match c.operation {
        Operation::Renew => policy.decide_renew(project, c.ttl),
        _ => {
            let ask = AcquireAsk {
                project,
                ttl: c.ttl,
                heartbeat: c.heartbeat,
                regions: &c.regions,
                owner: c.owner.as_deref().unwrap_or("case@example.com"),
            };
            let caller = Caller {
                name: principal,
                role: c.role,
            };
            policy
                .decide_acquire(caller, &ask, c.active_leases)
                .map(|g| g.ttl)
        }
    };
    match (got, expect.as_str()) {
        (Ok(ttl), "granted") => match c.expect_ttl {
            Some(want) if want != ttl => Err(format!("expected ttl {want}, granted {ttl}")),
            _ => Ok(()),
        },
        (Ok(ttl), want) => Err(format!(
            "expected {want}, but it was granted with ttl {ttl}"
        )),
        (Err(denial), "granted") => {
            Err(format!("expected granted, got {}: {denial}", denial.code()))
        }
        (Err(denial), want) if denial.code() == want => Ok(()),
        (Err(denial), want) => Err(format!("expected {want}, got {}: {denial}", denial.code())),
    }
}

fn check_route(policy: &Policy, c: &RawCase) -> Result<(), String> {
    let Some(want) = &c.expect_to else {
        return Err("route cases need `expect_to` (and `owner` or `project`)".into());
    };
    let route = policy.directory().route(
        c.owner.as_deref(),
        c.project.as_ref().map(ProjectName::as_str),
    );
    let got = route.as_ref().map(|r| r.to.clone()).unwrap_or_default();
    if &got != want {
        return Err(format!("expected mail to {want:?}, routed to {got:?}"));
    }
    let via = route.map(|r| {
        serde_json::to_value(&r.via)
            .ok()
            .and_then(|v| v["via"].as_str().map(str::to_owned))
            .unwrap_or_default()
    });
    match (&c.expect_via, via) {
        (Some(w), Some(v)) if *w != v => Err(format!("expected via {w}, routed via {v}")),
        (Some(w), None) => Err(format!(
            "expected via {w}, but nobody in the rules is reached"
        )),
        _ => Ok(()),
    }
}

fn check_evaluate(policy: &Policy, c: &RawCase) -> Result<(), String> {
    let (Some(now), Some(r), Some(want)) = (&c.now, &c.resource, &c.expect_verdict) else {
        return Err("evaluate cases need `now`, `resource` and `expect_verdict`".into());
    };
    let now = super::load::parse_time(now)?;
    let keys = IdentityTags::default();
    let mut tags: Vec<(&str, &str)> = Vec::new();
    for (key, value) in [
        (&keys.lease, &r.lease),
        (&keys.project, &r.project),
        (&keys.task, &r.task),
        (&keys.owner, &r.owner),
    ] {
        if let Some(v) = value {
            tags.push((key, v));
        }
    }
    if r.protected {
        tags.push((&keys.protect, "true"));
    }
    tags.extend(r.tags.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let tags = Tags::from_pairs(tags);
    let lease = match (&c.lease, &r.lease) {
        (Some(l), Some(id)) => Some(case_lease(l, id)?),
        (Some(_), None) => {
            return Err("`lease` is given but the resource has no `lease` tag".into());
        }
        _ => None,
    };
    let arn = crate::model::Arn::parse(&r.arn)?;
    let account = match (&r.account, arn.account()) {
        (Some(a), _) => a.as_str(),
        (None, "") => "123456789012",
        (None, a) => a,
    };
    let resource_type = arn.resource_type();
    let image = r.image.as_ref().map(CaseImage::image);
    let place = super::Place {
        account,
        ous: &r.ous,
        resource_type: &resource_type,
        image: image.as_ref(),
    };
    let e = evaluate(
        &r.arn,
        &tags,
        |id| lease.as_ref().filter(|l| l.id == id),
        policy,
        &keys,
        &place,
        now,
    );
    let mut problems = Vec::new();
    if e.verdict.as_str() != want {
        problems.push(format!(
            "expected verdict {want}, got {} ({})",
            e.verdict, e.reason
        ));
    }
    let action = if e.verdict.is_finding() {
        e.rule.action.as_str()
    } else {
        "none"
    };
    if let Some(a) = &c.expect_action
        && a != action
    {
        problems.push(format!("expected action {a}, got {action}"));
    }
    if let Some(g) = c.expect_grace
        && g != e.rule.grace
    {
        problems.push(format!("expected grace {g}, got {}", e.rule.grace));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn case_lease(l: &CaseLease, id: &str) -> Result<Lease, String> {
    let t = |s: &str| super::load::parse_time(s);
    Ok(Lease {
        // The case's lease is the one the tag names, however the tag spells its id.
        id: LeaseId::parse_loose(id).ok_or_else(|| {
            format!("`lease` is given but the lease tag `{id}` is not a lease id")
        })?,
        project: l.project.clone(),
        task: "case".into(),
        owner: "case@example.com".into(),
        principal: "case".into(),
        created_at: t(&l.created_at)?,
        expires_at: t(&l.expires_at)?,
        heartbeat_interval: l.heartbeat_interval,
        last_heartbeat_at: l.last_heartbeat_at.as_deref().map(t).transpose()?,
        released_at: l.released_at.as_deref().map(t).transpose()?,
        labels: BTreeMap::new(),
        regions: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_pass_and_fail_honestly() {
        let text = r#"
[[project]]
name = "web"
lessees = ["ci"]
default_ttl = "2h"
max_ttl = "1d"
grace = "1h"

[[test]]
name = "default ttl"
principal = "ci"
project = "web"
expect = "granted"
expect_ttl = "2h"

[[test]]
name = "wrong on purpose"
principal = "ci"
project = "web"
ttl = "2d"
expect = "granted"

[[test]]
name = "renew above max"
operation = "renew"
principal = "ci"
project = "web"
ttl = "2d"
expect = "ttl-above-max"
"#;
        let policy = Policy::parse([(Path::new("p.toml"), text)]).expect("valid");
        let report = policy.run_cases();
        assert_eq!((report.passed(), report.failed()), (2, 1));
        let failed = &report.outcomes[1];
        assert_eq!(failed.location, "p.toml:16");
        assert!(
            failed
                .failure
                .as_deref()
                .is_some_and(|f| f.contains("got ttl-above-max")),
            "{failed:?}"
        );
        assert!(report.to_string().ends_with("2 passed, 1 failed\n"));
    }

    /// Evaluate cases state an image: approved by owner and name, by id when deregistered,
    /// and a failing expectation fails.
    #[test]
    fn cases_judge_images() {
        let text = r#"
[[images]]
owners = ["amazon"]
names = ["al2023-ami-*"]
reason = "stock"

[[images]]
ids = ["ami-0123456789abcdef0"]
reason = "golden"
expires = "2027-01-01"

[[test]]
name = "stock image"
operation = "evaluate"
now = "2026-03-01T12:00:00Z"
resource = { project = "web", image = { id = "ami-0aaaaaaaaaaaaaaaa", owner = "amazon", name = "al2023-ami-2023.6" } }
expect_verdict = "untagged"

[[test]]
name = "unknown image under a live lease"
operation = "evaluate"
now = "2026-03-01T12:00:00Z"
resource = { lease = "0194e0a1-0000-7000-8000-000000000001", project = "web", task = "t", owner = "o@example.com", image = { id = "ami-0bbbbbbbbbbbbbbbb", owner = "999999999999", name = "al2023-ami-2023.6" } }
lease = { project = "web", created_at = "2026-03-01T11:00:00Z", expires_at = "2026-03-01T20:00:00Z" }
expect_verdict = "unapproved-image"
expect_action = "notify"

[[test]]
name = "golden image, deregistered, before its entry ends"
operation = "evaluate"
now = "2026-12-31T23:59:59Z"
resource = { lease = "0194e0a1-0000-7000-8000-000000000001", project = "web", task = "t", owner = "o@example.com", image = { id = "ami-0123456789abcdef0" } }
lease = { project = "web", created_at = "2026-12-31T11:00:00Z", expires_at = "2027-01-02T20:00:00Z" }
expect_verdict = "leased"

[[test]]
name = "golden image after its entry ended (wrong on purpose)"
operation = "evaluate"
now = "2027-01-01T00:00:00Z"
resource = { lease = "0194e0a1-0000-7000-8000-000000000001", project = "web", task = "t", owner = "o@example.com", image = { id = "ami-0123456789abcdef0" } }
lease = { project = "web", created_at = "2026-12-31T11:00:00Z", expires_at = "2027-01-02T20:00:00Z" }
expect_verdict = "leased"

[[project]]
name = "web"
lessees = ["ci"]
default_ttl = "2h"
max_ttl = "3d"
grace = "1h"
"#;
        let policy = Policy::parse([(Path::new("p.toml"), text)]).expect("valid");
        let report = policy.run_cases();
        assert_eq!((report.passed(), report.failed()), (3, 1), "{report}");
        let failed = report
            .outcomes
            .iter()
            .find(|o| o.failure.is_some())
            .expect("one failed");
        assert!(
            failed
                .failure
                .as_deref()
                .is_some_and(|f| f.contains("expected verdict leased, got unapproved-image")),
            "{failed:?}"
        );
    }
}
