//! `[discovery]`: the sweeps that find what the tagging API never lists (never-tagged
//! resources), by the services' own list calls.

use serde::Deserialize;
use strum::VariantArray;
use toml::Spanned;

use super::aws::is_account_id;
use crate::diagnostic::{FileError, Source};
use crate::model::{HumanDuration, ResourceType};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Discovery {
    /// Types swept; default every type ephemera can delete. `[]` turns sweeps off.
    #[serde(default = "every_type")]
    pub types: Vec<ResourceType>,
    /// How often each (account, region) is swept; a pass sweeps it when its last complete
    /// sweep is older than this (or failed), so sweeps ride on passes, less often.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// List calls per second per service in each (account, region).
    #[serde(default = "default_calls_per_second")]
    pub calls_per_second: u32,
    /// Look up who made `untagged` and `unknown-lease` resources in CloudTrail (once each).
    #[serde(default = "yes")]
    pub creators: bool,
    /// At most this many lookups per pass (CloudTrail answers 2 a second per account and
    /// region); the rest wait for the next pass.
    #[serde(default = "default_creator_lookups")]
    pub creator_lookups_per_pass: u32,
    /// Sweep through an AWS Resource Explorer aggregator index instead of per-service calls.
    #[serde(default)]
    pub resource_explorer: Option<ResourceExplorer>,
}

/// `[discovery.resource_explorer]`: where the aggregator index is, and which accounts' sweeps
/// are a search of it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceExplorer {
    /// The account holding the index; reached like an audited account (its role).
    pub account: String,
    /// The region of the aggregator index.
    pub region: String,
    /// The view to search; none: the region's default view.
    #[serde(default)]
    pub view_arn: Option<String>,
    /// Accounts whose sweeps are a search; `["*"]` (the default): every audited account.
    #[serde(default = "every_account")]
    pub accounts: Vec<String>,
}

fn every_account() -> Vec<String> {
    vec!["*".to_owned()]
}

impl ResourceExplorer {
    /// Whether `account`'s sweeps are a search of the index.
    pub fn covers(&self, account: &str) -> bool {
        self.accounts.iter().any(|a| a == "*" || a == account)
    }
}

fn yes() -> bool {
    true
}

fn default_creator_lookups() -> u32 {
    200
}

fn every_type() -> Vec<ResourceType> {
    ResourceType::VARIANTS.to_vec()
}

// Never-tagged orphans leak money by the day, not by the minute: a sweep every six hours finds
// them well within any "untagged for N days" grace, at a quarter of the calls of an hourly one.
fn default_interval() -> HumanDuration {
    HumanDuration::from_secs(6 * 3600)
}

fn default_calls_per_second() -> u32 {
    5
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery {
            types: every_type(),
            interval: default_interval(),
            calls_per_second: default_calls_per_second(),
            creators: true,
            creator_lookups_per_pass: default_creator_lookups(),
            resource_explorer: None,
        }
    }
}

impl Discovery {
    pub fn enabled(&self) -> bool {
        !self.types.is_empty()
    }
}

pub(super) fn validate_discovery(
    src: &Source<'_>,
    d: &Spanned<Discovery>,
    emulator: bool,
) -> Result<(), FileError> {
    let span = d.span().start..src.text.len();
    let at = |needle: &str| super::span_in(src, span.clone(), needle);
    let v = d.get_ref();
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = v.types.iter().find(|t| !seen.insert(**t)) {
        return Err(src.error_for(
            at("types"),
            "discovery.types",
            format!("`{twice}` is listed twice"),
        ));
    }
    // Emulators have no API limits; benchmarks against them measure the sweep, not the cap.
    let max = if emulator { 10_000 } else { 20 };
    if !(1..=max).contains(&v.calls_per_second) {
        return Err(src.error_for(
            at("calls_per_second"),
            "discovery.calls_per_second",
            format!("must be 1 to {max}"),
        ));
    }
    if let Some(re) = &v.resource_explorer {
        if !is_account_id(&re.account) {
            return Err(src.error_for(
                at("account"),
                "discovery.resource_explorer.account",
                format!("`{}` is not a 12-digit AWS account id", re.account),
            ));
        }
        if let Some(bad) = re.accounts.iter().find(|a| *a != "*" && !is_account_id(a)) {
            return Err(src.error_for(
                at("accounts"),
                "discovery.resource_explorer.accounts",
                format!("`{bad}` is not a 12-digit AWS account id (or `*`)"),
            ));
        }
        if let Some(view) = &re.view_arn
            && !view.starts_with("arn:")
        {
            return Err(src.error_for(
                at("view_arn"),
                "discovery.resource_explorer.view_arn",
                format!("`{view}` is not an ARN"),
            ));
        }
    }
    if v.creator_lookups_per_pass > 10_000 {
        return Err(src.error_for(
            at("creator_lookups_per_pass"),
            "discovery.creator_lookups_per_pass",
            "must be at most 10000",
        ));
    }
    Ok(())
}
