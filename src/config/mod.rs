//! The one TOML config file: parsed, validated once at start-up, then passed explicitly.
//!
//! Architecture Invariant: nothing here opens sockets or the store; the only outside reads are
//! the environment and files that hold secrets or certificates, done once while validating.
//! Secrets never leave this module in clear: tokens are hashed here, passwords stay named (env
//! var or file) and are read again by whoever needs them.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::auth::{Principal, Role};
use crate::diagnostic::{FileError, Source};
use crate::model::{HumanDuration, IdentityTags, ProjectName, check_tag_key};

mod aws;
mod canary;
mod cost;
mod discovery;
mod enforcement;
mod oidc;
mod principals;
mod retention;
mod schedule;
mod slack;
mod smtp;
mod spans;
mod store;
#[cfg(test)]
mod tests;
mod tls;
mod webhooks;

use aws::validate_aws;
pub use aws::{AccountSettings, AwsAccount, AwsConfig, OrganizationConfig, OuSettings};
pub use canary::{CanaryConfig, CanaryTarget};
use cost::validate_cost;
pub use cost::{CostConfig, CostMetric};
use discovery::validate_discovery;
pub use discovery::{Discovery, ResourceExplorer};
use enforcement::validate_enforcement;
pub use enforcement::{DeletionWindow, Enforcement, TimeZone, Weekday};
use oidc::resolve_issuers;
pub use oidc::{JwsAlgorithm, OidcIssuer};
use principals::resolve_principals;
use retention::validate_retention;
pub use retention::{Horizon, Retention};
pub use schedule::{CronSchedule, Schedules};
pub use slack::{SlackConfig, SlackTarget, address_key};
use smtp::validate_smtp;
pub use smtp::{QuietHours, SmtpConfig, SmtpTls, default_warn_before};
use spans::span_in;
pub use store::{PgTarget, StoreLocation, TargetError};
use store::{RawStore, resolve_store};
pub use tls::ApiTls;
pub use webhooks::{SecretSource, WebhookConfig};

/// The annotated example shipped with the project, embedded so `ephemera config example`
/// can print it anywhere.
pub const EXAMPLE: &str = include_str!("../../ephemera.example.toml");

/// When set (an absolute path), relative `[store] path` and `[audit] key_file` resolve against
/// it instead of the config file's directory: the state directory of a deployment whose config
/// directory is read-only (the systemd unit sets it to its `StateDirectory`).
pub const STATE_DIR_ENV: &str = "EPHEMERA_STATE_DIR";

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
    pub discovery: Discovery,
    pub schedules: Schedules,
    pub smtp: Option<SmtpConfig>,
    pub cost: CostConfig,
    pub enforcement: Enforcement,
    pub audit: AuditConfig,
    /// `[retention]`: how long history is kept in the store.
    pub retention: Retention,
    /// API principals with hashed tokens or OIDC claims.
    pub principals: Vec<Principal>,
    /// `[[api.oidc_issuers]]`: kept apart from [`ApiConfig`] because they, like principals,
    /// change on a reload (a changed `api` section asks for a restart).
    pub oidc_issuers: Vec<OidcIssuer>,
    /// `[[webhooks]]`: endpoints that receive state changes as signed CloudEvents.
    pub webhooks: Vec<WebhookConfig>,
    /// `[slack]`: an incoming webhook for the on-call summary and the owner notices.
    pub slack: Option<SlackConfig>,
    /// `[canary]`: the synthetic lifecycle canary.
    pub canary: Option<CanaryConfig>,
}

#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    /// A connection that has not sent a request's headers within this is closed.
    pub header_read_timeout: HumanDuration,
    /// A request not answered within this gets 503 `request-timeout`.
    pub request_timeout: HumanDuration,
    /// Open connections at most; one more is closed at accept.
    pub max_connections: u32,
    /// Requests in flight at most; one more gets 503 `overloaded`.
    pub max_concurrent_requests: u32,
    /// `[api.tls]`: HTTPS with these files; `None` serves plain HTTP.
    pub tls: Option<ApiTls>,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `path` (SQLite) or `url` (PostgreSQL).
    pub location: StoreLocation,
    /// Complete passes in a row without evidence of lost leases that end a restore's
    /// suspension of reaping (`unknown-lease` and `released`) without an operator.
    pub restore_clean_passes: u32,
}

impl StoreConfig {
    /// The SQLite file, when the store is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.location {
            StoreLocation::Sqlite(p) => Some(p),
            StoreLocation::Postgres(_) => None,
        }
    }
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

// ---- raw file shape -------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    api: RawApi,
    store: Spanned<RawStore>,
    rules: RawRules,
    #[serde(default)]
    tags: Option<Spanned<IdentityTags>>,
    aws: Spanned<AwsConfig>,
    #[serde(default)]
    discovery: Option<Spanned<Discovery>>,
    schedules: Schedules,
    #[serde(default)]
    smtp: Option<Spanned<SmtpConfig>>,
    #[serde(default)]
    cost: Option<Spanned<CostConfig>>,
    #[serde(default)]
    enforcement: Option<Spanned<Enforcement>>,
    #[serde(default)]
    audit: Option<Spanned<RawAudit>>,
    #[serde(default)]
    retention: Option<Spanned<Retention>>,
    #[serde(default)]
    webhooks: Vec<Spanned<webhooks::RawWebhook>>,
    #[serde(default)]
    slack: Option<Spanned<slack::RawSlack>>,
    #[serde(default)]
    canary: Option<Spanned<canary::RawCanary>>,
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
    #[serde(default = "default_header_read_timeout")]
    header_read_timeout: Spanned<HumanDuration>,
    #[serde(default = "default_request_timeout")]
    request_timeout: Spanned<HumanDuration>,
    #[serde(default = "default_max_connections")]
    max_connections: Spanned<u32>,
    #[serde(default = "default_max_concurrent_requests")]
    max_concurrent_requests: Spanned<u32>,
    #[serde(default)]
    principals: Vec<RawPrincipal>,
    #[serde(default)]
    oidc_issuers: Vec<oidc::RawOidcIssuer>,
    #[serde(default)]
    tls: Option<Spanned<tls::RawTls>>,
}

fn default_max_body() -> usize {
    64 * 1024
}

fn default_header_read_timeout() -> Spanned<HumanDuration> {
    Spanned::new(0..0, HumanDuration::from_secs(10))
}

fn default_request_timeout() -> Spanned<HumanDuration> {
    Spanned::new(0..0, HumanDuration::from_secs(30))
}

/// Room for 1,000 slow or idle clients beside every CI job's heartbeat (the siege bench);
/// the daemon raises its open-file limit to match.
fn default_max_connections() -> Spanned<u32> {
    Spanned::new(0..0, 4096)
}

fn default_max_concurrent_requests() -> Spanned<u32> {
    Spanned::new(0..0, 256)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    dir: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrincipal {
    name: Spanned<String>,
    role: Role,
    #[serde(default)]
    projects: Option<Spanned<Vec<ProjectName>>>,
    #[serde(default)]
    token_sha256: Option<Spanned<String>>,
    #[serde(default)]
    tokens_sha256: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    token_env: Option<Spanned<String>>,
    #[serde(default)]
    token_file: Option<Spanned<PathBuf>>,
    /// ID tokens of an `[[api.oidc_issuers]]` entry that carry these claims.
    #[serde(default)]
    oidc: Option<Spanned<RawOidcMatch>>,
    /// The claim that names the owner of leases acquired without one.
    #[serde(default)]
    owner_claim: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOidcMatch {
    issuer: Spanned<String>,
    claims: Spanned<std::collections::BTreeMap<String, Spanned<String>>>,
}

/// Reads one of a closed set of words; an unknown one fails with `message(text, known)`, at
/// its position in the file.
fn one_of<'de, D, T>(d: D, message: fn(&str, &str) -> String) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr + strum::VariantArray + Copy + Into<&'static str>,
{
    let text = String::deserialize(d)?;
    text.parse().map_err(|_| {
        let known: Vec<&'static str> = T::VARIANTS.iter().map(|v| (*v).into()).collect();
        serde::de::Error::custom(message(&text, &known.join(", ")))
    })
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
    /// The account Cost Explorer is asked in: `[cost] role_arn`'s, `[cost] account`, else
    /// the first account.
    pub fn cost_account(&self) -> Option<&str> {
        self.cost
            .role_arn
            .as_deref()
            .and_then(|r| r.split(':').nth(4))
            .or(self.cost.account.as_deref())
            .or_else(|| self.aws.accounts.first().map(|a| a.id.as_str()))
    }

    /// Reads and validates a config file, reading token variables (and [`STATE_DIR_ENV`]) from
    /// the process environment.
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
        // What the daemon writes (the store, a key it creates) may live apart from a read-only
        // config directory: the systemd unit points this at its StateDirectory.
        let state_base = match env(STATE_DIR_ENV).filter(|d| !d.is_empty()) {
            Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
            Some(d) => {
                return Err(src.error_for(
                    0..0,
                    STATE_DIR_ENV,
                    format!("`{d}` is not an absolute path"),
                ));
            }
            None => base.clone(),
        };
        let resolve_state = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                state_base.join(p)
            }
        };

        if let Some(tags) = &raw.tags {
            validate_tags(&src, tags)?;
        }
        validate_aws(&src, &raw.aws)?;
        if let Some(d) = &raw.discovery {
            validate_discovery(&src, d, raw.aws.get_ref().emulator)?;
        }
        if let Some(smtp) = &raw.smtp {
            validate_smtp(&src, smtp, &resolve, env)?;
        }
        if let Some(e) = &raw.enforcement {
            validate_enforcement(&src, e)?;
        }
        if let Some(c) = &raw.cost {
            validate_cost(&src, c, raw.aws.get_ref())?;
        }
        if let Some(r) = &raw.retention {
            validate_retention(&src, r)?;
        }
        let webhooks = webhooks::resolve_webhooks(&src, raw.webhooks, &resolve, env)?;
        let slack = raw
            .slack
            .map(|s| slack::resolve_slack(&src, s, &resolve, env))
            .transpose()?;
        let canary = {
            let aws = raw.aws.get_ref();
            // With an organization, accounts are known only at run time: none checked here.
            let accounts: Vec<String> = match aws.organization {
                Some(_) => Vec::new(),
                None => aws.accounts.iter().map(|a| a.id.clone()).collect(),
            };
            raw.canary
                .map(|c| canary::resolve_canary(&src, c, &accounts, &aws.regions))
                .transpose()?
        };
        if !(1..=100).contains(&raw.store.get_ref().restore_clean_passes) {
            return Err(src.error_for(0..0, "store.restore_clean_passes", "must be 1 to 100"));
        }
        if raw.api.max_body_bytes < 1024 {
            return Err(src.error_for(0..0, "api.max_body_bytes", "must be at least 1024"));
        }
        let api = &raw.api;
        for (field, d, range) in [
            ("api.header_read_timeout", &api.header_read_timeout, 1..=300),
            ("api.request_timeout", &api.request_timeout, 1..=3600),
        ] {
            if !range.contains(&d.get_ref().as_secs()) {
                return Err(src.error_for(
                    d.span(),
                    field,
                    format!("must be {}s to {}s", range.start(), range.end()),
                ));
            }
        }
        for (field, n, min) in [
            ("api.max_connections", &api.max_connections, 8),
            (
                "api.max_concurrent_requests",
                &api.max_concurrent_requests,
                4,
            ),
        ] {
            if !(min..=1_000_000).contains(n.get_ref()) {
                return Err(src.error_for(n.span(), field, format!("must be {min} to 1000000")));
            }
        }
        let api_config = ApiConfig {
            listen: api.listen,
            max_body_bytes: api.max_body_bytes,
            header_read_timeout: *api.header_read_timeout.get_ref(),
            request_timeout: *api.request_timeout.get_ref(),
            max_connections: *api.max_connections.get_ref(),
            max_concurrent_requests: *api.max_concurrent_requests.get_ref(),
            tls: api
                .tls
                .as_ref()
                .map(|t| tls::resolve_tls(&src, t, &resolve))
                .transpose()?,
        };
        let oidc_issuers = resolve_issuers(&src, raw.api.oidc_issuers)?;
        let principals =
            resolve_principals(&src, raw.api.principals, &oidc_issuers, &resolve, env)?;
        let location = resolve_store(&src, &raw.store, &resolve_state, &resolve, env)?;
        let audit = audit_config(&src, raw.audit.as_ref(), &location, &resolve_state, env)?;

        Ok(Config {
            path: path.to_owned(),
            api: api_config,
            store: StoreConfig {
                location,
                restore_clean_passes: raw.store.get_ref().restore_clean_passes,
            },
            rules: RulesConfig {
                dir: resolve(&raw.rules.dir),
            },
            tags: raw.tags.map(Spanned::into_inner).unwrap_or_default(),
            aws: raw.aws.into_inner(),
            discovery: raw.discovery.map(Spanned::into_inner).unwrap_or_default(),
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
            retention: raw.retention.map(Spanned::into_inner).unwrap_or_default(),
            principals,
            oidc_issuers,
            webhooks,
            slack,
            canary,
        })
    }
}

/// The audit key's source. The key itself is not read here: a missing key file is created by
/// the daemon on first start, and offline tools fail when it is missing.
fn audit_config(
    src: &Source<'_>,
    raw: Option<&Spanned<RawAudit>>,
    store: &StoreLocation,
    resolve: &dyn Fn(&Path) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AuditConfig, FileError> {
    use crate::audit::{AuditKey, AuditKeySource};
    let default_file = || match store {
        StoreLocation::Sqlite(path) => {
            Ok(path.parent().unwrap_or(Path::new(".")).join("audit.key"))
        }
        // Each replica would make a key of its own, and none could verify another's records.
        StoreLocation::Postgres(_) => Err(src.error_for(
            raw.map(|r| r.span()).unwrap_or(0..0),
            "audit.key_file",
            "a PostgreSQL store needs [audit] key_env or key_file: every replica must chain the \
             audit log under the same key",
        )),
    };
    let Some(raw) = raw else {
        return Ok(AuditConfig {
            key: AuditKeySource::File(default_file()?),
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
        (None, None) => AuditKeySource::File(default_file()?),
    };
    Ok(AuditConfig { key })
}

pub(super) fn validate_tags(
    src: &Source<'_>,
    tags: &Spanned<IdentityTags>,
) -> Result<(), FileError> {
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
