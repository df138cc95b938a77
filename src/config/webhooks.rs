//! `[[webhooks]]`: HTTP endpoints that receive ephemera's state changes as signed CloudEvents.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::{FileError, Source};
use crate::model::{EventKind, HumanDuration};

/// Where an endpoint's signing secret comes from (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// The name of an environment variable holding it.
    Env(String),
    /// A file holding it (surrounding white space ignored).
    File(PathBuf),
}

impl SecretSource {
    /// Reads the secret now (surrounding white space dropped): the value, or where it was
    /// looked for and why it could not be read.
    pub fn read(&self) -> Result<String, (String, String)> {
        match self {
            SecretSource::Env(var) => std::env::var(var)
                .map(|s| s.trim().to_owned())
                .map_err(|e| (format!("environment variable `{var}`"), e.to_string())),
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim().to_owned())
                .map_err(|e| (path.display().to_string(), e.to_string())),
        }
    }
}

/// `d` when within `min..=max` seconds (an error at it naming `field` otherwise), or `default`
/// seconds when unset.
pub(super) fn duration_within(
    src: &Source<'_>,
    d: Option<Spanned<HumanDuration>>,
    field: &str,
    default: u64,
    (min, max): (u64, u64),
) -> Result<HumanDuration, FileError> {
    match d {
        None => Ok(HumanDuration::from_secs(default)),
        Some(d) if !(min..=max).contains(&d.get_ref().as_secs()) => Err(src.error_for(
            d.span(),
            field,
            format!(
                "must be {} to {}",
                HumanDuration::from_secs(min),
                HumanDuration::from_secs(max)
            ),
        )),
        Some(d) => Ok(d.into_inner()),
    }
}

/// The source of a secret set by `<field>_env` or `<field>_file` (exactly one, `required`
/// says why), read once to `check` it: a failed check names the variable or file and what it
/// must hold (never the value).
#[allow(clippy::too_many_arguments)]
pub(super) fn secret_source(
    src: &Source<'_>,
    header: std::ops::Range<usize>,
    field: &str,
    var: Option<Spanned<String>>,
    file: Option<Spanned<PathBuf>>,
    required: &str,
    resolve: &dyn Fn(&Path) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
    check: &dyn Fn(&str) -> Result<(), String>,
) -> Result<SecretSource, FileError> {
    let env_field = format!("{field}_env");
    let file_field = format!("{field}_file");
    let key = field.rsplit('.').next().unwrap_or(field);
    match (var, file) {
        (Some(_), Some(f)) => Err(src.error_for(
            f.span(),
            &file_field,
            format!("set {key}_env or {key}_file, not both"),
        )),
        (None, None) => Err(src.error_for(
            header,
            &env_field,
            format!("{required}: set {key}_env or {key}_file"),
        )),
        (Some(var), None) => {
            let value = env(var.get_ref()).unwrap_or_default();
            check(value.trim()).map_err(|what| {
                src.error_for(
                    var.span(),
                    &env_field,
                    format!("environment variable `{}` must hold {what}", var.get_ref()),
                )
            })?;
            Ok(SecretSource::Env(var.into_inner()))
        }
        (None, Some(f)) => {
            let path = resolve(f.get_ref());
            let value = std::fs::read_to_string(&path).map_err(|e| {
                src.error_for(
                    f.span(),
                    &file_field,
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            check(value.trim()).map_err(|what| {
                src.error_for(
                    f.span(),
                    &file_field,
                    format!("{} must hold {what}", path.display()),
                )
            })?;
            Ok(SecretSource::File(path))
        }
    }
}

/// One endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// What logs, metrics and the outbox call it.
    pub name: String,
    pub url: String,
    pub secret: SecretSource,
    /// The event filter: `*`, a group (`lease.*`) or a type (`resource.deleted`).
    pub events: Vec<String>,
    /// Of one delivery attempt.
    pub timeout: HumanDuration,
    /// First retry delay after a failed attempt; it doubles per failure, up to an hour.
    pub retry_backoff: HumanDuration,
    /// An event still undelivered this long after it happened becomes a dead letter.
    pub give_up_after: HumanDuration,
}

impl WebhookConfig {
    /// Whether the filter takes events of `kind`.
    pub fn wants(&self, kind: EventKind) -> bool {
        let name = kind.as_str();
        self.events.iter().any(|f| {
            f == "*"
                || f == name
                || f.strip_suffix(".*")
                    .is_some_and(|group| name.split('.').next() == Some(group))
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWebhook {
    name: Spanned<String>,
    url: Spanned<String>,
    #[serde(default)]
    secret_env: Option<Spanned<String>>,
    #[serde(default)]
    secret_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    events: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    timeout: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    retry_backoff: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    give_up_after: Option<Spanned<HumanDuration>>,
}

/// Checks every endpoint; the secret is read only to check it can be (the deliverer reads it
/// again at start), so it never sits in the config.
pub(super) fn resolve_webhooks(
    src: &Source<'_>,
    raw: Vec<Spanned<RawWebhook>>,
    resolve: &dyn Fn(&Path) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<WebhookConfig>, FileError> {
    let field = |f: &str| format!("webhooks.{f}");
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for spanned in raw {
        let header = spanned.span();
        let r = spanned.into_inner();
        let name = r.name.get_ref().clone();
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_';
        if name.is_empty() || name.len() > 64 || !name.chars().all(valid) {
            return Err(src.error_for(
                r.name.span(),
                &field("name"),
                "must be 1 to 64 of a-z, 0-9, - and _",
            ));
        }
        // Slack's deliveries are counted under this name (`ephemera_webhook_deliveries_total`).
        if name == "slack" {
            return Err(src.error_for(
                r.name.span(),
                &field("name"),
                "`slack` is reserved for the [slack] section; choose another name",
            ));
        }
        if !names.insert(name.clone()) {
            return Err(src.error_for(
                r.name.span(),
                &field("name"),
                format!("webhook `{name}` is defined twice"),
            ));
        }
        super::oidc::check_url(r.url.get_ref())
            .map_err(|m| src.error_for(r.url.span(), &field("url"), m))?;
        let secret = secret_source(
            src,
            header,
            &field("secret"),
            r.secret_env,
            r.secret_file,
            "every webhook is signed",
            resolve,
            env,
            &|s| {
                (s.trim().len() >= 16)
                    .then_some(())
                    .ok_or_else(|| "a secret of at least 16 characters".to_owned())
            },
        )?;
        let events = match r.events {
            None => vec!["*".to_owned()],
            Some(list) if list.get_ref().is_empty() => {
                return Err(src.error_for(
                    list.span(),
                    &field("events"),
                    "must name at least one event (\"*\" for all)",
                ));
            }
            Some(list) => list
                .into_inner()
                .into_iter()
                .map(|e| {
                    let f = e.get_ref();
                    let known = f == "*"
                        || EventKind::ALL.iter().any(|k| {
                            k.as_str() == f
                                || f.strip_suffix(".*")
                                    .is_some_and(|g| k.as_str().split('.').next() == Some(g))
                        });
                    if known {
                        Ok(e.into_inner())
                    } else {
                        Err(src.error_for(
                            e.span(),
                            &field("events"),
                            format!(
                                "`{f}` matches no event; use \"*\", a group such as \"lease.*\", or one of: {}",
                                EventKind::ALL.map(EventKind::as_str).join(", ")
                            ),
                        ))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        out.push(WebhookConfig {
            name,
            url: r.url.into_inner(),
            secret,
            events,
            timeout: duration_within(src, r.timeout, &field("timeout"), 10, (1, 120))?,
            retry_backoff: duration_within(
                src,
                r.retry_backoff,
                &field("retry_backoff"),
                30,
                (1, 3600),
            )?,
            give_up_after: duration_within(
                src,
                r.give_up_after,
                &field("give_up_after"),
                86_400,
                (60, 30 * 86_400),
            )?,
        });
    }
    Ok(out)
}
