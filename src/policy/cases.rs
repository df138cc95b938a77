//! Test cases written in the rules files (`[[test]]`), run by `ephemera rules test` and by
//! `cargo test`, so a policy change that breaks an expectation fails before it ships.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{AcquireAsk, Caller, Policy};
use crate::auth::Role;
use crate::model::{HumanDuration, ProjectName};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Operation {
    #[default]
    Acquire,
    Renew,
}

/// One `[[test]]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCase {
    name: String,
    #[serde(default)]
    operation: Operation,
    principal: String,
    #[serde(default = "default_role")]
    role: Role,
    project: ProjectName,
    #[serde(default)]
    ttl: Option<HumanDuration>,
    #[serde(default)]
    heartbeat: Option<HumanDuration>,
    #[serde(default)]
    regions: Vec<String>,
    /// Active leases the project already holds.
    #[serde(default)]
    active_leases: u64,
    /// `granted`, or the code of the expected denial (e.g. `ttl-above-max`).
    expect: String,
    /// When granted: the TTL expected.
    #[serde(default)]
    expect_ttl: Option<HumanDuration>,
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
    let got = match c.operation {
        Operation::Acquire => {
            let ask = AcquireAsk {
                project: &c.project,
                ttl: c.ttl,
                heartbeat: c.heartbeat,
                regions: &c.regions,
            };
            let caller = Caller {
                name: &c.principal,
                role: c.role,
            };
            policy
                .decide_acquire(caller, &ask, c.active_leases)
                .map(|g| g.ttl)
        }
        Operation::Renew => policy.decide_renew(&c.project, c.ttl),
    };
    match (got, c.expect.as_str()) {
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
}
