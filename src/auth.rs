//! API principals, their roles, and bearer-token lookup.
//!
//! Architecture Invariant: tokens exist in clear only on their way in (config load, request
//! header) and are hashed at once; no type here can print one.

use std::collections::{BTreeSet, HashMap};
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
    pub tokens: Vec<TokenHash>,
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

/// Token → principal lookup, built once from the config.
#[derive(Debug, Clone, Default)]
pub struct Principals {
    by_token: HashMap<TokenHash, Principal>,
}

impl Principals {
    pub fn new(list: impl IntoIterator<Item = Principal>) -> Self {
        Principals {
            by_token: list
                .into_iter()
                .flat_map(|p| p.tokens.clone().into_iter().map(move |t| (t, p.clone())))
                .collect(),
        }
    }

    pub fn authenticate(&self, bearer_token: &str) -> Option<&Principal> {
        self.by_token.get(&TokenHash::of(bearer_token))
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
        }
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
