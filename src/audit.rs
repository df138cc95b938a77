//! The audit chain's key and its published head.
//!
//! The reaper's audit records are chained with HMAC-SHA256 under a key kept outside the store
//! (`[audit] key_file` or `key_env`), so whoever can write the database file but not read the
//! key cannot rewrite a record and recompute the chain. The head (seq and hash of the last
//! record) is published after every pass (log line, on-call summary) so that a removed tail or
//! an emptied log can be shown against it: `ephemera audit verify --head SEQ:HASH`.
//!
//! Architecture Invariant: the key never leaves this module in clear: `Debug` redacts it, and
//! nothing logs it; the store only asks it for MACs.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hmac::{KeyInit, Mac};
use sha2::Sha256;

/// Where the key comes from (validated by [`crate::config`], read by [`AuditKey::load`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditKeySource {
    /// A file holding the key as hex; the daemon creates it (mode 0600) when it is missing.
    File(PathBuf),
    /// The name of an environment variable holding the key as hex (never the key itself).
    Env(String),
}

impl fmt::Display for AuditKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditKeySource::File(p) => write!(f, "key file {}", p.display()),
            AuditKeySource::Env(v) => write!(f, "environment variable `{v}`"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuditKeyError {
    #[error(
        "no audit key: {source_name} does not exist (the daemon creates it on first start; offline tools never do)"
    )]
    Missing { source_name: String },
    #[error("cannot read the audit key from {source_name}")]
    Read {
        source_name: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the audit key in {source_name} is not valid: {why}")]
    Invalid { source_name: String, why: String },
    #[error("cannot create the audit key file {path}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot draw random bytes for a new audit key: {0}")]
    Random(String),
}

/// The secret the chain's MACs are keyed with: at least 32 bytes.
#[derive(Clone)]
pub struct AuditKey(Vec<u8>);

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

/// Bytes in a generated key.
const KEY_BYTES: usize = 32;

impl AuditKey {
    /// A key from its hex text (surrounding whitespace ignored); at least 32 bytes.
    pub fn from_hex(text: &str) -> Result<AuditKey, String> {
        let bytes = hex::decode(text.trim()).map_err(|_| "not hex".to_owned())?;
        if bytes.len() < KEY_BYTES {
            return Err(format!(
                "{} bytes; at least {KEY_BYTES} are needed (64 hex digits)",
                bytes.len()
            ));
        }
        Ok(AuditKey(bytes))
    }

    /// Reads the key; fails when it is missing (offline tools, and a daemon keyed through the
    /// environment).
    pub fn load(source: &AuditKeySource) -> Result<AuditKey, AuditKeyError> {
        Self::load_with(source, &|name| std::env::var(name).ok())
    }

    /// Like [`AuditKey::load`], with an injected environment.
    pub fn load_with(
        source: &AuditKeySource,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<AuditKey, AuditKeyError> {
        let source_name = source.to_string();
        let text = match source {
            AuditKeySource::Env(var) => env(var).ok_or_else(|| AuditKeyError::Missing {
                source_name: source_name.clone(),
            })?,
            AuditKeySource::File(path) => match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(AuditKeyError::Missing { source_name });
                }
                Err(source) => {
                    return Err(AuditKeyError::Read {
                        source_name,
                        source,
                    });
                }
            },
        };
        AuditKey::from_hex(&text).map_err(|why| AuditKeyError::Invalid { source_name, why })
    }

    /// Reads the key, creating a key file (32 random bytes as hex, mode 0600) when it does not
    /// exist yet. Returns whether it was created, so the daemon can tell the operator loudly.
    pub fn load_or_create(source: &AuditKeySource) -> Result<(AuditKey, bool), AuditKeyError> {
        match (Self::load(source), source) {
            (Err(AuditKeyError::Missing { .. }), AuditKeySource::File(path)) => {
                Ok((Self::create(path)?, true))
            }
            (other, _) => other.map(|k| (k, false)),
        }
    }

    fn create(path: &Path) -> Result<AuditKey, AuditKeyError> {
        let mut bytes = vec![0u8; KEY_BYTES];
        getrandom::fill(&mut bytes).map_err(|e| AuditKeyError::Random(e.to_string()))?;
        let create = |source| AuditKeyError::Create {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(create)?;
        }
        let mut options = std::fs::OpenOptions::new();
        // `create_new`: never overwrite a key another process wrote meanwhile.
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(create)?;
        file.write_all(format!("{}\n", hex::encode(&bytes)).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(create)?;
        Ok(AuditKey(bytes))
    }

    /// HMAC-SHA256 of `data` under this key, as hex.
    pub fn mac_hex(&self, data: &[u8]) -> String {
        let mut mac =
            hmac::Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(data);
        hex::encode(mac.finalize().into_bytes())
    }

    /// A short public name of the key (not the key, and not enough to forge with): the first
    /// 8 bytes of its MAC over a fixed label, so that a verify with the wrong key says so.
    pub fn id(&self) -> String {
        self.mac_hex(b"ephemera audit key id")[..16].to_owned()
    }
}

/// The head of the chain: the last record's seq and hash, as published after each pass and
/// given back to `audit verify --head`. Written `SEQ:HASH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

impl fmt::Display for AuditHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

/// Serialized as the text `audit verify --head` takes, in run summaries and mail alike.
impl serde::Serialize for AuditHead {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for AuditHead {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl FromStr for AuditHead {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let usage = || {
            format!(
                "`{s}` is not a published audit head: expected SEQ:HASH (e.g. 42:9f3c…, 64 hex digits)"
            )
        };
        let (seq, hash) = s.trim().split_once(':').ok_or_else(usage)?;
        let seq: i64 = seq.parse().map_err(|_| usage())?;
        let hash = hash.to_ascii_lowercase();
        if seq < 1 || hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(usage());
        }
        Ok(AuditHead { seq, hash })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 (a short key is still a key to HMAC; our keys are 32+ bytes).
    #[test]
    fn mac_is_hmac_sha256() {
        let key = AuditKey(b"Jefe".to_vec());
        assert_eq!(
            key.mac_hex(b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn key_is_redacted_and_checked() {
        let hex64 = "ab".repeat(32);
        let key = AuditKey::from_hex(&format!("{hex64}\n")).expect("a 32-byte key");
        assert_eq!(format!("{key:?}"), "AuditKey(<redacted>)");
        assert!(!format!("{key:?}").contains("abab"));
        assert!(AuditKey::from_hex("abcd").is_err(), "too short");
        assert!(AuditKey::from_hex(&"zz".repeat(32)).is_err(), "not hex");
        let env = |_: &str| None;
        let err = AuditKey::load_with(&AuditKeySource::Env("EPHEMERA_AUDIT_KEY".into()), &env)
            .expect_err("unset");
        assert!(err.to_string().contains("`EPHEMERA_AUDIT_KEY`"), "{err}");
    }

    /// The daemon's first start creates the key file (0600); the next start reuses it; an
    /// offline tool never creates one.
    #[test]
    fn key_file_is_created_once_with_mode_0600_and_reused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let source = AuditKeySource::File(dir.path().join("state/audit.key"));
        let err = AuditKey::load(&source).expect_err("offline: no key yet");
        assert!(matches!(err, AuditKeyError::Missing { .. }), "{err}");
        assert!(!dir.path().join("state/audit.key").exists());

        let (first, created) = AuditKey::load_or_create(&source).expect("created");
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("state/audit.key"))
                .expect("key file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (again, created) = AuditKey::load_or_create(&source).expect("reused");
        assert!(!created);
        assert_eq!(first.0, again.0);
        assert_eq!(first.0.len(), 32);
        assert_eq!(
            AuditKey::load(&source).expect("offline reads it").0,
            first.0
        );
    }

    #[test]
    fn head_reads_seq_colon_hash() {
        let hash = "0f".repeat(32);
        let head: AuditHead = format!("42:{}", hash.to_uppercase())
            .parse()
            .expect("parses");
        assert_eq!(
            head,
            AuditHead {
                seq: 42,
                hash: hash.clone()
            }
        );
        assert_eq!(head.to_string(), format!("42:{hash}"));
        for bad in ["42", &hash, "x:abc", &format!("0:{hash}"), "3:abcd"] {
            assert!(bad.parse::<AuditHead>().is_err(), "{bad}");
        }
    }
}
