//! `[[api.principals]]`: names, roles, projects, token hashes and OIDC claims.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::{OidcIssuer, RawOidcMatch, RawPrincipal};
use crate::auth::{ClaimPattern, OidcMatch, Principal, Role, TokenHash};
use crate::diagnostic::{FileError, Source};
use crate::model::ProjectName;

pub(super) fn resolve_principals(
    src: &Source<'_>,
    raw: Vec<RawPrincipal>,
    issuers: &[OidcIssuer],
    resolve: &dyn Fn(&Path) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Principal>, FileError> {
    let mut names = HashSet::new();
    let mut hashes = HashSet::new();
    let mut claim_sets = HashSet::new();
    let mut out = Vec::with_capacity(raw.len());
    for p in raw {
        let name_span = p.name.span();
        let name = p.name.into_inner();
        let field = |f: &str| format!("api.principals.{f}");
        if name.trim().is_empty() || name.len() > 64 {
            return Err(src.error_for(name_span, &field("name"), "must be 1 to 64 characters"));
        }
        if !names.insert(name.clone()) {
            return Err(src.error_for(
                name_span,
                &field("name"),
                format!("principal `{name}` is defined twice"),
            ));
        }
        let projects_span = p.projects.as_ref().map_or(name_span.clone(), Spanned::span);
        let projects: BTreeSet<ProjectName> = p
            .projects
            .map(Spanned::into_inner)
            .unwrap_or_default()
            .into_iter()
            .collect();
        match p.role {
            Role::Lessee if projects.is_empty() => {
                return Err(src.error_for(
                    name_span,
                    &field("projects"),
                    format!("lessee `{name}` must list the projects it may lease"),
                ));
            }
            Role::Operator | Role::Viewer if !projects.is_empty() => {
                return Err(src.error_for(
                    projects_span,
                    &field("projects"),
                    "projects only apply to lessees; operators and viewers see every project",
                ));
            }
            _ => {}
        }
        let oidc = p
            .oidc
            .map(|m| resolve_match(src, m, issuers, &name))
            .transpose()?;
        if let Some(m) = &oidc
            && !claim_sets.insert((m.issuer.clone(), m.claims.clone()))
        {
            // Identical patterns would make every token of theirs ambiguous (refused at
            // request time); overlapping globs are still possible and are refused then.
            return Err(src.error_for(
                name_span,
                &field("oidc.claims"),
                format!("principal `{name}` has the same issuer and claims as another principal"),
            ));
        }
        let owner_claim = match p.owner_claim {
            Some(c) if oidc.is_none() => {
                return Err(src.error_for(
                    c.span(),
                    &field("owner_claim"),
                    "owner_claim needs `oidc` (it names a claim of the ID token)",
                ));
            }
            Some(c) if c.get_ref().trim().is_empty() => {
                return Err(src.error_for(c.span(), &field("owner_claim"), "must not be empty"));
            }
            c => c.map(Spanned::into_inner),
        };
        let tokens = match (p.token_sha256, p.tokens_sha256, p.token_env, p.token_file) {
            // Known by its ID tokens only.
            (None, None, None, None) if oidc.is_some() => vec![],
            (Some(h), None, None, None) => vec![
                TokenHash::from_hex(h.get_ref())
                    .map_err(|m| src.error_for(h.span(), &field("token_sha256"), m))?,
            ],
            // Several hashes let an old and a new token overlap during a rotation.
            (None, Some(list), None, None) if !list.get_ref().is_empty() => list
                .into_inner()
                .into_iter()
                .map(|h| {
                    TokenHash::from_hex(h.get_ref())
                        .map_err(|m| src.error_for(h.span(), &field("tokens_sha256"), m))
                })
                .collect::<Result<Vec<_>, _>>()?,
            (None, None, Some(var), None) => vec![match env(var.get_ref()) {
                Some(tok) if !tok.trim().is_empty() => TokenHash::of(tok.trim()),
                _ => {
                    return Err(src.error_for(
                        var.span(),
                        &field("token_env"),
                        format!("environment variable `{}` is not set", var.get_ref()),
                    ));
                }
            }],
            (None, None, None, Some(file)) => {
                let path = resolve(file.get_ref());
                let tok = std::fs::read_to_string(&path).map_err(|e| {
                    src.error_for(
                        file.span(),
                        &field("token_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                if tok.trim().is_empty() {
                    return Err(src.error_for(
                        file.span(),
                        &field("token_file"),
                        format!("{} is empty", path.display()),
                    ));
                }
                vec![TokenHash::of(tok.trim())]
            }
            _ => {
                return Err(src.error_for(
                    name_span,
                    &field("token_sha256"),
                    format!("principal `{name}` needs exactly one of token_sha256, tokens_sha256 (not empty), token_env or token_file, or `oidc`, or both"),
                ));
            }
        };
        for hash in &tokens {
            if !hashes.insert(hash.clone()) {
                return Err(src.error_for(
                    name_span,
                    &field("token_sha256"),
                    format!(
                        "principal `{name}` shares a token with another principal or lists it twice"
                    ),
                ));
            }
        }
        out.push(Principal {
            name,
            role: p.role,
            projects,
            tokens,
            oidc,
            owner_claim,
            default_owner: None,
        });
    }
    Ok(out)
}

/// `oidc = { issuer = "…", claims = { … } }`: a known issuer and at least one string claim.
fn resolve_match(
    src: &Source<'_>,
    m: Spanned<RawOidcMatch>,
    issuers: &[OidcIssuer],
    name: &str,
) -> Result<OidcMatch, FileError> {
    let m = m.into_inner();
    let issuer = m.issuer.get_ref();
    if !issuers.iter().any(|i| &i.name == issuer) {
        let known: Vec<&str> = issuers.iter().map(|i| i.name.as_str()).collect();
        return Err(src.error_for(
            m.issuer.span(),
            "api.principals.oidc.issuer",
            format!(
                "principal `{name}` names issuer `{issuer}`, which no [[api.oidc_issuers]] entry defines (known: {})",
                if known.is_empty() { "none".to_owned() } else { known.join(", ") }
            ),
        ));
    }
    if m.claims.get_ref().is_empty() {
        // Without a claim every token of the issuer (any repository on github.com) would do.
        return Err(src.error_for(
            m.claims.span(),
            "api.principals.oidc.claims",
            format!("principal `{name}` must match at least one claim (such as `repository`)"),
        ));
    }
    let mut claims = BTreeMap::new();
    for (k, v) in m.claims.into_inner() {
        if k.trim().is_empty() || v.get_ref().is_empty() {
            return Err(src.error_for(
                v.span(),
                "api.principals.oidc.claims",
                "claim names and values must not be empty",
            ));
        }
        claims.insert(k, ClaimPattern(v.into_inner()));
    }
    Ok(OidcMatch {
        issuer: m.issuer.into_inner(),
        claims,
    })
}
