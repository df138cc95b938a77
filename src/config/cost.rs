//! `[cost]`: spend from Cost Explorer.

use serde::Deserialize;
use toml::Spanned;

use super::AwsConfig;
use super::spans::span_in;
use crate::diagnostic::{FileError, Source};
use crate::model::HumanDuration;

/// Spend from Cost Explorer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostConfig {
    /// The audited account whose Cost Explorer is asked, through that account's role; the
    /// first of `[[aws.accounts]]` when absent (and no `role_arn`).
    #[serde(default)]
    pub account: Option<String>,
    /// The role Cost Explorer is asked through, in an account that need not be audited (an
    /// organization's payer account sees every member's spend, and should hold no delete
    /// rights): it is never walked or reaped.
    #[serde(default)]
    pub role_arn: Option<String>,
    #[serde(default)]
    pub metric: CostMetric,
    /// Days before today that can still change and are fetched again on each refresh.
    #[serde(default = "default_recent_days")]
    pub recent_days: u32,
    /// The rolling window of `ephemera_spend_usd{window=…}`, the top tasks and waste.
    #[serde(default = "default_rolling_window")]
    pub rolling_window: HumanDuration,
    /// Tasks exported one by one; the rest are summed into `task="other"`.
    #[serde(default = "default_top_tasks")]
    pub top_tasks: u32,
}

impl Default for CostConfig {
    fn default() -> Self {
        CostConfig {
            account: None,
            role_arn: None,
            metric: CostMetric::default(),
            recent_days: default_recent_days(),
            rolling_window: default_rolling_window(),
            top_tasks: default_top_tasks(),
        }
    }
}

impl CostConfig {
    /// The rolling window in whole days.
    pub fn rolling_days(&self) -> u32 {
        u32::try_from(self.rolling_window.as_secs() / 86_400).unwrap_or(u32::MAX)
    }
}

/// The Cost Explorer metric spend is read as.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
)]
pub enum CostMetric {
    #[default]
    UnblendedCost,
    BlendedCost,
    AmortizedCost,
    NetUnblendedCost,
    NetAmortizedCost,
}

impl CostMetric {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl<'de> Deserialize<'de> for CostMetric {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        super::one_of(d, |_, known| format!("must be one of {known}"))
    }
}

fn default_recent_days() -> u32 {
    3
}

fn default_rolling_window() -> HumanDuration {
    HumanDuration::from_secs(30 * 86_400)
}

fn default_top_tasks() -> u32 {
    20
}

pub(super) fn validate_cost(
    src: &Source<'_>,
    cost: &Spanned<CostConfig>,
    aws: &AwsConfig,
) -> Result<(), FileError> {
    let span = cost.span().start..src.text.len();
    let c = cost.get_ref();
    let at = |needle: &str| span_in(src, span.clone(), needle);
    if let Some(role) = &c.role_arn {
        let in_account = role.split(':').nth(4).unwrap_or_default();
        super::aws::check_role_arn(role, in_account)
            .map_err(|m| src.error_for(at("role_arn"), "cost.role_arn", m))?;
        if c.account.is_some() {
            return Err(src.error_for(
                at("role_arn"),
                "cost.role_arn",
                "give `account` (an audited account) or `role_arn` (any account), not both",
            ));
        }
    } else if let Some(a) = &c.account
        && !aws.accounts.iter().any(|x| &x.id == a)
    {
        return Err(src.error_for(
            at("account"),
            "cost.account",
            format!(
                "account {a} is not one of [[aws.accounts]] (for one that is not audited, \
                 give `role_arn` instead)"
            ),
        ));
    }
    if c.recent_days > 31 {
        return Err(src.error_for(at("recent_days"), "cost.recent_days", "at most 31"));
    }
    let secs = c.rolling_window.as_secs();
    if secs == 0 || !secs.is_multiple_of(86_400) || secs > 366 * 86_400 {
        return Err(src.error_for(
            at("rolling_window"),
            "cost.rolling_window",
            "whole days, from 1d to 366d",
        ));
    }
    if c.top_tasks == 0 || c.top_tasks > 1000 {
        return Err(src.error_for(at("top_tasks"), "cost.top_tasks", "1 to 1000"));
    }
    Ok(())
}
