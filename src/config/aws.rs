//! `[aws]`: accounts, regions, the roles to assume and the limits of the walks.

use std::collections::{BTreeSet, HashSet};

use serde::Deserialize;
use toml::Spanned;

use super::DeletionWindow;
use crate::diagnostic::{FileError, Source};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    pub regions: Vec<String>,
    /// Static accounts; with `[aws.organization]` these add to (and override the settings of)
    /// the organization's.
    #[serde(default)]
    pub accounts: Vec<AwsAccount>,
    /// Accounts read from AWS Organizations every pass.
    #[serde(default)]
    pub organization: Option<OrganizationConfig>,
    /// `arn:aws:iam::{account_id}:role/NAME`, used for accounts without their own role ARN.
    #[serde(default)]
    pub assume_role_arn_template: Option<String>,
    /// Only for emulators in tests and the demo; never set against real AWS.
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Talk to an emulator at `endpoint_url` with dummy credentials (tests, `make demo`).
    #[serde(default)]
    pub emulator: bool,
    /// Walks of (account, region) running at once, across all accounts.
    #[serde(default = "default_concurrent_walks")]
    pub max_concurrent_walks: u32,
    /// Calls per second per (account, region); the tagging API allows 15.
    #[serde(default = "default_calls_per_second")]
    pub calls_per_second: u32,
    /// Attempts per AWS call, retries with backoff on throttling and 5xx included.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

// From benches/org_scale: a walk waits on the network (AssumeRole, pages, 15 sweep calls at
// 50-100 ms each), so 1,000 accounts × 17 regions take 134 s at 256 walks at once and 259 s at
// 128 (peak RSS 667 and 467 MiB); a small estate never has that many walks to run.
fn default_concurrent_walks() -> u32 {
    256
}

fn default_calls_per_second() -> u32 {
    10
}

fn default_max_attempts() -> u32 {
    5
}

/// One audited account: how to reach it and its own settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawAccount")]
pub struct AwsAccount {
    pub id: String,
    pub name: Option<String>,
    /// Role to assume in this account; none means the daemon's own credentials.
    pub assume_role_arn: Option<String>,
    pub settings: AccountSettings,
    /// The OUs above it that projects bind themselves to (from the organization; never
    /// written in the config).
    pub ous: BTreeSet<String>,
}

/// What an account (or an OU, for the accounts under it) may set for itself; anything unset
/// comes from the enclosing OU, then from the global settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    /// The account holds ephemeral work only. Only here may a never-tagged resource be
    /// deleted, and only here is deletion on by default: in an account shared with
    /// long-lived infrastructure, "never tagged" includes production.
    #[serde(default)]
    pub dedicated: Option<bool>,
    /// Whether deletions run here when `[enforcement] armed` is on. Default: only in
    /// dedicated accounts; a shared account is report-only unless this says otherwise.
    #[serde(default)]
    pub armed: Option<bool>,
    /// The regions walked here, instead of `[aws] regions`.
    #[serde(default)]
    pub regions: Option<Vec<String>>,
    /// Deletions per pass in this account: more due than this and none of them is done here
    /// that pass (other accounts go on). Default: `[enforcement] max_deletions_per_pass`.
    #[serde(default)]
    pub max_deletions_per_pass: Option<u32>,
    /// When deletions may run here, instead of `[enforcement] window`.
    #[serde(default)]
    pub window: Option<DeletionWindow>,
}

impl AccountSettings {
    /// These settings, with what they leave unset taken from `base`.
    pub fn or(&self, base: &AccountSettings) -> AccountSettings {
        AccountSettings {
            dedicated: self.dedicated.or(base.dedicated),
            armed: self.armed.or(base.armed),
            regions: self.regions.clone().or_else(|| base.regions.clone()),
            max_deletions_per_pass: self.max_deletions_per_pass.or(base.max_deletions_per_pass),
            window: self.window.clone().or_else(|| base.window.clone()),
        }
    }

    fn check(&self, field: &dyn Fn(&str) -> String) -> Result<(), (String, String)> {
        for r in self.regions.iter().flatten() {
            if !looks_like_region(r) {
                return Err((
                    field("regions"),
                    format!("`{r}` is not an AWS region name (like us-east-1)"),
                ));
            }
        }
        if self.regions.as_ref().is_some_and(Vec::is_empty) {
            return Err((field("regions"), "list at least one region".into()));
        }
        if let Some(Err(m)) = self.window.as_ref().map(DeletionWindow::check) {
            return Err((field("window"), m.into()));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    assume_role_arn: Option<String>,
    #[serde(default)]
    dedicated: Option<bool>,
    #[serde(default)]
    armed: Option<bool>,
    #[serde(default)]
    regions: Option<Vec<String>>,
    #[serde(default)]
    max_deletions_per_pass: Option<u32>,
    #[serde(default)]
    window: Option<DeletionWindow>,
}

impl From<RawAccount> for AwsAccount {
    fn from(r: RawAccount) -> Self {
        AwsAccount {
            id: r.id,
            name: r.name,
            assume_role_arn: r.assume_role_arn,
            ous: BTreeSet::new(),
            settings: AccountSettings {
                dedicated: r.dedicated,
                armed: r.armed,
                regions: r.regions,
                max_deletions_per_pass: r.max_deletions_per_pass,
                window: r.window,
            },
        }
    }
}

impl AwsAccount {
    /// An account with no settings of its own.
    pub fn new(id: impl Into<String>) -> Self {
        AwsAccount {
            id: id.into(),
            name: None,
            assume_role_arn: None,
            settings: AccountSettings::default(),
            ous: BTreeSet::new(),
        }
    }

    /// Dedicated to ephemeral work (never-tagged resources may be deleted here).
    pub fn dedicated(&self) -> bool {
        self.settings.dedicated.unwrap_or(false)
    }

    /// Whether deletions run here when enforcement is armed: a shared account is
    /// report-only unless its settings say otherwise.
    pub fn reaps(&self) -> bool {
        self.settings.armed.unwrap_or_else(|| self.dedicated())
    }

    /// The regions walked in this account.
    pub fn regions<'a>(&'a self, all: &'a [String]) -> &'a [String] {
        self.settings.regions.as_deref().unwrap_or(all)
    }
}

/// `[[aws.organization.units]]`: settings for every account under an OU (child OUs included).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawUnit")]
pub struct OuSettings {
    pub id: String,
    pub settings: AccountSettings,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUnit {
    id: String,
    #[serde(default)]
    dedicated: Option<bool>,
    #[serde(default)]
    armed: Option<bool>,
    #[serde(default)]
    regions: Option<Vec<String>>,
    #[serde(default)]
    max_deletions_per_pass: Option<u32>,
    #[serde(default)]
    window: Option<DeletionWindow>,
}

impl From<RawUnit> for OuSettings {
    fn from(r: RawUnit) -> Self {
        OuSettings {
            id: r.id,
            settings: AccountSettings {
                dedicated: r.dedicated,
                armed: r.armed,
                regions: r.regions,
                max_deletions_per_pass: r.max_deletions_per_pass,
                window: r.window,
            },
        }
    }
}

/// `[aws.organization]`: the audited accounts come from AWS Organizations, re-read every pass.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrganizationConfig {
    /// Role to assume to read Organizations (in the management account or a delegated
    /// administrator); none: the daemon's own credentials.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// Only the accounts under these OUs (or roots), child OUs included; empty: every account.
    #[serde(default)]
    pub ous: Vec<String>,
    /// Only these accounts (when not empty).
    #[serde(default)]
    pub include: Vec<String>,
    /// Never these accounts.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Accounts under these OUs (child OUs included) are dedicated to ephemeral work.
    #[serde(default)]
    pub dedicated_ous: Vec<String>,
    /// Settings for the accounts under an OU; where two apply, the narrower OU's (fewer
    /// accounts: a child OU's) win field by field, and a static account entry over both.
    #[serde(default)]
    pub units: Vec<OuSettings>,
}

impl OrganizationConfig {
    /// The account of `role_arn`: where the Organizations reads are made.
    pub fn role_account(&self) -> Option<&str> {
        self.role_arn.as_deref().and_then(|r| r.split(':').nth(4))
    }
}

impl AwsConfig {
    /// The role ARN to assume for an account, if any.
    pub fn role_arn(&self, account: &AwsAccount) -> Option<String> {
        account.assume_role_arn.clone().or_else(|| {
            self.assume_role_arn_template
                .as_ref()
                .map(|t| t.replace("{account_id}", &account.id))
        })
    }
}

pub(super) fn validate_aws(src: &Source<'_>, aws: &Spanned<AwsConfig>) -> Result<(), FileError> {
    let a = aws.get_ref();
    let span = aws.span();
    if a.regions.is_empty() {
        return Err(src.error_for(span, "aws.regions", "list at least one region"));
    }
    for r in &a.regions {
        if !looks_like_region(r) {
            return Err(src.error_for(
                span,
                "aws.regions",
                format!("`{r}` is not an AWS region name (like us-east-1)"),
            ));
        }
    }
    if a.accounts.is_empty() && a.organization.is_none() {
        return Err(src.error_for(
            span,
            "aws.accounts",
            "list at least one account (or read them from [aws.organization])",
        ));
    }
    if let Some(org) = &a.organization {
        validate_organization(src, span.clone(), a, org)?;
    }
    let mut ids = HashSet::new();
    for acc in &a.accounts {
        if !is_account_id(&acc.id) {
            return Err(src.error_for(
                span,
                "aws.accounts.id",
                format!("`{}` is not a 12-digit AWS account id", acc.id),
            ));
        }
        if !ids.insert(&acc.id) {
            return Err(src.error_for(
                span,
                "aws.accounts.id",
                format!("account `{}` is listed twice", acc.id),
            ));
        }
        if let Some(arn) = a.role_arn(acc) {
            check_role_arn(&arn, &acc.id)
                .map_err(|m| src.error_for(span.clone(), "aws.accounts.assume_role_arn", m))?;
        }
        acc.settings
            .check(&|f| format!("aws.accounts.{f}"))
            .map_err(|(field, m)| {
                src.error_for(span.clone(), &field, format!("account {}: {m}", acc.id))
            })?;
    }
    if let Some(t) = &a.assume_role_arn_template
        && !t.contains("{account_id}")
    {
        return Err(src.error_for(
            span,
            "aws.assume_role_arn_template",
            "must contain `{account_id}`",
        ));
    }
    if a.emulator && a.endpoint_url.is_none() {
        return Err(src.error_for(span, "aws.emulator", "an emulator needs `endpoint_url`"));
    }
    // Emulators have no API limits; benchmarks against them measure the pipeline, not the cap.
    let max_rate = if a.emulator { 10_000 } else { 15 };
    if !(1..=max_rate).contains(&a.calls_per_second) {
        return Err(src.error_for(
            span,
            "aws.calls_per_second",
            format!("must be 1 to {max_rate} (the tagging API allows 15 per account and region)"),
        ));
    }
    if !(1..=1024).contains(&a.max_concurrent_walks) {
        return Err(src.error_for(span, "aws.max_concurrent_walks", "must be 1 to 1024"));
    }
    if !(1..=10).contains(&a.max_attempts) {
        return Err(src.error_for(span, "aws.max_attempts", "must be 1 to 10"));
    }
    if let Some(url) = &a.endpoint_url
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(src.error_for(
            span,
            "aws.endpoint_url",
            format!("`{url}` is not an http(s) URL"),
        ));
    }
    Ok(())
}

pub(super) fn is_account_id(id: &str) -> bool {
    id.len() == 12 && id.chars().all(|c| c.is_ascii_digit())
}

/// `ou-xxxx-yyyyyyyy` or a root `r-xxxx`.
fn is_parent_id(id: &str) -> bool {
    let ok = |rest: &str| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    id.strip_prefix("ou-").is_some_and(ok) || id.strip_prefix("r-").is_some_and(ok)
}

fn validate_organization(
    src: &Source<'_>,
    span: std::ops::Range<usize>,
    a: &AwsConfig,
    org: &OrganizationConfig,
) -> Result<(), FileError> {
    if a.assume_role_arn_template.is_none() {
        return Err(src.error_for(
            span,
            "aws.assume_role_arn_template",
            "[aws.organization] needs a role template to reach the accounts it lists",
        ));
    }
    for (field, ids) in [
        ("aws.organization.include", &org.include),
        ("aws.organization.exclude", &org.exclude),
    ] {
        if let Some(bad) = ids.iter().find(|i| !is_account_id(i)) {
            return Err(src.error_for(
                span,
                field,
                format!("`{bad}` is not a 12-digit AWS account id"),
            ));
        }
    }
    for (field, ids) in [
        ("aws.organization.ous", &org.ous),
        ("aws.organization.dedicated_ous", &org.dedicated_ous),
    ] {
        if let Some(bad) = ids.iter().find(|i| !is_parent_id(i)) {
            return Err(src.error_for(
                span,
                field,
                format!("`{bad}` is not an OU id (ou-…) or a root id (r-…)"),
            ));
        }
    }
    if let Some(role) = &org.role_arn {
        check_role_arn(role, org.role_account().unwrap_or_default())
            .map_err(|m| src.error_for(span.clone(), "aws.organization.role_arn", m))?;
    }
    let mut units = HashSet::new();
    for u in &org.units {
        if !is_parent_id(&u.id) {
            return Err(src.error_for(
                span,
                "aws.organization.units.id",
                format!("`{}` is not an OU id (ou-…) or a root id (r-…)", u.id),
            ));
        }
        if !units.insert(&u.id) {
            return Err(src.error_for(
                span,
                "aws.organization.units.id",
                format!("OU `{}` has settings twice", u.id),
            ));
        }
        u.settings
            .check(&|f| format!("aws.organization.units.{f}"))
            .map_err(|(field, m)| src.error_for(span.clone(), &field, format!("{}: {m}", u.id)))?;
    }
    Ok(())
}

fn looks_like_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

pub(super) fn check_role_arn(arn: &str, account: &str) -> Result<(), String> {
    // arn:PARTITION:iam::ACCOUNT:role/NAME
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && parts[5].starts_with("role/")
        && parts[5].len() > 5;
    if !ok {
        return Err(format!(
            "`{arn}` is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
        ));
    }
    if parts[4] != account {
        return Err(format!("role `{arn}` is not in account {account}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_and_arns() {
        assert!(looks_like_region("us-east-1"));
        assert!(looks_like_region("us-gov-west-1"));
        assert!(!looks_like_region("us-east"));
        assert!(!looks_like_region("US-EAST-1"));
        assert!(check_role_arn("arn:aws:iam::123456789012:role/x", "123456789012").is_ok());
        assert!(check_role_arn("arn:aws:iam::123456789012:role/x", "210987654321").is_err());
        assert!(check_role_arn("arn:aws:iam::123456789012:user/x", "123456789012").is_err());
    }
}
