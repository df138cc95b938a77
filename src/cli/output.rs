//! Rendering for the terminal: tables, and lease tags as shell, JSON or Terraform.
//!
//! Architecture Invariant: pure string building; printing is the caller's job.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::http::dto::LeaseView;

/// A plain aligned table; the last column is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i] - cell.chars().count() + 2;
                out.push_str(cell);
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
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
        let _ = writeln!(s, "{k:<w$}  {v}");
        s
    })
}

fn s(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// Findings as a table (from the API's JSON page).
pub fn findings_table(page: &serde_json::Value) -> String {
    let rows: Vec<Vec<String>> = page["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|f| {
                    [
                        "verdict",
                        "action",
                        "project",
                        "region",
                        "resource_type",
                        "arn",
                        "opened_at",
                        "reason",
                    ]
                    .iter()
                    .map(|k| s(&f[*k]))
                    .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &[
            "VERDICT", "ACTION", "PROJECT", "REGION", "TYPE", "ARN", "OPENED", "REASON",
        ],
        &rows,
    )
}

/// Walks and verdict counts of a scan summary.
pub fn scan_report(r: &serde_json::Value) -> String {
    let walks: Vec<Vec<String>> = r["walks"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(|w| {
                    [
                        "account",
                        "region",
                        "outcome",
                        "pages",
                        "resources",
                        "reason",
                    ]
                    .iter()
                    .map(|k| s(&w[*k]))
                    .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = format!("scan {}: {}\n", s(&r["run_id"]), s(&r["outcome"]));
    out.push_str(&table(
        &["ACCOUNT", "REGION", "WALK", "PAGES", "RESOURCES", "REASON"],
        &walks,
    ));
    let verdicts: Vec<Vec<String>> = r["verdicts"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| vec![k.clone(), s(v)]).collect())
        .unwrap_or_default();
    out.push('\n');
    out.push_str(&table(&["VERDICT", "RESOURCES"], &verdicts));
    let _ = writeln!(
        out,
        "\nfindings: {} opened, {} updated, {} resolved; {} resources gone",
        s(&r["findings_opened"]),
        s(&r["findings_updated"]),
        s(&r["findings_resolved"]),
        s(&r["resources_gone"])
    );
    let reap = &r["reap"];
    if reap.is_object() {
        let _ = writeln!(
            out,
            "reaper ({}): {} marked, {} would-delete, {} deleted, {} skipped, {} failed, {} held",
            if reap["armed"] == true {
                "armed"
            } else {
                "unarmed"
            },
            s(&reap["marked"]),
            s(&reap["would_delete"]),
            s(&reap["deleted"]),
            s(&reap["skipped"]),
            s(&reap["failed"]),
            s(&reap["held"]),
        );
        for cap in reap["capped"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "capped: {}", s(cap));
        }
    }
    if let Some(head) = r["audit_head"].as_str() {
        let _ = writeln!(out, "audit head: {head}  (audit verify --head {head})");
    }
    out
}

/// The last run of each task and the last scan's walks.
pub fn status_table(st: &serde_json::Value) -> String {
    let runs: Vec<Vec<String>> = st["tasks"]
        .as_array()
        .map(|t| {
            t.iter()
                .map(|r| {
                    ["task", "outcome", "started_at", "ended_at", "trigger"]
                        .iter()
                        .map(|k| s(&r[*k]))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = table(&["TASK", "OUTCOME", "STARTED", "ENDED", "TRIGGER"], &runs);
    let walks: Vec<Vec<String>> = st["last_scan_walks"]
        .as_array()
        .map(|w| {
            w.iter()
                .map(|w| {
                    ["account", "region", "outcome", "resources", "reason"]
                        .iter()
                        .map(|k| s(&w[*k]))
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default();
    out.push('\n');
    out.push_str(&table(
        &["ACCOUNT", "REGION", "WALK", "RESOURCES", "REASON"],
        &walks,
    ));
    if let Some(id) = st["running_scan"].as_str() {
        let _ = writeln!(out, "\nscan running: {id}");
    }
    out
}

/// Single-quotes a value for POSIX shells.
fn sh_quote(v: &str) -> String {
    format!("'{}'", v.replace('\'', "'\\''"))
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

/// A `default_tags` block for the Terraform AWS provider.
pub fn tags_terraform(tags: &BTreeMap<String, String>) -> String {
    let w = tags.keys().map(|k| hcl_string(k).len()).max().unwrap_or(0);
    let mut out = String::from("default_tags {\n  tags = {\n");
    for (k, v) in tags {
        let _ = writeln!(out, "    {:<w$} = {}", hcl_string(k), hcl_string(v));
    }
    out.push_str("  }\n}\n");
    out
}

fn rows_of(items: &serde_json::Value, keys: &[&str]) -> Vec<Vec<String>> {
    items
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| keys.iter().map(|k| s(&i[*k])).collect())
                .collect()
        })
        .unwrap_or_default()
}

/// `ephemera plan`: resource, owner, lease, verdict, deadline, status, the finding's reason and
/// why a held item is held.
pub fn plan_table(plan: &serde_json::Value) -> String {
    let mut out = table(
        &[
            "STATUS", "DEADLINE", "TYPE", "ARN", "OWNER", "LEASE", "VERDICT", "REASON", "HELD",
        ],
        &rows_of(
            &plan["items"],
            &[
                "status",
                "deadline",
                "resource_type",
                "arn",
                "owner",
                "lease_id",
                "verdict",
                "reason",
                "held_reason",
            ],
        ),
    );
    if plan["armed"] != true {
        out.push_str("enforcement is not armed: due items are recorded as would-delete\n");
    }
    out
}

/// The plan part of a `reap` answer.
pub fn reap_plan_table(r: &serde_json::Value) -> String {
    let mut out = plan_table(&serde_json::json!({"items": r["plan"], "armed": r["armed"]}));
    if let Some(skipped) = r["results"].as_array().filter(|a| !a.is_empty()) {
        out.push_str(&reap_results_table(
            &serde_json::json!({"results": skipped}),
        ));
    }
    out
}

/// What `reap` did, one row per resource.
pub fn reap_results_table(r: &serde_json::Value) -> String {
    table(
        &["OUTCOME", "TYPE", "ARN", "DETAIL"],
        &rows_of(
            &r["results"],
            &["outcome", "resource_type", "arn", "detail"],
        ),
    )
}

/// `ephemera audit list`.
pub fn audit_table(page: &serde_json::Value) -> String {
    table(
        &[
            "SEQ", "AT", "ACTOR", "MODE", "DECISION", "ARN", "LEASE", "VERDICT", "DETAIL",
        ],
        &rows_of(
            &page["items"],
            &[
                "seq", "at", "actor", "mode", "decision", "arn", "lease_id", "verdict", "detail",
            ],
        ),
    )
}

/// `ephemera cost`: one row per project, task or region, biggest first, then the total.
pub fn cost_table(spend: &serde_json::Value, by: &str) -> String {
    let mut out = table(
        &[&by.to_uppercase(), "USD", "ESTIMATED"],
        &rows_of(&spend["items"], &[by, "usd", "estimated"]),
    );
    let _ = writeln!(
        out,
        "total {} USD from {} to {}",
        s(&spend["total_usd"]),
        s(&spend["since"]),
        s(&spend["until"])
    );
    out
}

/// `ephemera cost --output csv`: a header and one line per row (RFC 4180 quoting).
pub fn cost_csv(spend: &serde_json::Value, by: &str) -> String {
    let quote = |v: String| {
        if v.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", v.replace('"', "\"\""))
        } else {
            v
        }
    };
    let mut out = format!("{by},usd,estimated\n");
    for row in rows_of(&spend["items"], &[by, "usd", "estimated"]) {
        out.push_str(&row.into_iter().map(quote).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terraform_block_escapes() {
        let tags = BTreeMap::from([
            ("ephemera:owner".to_owned(), "a\"b${x}".to_owned()),
            ("ephemera:task".to_owned(), "t".to_owned()),
        ]);
        assert_eq!(
            tags_terraform(&tags),
            "default_tags {\n  tags = {\n    \"ephemera:owner\" = \"a\\\"b$${x}\"\n    \"ephemera:task\"  = \"t\"\n  }\n}\n"
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn tables_align() {
        let t = table(&["A", "BB"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "A    BB\nxxx  y\n");
    }
}
