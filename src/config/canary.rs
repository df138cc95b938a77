//! `[canary]`: the synthetic lifecycle canary — a lease, a tagged SQS queue made as a task
//! runner would, the lease released, and the queue expected to be seen, flagged and reaped.

use serde::Deserialize;
use toml::Spanned;

use super::webhooks::duration_within;
use crate::diagnostic::{FileError, Source};
use crate::model::HumanDuration;

/// One place the canary runs: an account and a region the config walks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CanaryTarget {
    pub account: String,
    pub region: String,
}

impl std::fmt::Display for CanaryTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.account, self.region)
    }
}

/// The validated `[canary]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanaryConfig {
    /// The rules' project the canary leases in; its own (nothing else should lease there), so
    /// its resources are never anyone else's and its findings are never mailed.
    pub project: String,
    pub targets: Vec<CanaryTarget>,
    /// A lifecycle starts this often (in each target, one after the other).
    pub every: HumanDuration,
    /// The whole lifecycle, from the lease to the queue gone, must end within this.
    pub slo: HumanDuration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCanary {
    project: Spanned<String>,
    targets: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    every: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    slo: Option<Spanned<HumanDuration>>,
}

pub(super) fn resolve_canary(
    src: &Source<'_>,
    raw: Spanned<RawCanary>,
    accounts: &[String],
    regions: &[String],
) -> Result<CanaryConfig, FileError> {
    let r = raw.into_inner();
    let project = r.project.get_ref().trim().to_owned();
    if crate::model::ProjectName::parse(&project).is_err() {
        return Err(src.error_for(
            r.project.span(),
            "canary.project",
            format!("`{project}` is not a project name"),
        ));
    }
    if r.targets.get_ref().is_empty() {
        return Err(src.error_for(
            r.targets.span(),
            "canary.targets",
            "name at least one \"ACCOUNT/REGION\"",
        ));
    }
    let mut targets = Vec::new();
    for t in r.targets.get_ref() {
        let bad = |m: String| src.error_for(t.span(), "canary.targets", m);
        let (account, region) = t
            .get_ref()
            .split_once('/')
            .ok_or_else(|| bad(format!("`{}` is not \"ACCOUNT/REGION\"", t.get_ref())))?;
        if !accounts.is_empty() && !accounts.iter().any(|a| a == account) {
            return Err(bad(format!("account {account} is not in [[aws.accounts]]")));
        }
        if !regions.iter().any(|g| g == region) {
            return Err(bad(format!(
                "region {region} is not in aws.regions (the canary proves what the passes walk)"
            )));
        }
        let target = CanaryTarget {
            account: account.to_owned(),
            region: region.to_owned(),
        };
        if targets.contains(&target) {
            return Err(bad(format!("{target} is listed twice")));
        }
        targets.push(target);
    }
    Ok(CanaryConfig {
        project,
        targets,
        every: duration_within(src, r.every, "canary.every", 3600, (10, 7 * 86_400))?,
        slo: duration_within(src, r.slo, "canary.slo", 1800, (10, 86_400))?,
    })
}
