//! API principals, their roles, bearer-token lookup, and matching the claims of a verified
//! OIDC ID token to a principal.
//!
//! Architecture Invariant: tokens exist in clear only on their way in (config load, request
//! header) and are hashed at once; no type here can print one. Nothing here verifies a
//! signature or fetches keys: [`crate::oidc`] does, and hands over claims it has checked.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::ProjectName;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May lease in its named projects, and renew, heartbeat or release its own leases.
    Lessee,
    /// May do everything, on every lease.
    Operator,
    /// May read everything, change nothing.
    Viewer,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Lessee => "lessee",
            Role::Operator => "operator",
            Role::Viewer => "viewer",
        })
    }
}

/// SHA-256 of a bearer token.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    pub fn from_hex(s: &str) -> Result<Self, String> {
        let bytes = hex::decode(s.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                "expected 64 hex digits (the SHA-256 of the token, see `ephemera token hash`)"
                    .to_owned()
            })?;
        Ok(TokenHash(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

/// Who is calling the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub role: Role,
    /// For lessees: the projects they may lease in and see. Empty for other roles.
    pub projects: BTreeSet<ProjectName>,
    /// Every token hash this principal accepts: more than one while a rotation overlaps.
    /// Empty for a principal known only by its OIDC claims.
    pub tokens: Vec<TokenHash>,
    /// The ID tokens this principal is recognised by, if any.
    pub oidc: Option<OidcMatch>,
    /// The claim whose value becomes [`Principal::default_owner`] (GitHub `actor`, GitLab
    /// `user_login`).
    pub owner_claim: Option<String>,
    /// The owner of leases acquired without one: the `owner_claim` of the ID token this
    /// request came with. Always `None` for static tokens and in the configured principal.
    pub default_owner: Option<String>,
}

/// An issuer (by its configured name) and the claims an ID token of it must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcMatch {
    pub issuer: String,
    /// Every claim must be present as a string and match; never empty.
    pub claims: BTreeMap<String, ClaimPattern>,
}

impl OidcMatch {
    pub fn matches(&self, claims: &HashMap<String, String>) -> bool {
        self.claims
            .iter()
            .all(|(k, pat)| claims.get(k).is_some_and(|v| pat.matches(v)))
    }
}

/// A claim value to match: exact, or with `*` matching any run of characters (`/` too).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClaimPattern(pub String);

impl ClaimPattern {
    pub fn matches(&self, value: &str) -> bool {
        glob_match(&self.0, value)
    }
}

/// `*` matches any run of characters, including none and `/`; everything else matches itself.
/// Iterative with one backtrack point, so a pattern with many stars stays linear-ish (no
/// exponential blow-up on a hostile claim value).
pub fn glob_match(pattern: &str, value: &str) -> bool {
    let (p, v): (Vec<char>, Vec<char>) = (pattern.chars().collect(), value.chars().collect());
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            // Let the last star swallow one more character and retry from there.
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Why verified claims name no principal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("no principal matches the token's claims")]
    NoMatch,
    /// Overlapping claim patterns in the config: refuse rather than pick one.
    #[error("the token's claims match several principals ({}); the config must make them distinct", .0.join(", "))]
    Ambiguous(Vec<String>),
}

impl Principal {
    pub fn can_write(&self) -> bool {
        matches!(self.role, Role::Lessee | Role::Operator)
    }

    /// Whether this principal may see leases (and resources, findings, spend) of `project`.
    pub fn can_see(&self, project: &str) -> bool {
        match self.role {
            Role::Operator | Role::Viewer => true,
            Role::Lessee => self.projects.contains(project),
        }
    }

    /// Whether this principal may follow an on-call reap job started by `starter`: operators
    /// and viewers any, anyone else their own.
    pub fn may_see_job_of(&self, starter: &str) -> bool {
        matches!(self.role, Role::Operator | Role::Viewer) || self.name == starter
    }

    /// Whether this principal may change a lease acquired by `holder`.
    pub fn may_change_lease_of(&self, holder: &str) -> bool {
        self.role == Role::Operator || (self.role == Role::Lessee && self.name == holder)
    }
}

/// Token → principal lookup, and the principals recognised by ID tokens, built once from the
/// config.
#[derive(Debug, Clone, Default)]
pub struct Principals {
    by_token: HashMap<TokenHash, Principal>,
    by_claims: Vec<Principal>,
}

impl Principals {
    pub fn new(list: impl IntoIterator<Item = Principal>) -> Self {
        let list: Vec<Principal> = list.into_iter().collect();
        Principals {
            by_token: list
                .iter()
                .flat_map(|p| p.tokens.iter().map(move |t| (t.clone(), p.clone())))
                .collect(),
            by_claims: list.into_iter().filter(|p| p.oidc.is_some()).collect(),
        }
    }

    pub fn authenticate(&self, bearer_token: &str) -> Option<&Principal> {
        self.by_token.get(&TokenHash::of(bearer_token))
    }

    /// The one principal of `issuer` (its configured name) whose claim patterns all match
    /// `claims` (the string claims of a verified ID token), carrying its owner claim's value
    /// as the default owner.
    pub fn for_claims(
        &self,
        issuer: &str,
        claims: &HashMap<String, String>,
    ) -> Result<Principal, ClaimsError> {
        let found: Vec<&Principal> = self
            .by_claims
            .iter()
            .filter(|p| {
                p.oidc
                    .as_ref()
                    .is_some_and(|m| m.issuer == issuer && m.matches(claims))
            })
            .collect();
        match found.as_slice() {
            [] => Err(ClaimsError::NoMatch),
            [one] => {
                let mut p = (*one).clone();
                p.default_owner = p
                    .owner_claim
                    .as_ref()
                    .and_then(|c| claims.get(c))
                    .filter(|v| !v.trim().is_empty())
                    .cloned();
                Ok(p)
            }
            many => Err(ClaimsError::Ambiguous(
                many.iter().map(|p| p.name.clone()).collect(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(name: &str, role: Role, projects: &[&str]) -> Principal {
        Principal {
            name: name.into(),
            role,
            projects: projects
                .iter()
                .map(|p| ProjectName::parse(p).expect("valid fixture"))
                .collect(),
            tokens: vec![TokenHash::of(name)],
            oidc: None,
            owner_claim: None,
            default_owner: None,
        }
    }

    #[test]
    fn globs() {
        // (pattern, value, matches)
        let table = [
            ("acme/web", "acme/web", true),
            ("acme/web", "acme/web2", false),
            ("acme/*", "acme/web", true),
            ("acme/*", "acme/", true),
            ("acme/*", "acme", false),
            ("refs/heads/*", "refs/heads/feature/x", true),
            ("refs/heads/*", "refs/tags/v1", false),
            ("*", "", true),
            ("*", "anything/at all", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("*web", "acme/web", true),
            ("*web", "acme/webx", false),
            ("a**b", "ab", true),
            ("", "", true),
            ("", "x", false),
            ("préview-*", "préview-1", true),
        ];
        for (pat, value, want) in table {
            assert_eq!(glob_match(pat, value), want, "{pat:?} vs {value:?}");
        }
        // A hostile value against many stars ends quickly (no exponential backtracking).
        let value = "a".repeat(2000);
        assert!(!glob_match(&format!("{}b", "*a".repeat(30)), &value));
    }

    fn oidc_principal(name: &str, claims: &[(&str, &str)]) -> Principal {
        Principal {
            tokens: vec![],
            oidc: Some(OidcMatch {
                issuer: "github".into(),
                claims: claims
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), ClaimPattern((*v).to_owned())))
                    .collect(),
            }),
            owner_claim: Some("actor".into()),
            ..principal(name, Role::Lessee, &["web"])
        }
    }

    #[test]
    fn claims_pick_exactly_one_principal() {
        let ps = Principals::new([
            oidc_principal(
                "gh-web",
                &[("repository", "acme/web"), ("ref", "refs/heads/*")],
            ),
            oidc_principal("gh-data", &[("repository", "acme/data")]),
            oidc_principal(
                "gh-any-acme",
                &[("repository", "acme/*"), ("environment", "prod")],
            ),
        ]);
        let claims = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let web = claims(&[
            ("repository", "acme/web"),
            ("ref", "refs/heads/main"),
            ("actor", "octocat"),
        ]);
        let p = ps.for_claims("github", &web).expect("gh-web");
        assert_eq!(p.name, "gh-web");
        assert_eq!(p.default_owner.as_deref(), Some("octocat"));
        // Another issuer's token with the same claims is not this principal's.
        assert_eq!(ps.for_claims("gitlab", &web), Err(ClaimsError::NoMatch));
        // A claim missing, or not matching, is no match.
        let no_ref = claims(&[("repository", "acme/web")]);
        assert_eq!(ps.for_claims("github", &no_ref), Err(ClaimsError::NoMatch));
        let tag = claims(&[("repository", "acme/web"), ("ref", "refs/tags/v1")]);
        assert_eq!(ps.for_claims("github", &tag), Err(ClaimsError::NoMatch));
        // No owner claim: no default owner.
        let data = ps
            .for_claims("github", &claims(&[("repository", "acme/data")]))
            .expect("gh-data");
        assert_eq!(data.default_owner, None);
        // Two principals match: neither is picked.
        let both = claims(&[
            ("repository", "acme/web"),
            ("ref", "refs/heads/main"),
            ("environment", "prod"),
        ]);
        assert_eq!(
            ps.for_claims("github", &both),
            Err(ClaimsError::Ambiguous(vec![
                "gh-web".into(),
                "gh-any-acme".into()
            ]))
        );
        // OIDC-only principals have no token to authenticate with.
        assert!(ps.authenticate("gh-web").is_none());
    }

    #[test]
    fn role_rules() {
        let web = ProjectName::parse("web").expect("valid");
        let data = ProjectName::parse("data").expect("valid");
        let lessee = principal("ci", Role::Lessee, &["web"]);
        let op = principal("op", Role::Operator, &[]);
        let viewer = principal("v", Role::Viewer, &[]);
        // (who, sees web, sees data, writes, changes ci's lease, changes someone else's)
        let table = [
            (&lessee, true, false, true, true, false),
            (&op, true, true, true, true, true),
            (&viewer, true, true, false, false, false),
        ];
        for (p, web_seen, data_seen, writes, own, other) in table {
            assert_eq!(p.can_see(web.as_str()), web_seen, "{}", p.name);
            assert_eq!(p.can_see(data.as_str()), data_seen, "{}", p.name);
            assert_eq!(p.can_write(), writes, "{}", p.name);
            assert_eq!(p.may_change_lease_of("ci"), own, "{}", p.name);
            assert_eq!(p.may_change_lease_of("someone"), other, "{}", p.name);
        }
    }

    #[test]
    fn tokens_hash_and_never_print() {
        let ps = Principals::new([principal("ci", Role::Lessee, &["web"])]);
        assert_eq!(ps.authenticate("ci").map(|p| p.name.as_str()), Some("ci"));
        assert!(ps.authenticate("CI").is_none());
        let h = TokenHash::of("hunter2");
        assert_eq!(TokenHash::from_hex(&h.to_hex()), Ok(h.clone()));
        assert!(!format!("{h:?}").contains(&h.to_hex()));
        assert!(TokenHash::from_hex("abc").is_err());
    }
}
