//! `[[api.oidc_issuers]]`: the OIDC issuers whose ID tokens (GitHub Actions, GitLab CI) may
//! authenticate principals, and how their tokens are checked.

use std::collections::HashSet;

use serde::Deserialize;
use toml::Spanned;

use crate::diagnostic::{FileError, Source};

/// A JWS algorithm an issuer's tokens may be signed with. Only asymmetric ones exist here:
/// `none` and the HMAC family (`HS*`) would let anyone who knows the audience mint tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JwsAlgorithm {
    Rs256,
    Es256,
}

impl JwsAlgorithm {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RS256" => Some(JwsAlgorithm::Rs256),
            "ES256" => Some(JwsAlgorithm::Es256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JwsAlgorithm::Rs256 => "RS256",
            JwsAlgorithm::Es256 => "ES256",
        }
    }
}

/// One trusted issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIssuer {
    /// What principals call it (`oidc = { issuer = "github", … }`).
    pub name: String,
    /// The `iss` its tokens carry, exactly; also the base of discovery.
    pub issuer: String,
    /// The `aud` a token must carry (one of, when it is a list).
    pub audience: String,
    /// The JWKS address; `None` reads `jwks_uri` from the issuer's discovery document.
    pub jwks_url: Option<String>,
    /// The allow-list of `alg`s.
    pub algorithms: Vec<JwsAlgorithm>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway_seconds: u64,
    /// At most one JWKS fetch per this many seconds on an unknown key id (or after a failed
    /// fetch), so tokens with forged key ids cannot make us hammer the issuer.
    pub refetch_interval_seconds: u64,
}

impl OidcIssuer {
    /// Where the discovery document is.
    pub fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        )
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOidcIssuer {
    name: Spanned<String>,
    issuer: Spanned<String>,
    audience: Spanned<String>,
    #[serde(default)]
    jwks_url: Option<Spanned<String>>,
    #[serde(default)]
    algorithms: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    leeway_seconds: Option<Spanned<u64>>,
    #[serde(default)]
    refetch_interval_seconds: Option<Spanned<u64>>,
}

/// An `https://` address, or `http://` to the loopback interface (a test issuer).
pub(super) fn check_url(s: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("`{s}` is not a URL: {e}"))?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "`{s}` must be an https:// address (http:// only to 127.0.0.1 or localhost)"
        )),
    }
}

pub(super) fn resolve_issuers(
    src: &Source<'_>,
    raw: Vec<RawOidcIssuer>,
) -> Result<Vec<OidcIssuer>, FileError> {
    let field = |f: &str| format!("api.oidc_issuers.{f}");
    let mut names = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for r in raw {
        let name = r.name.get_ref().clone();
        if name.trim().is_empty() || name.len() > 64 {
            return Err(src.error_for(r.name.span(), &field("name"), "must be 1 to 64 characters"));
        }
        if !names.insert(name.clone()) {
            return Err(src.error_for(
                r.name.span(),
                &field("name"),
                format!("issuer `{name}` is defined twice"),
            ));
        }
        check_url(r.issuer.get_ref())
            .map_err(|m| src.error_for(r.issuer.span(), &field("issuer"), m))?;
        if r.audience.get_ref().trim().is_empty() {
            return Err(src.error_for(r.audience.span(), &field("audience"), "must not be empty"));
        }
        if let Some(u) = &r.jwks_url {
            check_url(u.get_ref()).map_err(|m| src.error_for(u.span(), &field("jwks_url"), m))?;
        }
        let algorithms = match &r.algorithms {
            None => vec![JwsAlgorithm::Rs256, JwsAlgorithm::Es256],
            Some(list) if list.get_ref().is_empty() => {
                return Err(src.error_for(
                    list.span(),
                    &field("algorithms"),
                    "must name at least one of RS256, ES256",
                ));
            }
            Some(list) => list
                .get_ref()
                .iter()
                .map(|a| {
                    JwsAlgorithm::parse(a.get_ref()).ok_or_else(|| {
                        src.error_for(
                            a.span(),
                            &field("algorithms"),
                            format!(
                                "`{}` is not allowed: only RS256 and ES256 (never `none` or a shared-secret HS* algorithm)",
                                a.get_ref()
                            ),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        let leeway_seconds = match &r.leeway_seconds {
            None => 60,
            Some(l) if *l.get_ref() > 600 => {
                return Err(src.error_for(
                    l.span(),
                    &field("leeway_seconds"),
                    "must be at most 600",
                ));
            }
            Some(l) => *l.get_ref(),
        };
        let refetch_interval_seconds = match &r.refetch_interval_seconds {
            None => 30,
            Some(i) if !(1..=3600).contains(i.get_ref()) => {
                return Err(src.error_for(
                    i.span(),
                    &field("refetch_interval_seconds"),
                    "must be 1 to 3600",
                ));
            }
            Some(i) => *i.get_ref(),
        };
        out.push(OidcIssuer {
            name,
            issuer: r.issuer.into_inner(),
            audience: r.audience.into_inner(),
            jwks_url: r.jwks_url.map(Spanned::into_inner),
            algorithms,
            leeway_seconds,
            refetch_interval_seconds,
        });
    }
    Ok(out)
}
