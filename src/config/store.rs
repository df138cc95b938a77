//! `[store]`: a SQLite file (`path`) or a PostgreSQL database (`url`, its password from the
//! environment or a file, never from the config itself).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::spans::span_in;
use crate::diagnostic::{FileError, Source};
use crate::store::{PgTarget, StoreLocation};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    path: Option<PathBuf>,
    url: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    #[serde(default = "default_restore_clean_passes")]
    pub(super) restore_clean_passes: u32,
}

fn default_restore_clean_passes() -> u32 {
    3
}

/// Where the store is. The password is read here (the store connects with it for as long
/// as the daemon runs; `Debug` and logs show the target without it).
pub(super) fn resolve_store(
    src: &Source<'_>,
    raw: &Spanned<RawStore>,
    resolve_state: &dyn Fn(&Path) -> PathBuf,
    resolve: &dyn Fn(&Path) -> PathBuf,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<StoreLocation, FileError> {
    // A table's span covers its header only; its keys follow it.
    let span = raw.span().start..src.text.len();
    let at = |needle: &str| span_in(src, span.clone(), needle);
    let s = raw.get_ref();
    let url = match (&s.path, &s.url) {
        (Some(_), Some(_)) => {
            return Err(src.error_for(
                at("url"),
                "store.url",
                "set path (SQLite) or url (PostgreSQL), not both",
            ));
        }
        (None, None) => {
            return Err(src.error_for(
                at("store"),
                "store.path",
                "set path (a SQLite file) or url (a PostgreSQL database)",
            ));
        }
        (Some(path), None) => {
            if let Some(key) = [
                ("password_env", s.password_env.is_some()),
                ("password_file", s.password_file.is_some()),
            ]
            .into_iter()
            .find_map(|(k, set)| set.then_some(k))
            {
                return Err(src.error_for(
                    at(key),
                    &format!("store.{key}"),
                    "a password is for a PostgreSQL url; a SQLite path takes none",
                ));
            }
            return Ok(StoreLocation::Sqlite(resolve_state(path)));
        }
        (None, Some(url)) => url,
    };
    let password = match (&s.password_env, &s.password_file) {
        (Some(_), Some(_)) => {
            return Err(src.error_for(
                at("password_env"),
                "store.password_env",
                "set password_env or password_file, not both",
            ));
        }
        (Some(var), None) => match env(var).filter(|v| !v.is_empty()) {
            Some(p) => Some(p),
            None => {
                return Err(src.error_for(
                    at("password_env"),
                    "store.password_env",
                    format!("environment variable `{var}` is not set"),
                ));
            }
        },
        (None, Some(file)) => {
            let path = resolve(file);
            match std::fs::read_to_string(&path) {
                // One trailing newline is the file's, not the password's.
                Ok(p) if !p.trim().is_empty() => Some(
                    p.strip_suffix('\n')
                        .map(|p| p.strip_suffix('\r').unwrap_or(p))
                        .unwrap_or(&p)
                        .to_owned(),
                ),
                Ok(_) => {
                    return Err(src.error_for(
                        at("password_file"),
                        "store.password_file",
                        format!("{} is empty", path.display()),
                    ));
                }
                Err(e) => {
                    return Err(src.error_for(
                        at("password_file"),
                        "store.password_file",
                        format!("cannot read {}: {e}", path.display()),
                    ));
                }
            }
        }
        (None, None) => None,
    };
    let target = PgTarget::parse(url, password)
        .map_err(|e| src.error_for(at("url"), "store.url", crate::error_chain(&e)))?;
    Ok(StoreLocation::Postgres(Box::new(target)))
}
