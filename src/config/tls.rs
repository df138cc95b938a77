//! `[api.tls]`: the API's certificate chain and private key, PEM files, read and checked to
//! match while validating (so `config check` and a reload catch a bad pair); the key itself is
//! not kept here, the daemon reads both files again when it builds its TLS acceptor.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::spans::span_in;
use crate::diagnostic::{FileError, Source};
use crate::tls::TlsError;

/// `[api.tls]` as written: both paths required.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    cert: PathBuf,
    key: PathBuf,
}

/// The API serves HTTPS with these files (paths resolved against the config's directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTls {
    /// PEM: the server's certificate first, then any intermediates.
    pub cert: PathBuf,
    /// PEM: its private key (PKCS#8, PKCS#1 or SEC1), unencrypted.
    pub key: PathBuf,
}

pub(super) fn resolve_tls(
    src: &Source<'_>,
    raw: &Spanned<RawTls>,
    resolve: &dyn Fn(&Path) -> PathBuf,
) -> Result<ApiTls, FileError> {
    // A table's span covers its header only; its keys follow it.
    let span = raw.span().start..src.text.len();
    let at = |needle: &str| span_in(src, span.clone(), needle);
    let tls = ApiTls {
        cert: resolve(&raw.get_ref().cert),
        key: resolve(&raw.get_ref().key),
    };
    crate::tls::load(&tls.cert, &tls.key).map_err(|e| {
        let field = match &e {
            TlsError::Read { path, .. } if *path == tls.key => "key",
            TlsError::Read { .. }
            | TlsError::NoCertificate { .. }
            | TlsError::BadCertificate { .. } => "cert",
            TlsError::NoKey { .. }
            | TlsError::BadKey { .. }
            | TlsError::UnusableKey { .. }
            | TlsError::Mismatch { .. } => "key",
        };
        src.error_for(
            at(field),
            &format!("api.tls.{field}"),
            crate::error_chain(&e),
        )
    })?;
    Ok(tls)
}
