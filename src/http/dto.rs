//! JSON shapes of the API, shared by the server and the CLI client. Kept apart from the
//! domain types so the wire format changes only on purpose.

use std::collections::BTreeMap;

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};

use crate::model::IdentityTags;
use crate::model::{Lease, LeaseState};

/// A lease as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseView {
    pub id: String,
    pub project: String,
    pub task: String,
    pub owner: String,
    pub principal: String,
    pub state: LeaseState,
    pub created_at: String,
    pub expires_at: String,
    /// When the lease stops being active unless renewed or beaten: the earlier of
    /// `expires_at` and the heartbeat deadline.
    pub ends_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub regions: Vec<String>,
    /// The identity tags to apply to every resource created under this lease.
    pub tags: BTreeMap<String, String>,
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl LeaseView {
    pub fn new(l: &Lease, now: chrono::DateTime<chrono::Utc>, keys: &IdentityTags) -> Self {
        LeaseView {
            id: l.id.to_string(),
            project: l.project.to_string(),
            task: l.task.clone(),
            owner: l.owner.clone(),
            principal: l.principal.clone(),
            state: l.state(now),
            created_at: ts(l.created_at),
            expires_at: ts(l.expires_at),
            ends_at: ts(l.ends_at()),
            heartbeat_interval: l.heartbeat_interval.map(|d| d.to_string()),
            last_heartbeat_at: l.last_heartbeat_at.map(ts),
            released_at: l.released_at.map(ts),
            labels: l.labels.clone(),
            regions: l.regions.clone(),
            tags: l.identity_tags(keys),
        }
    }
}

/// `POST /leases/{id}/renew` body; all fields optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// New time to live, counted from now; defaults to the project's default TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// `GET /leases` response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeaseList {
    pub items: Vec<LeaseView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// Every error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable, machine-readable (e.g. `ttl-above-max`).
    pub code: String,
    pub message: String,
}

/// `GET /audit/verify` (and `ephemera audit verify --config`): `{ok, records}` when the chain
/// checks out, else `{ok: false, broken_at, problem}`.
pub fn audit_verdict(outcome: Result<u64, crate::resource::AuditBreak>) -> serde_json::Value {
    match outcome {
        Ok(n) => serde_json::json!({"ok": true, "records": n}),
        Err(b) => serde_json::json!({"ok": false, "broken_at": b.seq, "problem": b.problem}),
    }
}

/// `POST /reap` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReapRequest {
    /// 1 to 1000 ARNs of resources with open findings.
    pub arns: Vec<String>,
    /// Answer the plan (200) and delete nothing, instead of starting a job (202).
    #[serde(default)]
    pub plan_only: bool,
}

/// Where an on-call reap job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReapJobState {
    Running,
    Done,
    /// The store failed part way; what was done is in the audit log.
    Failed,
}

/// One ARN's outcome in a reap job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReapItemView {
    pub arn: String,
    pub resource_type: String,
    /// `deleted`, `would-delete`, `skipped`, `failed` or `held`.
    pub outcome: String,
    pub detail: String,
}

/// `POST /reap` (202) and `GET /reap/jobs/{id}`: an on-call reap job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReapJobView {
    pub job_id: String,
    pub state: ReapJobState,
    /// Who started it (the actor of its audit records).
    pub principal: String,
    pub armed: bool,
    pub started_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
    /// ARNs settled so far, of `total` (each distinct ARN asked for).
    pub done: u64,
    pub total: u64,
    /// One per ARN once the job is done; empty while it runs.
    #[serde(default)]
    pub results: Vec<ReapItemView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ReapJobView {
    pub fn new(j: &crate::jobs::JobSnapshot) -> Self {
        use crate::jobs::JobState;
        ReapJobView {
            job_id: j.id.clone(),
            state: match j.state {
                JobState::Running => ReapJobState::Running,
                JobState::Done => ReapJobState::Done,
                JobState::Failed => ReapJobState::Failed,
            },
            principal: j.principal.clone(),
            armed: j.armed,
            started_at: ts(j.started_at),
            ended_at: j.ended_at.map(ts),
            done: j.done,
            total: j.total,
            results: j
                .results
                .iter()
                .map(|r| ReapItemView {
                    arn: r.arn.clone(),
                    resource_type: r.resource_type.clone(),
                    outcome: r.outcome.to_string(),
                    detail: r.detail.clone(),
                })
                .collect(),
            error: j.error.clone(),
        }
    }
}
