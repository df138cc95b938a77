//! `[[api.principals]]`: names, roles, projects and token hashes.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use toml::Spanned;

use super::RawPrincipal;
use crate::auth::{Principal, Role, TokenHash};
use crate::diagnostic::{FileError, Source};
use crate::model::ProjectName;

pub(super) fn resolve_principals(
    src: &Source<'_>,
    raw: Vec<RawPrincipal>,
    resolve: &dyn Fn(&Path) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Principal>, FileError> {
    let mut names = HashSet::new();
    let mut hashes = HashSet::new();
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
        let tokens = match (p.token_sha256, p.tokens_sha256, p.token_env, p.token_file) {
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
                    format!("principal `{name}` needs exactly one of token_sha256, tokens_sha256 (not empty), token_env or token_file"),
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
        });
    }
    Ok(out)
}
