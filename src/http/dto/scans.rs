//! Passes on the wire: a run started, a run with its walks, the status of every task.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{ResourceType, RunOutcome, TaskName, WalkOutcome};
use crate::resource::{RunRecord, SweepRecord, WalkRecord};

/// `POST /scans` (202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"run_id": "0194e0a1-7c2d-7000-8000-00000000beef", "outcome": "running"}))]
pub struct ScanStarted {
    pub run_id: String,
    pub outcome: RunOutcome,
}

/// One run of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunView {
    pub id: String,
    pub task: TaskName,
    /// `schedule`, `api:PRINCIPAL` or `cli`.
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    /// What the run reported: for a scan its report (walks, verdicts, findings, the act
    /// step, the audit head), for a cost refresh its report or `{error}`.
    #[schema(value_type = Object)]
    pub summary: serde_json::Value,
}

impl From<RunRecord> for RunView {
    fn from(r: RunRecord) -> Self {
        RunView {
            id: r.id,
            task: r.task,
            trigger: r.trigger,
            started_at: r.started_at,
            ended_at: r.ended_at,
            outcome: r.outcome,
            summary: r.summary,
        }
    }
}

/// How the walk of one (account, region) went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WalkView {
    pub account: String,
    pub region: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub outcome: WalkOutcome,
    /// Why it is incomplete.
    pub reason: Option<String>,
    pub pages: u64,
    pub resources: u64,
    /// The sweep that ran with this walk (never-tagged discovery), when one was due; else the
    /// listing of the credentials, which runs every pass in an account's first region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepView>,
}

/// The sweep of one (account, region): each type listed by its service's own call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SweepView {
    pub started_at: DateTime<Utc>,
    pub types: Vec<TypeSweepView>,
    /// Only the credentials (IAM roles, instance profiles, users, access keys), listed every
    /// pass: not a full sweep.
    #[serde(default)]
    pub credentials_only: bool,
}

/// How the sweep of one type went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TypeSweepView {
    pub resource_type: ResourceType,
    /// `incomplete`: nothing of this type in this (account, region) is resolved or deleted
    /// this pass.
    pub outcome: WalkOutcome,
    pub reason: Option<String>,
    /// What the list call returned.
    pub listed: u64,
    /// Of those, what the tagging walk did not list.
    pub not_in_tagging: u64,
}

impl From<SweepRecord> for SweepView {
    fn from(s: SweepRecord) -> Self {
        SweepView {
            started_at: s.started_at,
            credentials_only: s.credentials_only,
            types: s
                .types
                .into_iter()
                .map(|t| TypeSweepView {
                    resource_type: t.resource_type,
                    outcome: t.outcome,
                    reason: t.reason,
                    listed: t.listed,
                    not_in_tagging: t.not_in_tagging,
                })
                .collect(),
        }
    }
}

impl SweepView {
    /// One line: `complete, 3 not in tagging` or `incomplete: ec2:snapshot, sqs:queue`.
    pub fn summary(&self) -> String {
        let failed: Vec<&str> = self
            .types
            .iter()
            .filter(|t| t.outcome != WalkOutcome::Complete)
            .map(|t| t.resource_type.as_str())
            .collect();
        if failed.is_empty() {
            let found: u64 = self.types.iter().map(|t| t.not_in_tagging).sum();
            format!("complete, {found} not in tagging")
        } else {
            format!("incomplete: {}", failed.join(", "))
        }
    }
}

impl From<WalkRecord> for WalkView {
    fn from(w: WalkRecord) -> Self {
        WalkView {
            account: w.account,
            region: w.region,
            started_at: w.started_at,
            ended_at: w.ended_at,
            outcome: w.outcome,
            reason: w.reason,
            pages: w.pages,
            resources: w.resources,
            sweep: w.sweep.map(SweepView::from),
        }
    }
}

/// `GET /scans/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScanView {
    pub run: RunView,
    pub walks: Vec<WalkView>,
}

/// `GET /status`: the latest run of each task, the scan in progress, the last scan's walks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StatusView {
    pub tasks: Vec<RunView>,
    pub running_scan: Option<String>,
    pub last_scan_walks: Vec<WalkView>,
}

/// What a lessee is told instead of an error text: AWS and store messages name accounts, roles
/// and other projects' resources.
pub const HIDDEN: &str = "(details for operators and viewers)";

/// Keys whose text is an error message or a reason, in run summaries and walks.
const ERROR_KEYS: [&str; 4] = ["reason", "error", "organization_error", "detail"];

impl RunView {
    /// The run as a lessee may see it: error texts hidden, and the caps of projects it cannot
    /// see left out (the pass's and accounts' caps stay, as in the plan).
    pub fn for_lessee(mut self, can_see: impl Fn(&str) -> bool) -> Self {
        hide_errors(&mut self.summary);
        if let Some(caps) = self
            .summary
            .pointer_mut("/reap/capped")
            .and_then(serde_json::Value::as_array_mut)
        {
            caps.retain(|c| {
                c.as_str()
                    .and_then(|t| t.split_once(" for project:"))
                    .map(|(_, rest)| rest.trim_end_matches(" this pass"))
                    .is_none_or(&can_see)
            });
        }
        self
    }
}

impl WalkView {
    /// The walk as a lessee may see it: whether it was complete, not why not.
    pub fn for_lessee(mut self) -> Self {
        if self.reason.is_some() {
            self.reason = Some(HIDDEN.into());
        }
        if let Some(s) = &mut self.sweep {
            for t in &mut s.types {
                if t.reason.is_some() {
                    t.reason = Some(HIDDEN.into());
                }
            }
        }
        self
    }
}

fn hide_errors(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if ERROR_KEYS.contains(&k.as_str()) && v.is_string() {
                    *v = HIDDEN.into();
                } else {
                    hide_errors(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(hide_errors),
        _ => {}
    }
}

#[cfg(test)]
mod lessee_tests {
    use super::*;

    #[test]
    fn lessees_see_no_error_text_and_only_their_caps() {
        let run = RunView {
            id: "R".into(),
            task: TaskName::Scan,
            trigger: "scheduler".into(),
            started_at: DateTime::UNIX_EPOCH,
            ended_at: None,
            outcome: RunOutcome::Partial,
            summary: serde_json::json!({
                "organization_error": "AccessDenied: arn:aws:iam::111111111111:role/x",
                "walks": [{"account": "1", "reason": "ThrottlingException in 222222222222"}],
                "failures": [{"arn": "a", "detail": "UnauthorizedOperation"}],
                "reap": {"capped": [
                    "5 deletions due, cap 2: none done for project:web this pass",
                    "5 deletions due, cap 2: none done for project:data this pass",
                    "9 deletions due, cap 3: none done for pass this pass",
                    "9 deletions due, cap 3: none done for account:123456789012 this pass",
                ], "deleted": 1},
                "resources_seen": 10,
            }),
        };
        let seen = run.for_lessee(|p| p == "web");
        let s = &seen.summary;
        assert_eq!(s["organization_error"], HIDDEN);
        assert_eq!(s["walks"][0]["reason"], HIDDEN);
        assert_eq!(s["failures"][0]["detail"], HIDDEN);
        assert_eq!(s["walks"][0]["account"], "1");
        assert_eq!(s["resources_seen"], 10);
        let caps: Vec<&str> = s["reap"]["capped"]
            .as_array()
            .expect("caps")
            .iter()
            .filter_map(|c| c.as_str())
            .collect();
        assert_eq!(caps.len(), 3, "{caps:?}");
        assert!(caps.iter().all(|c| !c.contains("project:data")), "{caps:?}");
    }
}
