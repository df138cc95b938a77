//! The SMTP transport, built from `[smtp]`: plain, STARTTLS or implicit TLS, optional AUTH,
//! one timeout for connect, commands and data; one connection per message (no pool, so a
//! relay that restarts never leaves a dead pooled connection behind).
//!
//! Architecture Invariant: the password is read from its env var or file here, handed to
//! lettre and never stored elsewhere, printed or logged (`Debug` shows only where it is from).

use std::fmt;
use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{SmtpConfig, SmtpTls};

/// Why a transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("smtp password: environment variable `{0}` is not set")]
    PasswordEnv(String),
    #[error("smtp password: cannot read {path}")]
    PasswordFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("smtp ca_file: cannot read {path}")]
    CaRead {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("smtp ca_file: {path} is not a PEM certificate")]
    CaParse {
        path: std::path::PathBuf,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("smtp: cannot set up TLS for {host}")]
    Tls {
        host: String,
        #[source]
        source: lettre::transport::smtp::Error,
    },
}

/// A failed send, classified for the deliverer.
#[derive(Debug, thiserror::Error)]
#[error("{kind} failure talking to {relay}")]
pub struct SendError {
    relay: String,
    kind: &'static str,
    /// The server answered 5xx: sending the same message again will not help.
    pub permanent: bool,
    /// The server answered (4xx or 5xx), as opposed to an outage (no connection, a timeout,
    /// TLS failing).
    pub answered: bool,
    #[source]
    source: lettre::transport::smtp::Error,
}

/// The configured relay.
#[derive(Clone)]
pub struct SmtpTransport {
    inner: AsyncSmtpTransport<Tokio1Executor>,
    relay: String,
}

impl fmt::Debug for SmtpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpTransport")
            .field("relay", &self.relay)
            .finish_non_exhaustive()
    }
}

impl SmtpTransport {
    /// Builds the transport; reads the password (env var or file) and the CA file now.
    pub fn new(smtp: &SmtpConfig) -> Result<SmtpTransport, TransportError> {
        let relay = format!("{}:{}", smtp.host, smtp.port);
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(smtp.host.clone())
            .port(smtp.port)
            .timeout(Some(Duration::from_secs(smtp.timeout.as_secs())));
        if smtp.tls != SmtpTls::None {
            let mut params = TlsParameters::builder(smtp.host.clone());
            if let Some(path) = &smtp.ca_file {
                let pem = std::fs::read(path).map_err(|source| TransportError::CaRead {
                    path: path.clone(),
                    source,
                })?;
                let cert =
                    Certificate::from_pem(&pem).map_err(|source| TransportError::CaParse {
                        path: path.clone(),
                        source,
                    })?;
                params = params.add_root_certificate(cert);
            }
            let params = params.build().map_err(|source| TransportError::Tls {
                host: smtp.host.clone(),
                source,
            })?;
            b = b.tls(match smtp.tls {
                SmtpTls::Implicit => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        if let Some(user) = &smtp.username
            && let Some(password) = password(smtp)?
        {
            b = b.credentials(Credentials::new(user.clone(), password));
        }
        Ok(SmtpTransport {
            inner: b.build(),
            relay,
        })
    }

    /// Sends one message; `Ok` only once the server accepted it (250 after DATA).
    pub async fn send(&self, message: Message) -> Result<(), SendError> {
        self.inner.send(message).await.map(|_| ()).map_err(|e| {
            let kind = if e.is_permanent() {
                "permanent (5xx)"
            } else if e.is_transient() {
                "transient (4xx)"
            } else if e.is_timeout() {
                "timeout"
            } else if e.is_tls() {
                "tls"
            } else {
                "connection"
            };
            SendError {
                relay: self.relay.clone(),
                kind,
                permanent: e.is_permanent(),
                answered: e.is_permanent() || e.is_transient(),
                source: e,
            }
        })
    }

    pub fn relay(&self) -> &str {
        &self.relay
    }
}

fn password(smtp: &SmtpConfig) -> Result<Option<String>, TransportError> {
    if let Some(var) = &smtp.password_env {
        return std::env::var(var)
            .ok()
            .filter(|p| !p.is_empty())
            .map(Some)
            .ok_or_else(|| TransportError::PasswordEnv(var.clone()));
    }
    if let Some(path) = &smtp.password_file {
        let text =
            std::fs::read_to_string(path).map_err(|source| TransportError::PasswordFile {
                path: path.clone(),
                source,
            })?;
        return Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()));
    }
    Ok(None)
}
