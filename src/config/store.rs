//! `[store]`: a SQLite file (`path`) or a PostgreSQL database (`url`, its password from the
//! environment or a file, never from the config itself).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use serde::Deserialize;
use toml::Spanned;

use super::spans::span_in;
use crate::diagnostic::{FileError, Source};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    path: Option<PathBuf>,
    url: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    /// PEM roots to trust for TLS to PostgreSQL besides the system's (a managed database's
    /// CA bundle, a private CA).
    ca_file: Option<PathBuf>,
    #[serde(default = "default_restore_clean_passes")]
    pub(super) restore_clean_passes: u32,
}

fn default_restore_clean_passes() -> u32 {
    3
}

/// Where the store is. The password is read here (the store connects with it for as long
/// as the daemon runs; `Debug` and logs show the target without it).
pub(super) fn resolve_store(
    src: &Source<'_>,
    raw: &Spanned<RawStore>,
    resolve_state: &dyn Fn(&Path) -> PathBuf,
    resolve: &dyn Fn(&Path) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<StoreLocation, FileError> {
    // A table's span covers its header only; its keys follow it.
    let span = raw.span().start..src.text.len();
    let at = |needle: &str| span_in(src, span.clone(), needle);
    let s = raw.get_ref();
    let url = match (&s.path, &s.url) {
        (Some(_), Some(_)) => {
            return Err(src.error_for(
                at("url"),
                "store.url",
                "set path (SQLite) or url (PostgreSQL), not both",
            ));
        }
        (None, None) => {
            return Err(src.error_for(
                at("store"),
                "store.path",
                "set path (a SQLite file) or url (a PostgreSQL database)",
            ));
        }
        (Some(path), None) => {
            if let Some(key) = [
                ("password_env", s.password_env.is_some()),
                ("password_file", s.password_file.is_some()),
                ("ca_file", s.ca_file.is_some()),
            ]
            .into_iter()
            .find_map(|(k, set)| set.then_some(k))
            {
                return Err(src.error_for(
                    at(key),
                    &format!("store.{key}"),
                    format!("{key} is for a PostgreSQL url; a SQLite path takes none"),
                ));
            }
            return Ok(StoreLocation::Sqlite(resolve_state(path)));
        }
        (None, Some(url)) => url,
    };
    let password = match (&s.password_env, &s.password_file) {
        (Some(_), Some(_)) => {
            return Err(src.error_for(
                at("password_env"),
                "store.password_env",
                "set password_env or password_file, not both",
            ));
        }
        (Some(var), None) => match env(var).filter(|v| !v.is_empty()) {
            Some(p) => Some(p),
            None => {
                return Err(src.error_for(
                    at("password_env"),
                    "store.password_env",
                    format!("environment variable `{var}` is not set"),
                ));
            }
        },
        (None, Some(file)) => {
            let path = resolve(file);
            match std::fs::read_to_string(&path) {
                // One trailing newline is the file's, not the password's.
                Ok(p) if !p.trim().is_empty() => Some(
                    p.strip_suffix('\n')
                        .map(|p| p.strip_suffix('\r').unwrap_or(p))
                        .unwrap_or(&p)
                        .to_owned(),
                ),
                Ok(_) => {
                    return Err(src.error_for(
                        at("password_file"),
                        "store.password_file",
                        format!("{} is empty", path.display()),
                    ));
                }
                Err(e) => {
                    return Err(src.error_for(
                        at("password_file"),
                        "store.password_file",
                        format!("cannot read {}: {e}", path.display()),
                    ));
                }
            }
        }
        (None, None) => None,
    };
    let mut target = PgTarget::parse(url, password)
        .map_err(|e| src.error_for(at("url"), "store.url", crate::error_chain(&e)))?;
    if let Some(file) = &s.ca_file {
        let path = resolve(file);
        let bad = |m: String| src.error_for(at("ca_file"), "store.ca_file", m);
        let certs = CertificateDer::pem_file_iter(&path)
            .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(bad(format!("{} holds no PEM certificate", path.display())));
        }
        target = target.with_ca(certs);
    }
    Ok(StoreLocation::Postgres(Box::new(target)))
}

/// Where the store lives: `[store] path` (SQLite) or `[store] url` (PostgreSQL).
#[derive(Debug, Clone)]
pub enum StoreLocation {
    Sqlite(PathBuf),
    Postgres(Box<PgTarget>),
}

impl std::fmt::Display for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreLocation::Sqlite(p) => write!(f, "{}", p.display()),
            StoreLocation::Postgres(t) => f.write_str(&t.describe()),
        }
    }
}

/// Where a PostgreSQL store is: the parsed `[store] url` (without its password) and the
/// password, from the environment or a file, kept out of every `Debug` and log line.
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    /// `[store] ca_file`: roots trusted besides the system's for TLS to the server.
    ca: Arc<Vec<CertificateDer<'static>>>,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgTarget({})", self.describe())
    }
}

/// Why a `[store] url` was refused.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("not a PostgreSQL connection URL: {0}")]
    Parse(String),
    #[error(
        "the URL carries a password; give it in the environment variable EPHEMERA_STORE_PASSWORD or in `password_file` instead, so the config file holds no secret"
    )]
    PasswordInUrl,
    #[error("the URL names no host")]
    NoHost,
    #[error("the URL names no database")]
    NoDatabase,
    #[error("the URL names no user")]
    NoUser,
}

impl PgTarget {
    /// Parses `url` (`postgres://user@host:port/db?options`); the password comes separately.
    pub fn parse(url: &str, password: Option<String>) -> Result<PgTarget, TargetError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| TargetError::Parse(e.to_string()))?;
        if config.get_password().is_some() {
            return Err(TargetError::PasswordInUrl);
        }
        if config.get_hosts().is_empty() {
            return Err(TargetError::NoHost);
        }
        if config.get_dbname().is_none() {
            return Err(TargetError::NoDatabase);
        }
        if config.get_user().is_none() {
            return Err(TargetError::NoUser);
        }
        if let Some(p) = password {
            config.password(p);
        }
        if config.get_connect_timeout().is_none() {
            // A database that does not answer must turn into `store-unavailable` quickly,
            // not hold the request until the load balancer gives up.
            config.connect_timeout(Duration::from_secs(5));
        }
        if config.get_application_name().is_none() {
            config.application_name("ephemera");
        }
        config.keepalives_idle(Duration::from_secs(30));
        Ok(PgTarget {
            config,
            ca: Arc::default(),
        })
    }

    /// `user@host:port/db`, for logs and messages: never the password.
    pub fn describe(&self) -> String {
        let host = match self.config.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => String::new(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!(
            "postgres://{}@{host}:{port}/{}",
            self.config.get_user().unwrap_or(""),
            self.config.get_dbname().unwrap_or("")
        )
    }

    /// The driver's settings, for the store to connect with.
    pub(crate) fn pg_config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The same server and user, another database (tests make one per store).
    pub fn with_database(&self, db: &str) -> PgTarget {
        let mut config = self.config.clone();
        config.dbname(db);
        PgTarget {
            config,
            ca: self.ca.clone(),
        }
    }

    /// Trusting `ca` besides the system's roots for TLS to the server.
    pub fn with_ca(mut self, ca: Vec<CertificateDer<'static>>) -> PgTarget {
        self.ca = Arc::new(ca);
        self
    }

    /// The roots trusted besides the system's.
    pub(crate) fn ca(&self) -> &[CertificateDer<'static>] {
        &self.ca
    }
}
