//! The one TOML config file: parsed, validated once at start-up, then passed explicitly.
//!
//! Architecture Invariant: nothing here opens sockets or the store; the only outside reads are
//! the environment and files that hold secrets or certificates, done once while validating.
//! Secrets never leave this module in clear: tokens are hashed here, passwords stay named (env
//! var or file) and are read again by whoever needs them.

use std::collections::{BTreeSet, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::auth::{Principal, Role, TokenHash};
use crate::diagnostic::{FileError, Source};
use crate::model::{HumanDuration, IdentityTags, ProjectName, ResourceType, check_tag_key};

/// The annotated example shipped with the project, embedded so `ephemera config example`
/// can print it anywhere.
pub const EXAMPLE: &str = include_str!("../ephemera.example.toml");

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; relative paths inside it are resolved against its directory.
    pub path: PathBuf,
    pub api: ApiConfig,
    pub store: StoreConfig,
    pub rules: RulesConfig,
    pub tags: IdentityTags,
    pub aws: AwsConfig,
    pub schedules: Schedules,
    pub smtp: Option<SmtpConfig>,
    pub cost: CostConfig,
    pub enforcement: Enforcement,
    pub audit: AuditConfig,
    /// API principals with hashed tokens.
    pub principals: Vec<Principal>,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
}

/// `[audit]`: where the key of the audit chain's MACs comes from.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// `key_env`, else `key_file`, else `audit.key` next to the store's file.
    pub key: crate::audit::AuditKeySource,
}

#[derive(Debug, Clone)]
pub struct RulesConfig {
    /// Holds `policy/*.toml`.
    pub dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsConfig {
    pub regions: Vec<String>,
    pub accounts: Vec<AwsAccount>,
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

fn default_concurrent_walks() -> u32 {
    4
}

fn default_calls_per_second() -> u32 {
    10
}

fn default_max_attempts() -> u32 {
    5
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsAccount {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Role to assume in this account; none means the daemon's own credentials.
    #[serde(default)]
    pub assume_role_arn: Option<String>,
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

/// A validated cron expression, UTC: 5 fields (minute hour day month weekday), or 6 with
/// seconds first. Validated with the scheduler's own parser and rules (day-of-month and
/// day-of-week must both match).
#[derive(Debug, Clone)]
pub struct CronSchedule {
    /// As written.
    pub expr: String,
    /// With a seconds field, as the scheduler takes it.
    pub with_seconds: String,
}

impl CronSchedule {
    pub fn parse(expr: &str) -> Result<Self, String> {
        let fields = expr.split_whitespace().count();
        let with_seconds = match fields {
            5 => format!("0 {}", expr.trim()),
            6 => expr.trim().to_owned(),
            _ => {
                return Err(format!(
                    "invalid cron expression `{expr}`: expected 5 fields (minute hour day month weekday) or 6 with seconds first"
                ));
            }
        };
        parse_with_seconds(&with_seconds)
            .map_err(|e| format!("invalid cron expression `{expr}`: {e}"))?;
        Ok(CronSchedule {
            expr: expr.to_owned(),
            with_seconds,
        })
    }

    /// The parsed cron (validated when the config was read).
    pub fn cron(&self) -> Result<croner::Cron, croner::errors::CronError> {
        parse_with_seconds(&self.with_seconds)
    }
}

/// The one set of parser settings for schedules: seconds first, day of month and day of week
/// both required to match.
fn parse_with_seconds(expr: &str) -> Result<croner::Cron, croner::errors::CronError> {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
        .parse(expr)
}

impl<'de> Deserialize<'de> for CronSchedule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expr = String::deserialize(d)?;
        CronSchedule::parse(&expr).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedules {
    /// The audit pass.
    pub scan: CronSchedule,
    /// The Cost Explorer refresh.
    pub cost: CronSchedule,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP, for a relay on the same host.
    None,
    Starttls,
    /// TLS from the first byte (usually port 465).
    Implicit,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub from: String,
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the environment variable holding the password (never the password itself).
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default = "default_smtp_timeout")]
    pub timeout: HumanDuration,
    /// Who receives the on-call summary (and notices about resources nobody owns).
    #[serde(default)]
    pub oncall: Vec<String>,
    /// PEM file of extra root certificates to trust (a private CA), besides the system's.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A lease owner is warned this long before the lease expires.
    #[serde(default = "default_warn_before")]
    pub warn_before: HumanDuration,
    /// First retry delay after a failed send; it doubles per failure, up to an hour.
    #[serde(default = "default_mail_backoff")]
    pub retry_backoff: HumanDuration,
    /// Hours (UTC) in which no mail is sent; what is due then goes out when they end.
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
}

fn default_smtp_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}

/// Spend from Cost Explorer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CostConfig {
    /// The account whose Cost Explorer is asked (an organization's payer account sees all);
    /// the first of `[[aws.accounts]]` when absent.
    #[serde(default)]
    pub account: Option<String>,
    /// `UnblendedCost`, `BlendedCost`, `AmortizedCost`, `NetUnblendedCost` or
    /// `NetAmortizedCost`.
    #[serde(default = "default_cost_metric")]
    pub metric: String,
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
            metric: default_cost_metric(),
            recent_days: default_recent_days(),
            rolling_window: default_rolling_window(),
            top_tasks: default_top_tasks(),
        }
    }
}

fn default_warn_before() -> HumanDuration {
    HumanDuration::from_secs(30 * 60)
}

fn default_mail_backoff() -> HumanDuration {
    HumanDuration::from_secs(60)
}

/// Quiet hours, UTC: from `start_hour` up to (not including) `end_hour`; may wrap midnight
/// (`start_hour = 22`, `end_hour = 7`: 22:00–06:59).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub start_hour: u32,
    pub end_hour: u32,
}

impl QuietHours {
    /// Whether `t` falls inside the quiet hours.
    pub fn contains(&self, t: chrono::DateTime<chrono::Utc>) -> bool {
        use chrono::Timelike;
        let h = t.hour();
        if self.start_hour < self.end_hour {
            (self.start_hour..self.end_hour).contains(&h)
        } else {
            h >= self.start_hour || h < self.end_hour
        }
    }
}

impl CostConfig {
    /// The rolling window in whole days.
    pub fn rolling_days(&self) -> u32 {
        u32::try_from(self.rolling_window.as_secs() / 86_400).unwrap_or(u32::MAX)
    }
}

pub const COST_METRICS: [&str; 5] = [
    "UnblendedCost",
    "BlendedCost",
    "AmortizedCost",
    "NetUnblendedCost",
    "NetAmortizedCost",
];

fn default_cost_metric() -> String {
    "UnblendedCost".into()
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enforcement {
    /// Off by default: nothing is ever deleted unless this is `true`.
    #[serde(default)]
    pub armed: bool,
    /// Resource types (`ec2:volume`, as findings show them) that may be deleted; a type not
    /// listed is report-only. Empty by default: every type is report-only until listed.
    #[serde(default)]
    pub deletable_types: Vec<ResourceType>,
    /// A pass that would delete more than this deletes nothing (and says so).
    #[serde(default = "default_max_deletions")]
    pub max_deletions_per_pass: u32,
    /// A project whose due deletions exceed this share of its live inventory has none of
    /// them done that pass.
    #[serde(default = "default_max_share")]
    pub max_project_share_percent: u32,
    /// First retry delay after a failed delete; it doubles with each failure, up to a day.
    #[serde(default = "default_retry_backoff")]
    pub retry_backoff: HumanDuration,
    /// When deletions may happen (UTC); any time when absent.
    #[serde(default)]
    pub window: Option<DeletionWindow>,
}

impl Default for Enforcement {
    fn default() -> Self {
        Enforcement {
            armed: false,
            deletable_types: Vec::new(),
            max_deletions_per_pass: default_max_deletions(),
            max_project_share_percent: default_max_share(),
            retry_backoff: default_retry_backoff(),
            window: None,
        }
    }
}

fn default_max_deletions() -> u32 {
    100
}

fn default_max_share() -> u32 {
    50
}

fn default_retry_backoff() -> HumanDuration {
    HumanDuration::from_secs(15 * 60)
}

/// Days of the week and hours of the day (UTC) in which deletions may run.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeletionWindow {
    /// `mon` … `sun`; all days when empty.
    #[serde(default)]
    pub days: Vec<String>,
    /// First hour in the window, 0–23.
    #[serde(default)]
    pub start_hour: u32,
    /// First hour after the window, 1–24 (`start_hour = 9`, `end_hour = 17`: 09:00–16:59).
    #[serde(default = "default_end_hour")]
    pub end_hour: u32,
}

fn default_end_hour() -> u32 {
    24
}

pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl DeletionWindow {
    /// Whether `t` falls inside the window.
    pub fn contains(&self, t: chrono::DateTime<chrono::Utc>) -> bool {
        use chrono::{Datelike, Timelike};
        let day = WEEKDAYS[t.weekday().num_days_from_monday() as usize];
        (self.days.is_empty() || self.days.iter().any(|d| d == day))
            && (self.start_hour..self.end_hour).contains(&t.hour())
    }
}

// ---- raw file shape -------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    api: RawApi,
    store: RawStore,
    rules: RawRules,
    #[serde(default)]
    tags: Option<Spanned<IdentityTags>>,
    aws: Spanned<AwsConfig>,
    schedules: Schedules,
    #[serde(default)]
    smtp: Option<Spanned<SmtpConfig>>,
    #[serde(default)]
    cost: Option<Spanned<CostConfig>>,
    #[serde(default)]
    enforcement: Option<Spanned<Enforcement>>,
    #[serde(default)]
    audit: Option<Spanned<RawAudit>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    /// File holding the key (hex); created by the daemon when missing.
    #[serde(default)]
    key_file: Option<PathBuf>,
    /// Name of the environment variable holding the key (hex).
    #[serde(default)]
    key_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: SocketAddr,
    #[serde(default = "default_max_body")]
    max_body_bytes: usize,
    #[serde(default)]
    principals: Vec<RawPrincipal>,
}

fn default_max_body() -> usize {
    64 * 1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    path: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrincipal {
    name: Spanned<String>,
    role: Role,
    #[serde(default)]
    projects: Option<Spanned<Vec<ProjectName>>>,
    #[serde(default)]
    token_sha256: Option<Spanned<String>>,
    #[serde(default)]
    token_env: Option<Spanned<String>>,
    #[serde(default)]
    token_file: Option<Spanned<PathBuf>>,
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config file")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] FileError),
}

impl Config {
    /// The account Cost Explorer is asked in: `[cost] account`, else the first account.
    pub fn cost_account(&self) -> Option<&str> {
        self.cost
            .account
            .as_deref()
            .or_else(|| self.aws.accounts.first().map(|a| a.id.as_str()))
    }

    /// Reads and validates a config file, reading token variables from the process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(Config::parse(path, &text, &|name| {
            std::env::var(name).ok()
        })?)
    }

    /// Validates config text; `env` looks up environment variables (injected for tests).
    pub fn parse(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, FileError> {
        let src = Source::new(path, text);
        let raw: RawConfig = toml::from_str(text).map_err(|e| src.from_toml(&e))?;
        let base = path.parent().unwrap_or(Path::new(".")).to_owned();
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };

        if let Some(tags) = &raw.tags {
            validate_tags(&src, tags)?;
        }
        validate_aws(&src, &raw.aws)?;
        if let Some(smtp) = &raw.smtp {
            validate_smtp(&src, smtp, &resolve, env)?;
        }
        if let Some(e) = &raw.enforcement {
            validate_enforcement(&src, e)?;
        }
        if let Some(c) = &raw.cost {
            validate_cost(&src, c, raw.aws.get_ref())?;
        }
        if raw.api.max_body_bytes < 1024 {
            return Err(src.error_for(0..0, "api.max_body_bytes", "must be at least 1024"));
        }
        let principals = resolve_principals(&src, raw.api.principals, &resolve, env)?;
        let store_path = resolve(&raw.store.path);
        let audit = audit_config(&src, raw.audit.as_ref(), &store_path, &resolve, env)?;

        Ok(Config {
            path: path.to_owned(),
            api: ApiConfig {
                listen: raw.api.listen,
                max_body_bytes: raw.api.max_body_bytes,
            },
            store: StoreConfig { path: store_path },
            rules: RulesConfig {
                dir: resolve(&raw.rules.dir),
            },
            tags: raw.tags.map(Spanned::into_inner).unwrap_or_default(),
            aws: raw.aws.into_inner(),
            schedules: raw.schedules,
            smtp: raw.smtp.map(|s| {
                let mut s = s.into_inner();
                s.ca_file = s.ca_file.as_deref().map(&resolve);
                s.password_file = s.password_file.as_deref().map(&resolve);
                s
            }),
            cost: raw.cost.map(Spanned::into_inner).unwrap_or_default(),
            enforcement: raw.enforcement.map(Spanned::into_inner).unwrap_or_default(),
            audit,
            principals,
        })
    }
}

/// The audit key's source. The key itself is not read here: a missing key file is created by
/// the daemon on first start, and offline tools fail when it is missing.
fn audit_config(
    src: &Source<'_>,
    raw: Option<&Spanned<RawAudit>>,
    store_path: &Path,
    resolve: &dyn Fn(&Path) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AuditConfig, FileError> {
    use crate::audit::{AuditKey, AuditKeySource};
    let default_file = || {
        store_path
            .parent()
            .unwrap_or(Path::new("."))
            .join("audit.key")
    };
    let Some(raw) = raw else {
        return Ok(AuditConfig {
            key: AuditKeySource::File(default_file()),
        });
    };
    // A table's span covers its header only; its keys follow it.
    let span = raw.span().start..src.text.len();
    let at = |needle: &str| span_in(src, span.clone(), needle);
    let key = match (&raw.get_ref().key_env, &raw.get_ref().key_file) {
        (Some(_), Some(_)) => {
            return Err(src.error_for(
                at("key_env"),
                "audit.key_env",
                "set key_env or key_file, not both",
            ));
        }
        (Some(var), None) => {
            // Checked, not kept: the daemon reads the variable again when it opens the store.
            let why = match env(var) {
                None => Some(format!("environment variable `{var}` is not set")),
                Some(v) => AuditKey::from_hex(&v)
                    .err()
                    .map(|why| format!("environment variable `{var}`: {why}")),
            };
            if let Some(why) = why {
                return Err(src.error_for(at("key_env"), "audit.key_env", why));
            }
            AuditKeySource::Env(var.clone())
        }
        (None, Some(file)) => AuditKeySource::File(resolve(file)),
        (None, None) => AuditKeySource::File(default_file()),
    };
    Ok(AuditConfig { key })
}

fn validate_tags(src: &Source<'_>, tags: &Spanned<IdentityTags>) -> Result<(), FileError> {
    let t = tags.get_ref();
    let mut seen = HashSet::new();
    for (field, key) in [
        ("tags.lease", &t.lease),
        ("tags.project", &t.project),
        ("tags.task", &t.task),
        ("tags.owner", &t.owner),
        ("tags.protect", &t.protect),
    ] {
        check_tag_key(key).map_err(|m| src.error_for(tags.span(), field, m))?;
        if !seen.insert(key) {
            return Err(src.error_for(
                tags.span(),
                field,
                format!("tag key `{key}` is used twice"),
            ));
        }
    }
    Ok(())
}

/// Where `needle` is inside `within` (so an error points at the offending key or value, not at
/// the table's header): read from the parsed document's spans, the first key named `needle`,
/// or with a quoted needle (`"\"x\""`) the first string value `x`, that starts inside `within`
/// (a key named in a string value, such as `port` in `host = "report.example.com"`, is no
/// match); the start of `within` when there is none.
fn span_in(
    src: &Source<'_>,
    within: std::ops::Range<usize>,
    needle: &str,
) -> std::ops::Range<usize> {
    let Ok(doc) = toml::de::DeTable::parse(src.text) else {
        return within.start..within.start;
    };
    let want = match needle.strip_prefix('"').and_then(|n| n.strip_suffix('"')) {
        Some(value) => Want::Value(value),
        None => Want::Key(needle),
    };
    let mut best: Option<std::ops::Range<usize>> = None;
    find_in_table(doc.get_ref(), &want, &within, &mut best);
    best.unwrap_or(within.start..within.start)
}

/// What [`span_in`] looks for.
enum Want<'n> {
    Key(&'n str),
    Value(&'n str),
}

fn find_in_table(
    table: &toml::de::DeTable<'_>,
    want: &Want<'_>,
    within: &std::ops::Range<usize>,
    best: &mut Option<std::ops::Range<usize>>,
) {
    for (key, value) in table {
        if let Want::Key(k) = want
            && key.get_ref().as_ref() == *k
        {
            keep_first(key.span(), within, best);
        }
        find_in_value(value, want, within, best);
    }
}

fn find_in_value(
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    want: &Want<'_>,
    within: &std::ops::Range<usize>,
    best: &mut Option<std::ops::Range<usize>>,
) {
    match value.get_ref() {
        toml::de::DeValue::String(v) => {
            if let Want::Value(w) = want
                && v.as_ref() == *w
            {
                keep_first(value.span(), within, best);
            }
        }
        toml::de::DeValue::Table(t) => find_in_table(t, want, within, best),
        toml::de::DeValue::Array(items) => {
            for item in items.iter() {
                find_in_value(item, want, within, best);
            }
        }
        _ => {}
    }
}

fn keep_first(
    span: std::ops::Range<usize>,
    within: &std::ops::Range<usize>,
    best: &mut Option<std::ops::Range<usize>>,
) {
    if within.contains(&span.start) && best.as_ref().is_none_or(|b| span.start < b.start) {
        *best = Some(span);
    }
}

fn validate_enforcement(src: &Source<'_>, e: &Spanned<Enforcement>) -> Result<(), FileError> {
    // A table's span covers its header only; its keys follow it.
    let span = e.span().start..src.text.len();
    let en = e.get_ref();
    if en.max_project_share_percent == 0 || en.max_project_share_percent > 100 {
        return Err(src.error_for(
            span_in(src, span.clone(), "max_project_share_percent"),
            "enforcement.max_project_share_percent",
            "must be 1 to 100",
        ));
    }
    if let Some(w) = &en.window {
        if let Some(d) = w.days.iter().find(|d| !WEEKDAYS.contains(&d.as_str())) {
            return Err(src.error_for(
                span_in(src, span.clone(), &format!("\"{d}\"")),
                "enforcement.window.days",
                format!("`{d}` is not one of {}", WEEKDAYS.join(", ")),
            ));
        }
        if w.start_hour > 23 || w.end_hour > 24 || w.start_hour >= w.end_hour {
            return Err(src.error_for(
                span_in(src, span.clone(), "end_hour"),
                "enforcement.window",
                "needs 0 <= start_hour < end_hour <= 24",
            ));
        }
    }
    Ok(())
}

fn validate_cost(
    src: &Source<'_>,
    cost: &Spanned<CostConfig>,
    aws: &AwsConfig,
) -> Result<(), FileError> {
    let span = cost.span().start..src.text.len();
    let c = cost.get_ref();
    let at = |needle: &str| span_in(src, span.clone(), needle);
    if !COST_METRICS.contains(&c.metric.as_str()) {
        return Err(src.error_for(
            at("metric"),
            "cost.metric",
            format!("must be one of {}", COST_METRICS.join(", ")),
        ));
    }
    if let Some(a) = &c.account
        && !aws.accounts.iter().any(|x| &x.id == a)
    {
        return Err(src.error_for(
            at("account"),
            "cost.account",
            format!("account {a} is not one of [[aws.accounts]]"),
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

fn validate_aws(src: &Source<'_>, aws: &Spanned<AwsConfig>) -> Result<(), FileError> {
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
    if a.accounts.is_empty() {
        return Err(src.error_for(span, "aws.accounts", "list at least one account"));
    }
    let mut ids = HashSet::new();
    for acc in &a.accounts {
        if acc.id.len() != 12 || !acc.id.chars().all(|c| c.is_ascii_digit()) {
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
    if !(1..=64).contains(&a.max_concurrent_walks) {
        return Err(src.error_for(span, "aws.max_concurrent_walks", "must be 1 to 64"));
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

fn looks_like_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty()
}

fn check_role_arn(arn: &str, account: &str) -> Result<(), String> {
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

fn validate_smtp(
    src: &Source<'_>,
    smtp: &Spanned<SmtpConfig>,
    resolve: &dyn Fn(&Path) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(), FileError> {
    let s = smtp.get_ref();
    // A table's span covers its header only; its keys follow it.
    let span = smtp.span().start..src.text.len();
    let at = |needle: &str| span_in(src, span.clone(), needle);
    if s.host.trim().is_empty() {
        return Err(src.error_for(at("host"), "smtp.host", "must not be empty"));
    }
    if s.port == 0 {
        return Err(src.error_for(at("port"), "smtp.port", "must be 1 to 65535"));
    }
    for (field, addr) in
        std::iter::once(("smtp.from", &s.from)).chain(s.oncall.iter().map(|a| ("smtp.oncall", a)))
    {
        // What the mailer will parse, nothing looser (`Name <a@b.example>` included).
        if addr.parse::<lettre::message::Mailbox>().is_err() {
            return Err(src.error_for(
                at(&format!("\"{addr}\"")),
                field,
                format!("`{addr}` is not an email address"),
            ));
        }
    }
    match (&s.password_env, &s.password_file) {
        (Some(_), Some(_)) => {
            return Err(src.error_for(
                at("password_env"),
                "smtp.password_env",
                "set password_env or password_file, not both",
            ));
        }
        (Some(var), None) if env(var).is_none_or(|v| v.is_empty()) => {
            return Err(src.error_for(
                at("password_env"),
                "smtp.password_env",
                format!("environment variable `{var}` is not set"),
            ));
        }
        (None, Some(file)) => {
            // Read only to check it can be; the transport reads it again when it is built,
            // so the password never sits in the config.
            let path = resolve(file);
            match std::fs::read_to_string(&path) {
                Ok(p) if !p.trim().is_empty() => {}
                Ok(_) => {
                    return Err(src.error_for(
                        at("password_file"),
                        "smtp.password_file",
                        format!("{} is empty", path.display()),
                    ));
                }
                Err(e) => {
                    return Err(src.error_for(
                        at("password_file"),
                        "smtp.password_file",
                        format!("cannot read {}: {e}", path.display()),
                    ));
                }
            }
        }
        _ => {}
    }
    let has_password = s.password_env.is_some() || s.password_file.is_some();
    if has_password && s.username.is_none() {
        return Err(src.error_for(
            at("password_"),
            "smtp.username",
            "a password needs a username",
        ));
    }
    if has_password && s.tls == SmtpTls::None {
        return Err(src.error_for(
            at("tls"),
            "smtp.tls",
            "a password is only sent over TLS: use tls = \"starttls\" or \"implicit\"",
        ));
    }
    if let Some(file) = &s.ca_file {
        let path = resolve(file);
        let pem = std::fs::read_to_string(&path).map_err(|e| {
            src.error_for(
                at("ca_file"),
                "smtp.ca_file",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err(src.error_for(
                at("ca_file"),
                "smtp.ca_file",
                format!("{} holds no PEM certificate", path.display()),
            ));
        }
        if s.tls == SmtpTls::None {
            return Err(src.error_for(
                at("ca_file"),
                "smtp.ca_file",
                "a CA file needs tls = \"starttls\" or \"implicit\"",
            ));
        }
    }
    if s.warn_before.as_secs() < 60 {
        return Err(src.error_for(at("warn_before"), "smtp.warn_before", "must be at least 1m"));
    }
    if let Some(q) = &s.quiet_hours
        && (q.start_hour > 23 || q.end_hour > 23 || q.start_hour == q.end_hour)
    {
        return Err(src.error_for(
            at("start_hour"),
            "smtp.quiet_hours",
            "needs start_hour and end_hour in 0..=23, and different",
        ));
    }
    Ok(())
}

fn resolve_principals(
    src: &Source<'_>,
    raw: Vec<RawPrincipal>,
    resolve: &dyn Fn(&Path) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Principal>, FileError> {
    let mut names = HashSet::new();
    let mut hashes = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for p in raw {
        let name_span = p.name.span();
        let name = p.name.into_inner();
        let field = |f: &str| format!("api.principals.{f}");
        if name.trim().is_empty() || name.len() > 64 {
            return Err(src.error_for(name_span, &field("name"), "must be 1 to 64 characters"));
        }
        if !names.insert(name.clone()) {
            return Err(src.error_for(
                name_span,
                &field("name"),
                format!("principal `{name}` is defined twice"),
            ));
        }
        let projects_span = p.projects.as_ref().map_or(name_span.clone(), Spanned::span);
        let projects: BTreeSet<ProjectName> = p
            .projects
            .map(Spanned::into_inner)
            .unwrap_or_default()
            .into_iter()
            .collect();
        match p.role {
            Role::Lessee if projects.is_empty() => {
                return Err(src.error_for(
                    name_span,
                    &field("projects"),
                    format!("lessee `{name}` must list the projects it may lease"),
                ));
            }
            Role::Operator | Role::Viewer if !projects.is_empty() => {
                return Err(src.error_for(
                    projects_span,
                    &field("projects"),
                    "projects only apply to lessees; operators and viewers see every project",
                ));
            }
            _ => {}
        }
        let hash = match (p.token_sha256, p.token_env, p.token_file) {
            (Some(h), None, None) => TokenHash::from_hex(h.get_ref())
                .map_err(|m| src.error_for(h.span(), &field("token_sha256"), m))?,
            (None, Some(var), None) => match env(var.get_ref()) {
                Some(tok) if !tok.trim().is_empty() => TokenHash::of(tok.trim()),
                _ => {
                    return Err(src.error_for(
                        var.span(),
                        &field("token_env"),
                        format!("environment variable `{}` is not set", var.get_ref()),
                    ));
                }
            },
            (None, None, Some(file)) => {
                let path = resolve(file.get_ref());
                let tok = std::fs::read_to_string(&path).map_err(|e| {
                    src.error_for(
                        file.span(),
                        &field("token_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                if tok.trim().is_empty() {
                    return Err(src.error_for(
                        file.span(),
                        &field("token_file"),
                        format!("{} is empty", path.display()),
                    ));
                }
                TokenHash::of(tok.trim())
            }
            _ => {
                return Err(src.error_for(
                    name_span,
                    &field("token_sha256"),
                    format!("principal `{name}` needs exactly one of token_sha256, token_env or token_file"),
                ));
            }
        };
        if !hashes.insert(hash.clone()) {
            return Err(src.error_for(
                name_span,
                &field("token_sha256"),
                format!("principal `{name}` shares its token with another principal"),
            ));
        }
        out.push(Principal {
            name,
            role: p.role,
            projects,
            token: hash,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Result<Config, FileError> {
        Config::parse(Path::new("/etc/ephemera/e.toml"), text, &no_env)
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let c = parse(EXAMPLE).expect("example config must be valid");
        assert!(!c.enforcement.armed, "the example must be unarmed");
        assert_eq!(c.tags, IdentityTags::default());
        assert_eq!(c.rules.dir, Path::new("/etc/ephemera/rules"));
        assert!(c.principals.iter().any(|p| p.role == Role::Operator));
    }

    /// Replaces one line of the example and checks the error names the line and the field.
    fn check_bad(find: &str, replace: &str, want_line_of: &str, want: &str) {
        assert!(EXAMPLE.contains(find), "example lacks {find:?}");
        let text = EXAMPLE.replacen(find, replace, 1);
        let err = parse(&text).expect_err(replace);
        let line = text
            .lines()
            .position(|l| l.contains(want_line_of))
            .expect("marker line present")
            + 1;
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("/etc/ephemera/e.toml:{line}:")),
            "{msg}"
        );
        assert!(msg.contains(want), "{msg} lacks {want}");
    }

    #[test]
    fn bad_values_name_file_line_and_field() {
        check_bad(
            "armed = false",
            "armd = false",
            "armd = false",
            "unknown field `armd`",
        );
        check_bad(
            "scan = \"*/15 * * * *\"",
            "scan = \"every 15 minutes\"",
            "every 15 minutes",
            "field `schedules.scan`: invalid cron",
        );
        check_bad(
            "timeout = \"30s\"",
            "timeout = \"forever\"",
            "forever",
            "field `smtp.timeout`: invalid duration `forever`",
        );
        check_bad(
            "listen = \"127.0.0.1:9477\"",
            "listen = \"localhost-ish\"",
            "localhost-ish",
            "field `api.listen`",
        );
        check_bad(
            "role = \"viewer\"",
            "role = \"admin\"",
            "\"admin\"",
            "unknown variant `admin`",
        );
    }

    /// The example with its first principal's token taken from the environment.
    fn example_with_token_env() -> String {
        let hash =
            "token_sha256 = \"61112491d046c3f6f8ab801f170d9b2d0c734a17ceff60dee92123fb507cfc3f\"";
        assert!(EXAMPLE.contains(hash), "example lacks the operator hash");
        EXAMPLE.replacen(hash, "token_env = \"EPHEMERA_TOKEN_ONCALL\"", 1)
    }

    #[test]
    fn token_from_env_is_hashed() {
        let text = example_with_token_env();
        let env = |name: &str| (name == "EPHEMERA_TOKEN_ONCALL").then(|| "s3cret".to_owned());
        let c = Config::parse(Path::new("e.toml"), &text, &env).expect("valid with env set");
        let oncall = c.principals.iter().find(|p| p.name == "oncall");
        assert_eq!(oncall.map(|p| &p.token), Some(&TokenHash::of("s3cret")));
        assert!(!format!("{c:?}").contains("s3cret"));

        let err = parse(&text).expect_err("variable unset").to_string();
        let line = text
            .lines()
            .position(|l| l.contains("EPHEMERA_TOKEN_ONCALL"))
            .expect("present")
            + 1;
        assert!(
            err.starts_with(&format!("/etc/ephemera/e.toml:{line}:13: field `api.principals.token_env`: environment variable `EPHEMERA_TOKEN_ONCALL` is not set")),
            "{err}"
        );
    }

    #[test]
    fn principal_rules() {
        let check = |find: &str, replace: &str, want: &str| {
            let text = EXAMPLE.replacen(find, replace, 1);
            assert_ne!(text, EXAMPLE, "{find} not in example");
            let err = parse(&text).expect_err(want).to_string();
            assert!(err.contains(want), "{err} lacks {want}");
        };
        check(
            "name = \"ci-data\"",
            "name = \"ci-web\"",
            "principal `ci-web` is defined twice",
        );
        check(
            "projects = [\"data\", \"ml\"]\n",
            "",
            "lessee `ci-data` must list the projects",
        );
        check(
            "role = \"viewer\"",
            "role = \"viewer\"\nprojects = [\"web\"]",
            "projects only apply to lessees",
        );
        check(
            "7aa7f3fc07d86ae8bfb566d5c2674e310bce9246f756b95be832a4c6bd6bddbc",
            "7b8e529dd9274f660fcaee9a7a46d5d0eebb4d7f0834c39d2405584aae83decb",
            "shares its token",
        );
        check(
            "token_sha256 = \"db2c",
            "token_sha256 = \"zz2c",
            "expected 64 hex digits",
        );
        check(
            "id = \"210987654321\"",
            "id = \"2109876\"",
            "not a 12-digit AWS account id",
        );
        check(
            "regions = [\"us-east-1\", \"eu-west-1\"]",
            "regions = [\"us-east-1\", \"Europe\"]",
            "`Europe` is not an AWS region",
        );
        check(
            "from = \"ephemera@example.com\"",
            "from = \"ephemera\"",
            "field `smtp.from`",
        );
        check(
            "lease = \"ephemera:lease-id\"",
            "lease = \"aws:lease\"",
            "reserved `aws:` prefix",
        );
    }

    #[test]
    fn bad_enforcement_names_the_line_of_the_value() {
        check_bad(
            "\"sqs:queue\"]",
            "\"sqs:queues\"]",
            "sqs:queues",
            "field `enforcement.deletable_types`: no deleter for `sqs:queues`",
        );
        check_bad(
            "max_project_share_percent = 50",
            "max_project_share_percent = 0",
            "max_project_share_percent = 0",
            "must be 1 to 100",
        );
        check_bad(
            "\"fri\"]",
            "\"friday\"]",
            "friday",
            "field `enforcement.window.days`: `friday` is not one of mon",
        );
        check_bad(
            "end_hour = 17",
            "end_hour = 9",
            "end_hour = 9",
            "needs 0 <= start_hour < end_hour <= 24",
        );
    }

    #[test]
    fn bad_cost_settings_name_the_line() {
        check_bad(
            "metric = \"UnblendedCost\"",
            "metric = \"Unblended\"",
            "metric = \"Unblended\"",
            "field `cost.metric`: must be one of UnblendedCost",
        );
        check_bad(
            "# account = \"123456789012\"",
            "account = \"999999999999\"",
            "account = \"999999999999\"",
            "field `cost.account`: account 999999999999 is not one of [[aws.accounts]]",
        );
        check_bad(
            "rolling_window = \"30d\"",
            "rolling_window = \"36h\"",
            "rolling_window = \"36h\"",
            "whole days",
        );
        check_bad(
            "top_tasks = 20",
            "top_tasks = 0",
            "top_tasks = 0",
            "field `cost.top_tasks`: 1 to 1000",
        );
        let c = parse(EXAMPLE).expect("example");
        assert_eq!(c.cost.rolling_days(), 30);
        assert_eq!(c.cost.metric, "UnblendedCost");
    }

    #[test]
    fn enforcement_defaults_are_safe() {
        let text = EXAMPLE
            .split("[enforcement]")
            .next()
            .expect("example has text before [enforcement]");
        let c = parse(text).expect("valid without [enforcement]");
        assert!(!c.enforcement.armed);
        assert!(
            c.enforcement.deletable_types.is_empty(),
            "nothing deletable unless listed"
        );
        assert!(c.enforcement.window.is_none());
        let c = parse(EXAMPLE).expect("example");
        let w = c.enforcement.window.expect("example has a window");
        let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().expect("time");
        assert!(w.contains(at("2026-03-02T09:00:00Z")), "Monday 09:00");
        assert!(w.contains(at("2026-03-02T16:59:59Z")));
        assert!(!w.contains(at("2026-03-02T17:00:00Z")));
        assert!(!w.contains(at("2026-03-01T12:00:00Z")), "Sunday");
    }

    #[test]
    fn bad_smtp_names_the_line_of_the_value() {
        // The key is found among the keys: `port` inside the host's name is not it.
        check_bad(
            "host = \"127.0.0.1\"\nport = 25",
            "host = \"report.example.com\"\nport = 0",
            "port = 0",
            "field `smtp.port`: must be 1 to 65535",
        );
        check_bad(
            "warn_before = \"30m\"",
            "warn_before = \"soon\"",
            "soon",
            "field `smtp.warn_before`: invalid duration `soon`",
        );
        check_bad(
            "warn_before = \"30m\"",
            "warn_before = \"30s\"",
            "warn_before = \"30s\"",
            "field `smtp.warn_before`: must be at least 1m",
        );
        check_bad(
            "oncall = [\"oncall@example.com\"]",
            "oncall = [\"oncall@example.com\", \"pager\"]",
            "\"pager\"",
            "field `smtp.oncall`: `pager` is not an email address",
        );
        check_bad(
            "tls = \"none\"",
            "tls = \"ssl\"",
            "\"ssl\"",
            "unknown variant `ssl`",
        );
        check_bad(
            "# username = \"ephemera\"",
            "username = \"ephemera\"\npassword_env = \"SMTP_PW_UNSET\"",
            "password_env = \"SMTP_PW_UNSET\"",
            "field `smtp.password_env`: environment variable `SMTP_PW_UNSET` is not set",
        );
        check_bad(
            "# ca_file = \"/etc/ephemera/relay-ca.pem\"",
            "ca_file = \"/nonexistent/ca.pem\"",
            "ca_file = \"/nonexistent",
            "field `smtp.ca_file`: cannot read /nonexistent/ca.pem",
        );
        check_bad(
            "# [smtp.quiet_hours]\n# start_hour = 22\n# end_hour = 7",
            "[smtp.quiet_hours]\nstart_hour = 22\nend_hour = 22",
            "start_hour = 22",
            "field `smtp.quiet_hours`: needs start_hour and end_hour",
        );
    }

    #[test]
    fn audit_key_source_defaults_next_to_the_store_and_is_checked() {
        use crate::audit::AuditKeySource;
        let c = parse(EXAMPLE).expect("example");
        assert_eq!(
            c.audit.key,
            AuditKeySource::File(PathBuf::from("/etc/ephemera/state/audit.key"))
        );
        let without = EXAMPLE.replacen("[audit]\nkey_file = \"state/audit.key\"\n", "", 1);
        assert_ne!(without, EXAMPLE);
        let c = parse(&without).expect("no [audit]");
        assert_eq!(
            c.audit.key,
            AuditKeySource::File(PathBuf::from("/etc/ephemera/state/audit.key"))
        );
        check_bad(
            "key_file = \"state/audit.key\"",
            "key_env = \"EPHEMERA_AUDIT_KEY_UNSET\"",
            "key_env = \"EPHEMERA_AUDIT_KEY_UNSET\"",
            "field `audit.key_env`: environment variable `EPHEMERA_AUDIT_KEY_UNSET` is not set",
        );
        check_bad(
            "key_file = \"state/audit.key\"",
            "key_file = \"k\"\nkey_env = \"K\"",
            "key_env = \"K\"",
            "field `audit.key_env`: set key_env or key_file, not both",
        );
        let text = EXAMPLE.replacen(
            "key_file = \"state/audit.key\"",
            "key_env = \"EPHEMERA_AUDIT_KEY\"",
            1,
        );
        let key = "5a".repeat(32);
        let env = |name: &str| (name == "EPHEMERA_AUDIT_KEY").then(|| key.clone());
        let c = Config::parse(Path::new("e.toml"), &text, &env).expect("key from env");
        assert_eq!(
            c.audit.key,
            AuditKeySource::Env("EPHEMERA_AUDIT_KEY".into())
        );
        assert!(!format!("{c:?}").contains(&key), "the key is not kept");
        let short = |_: &str| Some("abcd".to_owned());
        let err = Config::parse(Path::new("e.toml"), &text, &short).expect_err("short key");
        assert!(err.to_string().contains("at least 32 are needed"), "{err}");
    }

    #[test]
    fn smtp_password_needs_tls_and_is_not_kept() {
        let text = EXAMPLE.replacen(
            "# username = \"ephemera\"",
            "username = \"ephemera\"\npassword_env = \"SMTP_PW\"",
            1,
        );
        let env = |name: &str| (name == "SMTP_PW").then(|| "hunter2".to_owned());
        let err = Config::parse(Path::new("e.toml"), &text, &env)
            .expect_err("password over plain SMTP")
            .to_string();
        assert!(
            err.contains("field `smtp.tls`: a password is only sent over TLS"),
            "{err}"
        );
        let text = text.replacen("tls = \"none\"", "tls = \"starttls\"", 1);
        let c = Config::parse(Path::new("e.toml"), &text, &env).expect("valid over starttls");
        let smtp = c.smtp.expect("smtp");
        assert_eq!(smtp.password_env.as_deref(), Some("SMTP_PW"));
        assert!(!format!("{smtp:?}").contains("hunter2"));
        assert_eq!(smtp.warn_before, HumanDuration::from_secs(30 * 60));
    }

    #[test]
    fn quiet_hours_may_wrap_midnight() {
        let at = |s: &str| s.parse::<chrono::DateTime<chrono::Utc>>().expect("time");
        let night = QuietHours {
            start_hour: 22,
            end_hour: 7,
        };
        for (t, quiet) in [
            ("2026-03-02T21:59:59Z", false),
            ("2026-03-02T22:00:00Z", true),
            ("2026-03-03T03:00:00Z", true),
            ("2026-03-03T06:59:59Z", true),
            ("2026-03-03T07:00:00Z", false),
        ] {
            assert_eq!(night.contains(at(t)), quiet, "{t}");
        }
        let lunch = QuietHours {
            start_hour: 12,
            end_hour: 13,
        };
        assert!(lunch.contains(at("2026-03-02T12:30:00Z")));
        assert!(!lunch.contains(at("2026-03-02T13:00:00Z")));
    }

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
