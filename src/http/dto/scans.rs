//! Passes on the wire: a run started, a run with its walks, the status of every task.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{RunOutcome, TaskName, WalkOutcome};
use crate::resource::{RunRecord, WalkRecord};

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
