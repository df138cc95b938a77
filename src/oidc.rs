//! OIDC ID tokens as API credentials (GitHub Actions, GitLab CI): a bearer token shaped like a
//! JWT is checked against the `[[api.oidc_issuers]]` entry its `iss` names — signature (RS256
//! or ES256, by the issuer's JWKS), audience, expiry — and its string claims are handed to
//! [`crate::auth::Principals::for_claims`], which picks the principal.
//!
//! Each issuer's key set is fetched lazily (a daemon starts while its issuers are down),
//! cached, and fetched again when a token names a key id it lacks (the issuer rotated), at
//! most once per `refetch_interval_seconds`, so tokens with forged key ids cannot make us
//! hammer the issuer.
//!
//! Architecture Invariant: no error, log line or `Debug` output carries a token; only the
//! reason it was refused. No lock is held while a key set is fetched, except the per-issuer
//! one that lets a single fetch run at a time (bounded by the 5 s timeout); tokens whose keys
//! are cached never wait on it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::clock::Clock;
use crate::config::{JwsAlgorithm, OidcIssuer};
use crate::live::Live;

/// How long a discovery or JWKS request may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Longer bearer tokens are refused before any parsing (GitHub's are about 1.5 KiB).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OidcError {
    #[error("malformed ID token: {0}")]
    Malformed(&'static str),
    #[error("the token's issuer is not one of the configured OIDC issuers")]
    UnknownIssuer,
    #[error("the token's algorithm is not allowed for issuer `{0}`")]
    AlgorithmNotAllowed(String),
    #[error("the token's key id is not in the key set of issuer `{0}`")]
    UnknownKey(String),
    #[error("the key set of issuer `{0}` cannot be fetched; try again later")]
    KeysUnavailable(String),
    #[error("the token's algorithm does not fit its key")]
    KeyMismatch,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token's issuer is not `{0}`")]
    WrongIssuer(String),
    #[error("the token's audience does not include `{0}`")]
    WrongAudience(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued in the future")]
    IssuedInFuture,
}

/// The checked result: which issuer (its configured name) and the token's string claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub issuer: String,
    pub claims: HashMap<String, String>,
}

/// Whether a bearer token has a JWT's shape: three non-empty base64url parts.
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A public key from a JWKS.
#[derive(Clone, PartialEq, Eq)]
pub enum Key {
    /// RSA modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed P-256 point, `0x04 || x || y`.
    P256 { point: Vec<u8> },
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Key::Rsa { .. } => "Key::Rsa",
            Key::P256 { .. } => "Key::P256",
        })
    }
}

/// A key and the algorithm its JWK pins, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Jwk {
    key: Key,
    alg: Option<String>,
}

/// A split, decoded token.
struct Jwt<'t> {
    alg: String,
    kid: Option<String>,
    payload: Map<String, Value>,
    signing_input: &'t str,
    signature: Vec<u8>,
}

fn b64(part: &str, what: &'static str) -> Result<Vec<u8>, OidcError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| OidcError::Malformed(what))
}

impl<'t> Jwt<'t> {
    fn parse(token: &'t str) -> Result<Self, OidcError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(OidcError::Malformed("longer than 16 KiB"));
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(OidcError::Malformed("not three dot-separated parts"));
        };
        let header: Map<String, Value> =
            serde_json::from_slice(&b64(h, "the header is not base64url")?)
                .map_err(|_| OidcError::Malformed("the header is not a JSON object"))?;
        let payload: Map<String, Value> =
            serde_json::from_slice(&b64(p, "the payload is not base64url")?)
                .map_err(|_| OidcError::Malformed("the payload is not a JSON object"))?;
        // Critical extensions we do not understand must make the token invalid (RFC 7515 §4.1.11).
        if header.contains_key("crit") {
            return Err(OidcError::Malformed(
                "critical header extensions are not supported",
            ));
        }
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .ok_or(OidcError::Malformed("the header has no `alg`"))?
            .to_owned();
        let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
        Ok(Jwt {
            alg,
            kid,
            payload,
            signing_input: &token[..h.len() + 1 + p.len()],
            signature: b64(s, "the signature is not base64url")?,
        })
    }
}

/// Checks `signature` over `input` with `key` under `alg`.
fn verify_signature(
    alg: JwsAlgorithm,
    jwk: &Jwk,
    input: &[u8],
    signature: &[u8],
) -> Result<(), OidcError> {
    use ring::signature::{
        ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents,
        UnparsedPublicKey,
    };
    if jwk.alg.as_deref().is_some_and(|a| a != alg.as_str()) {
        return Err(OidcError::KeyMismatch);
    }
    let ok = match (alg, &jwk.key) {
        (JwsAlgorithm::Rs256, Key::Rsa { n, e }) => RsaPublicKeyComponents { n, e }
            .verify(&RSA_PKCS1_2048_8192_SHA256, input, signature)
            .is_ok(),
        (JwsAlgorithm::Es256, Key::P256 { point }) => {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(input, signature)
                .is_ok()
        }
        _ => return Err(OidcError::KeyMismatch),
    };
    if ok {
        Ok(())
    } else {
        Err(OidcError::BadSignature)
    }
}

/// A NumericDate claim as whole seconds; fractions are allowed by RFC 7519 and truncated.
fn seconds(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| v.as_f64().map(|f| f as i64))
}

/// Checks `iss`, `aud`, `exp`, `nbf` and `iat` of a payload whose signature verified, at
/// `now`; returns its string claims. Pure: the clock is the caller's.
fn check_claims(
    payload: &Map<String, Value>,
    issuer: &OidcIssuer,
    now: DateTime<Utc>,
) -> Result<HashMap<String, String>, OidcError> {
    if payload.get("iss").and_then(Value::as_str) != Some(issuer.issuer.as_str()) {
        return Err(OidcError::WrongIssuer(issuer.issuer.clone()));
    }
    let aud_ok = match payload.get("aud") {
        Some(Value::String(a)) => *a == issuer.audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(&issuer.audience)),
        _ => false,
    };
    if !aud_ok {
        return Err(OidcError::WrongAudience(issuer.audience.clone()));
    }
    let now = now.timestamp();
    let leeway = i64::try_from(issuer.leeway_seconds).unwrap_or(i64::MAX);
    let exp = payload
        .get("exp")
        .and_then(seconds)
        .ok_or(OidcError::Malformed("the payload has no numeric `exp`"))?;
    if now >= exp.saturating_add(leeway) {
        return Err(OidcError::Expired);
    }
    if let Some(nbf) = payload.get("nbf").and_then(seconds)
        && now.saturating_add(leeway) < nbf
    {
        return Err(OidcError::NotYetValid);
    }
    if let Some(iat) = payload.get("iat").and_then(seconds)
        && iat > now.saturating_add(leeway)
    {
        return Err(OidcError::IssuedInFuture);
    }
    Ok(payload
        .iter()
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
        .collect())
}

/// The usable signing keys of a JWKS document, by key id. Keys without a `kid`, for
/// encryption, or of another type or curve are left out.
fn parse_jwks(doc: &Value) -> HashMap<String, Jwk> {
    let field = |k: &Value, name: &str| {
        k.get(name)
            .and_then(Value::as_str)
            .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
    };
    let mut out = HashMap::new();
    for k in doc
        .get("keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(kid) = k.get("kid").and_then(Value::as_str) else {
            continue;
        };
        if k.get("use")
            .and_then(Value::as_str)
            .is_some_and(|u| u != "sig")
        {
            continue;
        }
        let key = match k.get("kty").and_then(Value::as_str) {
            Some("RSA") => match (field(k, "n"), field(k, "e")) {
                (Some(n), Some(e)) => Key::Rsa { n, e },
                _ => continue,
            },
            Some("EC") if k.get("crv").and_then(Value::as_str) == Some("P-256") => {
                match (field(k, "x"), field(k, "y")) {
                    (Some(x), Some(y)) if x.len() == 32 && y.len() == 32 => {
                        let mut point = vec![0x04];
                        point.extend(x);
                        point.extend(y);
                        Key::P256 { point }
                    }
                    _ => continue,
                }
            }
            _ => continue,
        };
        let alg = k.get("alg").and_then(Value::as_str).map(str::to_owned);
        out.insert(kid.to_owned(), Jwk { key, alg });
    }
    out
}

/// One issuer: its settings and its cached keys.
struct Issuer {
    config: OidcIssuer,
    cache: Mutex<KeyCache>,
    /// Held by the one request fetching the key set, so a burst of unknown key ids makes one
    /// fetch, not one each. Never held by a request whose key is cached.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, Jwk>,
    /// From discovery; forgotten when a fetch fails, so discovery runs again.
    jwks_uri: Option<String>,
    /// The last fetch attempt (monotonic: a rate limit, not a timestamp of record).
    last_attempt: Option<Instant>,
    last_failed: bool,
}

impl Issuer {
    fn new(config: OidcIssuer) -> Self {
        Issuer {
            config,
            cache: Mutex::new(KeyCache::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, KeyCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cached(&self, kid: &str) -> Option<Jwk> {
        self.cache().keys.get(kid).cloned()
    }

    /// The key `kid`, from the cache or, at most once per refetch interval, a fresh fetch.
    async fn key(&self, http: &reqwest::Client, kid: &str) -> Result<Jwk, OidcError> {
        if let Some(k) = self.cached(kid) {
            return Ok(k);
        }
        let _one_fetch = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        if let Some(k) = self.cached(kid) {
            return Ok(k);
        }
        let (uri, jwks_url) = {
            let mut c = self.cache();
            let interval = Duration::from_secs(self.config.refetch_interval_seconds);
            if let Some(t) = c.last_attempt
                && t.elapsed() < interval
            {
                return Err(if c.last_failed {
                    OidcError::KeysUnavailable(self.config.name.clone())
                } else {
                    OidcError::UnknownKey(self.config.name.clone())
                });
            }
            c.last_attempt = Some(Instant::now());
            (c.jwks_uri.clone(), self.config.jwks_url.clone())
        };
        let fetched = self.fetch(http, jwks_url.or(uri)).await;
        let mut c = self.cache();
        match fetched {
            Ok((uri, keys)) => {
                tracing::debug!(issuer = %self.config.name, keys = keys.len(), "fetched the issuer's key set");
                c.keys = keys;
                c.jwks_uri = Some(uri);
                c.last_failed = false;
            }
            Err(e) => {
                tracing::warn!(issuer = %self.config.name, error = %e, "cannot fetch the OIDC issuer's key set");
                c.jwks_uri = None;
                c.last_failed = true;
                // Keys fetched before stay usable: an issuer's outage must not lock CI out.
                return c
                    .keys
                    .get(kid)
                    .cloned()
                    .ok_or_else(|| OidcError::KeysUnavailable(self.config.name.clone()));
            }
        }
        c.keys
            .get(kid)
            .cloned()
            .ok_or_else(|| OidcError::UnknownKey(self.config.name.clone()))
    }

    /// Discovery (unless `jwks_url` is known) and the key set.
    async fn fetch(
        &self,
        http: &reqwest::Client,
        jwks_url: Option<String>,
    ) -> Result<(String, HashMap<String, Jwk>), String> {
        let get = |url: String| async move {
            let resp = http
                .get(&url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| format!("{url}: {}", crate::error_chain(&e)))?;
            resp.json::<Value>()
                .await
                .map_err(|e| format!("{url}: not JSON: {e}"))
        };
        let jwks_url = match jwks_url {
            Some(u) => u,
            None => discovered_jwks_uri(
                &get(self.config.discovery_url()).await?,
                &self.config.issuer,
            )?,
        };
        let keys = parse_jwks(&get(jwks_url.clone()).await?);
        Ok((jwks_url, keys))
    }
}

/// The key set's address from a discovery document, which must name the configured issuer
/// exactly (OpenID Connect Discovery 1.0, section 4.3): a document served for another issuer
/// (a proxy, a misrouted host) must not supply the keys that tokens of this one are checked
/// against.
fn discovered_jwks_uri(doc: &Value, issuer: &str) -> Result<String, String> {
    match doc.get("issuer").and_then(Value::as_str) {
        Some(named) if named == issuer => {}
        Some(named) => {
            return Err(format!(
                "the discovery document names issuer `{named}`, not `{issuer}`"
            ));
        }
        None => return Err("the discovery document has no `issuer`".to_owned()),
    }
    doc.get("jwks_uri")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| "the discovery document has no `jwks_uri`".to_owned())
}

/// The configured issuers and their key caches; cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Oidc {
    issuers: Live<Vec<Arc<Issuer>>>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .issuers
            .get()
            .iter()
            .map(|i| i.config.name.clone())
            .collect();
        f.debug_struct("Oidc").field("issuers", &names).finish()
    }
}

impl Oidc {
    pub fn new(issuers: &[OidcIssuer], clock: Arc<dyn Clock>) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .build()?;
        Ok(Oidc {
            issuers: Live::new(
                issuers
                    .iter()
                    .cloned()
                    .map(Issuer::new)
                    .map(Arc::new)
                    .collect(),
            ),
            http,
            clock,
        })
    }

    /// Takes a reloaded config's issuers; an issuer whose settings did not change keeps its
    /// cached keys.
    pub fn replace(&self, issuers: &[OidcIssuer]) {
        let old = self.issuers.get();
        let next = issuers
            .iter()
            .map(|cfg| {
                old.iter()
                    .find(|i| i.config == *cfg)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Issuer::new(cfg.clone())))
            })
            .collect();
        self.issuers.set(Arc::new(next));
    }

    /// Verifies an ID token: its issuer is configured, its `alg` allowed, its signature good by
    /// the issuer's key, and its audience and times right now.
    pub async fn verify(&self, token: &str) -> Result<Verified, OidcError> {
        let jwt = Jwt::parse(token)?;
        let iss = jwt
            .payload
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(OidcError::Malformed("the payload has no `iss`"))?;
        let issuer = self
            .issuers
            .get()
            .iter()
            .find(|i| i.config.issuer == iss)
            .cloned()
            .ok_or(OidcError::UnknownIssuer)?;
        let name = &issuer.config.name;
        let alg = JwsAlgorithm::parse(&jwt.alg)
            .filter(|a| issuer.config.algorithms.contains(a))
            .ok_or_else(|| OidcError::AlgorithmNotAllowed(name.clone()))?;
        let kid = jwt
            .kid
            .as_deref()
            .ok_or(OidcError::Malformed("the header has no `kid`"))?;
        let key = issuer.key(&self.http, kid).await?;
        verify_signature(alg, &key, jwt.signing_input.as_bytes(), &jwt.signature)?;
        let claims = check_claims(&jwt.payload, &issuer.config, self.clock.now())?;
        Ok(Verified {
            issuer: name.clone(),
            claims,
        })
    }

    /// Seeds an issuer's cache, as if fetched just now (unit tests, no network).
    #[cfg(test)]
    fn seed(&self, issuer: &str, kid: &str, key: Key) {
        if let Some(i) = self.issuers.get().iter().find(|i| i.config.name == issuer) {
            let mut c = i.cache();
            c.keys.insert(kid.to_owned(), Jwk { key, alg: None });
            c.last_attempt = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests;
