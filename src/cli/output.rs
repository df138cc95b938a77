//! Rendering for the terminal: tables, and lease tags as shell, JSON or Terraform.
//!
//! Architecture Invariant: pure string building; printing is the caller's job.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::http::dto::{
    AuditList, CostView, FindingList, LeaseTimeline, LeaseView, PlanItemView, ReapItemView,
    ReapPlanView, StatusView, SweepView, WalkView,
};
use crate::model::{printable, printable_lines};
use crate::resource::ScanReport;

/// A plain aligned table (comfy-table, no borders): columns two spaces apart, the last one
/// not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::NOTHING)
        .set_content_arrangement(comfy_table::ContentArrangement::Disabled)
        .set_header(headers.iter().copied())
        .add_rows(
            rows.iter()
                .map(|r| r.iter().map(|c| printable(c).into_owned())),
        );
    for c in t.column_iter_mut() {
        c.set_padding((0, 2));
    }
    let mut out = String::new();
    for line in t.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub fn lease_table(leases: &[LeaseView]) -> String {
    let rows: Vec<Vec<String>> = leases
        .iter()
        .map(|l| {
            vec![
                l.id.clone(),
                l.project.clone(),
                l.task.clone(),
                l.owner.clone(),
                l.state.as_str().to_owned(),
                l.ends_at.clone(),
            ]
        })
        .collect();
    table(
        &["ID", "PROJECT", "TASK", "OWNER", "STATE", "ENDS_AT"],
        &rows,
    )
}

/// One lease, one field per line.
pub fn lease_details(l: &LeaseView) -> String {
    let mut rows = vec![
        ("id", l.id.clone()),
        ("project", l.project.clone()),
        ("task", l.task.clone()),
        ("owner", l.owner.clone()),
        ("principal", l.principal.clone()),
        ("state", l.state.as_str().to_owned()),
        ("created_at", l.created_at.clone()),
        ("expires_at", l.expires_at.clone()),
        ("ends_at", l.ends_at.clone()),
    ];
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    rows.push(("heartbeat_interval", opt(&l.heartbeat_interval)));
    rows.push(("last_heartbeat_at", opt(&l.last_heartbeat_at)));
    rows.push(("released_at", opt(&l.released_at)));
    rows.push(("teardown_complete_at", opt(&l.teardown_complete_at)));
    rows.push((
        "regions",
        if l.regions.is_empty() {
            "-".into()
        } else {
            l.regions.join(",")
        },
    ));
    for (k, v) in &l.labels {
        rows.push(("label", format!("{k}={v}")));
    }
    for (k, v) in &l.tags {
        rows.push(("tag", format!("{k}={v}")));
    }
    let w = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    rows.iter().fold(String::new(), |mut s, (k, v)| {
        let _ = writeln!(s, "{k:<w$}  {}", printable(v));
        s
    })
}

/// A lease's timeline: one row per entry, oldest first.
pub fn timeline_table(tl: &LeaseTimeline) -> String {
    let rows: Vec<Vec<String>> = tl
        .entries
        .iter()
        .map(|e| vec![e.at.clone(), e.kind.clone(), e.summary.clone()])
        .collect();
    table(&["TIME", "EVENT", "DETAIL"], &rows)
}

/// A time as the API's JSON shows it.
fn t(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn opt(v: Option<impl ToString>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Findings as a table.
pub fn findings_table(page: &FindingList) -> String {
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|f| {
            vec![
                f.verdict.to_string(),
                f.action.to_string(),
                opt(f.project.as_deref()),
                f.region.clone(),
                f.resource_type.clone(),
                f.arn.clone(),
                t(&f.opened_at),
                f.reason.clone(),
            ]
        })
        .collect();
    table(
        &[
            "VERDICT", "ACTION", "PROJECT", "REGION", "TYPE", "ARN", "OPENED", "REASON",
        ],
        &rows,
    )
}

/// Walks and verdict counts of a scan's report.
pub fn scan_report(r: &ScanReport, walks: &[WalkView]) -> String {
    let walks: Vec<Vec<String>> = walks
        .iter()
        .map(|w| {
            vec![
                w.account.clone(),
                w.region.clone(),
                w.outcome.to_string(),
                w.pages.to_string(),
                w.resources.to_string(),
                opt(w.sweep.as_ref().map(SweepView::summary).as_deref()),
                opt(w.reason.as_deref()),
            ]
        })
        .collect();
    let mut out = format!("scan {}: {}\n", r.run_id, r.outcome);
    out.push_str(&table(
        &[
            "ACCOUNT",
            "REGION",
            "WALK",
            "PAGES",
            "RESOURCES",
            "SWEEP",
            "REASON",
        ],
        &walks,
    ));
    let verdicts: Vec<Vec<String>> = r
        .verdicts
        .iter()
        .map(|(k, v)| vec![k.clone(), v.to_string()])
        .collect();
    out.push('\n');
    out.push_str(&table(&["VERDICT", "RESOURCES"], &verdicts));
    let _ = writeln!(
        out,
        "\nfindings: {} opened, {} updated, {} resolved; {} resources gone",
        r.findings_opened, r.findings_updated, r.findings_resolved, r.resources_gone
    );
    if let Some(reap) = &r.reap {
        let _ = writeln!(
            out,
            "reaper ({}): {} marked, {} would-delete, {} deleted, {} skipped, {} failed, {} held",
            if reap.armed { "armed" } else { "unarmed" },
            reap.marked,
            reap.would_delete,
            reap.deleted,
            reap.skipped,
            reap.failed,
            reap.held,
        );
        for cap in &reap.capped {
            let _ = writeln!(out, "capped: {cap}");
        }
    }
    if let Some(head) = &r.audit_head {
        let _ = writeln!(out, "audit head: {head}  (audit verify --head {head})");
    }
    printable_lines(&out).into_owned()
}

/// The last run of each task and the last scan's walks.
pub fn status_table(st: &StatusView) -> String {
    let runs: Vec<Vec<String>> = st
        .tasks
        .iter()
        .map(|r| {
            vec![
                r.task.to_string(),
                r.outcome.to_string(),
                t(&r.started_at),
                opt(r.ended_at.as_ref().map(t)),
                r.trigger.clone(),
            ]
        })
        .collect();
    let mut out = table(&["TASK", "OUTCOME", "STARTED", "ENDED", "TRIGGER"], &runs);
    let walks: Vec<Vec<String>> = st
        .last_scan_walks
        .iter()
        .map(|w| {
            vec![
                w.account.clone(),
                w.region.clone(),
                w.outcome.to_string(),
                w.resources.to_string(),
                opt(w.sweep.as_ref().map(SweepView::summary).as_deref()),
                opt(w.reason.as_deref()),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &["ACCOUNT", "REGION", "WALK", "RESOURCES", "SWEEP", "REASON"],
        &walks,
    ));
    if let Some(id) = &st.running_scan {
        let _ = writeln!(out, "\nscan running: {id}");
    }
    out
}

/// Quotes a value for POSIX shells (shlex); a value with a NUL byte (which no tag holds) is
/// dropped rather than quoted wrongly.
fn sh_quote(v: &str) -> String {
    shlex::try_quote(v).map_or_else(|_| "''".to_owned(), |q| q.into_owned())
}

/// `export` lines: one variable per identity part, plus `EPHEMERA_TAGS` as a JSON map for
/// tools that take tags whole.
pub fn tags_env(l: &LeaseView) -> String {
    let json = serde_json::to_string(&l.tags).unwrap_or_default();
    let mut out = String::new();
    for (var, value) in [
        ("EPHEMERA_LEASE_ID", l.id.clone()),
        ("EPHEMERA_PROJECT", l.project.clone()),
        ("EPHEMERA_TASK", l.task.clone()),
        ("EPHEMERA_OWNER", l.owner.clone()),
        ("EPHEMERA_LEASE_EXPIRES_AT", l.expires_at.clone()),
        ("EPHEMERA_TAGS", json),
    ] {
        let _ = writeln!(out, "export {var}={}", sh_quote(&value));
    }
    out
}

pub fn tags_json(tags: &BTreeMap<String, String>) -> String {
    serde_json::to_string_pretty(tags).unwrap_or_default() + "\n"
}

/// An HCL string literal: escapes quotes, backslashes and template sequences.
fn hcl_string(v: &str) -> String {
    let escaped = v
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .replace("${", "$${")
        .replace("%{", "%%{");
    format!("\"{escaped}\"")
}

/// The Terraform variables of a lease, as a variables file (`ephemera.auto.tfvars`, which
/// Terraform loads by itself): `ephemera_lease_id` and `ephemera_tags`, the map a provider's
/// `default_tags { tags = var.ephemera_tags }` applies to everything it creates.
pub const TERRAFORM_VARIABLES: [&str; 2] = ["ephemera_lease_id", "ephemera_tags"];

/// [`TERRAFORM_VARIABLES`] of `l`, in HCL.
pub fn tags_terraform(l: &LeaseView) -> String {
    let [id_var, tags_var] = TERRAFORM_VARIABLES;
    let w = l
        .tags
        .keys()
        .map(|k| hcl_string(k).len())
        .max()
        .unwrap_or(0);
    let mut out = format!("{id_var} = {}\n{tags_var} = {{\n", hcl_string(&l.id));
    for (k, v) in &l.tags {
        let _ = writeln!(out, "  {:<w$} = {}", hcl_string(k), hcl_string(v));
    }
    out.push_str("}\n");
    out
}

/// `ephemera plan`: resource, owner, lease, verdict, deadline, status, the finding's reason and
/// why a held item is held.
pub fn plan_table(items: &[PlanItemView], armed: bool) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                {
                    let status = serde_json::to_value(i.status)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    // An access key's first step is not a deletion: the table says so.
                    match i.step {
                        crate::http::dto::PlanStep::Deactivate => format!("{status} (deactivate)"),
                        crate::http::dto::PlanStep::Delete => status,
                    }
                },
                t(&i.deadline),
                i.resource_type.clone(),
                // A controller carries its members: what its deletion takes with it.
                match i.members.len() {
                    0 => i.arn.clone(),
                    n => format!("{} (+{n} members)", i.arn),
                },
                opt(i.owner.as_deref()),
                opt(i.lease_id.as_deref()),
                i.verdict.to_string(),
                i.reason.clone(),
                opt(i.held_reason.as_deref()),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "STATUS", "DEADLINE", "TYPE", "ARN", "OWNER", "LEASE", "VERDICT", "REASON", "HELD",
        ],
        &rows,
    );
    if !armed {
        out.push_str("enforcement is not armed: due items are recorded as would-delete\n");
    }
    out
}

/// The plan part of a `reap` answer.
pub fn reap_plan_table(r: &ReapPlanView) -> String {
    let mut out = plan_table(&r.plan, r.armed);
    if !r.results.is_empty() {
        out.push_str(&reap_results_table(&r.results));
    }
    out
}

/// What `reap` did, one row per resource.
pub fn reap_results_table(results: &[ReapItemView]) -> String {
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            vec![
                r.outcome.to_string(),
                r.resource_type.clone(),
                r.arn.clone(),
                r.detail.clone(),
            ]
        })
        .collect();
    table(&["OUTCOME", "TYPE", "ARN", "DETAIL"], &rows)
}

/// `ephemera audit list`.
pub fn audit_table(page: &AuditList) -> String {
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|r| {
            vec![
                r.seq.to_string(),
                t(&r.at),
                r.actor.clone(),
                r.mode.to_string(),
                r.decision.to_string(),
                r.arn.clone(),
                opt(r.lease_id.as_deref()),
                opt(r.verdict.as_deref()),
                r.detail.clone(),
            ]
        })
        .collect();
    table(
        &[
            "SEQ", "AT", "ACTOR", "MODE", "DECISION", "ARN", "LEASE", "VERDICT", "DETAIL",
        ],
        &rows,
    )
}

fn cost_rows(spend: &CostView) -> Vec<Vec<String>> {
    spend
        .items
        .iter()
        .map(|i| vec![i.key().to_owned(), i.usd.clone(), i.estimated.to_string()])
        .collect()
}

/// `ephemera cost`: one row per project, task or region, biggest first, then the total.
pub fn cost_table(spend: &CostView) -> String {
    let mut out = table(
        &[&spend.by.to_uppercase(), "USD", "ESTIMATED"],
        &cost_rows(spend),
    );
    let _ = writeln!(
        out,
        "total {} USD from {} to {}",
        spend.total_usd, spend.since, spend.until
    );
    out
}

/// `ephemera cost --output csv`: a header and one line per row (RFC 4180, by the csv crate).
pub fn cost_csv(spend: &CostView) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([spend.by.as_str(), "usd", "estimated"])?;
    for row in cost_rows(spend) {
        w.write_record(&row)?;
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terraform_variables_escape() {
        let l: LeaseView = serde_json::from_value(serde_json::json!({
            "id": "0194e0a1-0000-7000-8000-000000000001",
            "project": "web",
            "task": "t",
            "owner": "a@b.c",
            "principal": "ci",
            "created_at": "2026-03-01T12:00:00Z",
            "expires_at": "2026-03-01T14:00:00Z",
            "ends_at": "2026-03-01T14:00:00Z",
            "state": "active",
            "labels": {},
            "regions": [],
            "tags": {"ephemera:owner": "a\"b${x}", "ephemera:task": "t"}
        }))
        .expect("a lease view");
        assert_eq!(
            tags_terraform(&l),
            "ephemera_lease_id = \"0194e0a1-0000-7000-8000-000000000001\"\n\
             ephemera_tags = {\n  \"ephemera:owner\" = \"a\\\"b$${x}\"\n  \"ephemera:task\"  = \"t\"\n}\n"
        );
    }

    #[test]
    fn shell_quoting_round_trips() {
        for v in [
            "it's",
            "$HOME",
            "a b",
            "deploy web/42 @ 10:00 +1 x=y",
            "",
            "\"q\"",
        ] {
            let quoted = sh_quote(v);
            assert_eq!(
                shlex::split(&quoted),
                Some(vec![v.to_owned()]),
                "{v:?} as {quoted}"
            );
        }
        assert_ne!(sh_quote("$HOME"), "$HOME", "expansion is quoted away");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }
}

#[cfg(test)]
mod escape_tests {
    use super::*;

    /// A task name or label carrying terminal escapes or a bidi override is shown escaped in
    /// tables and in the one-field-per-line view.
    #[test]
    fn tables_and_details_escape_control_characters() {
        let t = table(
            &["TASK"],
            &[vec!["build\u{1b}[2J\u{202E}gnp.exe".to_owned()]],
        );
        assert!(t.contains("build\\u{1b}[2J\\u{202e}gnp.exe"), "{t}");
        assert!(!t.contains('\u{1b}') && !t.contains('\u{202E}'), "{t:?}");
        let lease: LeaseView = serde_json::from_value(serde_json::json!({
            "id": "L", "project": "web", "task": "t\u{7}", "owner": "o\nfake: line",
            "principal": "p", "state": "active", "created_at": "x", "expires_at": "x",
            "ends_at": "x", "tags": {}, "labels": {"k": "v\u{1b}[0m"},
        }))
        .expect("a lease view");
        let d = lease_details(&lease);
        assert!(d.contains("o\\nfake: line"), "{d}");
        assert!(d.contains("t\\u{7}") && d.contains("k=v\\u{1b}[0m"), "{d}");
        assert!(!d.chars().any(|c| c == '\u{1b}' || c == '\u{7}'), "{d:?}");
    }
}

/// Progress of a long manual operation on stderr: on a terminal, one line redrawn in place
/// (`copying resources 12000/50000 (24%)`) at most every 100 ms; otherwise a line when each
/// part starts, so CI logs stay short.
#[derive(Debug)]
pub struct Progress {
    what: &'static str,
    tty: bool,
    last: std::sync::Mutex<(String, std::time::Instant)>,
}

impl Progress {
    pub fn new(what: &'static str) -> Self {
        use std::io::IsTerminal;
        Progress {
            what,
            tty: std::io::stderr().is_terminal(),
            last: std::sync::Mutex::new((String::new(), std::time::Instant::now())),
        }
    }

    /// `n` of `of` done of `part`.
    pub fn step(&self, part: &str, n: u64, of: u64) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let new_part = last.0 != part;
        let done = n >= of;
        if self.tty {
            if new_part || done || last.1.elapsed() >= std::time::Duration::from_millis(100) {
                let pct = (n * 100).checked_div(of).unwrap_or(100);
                eprint!("\r\x1b[2K{} {part} {n}/{of} ({pct}%)", self.what);
                last.1 = std::time::Instant::now();
            }
        } else if new_part {
            eprintln!("{} {part}: {of} rows", self.what);
        }
        if new_part {
            last.0 = part.to_owned();
        }
    }

    /// Ends the redrawn line (on a terminal).
    pub fn finish(&self) {
        if self.tty {
            eprintln!();
        }
    }
}

/// Runs `work` while saying on stderr that `what` is under way: on a terminal with the
/// seconds elapsed, redrawn each second; otherwise one line before and one after.
pub async fn while_waiting<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    use std::io::IsTerminal;
    let started = std::time::Instant::now();
    let tty = std::io::stderr().is_terminal();
    if !tty {
        eprintln!("{what} ...");
    }
    let mut work = std::pin::pin!(work);
    let out = loop {
        if tty {
            eprint!("\r\x1b[2K{what} ... {}s", started.elapsed().as_secs());
        }
        tokio::select! {
            out = &mut work => break out,
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    };
    if tty {
        eprintln!();
    }
    eprintln!("{what}: {:.1}s", started.elapsed().as_secs_f64());
    out
}
