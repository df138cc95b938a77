//! TLS for the API: a certificate chain and its private key read from PEM files and checked to
//! match, and the holder the server's handshakes take the certificate from, replaced whole on
//! reload (a handshake under way keeps the version it took).
//!
//! Architecture Invariant: reads only the two files it is given, when asked; never prints or
//! logs key material (its `Debug` shows none); knows nothing of HTTP beyond the ALPN name
//! `http/1.1`. rustls with the aws-lc-rs provider, named explicitly, so no process-wide
//! default provider is needed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why a certificate or key file cannot be used; each names its file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} is not a valid PEM certificate chain", path.display())]
    BadCertificate {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("{} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    #[error("{} is not a valid PEM private key", path.display())]
    BadKey {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the private key in {} is not usable", path.display())]
    UnusableKey {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error(
        "the private key in {} does not belong to the certificate in {}",
        key.display(),
        cert.display()
    )]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// The one crypto provider of the API's TLS.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Reads the chain in `cert` (the server's certificate first, then intermediates) and the
/// private key in `key`, and checks that the key belongs to the first certificate.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::BadCertificate {
            path: cert.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
        });
    }
    let key_pem = read(key)?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: key.to_owned(),
        },
        source => TlsError::BadKey {
            path: key.to_owned(),
            source,
        },
    })?;
    let provider = provider();
    let signing = provider
        .key_provider
        .load_private_key(private)
        .map_err(|source| TlsError::UnusableKey {
            path: key.to_owned(),
            source,
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        // A key whose public half the provider cannot tell is let through, as rustls does.
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(source) => Err(TlsError::Mismatch {
            cert: cert.to_owned(),
            key: key.to_owned(),
            source,
        }),
    }
}

/// The certificate new handshakes present; clones share it, [`ServerCert::replace`] swaps it
/// for every clone. (A lock of its own rather than [`crate::live`]'s: both are foundation.)
#[derive(Clone)]
pub struct ServerCert(Arc<RwLock<Arc<CertifiedKey>>>);

impl std::fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCert")
            .field("chain_len", &self.current().cert.len())
            .finish_non_exhaustive()
    }
}

impl ServerCert {
    pub fn new(key: Arc<CertifiedKey>) -> ServerCert {
        ServerCert(Arc::new(RwLock::new(key)))
    }

    /// The certificate the next handshake presents.
    fn current(&self) -> Arc<CertifiedKey> {
        // A panic while swapping cannot leave a half-written Arc: the old one stays.
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// From now on, handshakes present `key`; connections already up keep theirs.
    pub fn replace(&self, key: Arc<CertifiedKey>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = key;
    }

    /// The rustls server config of the API: TLS 1.2 and 1.3 (rustls' safe defaults), no
    /// client certificates, ALPN `http/1.1` only (the server speaks nothing else), and this
    /// holder's certificate at each handshake.
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the aws-lc-rs provider supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(self.clone()));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = dir.path().join("api.pem");
        let key = dir.path().join("api.key");
        let e = load(&cert, &key).expect_err("no files");
        assert!(
            matches!(&e, TlsError::Read { path, .. } if *path == cert),
            "{e}"
        );
        assert!(e.to_string().contains("api.pem"), "{e}");
    }

    #[test]
    fn files_without_pem_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cert = dir.path().join("api.pem");
        let key = dir.path().join("api.key");
        std::fs::write(&cert, "not a certificate\n").expect("write");
        std::fs::write(&key, "not a key\n").expect("write");
        let e = load(&cert, &key).expect_err("no PEM");
        assert_eq!(
            e.to_string(),
            format!("{} holds no PEM certificate", cert.display())
        );
    }
}
