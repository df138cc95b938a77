//! `[smtp]`: the relay, its TLS and credentials, on-call addresses, quiet hours.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::spans::span_in;
use crate::diagnostic::{FileError, Source};
use crate::model::HumanDuration;

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

/// `[smtp] warn_before` when not set (and for Slack alone).
pub fn default_warn_before() -> HumanDuration {
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

pub(super) fn validate_smtp(
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
