//! Reading `policy/*.toml` under the rules directory, with file:line errors.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::cases::{RawCase, TestCase};
use super::{
    AllowEntry, AllowMatch, DEFAULT_OVERRUN_PERMILLE, Defaults, Policy, ProjectPolicy, Rule,
};
use crate::diagnostic::{FileError, Source};
use crate::model::{Action, HumanDuration, ProjectName, Verdict};

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{path}: cannot read rules")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: no policy files (*.toml) found")]
    Empty(PathBuf),
    #[error(transparent)]
    Invalid(#[from] FileError),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    defaults: Option<Spanned<RawDefaults>>,
    #[serde(default)]
    project: Vec<Spanned<RawProject>>,
    #[serde(default)]
    allow: Vec<Spanned<RawAllow>>,
    #[serde(default)]
    test: Vec<Spanned<RawCase>>,
    /// `[handles]`: handle = "address".
    #[serde(default)]
    handles: Option<Spanned<BTreeMap<String, Spanned<String>>>>,
    #[serde(default)]
    team: Vec<Spanned<RawTeam>>,
    /// `[[images]]`: the approved-image catalog.
    #[serde(default)]
    images: Vec<Spanned<super::images::RawImages>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTeam {
    name: Spanned<String>,
    #[serde(default)]
    mail: Vec<Spanned<String>>,
    #[serde(default)]
    oncall: Vec<Spanned<String>>,
    #[serde(default)]
    projects: Vec<Spanned<ProjectName>>,
    #[serde(default)]
    members: Vec<Spanned<String>>,
}

/// What `[defaults] unknown_owners` says to do with an owner nobody can be reached by.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum UnknownOwners {
    Accept,
    Refuse,
}

/// An owner must name one thing: a name both a handle and a team is refused.
fn both_handle_and_team(src: &Source<'_>, span: std::ops::Range<usize>, name: &str) -> FileError {
    src.error_for(
        span,
        "team.name",
        format!("`{name}` is both a handle and a team name; an owner must name one of them"),
    )
}

/// A handle or team name: 1 to 64 of letters, digits, `-`, `_`, `.`.
fn is_handle(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    #[serde(default)]
    warning_window: Option<HumanDuration>,
    #[serde(default)]
    grace: Option<HumanDuration>,
    #[serde(default)]
    on: BTreeMap<String, RawRule>,
    #[serde(default)]
    unknown_owners: Option<UnknownOwners>,
}

/// `on.<verdict> = { action = "reap", grace = "2h" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    action: Action,
    #[serde(default)]
    grace: Option<HumanDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    /// An exact ARN, or a prefix ending in `*`.
    #[serde(default)]
    arn: Option<String>,
    /// Or a name pattern (`*` any run of characters), optionally of one type.
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "type")]
    resource_type: Option<String>,
    reason: String,
    /// Required: an allowlist entry that never ends is a leak waiting to happen.
    /// `YYYY-MM-DD` (midnight UTC) or RFC 3339.
    expires: String,
}

/// Parses `on` tables: keys must be verdicts that open findings.
fn rules_from(
    src: &Source<'_>,
    span: std::ops::Range<usize>,
    field: &str,
    raw: BTreeMap<String, RawRule>,
    default_grace: HumanDuration,
) -> Result<BTreeMap<Verdict, Rule>, FileError> {
    let mut out = BTreeMap::new();
    for (k, r) in raw {
        let verdict = Verdict::parse(&k).filter(|v| v.is_finding()).ok_or_else(|| {
            src.error_for(
                span.clone(),
                field,
                format!("`{k}` is not a verdict that opens a finding (expiring, expired, released, unknown-lease, untagged, misplaced, unapproved-image)"),
            )
        })?;
        if verdict == Verdict::Misplaced && r.action == Action::Reap {
            return Err(src.error_for(
                span.clone(),
                field,
                "a misplaced resource is never reaped (it may belong to someone else): report or notify",
            ));
        }
        out.insert(
            verdict,
            Rule {
                action: r.action,
                grace: r.grace.unwrap_or(default_grace),
            },
        );
    }
    Ok(out)
}

/// `YYYY-MM-DD` (midnight UTC) or RFC 3339.
pub(super) fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("`{s}` is not a date (YYYY-MM-DD) or an RFC 3339 time"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProject {
    name: Spanned<ProjectName>,
    lessees: Vec<String>,
    default_ttl: HumanDuration,
    max_ttl: Spanned<HumanDuration>,
    grace: HumanDuration,
    #[serde(default)]
    max_active_leases: Option<Spanned<u32>>,
    #[serde(default)]
    allowed_regions: Option<Vec<String>>,
    #[serde(default)]
    warning_window: Option<HumanDuration>,
    /// An active lease older than the project's recent p95 lease duration times this is
    /// overrunning.
    #[serde(default)]
    overrun_factor: Option<Spanned<f64>>,
    #[serde(default)]
    on: BTreeMap<String, RawRule>,
    /// `[project.on_type."ec2:instance"]`: rules for one resource type.
    #[serde(default)]
    on_type: BTreeMap<String, BTreeMap<String, RawRule>>,
    /// Account ids and OU ids its resources may live in.
    #[serde(default)]
    accounts: Option<Spanned<Vec<String>>>,
}

/// An account id (12 digits) or an OU or root id (`ou-…`, `r-…`).
fn is_account_or_ou(s: &str) -> bool {
    let digits = s.len() == 12 && s.chars().all(|c| c.is_ascii_digit());
    let ou = |rest: &str| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    digits || s.strip_prefix("ou-").is_some_and(ou) || s.strip_prefix("r-").is_some_and(ou)
}

impl Policy {
    /// Loads every `policy/*.toml` under `rules_dir`, in file-name order.
    pub fn load(rules_dir: &Path) -> Result<Policy, PolicyError> {
        let dir = rules_dir.join("policy");
        let read_err = |source| PolicyError::Read {
            path: dir.clone(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(read_err)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(read_err)?;
        files.retain(|p| p.extension().is_some_and(|e| e == "toml"));
        files.sort();
        if files.is_empty() {
            return Err(PolicyError::Empty(dir));
        }
        let mut texts = Vec::with_capacity(files.len());
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|source| PolicyError::Read {
                path: f.clone(),
                source,
            })?;
            texts.push((f, text));
        }
        Ok(Policy::parse(
            texts.iter().map(|(p, t)| (p.as_path(), t.as_str())),
        )?)
    }

    /// Builds a policy from file texts (path used for messages only).
    pub fn parse<'a>(
        files: impl IntoIterator<Item = (&'a Path, &'a str)>,
    ) -> Result<Policy, FileError> {
        let files: Vec<(&Path, &str)> = files.into_iter().collect();
        let mut policy = Policy::default();
        // (file, span, team, project): checked once every file's projects are known.
        let mut pending_team_projects: Vec<(PathBuf, std::ops::Range<usize>, String, ProjectName)> =
            Vec::new();
        let mut where_defined: Vec<(ProjectName, PathBuf, usize)> = Vec::new();
        let mut defaults_at: Option<(PathBuf, usize)> = None;
        for &(path, text) in &files {
            let src = Source::new(path, text);
            let raw: RawFile = toml::from_str(text).map_err(|e| src.from_toml(&e))?;
            if let Some(d) = raw.defaults {
                let span = d.span();
                let line = src.line_col(span.start).0;
                if let Some((other, l)) = &defaults_at {
                    return Err(src.error_for(
                        span,
                        "defaults",
                        format!("[defaults] is already set at {}:{l}", other.display()),
                    ));
                }
                defaults_at = Some((path.to_owned(), line));
                let d = d.into_inner();
                let builtin = Defaults::default();
                let grace = d.grace.unwrap_or(builtin.grace);
                let on = rules_from(&src, span.clone(), "defaults.on", d.on, grace)?;
                // Defaults reach every project and resources of none: deleting for an image
                // is a choice each project makes for itself.
                if on
                    .get(&Verdict::UnapprovedImage)
                    .is_some_and(|r| r.action == Action::Reap)
                {
                    return Err(src.error_for(
                        span,
                        "defaults.on",
                        "an unapproved image is reaped only where a project says so (project.on or project.on_type): report or notify here",
                    ));
                }
                policy.defaults = Defaults {
                    warning_window: d.warning_window.unwrap_or(builtin.warning_window),
                    grace,
                    on,
                    refuse_unknown_owners: matches!(d.unknown_owners, Some(UnknownOwners::Refuse)),
                };
            }
            for a in raw.allow {
                let span = a.span();
                let a = a.into_inner();
                let expires = parse_time(&a.expires)
                    .map_err(|m| src.error_for(span.clone(), "allow.expires", m))?;
                if a.reason.trim().is_empty() {
                    return Err(src.error_for(
                        span,
                        "allow.reason",
                        "say why this resource is protected",
                    ));
                }
                let what = match (a.arn, a.name) {
                    (Some(text), None) => {
                        if a.resource_type.is_some() {
                            return Err(src.error_for(
                                span,
                                "allow.type",
                                "`type` goes with `name`; an ARN names its type",
                            ));
                        }
                        let (arn, prefix) = match text.strip_suffix('*') {
                            Some(p) => (p.to_owned(), true),
                            None => (text.clone(), false),
                        };
                        if !arn.starts_with("arn:") {
                            return Err(src.error_for(
                                span,
                                "allow.arn",
                                format!("`{text}` is not an ARN (or an ARN prefix ending in *)"),
                            ));
                        }
                        AllowMatch::Arn { arn, prefix }
                    }
                    (None, Some(pattern)) => {
                        if pattern.trim_matches('*').is_empty() {
                            return Err(src.error_for(
                                span,
                                "allow.name",
                                "a pattern of only `*` would protect everything",
                            ));
                        }
                        if let Some(t) = &a.resource_type
                            && !t.contains(':')
                        {
                            return Err(src.error_for(
                                span,
                                "allow.type",
                                format!("`{t}` is not a type like ec2:volume"),
                            ));
                        }
                        AllowMatch::Name {
                            pattern,
                            resource_type: a.resource_type,
                        }
                    }
                    _ => {
                        return Err(src.error_for(
                            span,
                            "allow.arn",
                            "give exactly one of `arn` and `name`",
                        ));
                    }
                };
                policy.allow.push(AllowEntry {
                    what,
                    reason: a.reason,
                    expires,
                });
            }
            if let Some(h) = raw.handles {
                for (handle, addr) in h.into_inner() {
                    let span = addr.span();
                    let key = super::handle_key(&handle);
                    if !is_handle(&key) {
                        return Err(src.error_for(
                            span,
                            "handles",
                            format!(
                                "`{handle}` is not a handle (1 to 64 letters, digits, -, _ or .)"
                            ),
                        ));
                    }
                    if !super::is_address(addr.get_ref()) {
                        return Err(src.error_for(
                            span,
                            &format!("handles.{handle}"),
                            format!("`{}` is not an e-mail address", addr.get_ref()),
                        ));
                    }
                    if policy.directory.teams.contains_key(&key) {
                        return Err(both_handle_and_team(&src, span, &key));
                    }
                    if policy
                        .directory
                        .handles
                        .insert(key, addr.into_inner())
                        .is_some()
                    {
                        return Err(src.error_for(
                            span,
                            &format!("handles.{handle}"),
                            format!("handle `{handle}` is mapped twice (handles ignore case)"),
                        ));
                    }
                }
            }
            for t in raw.team {
                let t = t.into_inner();
                let name_span = t.name.span();
                let name = super::handle_key(t.name.get_ref());
                if !is_handle(&name) {
                    return Err(src.error_for(
                        name_span,
                        "team.name",
                        format!(
                            "`{}` is not a team name (1 to 64 letters, digits, -, _ or .)",
                            t.name.get_ref()
                        ),
                    ));
                }
                if policy.directory.teams.contains_key(&name) {
                    return Err(src.error_for(
                        name_span,
                        "team.name",
                        format!("team `{name}` is defined twice"),
                    ));
                }
                if policy.directory.handles.contains_key(&name) {
                    return Err(both_handle_and_team(&src, name_span, &name));
                }
                let addresses = |list: Vec<Spanned<String>>, field: &str| {
                    list.into_iter()
                        .map(|a| {
                            if super::is_address(a.get_ref()) {
                                Ok(a.into_inner())
                            } else {
                                Err(src.error_for(
                                    a.span(),
                                    field,
                                    format!("`{}` is not an e-mail address", a.get_ref()),
                                ))
                            }
                        })
                        .collect::<Result<Vec<_>, _>>()
                };
                let mail = addresses(t.mail, "team.mail")?;
                let oncall = addresses(t.oncall, "team.oncall")?;
                let mut members = BTreeSet::new();
                for m in t.members {
                    let key = super::handle_key(m.get_ref());
                    if !is_handle(&key) && !super::is_address(&key) {
                        return Err(src.error_for(
                            m.span(),
                            "team.members",
                            format!(
                                "`{}` is neither a handle nor an e-mail address",
                                m.get_ref()
                            ),
                        ));
                    }
                    members.insert(key);
                }
                let mut projects = BTreeSet::new();
                for p in t.projects {
                    pending_team_projects.push((
                        path.to_owned(),
                        p.span(),
                        name.clone(),
                        p.get_ref().clone(),
                    ));
                    projects.insert(p.into_inner());
                }
                policy.directory.teams.insert(
                    name.clone(),
                    super::Team {
                        name,
                        mail,
                        oncall,
                        projects,
                        members,
                    },
                );
            }
            for p in raw.project {
                let span = p.span();
                let p = p.into_inner();
                let name_span = p.name.span();
                let name = p.name.into_inner();
                if let Some((_, other, line)) = where_defined.iter().find(|(n, _, _)| *n == name) {
                    return Err(src.error_for(
                        name_span,
                        "project.name",
                        format!(
                            "project `{name}` is already defined at {}:{line}",
                            other.display()
                        ),
                    ));
                }
                let max_ttl_span = p.max_ttl.span();
                let max_ttl = p.max_ttl.into_inner();
                if p.default_ttl > max_ttl {
                    return Err(src.error_for(
                        max_ttl_span,
                        "project.max_ttl",
                        format!(
                            "max_ttl {max_ttl} is shorter than default_ttl {}",
                            p.default_ttl
                        ),
                    ));
                }
                if p.lessees.is_empty() {
                    return Err(src.error_for(
                        span,
                        "project.lessees",
                        format!("project `{name}` lists no lessees (use [\"*\"] for every lessee scoped to it)"),
                    ));
                }
                if let Some(q) = &p.max_active_leases
                    && *q.get_ref() == 0
                {
                    return Err(src.error_for(
                        q.span(),
                        "project.max_active_leases",
                        "must be at least 1",
                    ));
                }
                let overrun_permille = match &p.overrun_factor {
                    None => DEFAULT_OVERRUN_PERMILLE,
                    Some(f) if !(1.0..=100.0).contains(f.get_ref()) => {
                        return Err(src.error_for(
                            f.span(),
                            "project.overrun_factor",
                            "must be 1.0 to 100.0 (times the project's recent p95 lease duration)",
                        ));
                    }
                    Some(f) => (f.get_ref() * 1000.0).round() as u32,
                };
                if let Some(regions) = &p.allowed_regions
                    && regions.is_empty()
                {
                    return Err(src.error_for(
                        span,
                        "project.allowed_regions",
                        "an empty list would forbid every region; leave it out to allow any",
                    ));
                }
                let accounts = match p.accounts {
                    None => None,
                    Some(a) => {
                        let a_span = a.span();
                        let list = a.into_inner();
                        if list.is_empty() {
                            return Err(src.error_for(
                                a_span,
                                "project.accounts",
                                "an empty list would bind the project nowhere; leave it out to allow any account",
                            ));
                        }
                        if let Some(bad) = list.iter().find(|x| !is_account_or_ou(x)) {
                            return Err(src.error_for(
                                a_span,
                                "project.accounts",
                                format!("`{bad}` is not an account id (12 digits) or an OU id (ou-…, r-…)"),
                            ));
                        }
                        Some(list.into_iter().collect::<BTreeSet<_>>())
                    }
                };
                let mut on_type = BTreeMap::new();
                for (t, rules) in p.on_type {
                    let ok = t.split_once(':').is_some_and(|(svc, kind)| {
                        !svc.is_empty()
                            && !kind.is_empty()
                            && t.chars().all(|c| {
                                c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == ':'
                            })
                    });
                    if !ok {
                        return Err(src.error_for(
                            span.clone(),
                            "project.on_type",
                            format!("`{t}` is not a resource type like ec2:instance"),
                        ));
                    }
                    let field = format!("project.on_type.{t}");
                    on_type.insert(t, rules_from(&src, span.clone(), &field, rules, p.grace)?);
                }
                where_defined.push((
                    name.clone(),
                    path.to_owned(),
                    src.line_col(name_span.start).0,
                ));
                policy.projects.insert(
                    name.clone(),
                    ProjectPolicy {
                        name,
                        lessees: p.lessees.into_iter().collect(),
                        default_ttl: p.default_ttl,
                        max_ttl,
                        grace: p.grace,
                        max_active_leases: p.max_active_leases.map(Spanned::into_inner),
                        allowed_regions: p
                            .allowed_regions
                            .map(|r| r.into_iter().collect::<BTreeSet<_>>()),
                        warning_window: p.warning_window,
                        overrun_permille,
                        on: rules_from(&src, span.clone(), "project.on", p.on, p.grace)?,
                        on_type,
                        accounts,
                    },
                );
            }
            for i in raw.images {
                let span = i.span();
                let entry = i.into_inner().check(&src, path, span)?;
                policy.images.push(entry);
            }
            for case in raw.test {
                let (line, _) = src.line_col(case.span().start);
                policy
                    .cases
                    .push(TestCase::from_raw(case.into_inner(), path, line));
            }
        }
        let mut owned_by: BTreeMap<ProjectName, String> = BTreeMap::new();
        for (path, span, team, project) in pending_team_projects {
            let text = files
                .iter()
                .find(|(p, _)| *p == path.as_path())
                .map_or("", |(_, t)| *t);
            let src = Source::new(&path, text);
            if policy.project(&project).is_none() {
                return Err(src.error_for(
                    span,
                    "team.projects",
                    format!("team `{team}` owns project `{project}`, which no policy file defines"),
                ));
            }
            if let Some(other) = owned_by.insert(project.clone(), team.clone()) {
                return Err(src.error_for(
                    span,
                    "team.projects",
                    format!("project `{project}` is owned by team `{other}` already; a project has one team"),
                ));
            }
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[project]]
name = "web"
lessees = ["ci-web"]
default_ttl = "2h"
max_ttl = "24h"
grace = "1h"
max_active_leases = 5
"#;

    fn parse(files: &[(&str, &str)]) -> Result<Policy, FileError> {
        Policy::parse(files.iter().map(|(p, t)| (Path::new(*p), *t)))
    }

    #[test]
    fn loads_a_project() {
        let p = parse(&[("a.toml", GOOD)]).expect("valid");
        let web = p
            .project(&ProjectName::parse("web").expect("valid"))
            .expect("defined");
        assert_eq!(web.max_active_leases, Some(5));
        assert_eq!(web.allowed_regions, None);
    }

    #[test]
    fn bad_rules_name_file_line_and_field() {
        let check = |files: &[(&str, &str)], want: &str| {
            let err = parse(files).expect_err(want).to_string();
            assert!(err.contains(want), "{err} lacks {want}");
        };
        check(
            &[("a.toml", &GOOD.replace("grace", "graze"))],
            "a.toml:7:1: unknown field `graze`",
        );
        check(
            &[("a.toml", &GOOD.replace("\"24h\"", "\"forever\""))],
            "a.toml:6:11: field `project.max_ttl`: invalid duration `forever`",
        );
        check(
            &[("a.toml", &GOOD.replace("\"24h\"", "\"1h\""))],
            "a.toml:6:11: field `project.max_ttl`: max_ttl 1h is shorter than default_ttl 2h",
        );
        check(
            &[("a.toml", GOOD), ("b.toml", GOOD)],
            "b.toml:3:8: field `project.name`: project `web` is already defined at a.toml:3",
        );
        check(
            &[("a.toml", &GOOD.replace("= 5", "= 0"))],
            "a.toml:8:21: field `project.max_active_leases`",
        );
        check(
            &[("a.toml", &GOOD.replace("\"web\"", "\"Web\""))],
            "a.toml:3:8: field `project.name`: invalid project name",
        );
        let with = |extra: &str| format!("{GOOD}{extra}");
        check(
            &[("a.toml", &with("accounts = [\"12345\"]\n"))],
            "a.toml:9:12: field `project.accounts`: `12345` is not an account id",
        );
        check(
            &[("a.toml", &with("accounts = []\n"))],
            "field `project.accounts`: an empty list would bind the project nowhere",
        );
        check(
            &[(
                "a.toml",
                &with("[project.on]\nmisplaced = { action = \"reap\" }\n"),
            )],
            "field `project.on`: a misplaced resource is never reaped",
        );
        check(
            &[(
                "a.toml",
                &with("[project.on_type.\"EC2 Instance\"]\nexpired = { action = \"reap\" }\n"),
            )],
            "field `project.on_type`: `EC2 Instance` is not a resource type",
        );
        check(
            &[(
                "a.toml",
                &with("[project.on_type.\"ec2:instance\"]\nexpird = { action = \"reap\" }\n"),
            )],
            "field `project.on_type.ec2:instance`: `expird` is not a verdict",
        );
        let p = parse(&[(
            "a.toml",
            &with("accounts = [\"123456789012\", \"ou-ab12-cdef3456\"]\n"),
        )])
        .expect("valid");
        assert_eq!(
            p.bound_ous().into_iter().collect::<Vec<_>>(),
            ["ou-ab12-cdef3456"]
        );
    }
}

#[cfg(test)]
mod allow_tests {
    use super::*;
    use chrono::TimeZone;

    fn parse(text: &str) -> Result<Policy, FileError> {
        Policy::parse([(Path::new("allow.toml"), text)])
    }

    /// A never-tagged resource has no tags to protect it: a name pattern can, by itself or of
    /// one type, until it expires; `arn` and `name` are one or the other.
    #[test]
    fn names_protect_what_has_no_tags() {
        let p = parse(
            r#"
[[allow]]
name = "prod-*-db*"
reason = "hand-made databases"
expires = "2027-01-01"

[[allow]]
name = "/aws/lambda/billing-*"
type = "logs:log-group"
reason = "billing logs"
expires = "2027-01-01"

[[allow]]
arn = "arn:aws:s3:::shared-*"
reason = "shared buckets"
expires = "2027-01-01"
"#,
        )
        .expect("valid");
        let now = Utc
            .with_ymd_and_hms(2026, 12, 5, 0, 0, 0)
            .single()
            .expect("t");
        let later = Utc
            .with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
            .single()
            .expect("t");
        let yes = [
            "arn:aws:dynamodb:us-east-1:111111111111:table/prod-eu-db",
            "arn:aws:rds:us-east-1:111111111111:db:prod-us-db-2",
            "arn:aws:logs:us-east-1:111111111111:log-group:/aws/lambda/billing-export",
            "arn:aws:s3:::shared-artifacts",
        ];
        for arn in yes {
            assert!(p.allowed(arn, now).is_some(), "{arn}");
            assert!(p.allowed(arn, later).is_none(), "{arn} after it expires");
        }
        let no = [
            "arn:aws:dynamodb:us-east-1:111111111111:table/staging-eu-db",
            "arn:aws:dynamodb:us-east-1:111111111111:table/prod-db",
            // The pattern is of log groups only.
            "arn:aws:lambda:us-east-1:111111111111:function:/aws/lambda/billing-x",
            "arn:aws:logs:us-east-1:111111111111:log-group:/aws/lambda/ci-1",
            "arn:aws:s3:::my-shared-bucket",
        ];
        for arn in no {
            assert!(p.allowed(arn, now).is_none(), "{arn}");
        }
        for (entry, want) in [
            (
                "arn = \"arn:aws:s3:::x\"\nname = \"x\"",
                "exactly one of `arn` and `name`",
            ),
            ("", "exactly one of `arn` and `name`"),
            ("name = \"**\"", "would protect everything"),
            (
                "name = \"x\"\ntype = \"volume\"",
                "not a type like ec2:volume",
            ),
            (
                "arn = \"arn:aws:s3:::x\"\ntype = \"s3:bucket\"",
                "`type` goes with `name`",
            ),
        ] {
            let text = format!("[[allow]]\n{entry}\nreason = \"r\"\nexpires = \"2027-01-01\"\n");
            let err = parse(&text).expect_err(entry).to_string();
            assert!(err.starts_with("allow.toml:1:"), "{err}");
            assert!(err.contains(want), "{entry}: {err}");
        }
    }
}

#[cfg(test)]
mod directory_tests {
    use super::*;

    const WEB: &str = r#"
[[project]]
name = "web"
lessees = ["*"]
default_ttl = "2h"
max_ttl = "24h"
grace = "1h"
"#;

    fn parse(files: &[(&str, &str)]) -> Result<Policy, FileError> {
        Policy::parse(files.iter().map(|(p, t)| (Path::new(*p), *t)))
    }

    #[test]
    fn teams_and_handles_load_across_files() {
        let teams = r#"
[handles]
OctoCat = "octo@example.com"

[[team]]
name = "Web-Platform"
mail = ["web@example.com"]
projects = ["web"]
members = ["Hubot", "ann@example.com"]
"#;
        // The team file sorts before the project it owns.
        let p = parse(&[("a.toml", teams), ("b.toml", WEB)]).expect("valid");
        let d = p.directory();
        assert_eq!(
            d.handles.get("octocat").map(String::as_str),
            Some("octo@example.com")
        );
        let t = &d.teams["web-platform"];
        assert_eq!(
            t.members.iter().map(String::as_str).collect::<Vec<_>>(),
            ["ann@example.com", "hubot"]
        );
        assert_eq!(
            d.team_of_project("web").map(|t| t.name.as_str()),
            Some("web-platform")
        );
    }

    #[test]
    fn bad_directories_name_file_line_and_field() {
        let check = |extra: &str, want: &str| {
            let err = parse(&[("a.toml", WEB), ("b.toml", extra)])
                .expect_err(want)
                .to_string();
            assert!(err.contains(want), "{err} lacks {want}");
        };
        check(
            "[handles]\nocto = \"not an address\"\n",
            "b.toml:2:8: field `handles.octo`: `not an address` is not an e-mail address",
        );
        check(
            "[handles]\n\"bad handle\" = \"a@example.com\"\n",
            "field `handles`: `bad handle` is not a handle",
        );
        check(
            "[[team]]\nname = \"t\"\nprojects = [\"nosuch\"]\n",
            "b.toml:3:13: field `team.projects`: team `t` owns project `nosuch`, which no policy file defines",
        );
        check(
            "[[team]]\nname = \"t\"\nprojects = [\"web\"]\n[[team]]\nname = \"u\"\nprojects = [\"web\"]\n",
            "b.toml:6:13: field `team.projects`: project `web` is owned by team `t` already",
        );
        check(
            "[[team]]\nname = \"t\"\n[[team]]\nname = \"T\"\n",
            "b.toml:4:8: field `team.name`: team `t` is defined twice",
        );
        check(
            "[handles]\nops = \"ops@example.com\"\n[[team]]\nname = \"OPS\"\n",
            "field `team.name`: `ops` is both a handle and a team name",
        );
        check(
            "[[team]]\nname = \"t\"\noncall = [\"nope\"]\n",
            "b.toml:3:11: field `team.oncall`: `nope` is not an e-mail address",
        );
        check(
            "[[team]]\nname = \"t\"\nmembers = [\"a b\"]\n",
            "field `team.members`: `a b` is neither a handle nor an e-mail address",
        );
        check(
            "[[team]]\nname = \"t\"\nslack = \"#x\"\n",
            "unknown field `slack`",
        );
        check(
            "[defaults]\nunknown_owners = \"maybe\"\n",
            "unknown variant `maybe`",
        );
    }

    #[test]
    fn unknown_owners_are_refused_only_when_the_rules_say_so() {
        let ask = |p: &Policy, owner: &str| {
            let project = ProjectName::parse("web").expect("valid");
            p.decide_acquire(
                super::super::Caller {
                    name: "ci",
                    role: crate::auth::Role::Lessee,
                },
                &super::super::AcquireAsk {
                    project: &project,
                    ttl: None,
                    heartbeat: None,
                    regions: &[],
                    owner,
                },
                0,
            )
            .map(|_| ())
            .map_err(|d| d.code())
        };
        let dir = "[handles]\nocto = \"o@example.com\"\n[[team]]\nname = \"t\"\nmail = [\"t@example.com\"]\nmembers = [\"hubot\"]\n";
        let lax = parse(&[("a.toml", WEB), ("b.toml", dir)]).expect("valid");
        assert_eq!(ask(&lax, "stranger"), Ok(()));
        let strict = parse(&[
            ("a.toml", WEB),
            (
                "b.toml",
                &format!("{dir}[defaults]\nunknown_owners = \"refuse\"\n"),
            ),
        ])
        .expect("valid");
        for (owner, want) in [
            ("a@example.com", Ok(())),
            ("OCTO", Ok(())),
            ("t", Ok(())),
            ("hubot", Ok(())),
            ("stranger", Err("unknown-owner")),
        ] {
            assert_eq!(ask(&strict, owner), want, "{owner}");
        }
    }
}
