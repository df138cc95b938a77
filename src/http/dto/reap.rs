//! The deletion plan and on-call reaping on the wire.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ts;
use crate::model::{Decision, Source, Verdict};
use crate::reaper::plan::{CapHit, PlanItem, Status};
use crate::reaper::run::ItemResult;

/// Where one planned item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PlanStatus {
    /// To be deleted this pass (after the last-moment checks).
    Due,
    /// Its deadline is still ahead.
    Scheduled,
    /// Past its deadline but held back (`held_reason` says why).
    Held,
}

/// What reaping a planned item does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PlanStep {
    #[default]
    Delete,
    /// An access key not yet deactivated: made inactive (reversible); deleted once
    /// `enforcement.deactivation_grace` has passed.
    Deactivate,
}

/// One marked finding in the plan: what the reaper knows of it, and where it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanItemView {
    pub finding_id: i64,
    pub arn: String,
    pub account: String,
    pub region: String,
    pub resource_type: String,
    pub project: Option<String>,
    pub verdict: Verdict,
    /// The finding's reason.
    pub reason: String,
    pub lease_id: Option<String>,
    pub owner: Option<String>,
    pub owner_tag: Option<String>,
    pub deadline: DateTime<Utc>,
    pub lease_ended_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// `deleting` when a delete was started and its outcome never recorded.
    pub reap_state: Option<String>,
    /// What reaping it does: `deactivate` for an access key ephemera has not deactivated yet.
    /// (Absent from plan files written before it: `delete`, whose digest then no longer
    /// matches an access key's.)
    #[serde(default)]
    pub step: PlanStep,
    /// An access key: when ephemera deactivated it (its deletion waits until `deadline`, the
    /// end of the deactivation grace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deactivated_at: Option<DateTime<Utc>>,
    pub last_decision: Option<Decision>,
    /// Passes in a row that skipped it for the reason of its last skip, recorded in the audit
    /// log once (0: its last decision was no skip); when the latest did.
    pub skip_count: u32,
    pub last_skipped_at: Option<DateTime<Utc>>,
    /// How inventory found it (`sweep`: never tagged, found by a service's own list call).
    pub source: Source,
    /// It carried no tags at all: deleted only in accounts dedicated to ephemeral work.
    pub tagless: bool,
    pub created_at: Option<DateTime<Utc>>,
    /// Who made it, from CloudTrail, where known.
    pub creator: Option<String>,
    pub status: PlanStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_reason: Option<String>,
    /// A due controller's members: what deleting it takes with it (each due on its own; none
    /// is ever deleted alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<PlanMemberView>,
    /// What a reviewed plan pins of this item (`sha256:…`): `ephemera reap --plan` deletes it
    /// only while this is unchanged.
    pub state_digest: String,
}

/// A member of a controller in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanMemberView {
    pub finding_id: i64,
    pub arn: String,
    pub resource_type: String,
    pub project: Option<String>,
    pub lease_id: Option<String>,
}

impl From<PlanItem> for PlanItemView {
    fn from(i: PlanItem) -> Self {
        let state_digest = crate::reaper::plan::state_digest(&i);
        let step = match crate::reaper::plan::step(&i.candidate) {
            crate::reaper::plan::Step::Delete => PlanStep::Delete,
            crate::reaper::plan::Step::Deactivate => PlanStep::Deactivate,
        };
        let c = i.candidate;
        let members = i
            .members
            .into_iter()
            .map(|m| PlanMemberView {
                finding_id: m.finding_id,
                arn: m.arn.to_string(),
                resource_type: m.resource_type,
                project: m.project.map(|p| p.to_string()),
                lease_id: m.lease_id,
            })
            .collect();
        let (status, held_reason) = match i.status {
            Status::Due => (PlanStatus::Due, None),
            Status::Scheduled => (PlanStatus::Scheduled, None),
            Status::Held(why) => (PlanStatus::Held, Some(why)),
        };
        PlanItemView {
            state_digest,
            finding_id: c.finding_id,
            arn: c.arn.to_string(),
            account: c.account,
            region: c.region,
            resource_type: c.resource_type,
            project: c.project.map(|p| p.to_string()),
            verdict: c.verdict,
            reason: c.reason,
            lease_id: c.lease_id,
            owner: c.owner,
            owner_tag: c.owner_tag,
            deadline: c.deadline,
            lease_ended_at: c.lease_ended_at,
            attempts: c.attempts,
            next_attempt_at: c.next_attempt_at,
            reap_state: c.reap_state,
            step,
            deactivated_at: c.deactivated_at,
            last_decision: c.last_decision,
            skip_count: c.skip_count,
            last_skipped_at: c.last_skipped_at,
            source: c.source,
            tagless: c.tagless,
            created_at: c.created_at,
            creator: c.creator,
            status,
            held_reason,
            members,
        }
    }
}

/// A cap that stopped deletions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CapView {
    /// `pass`, or `project:NAME`.
    pub scope: String,
    pub due: u64,
    pub limit: u64,
}

impl From<CapHit> for CapView {
    fn from(c: CapHit) -> Self {
        CapView {
            scope: c.scope,
            due: c.due,
            limit: c.limit,
        }
    }
}

/// `GET /plan`: the deletion plan as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PlanView {
    pub armed: bool,
    /// Due items first, in deletion order; then the held and scheduled ones.
    pub items: Vec<PlanItemView>,
    pub capped: Vec<CapView>,
}

/// `POST /reap` with `plan_only` (200): what on-call reaping would do; nothing is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReapPlanView {
    pub armed: bool,
    pub plan: Vec<PlanItemView>,
    pub capped: Vec<CapView>,
    /// The ARNs refused before planning (no open finding, …).
    pub results: Vec<ReapItemView>,
}

impl From<ItemResult> for ReapItemView {
    fn from(r: ItemResult) -> Self {
        ReapItemView {
            arn: r.arn,
            resource_type: r.resource_type,
            outcome: r.outcome,
            detail: r.detail,
        }
    }
}

impl From<&ItemResult> for ReapItemView {
    fn from(r: &ItemResult) -> Self {
        ReapItemView::from(r.clone())
    }
}

/// `POST /reap` body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"arns": ["arn:aws:ec2:us-east-1:123456789012:volume/vol-0abc"], "plan_only": true}))]
pub struct ReapRequest {
    /// 1 to 1000 ARNs of resources with open findings (empty with `plan`: the plan names them).
    #[serde(default)]
    pub arns: Vec<String>,
    /// Answer the plan (200) and delete nothing, instead of starting a job (202).
    #[serde(default)]
    pub plan_only: bool,
    /// A reviewed plan to apply exactly: its items are reaped only while their state digest is
    /// unchanged; the others are refused, and every audit record names the plan's digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<ReviewedPlanBody>,
}

/// A reviewed plan as `ephemera plan --out` wrote it: its items' ARNs and state digests, and
/// the digest of them all (`ephemera::reaper::plan::plan_digest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewedPlanBody {
    pub digest: String,
    /// 1 to 1000 items, each ARN once.
    pub items: Vec<ReviewedItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewedItem {
    pub arn: String,
    pub state_digest: String,
}

/// Where an on-call reap job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReapJobState {
    Running,
    Done,
    /// The store failed part way; what was done is in the audit log.
    Failed,
}

/// One ARN's outcome in a reap job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReapItemView {
    pub arn: String,
    pub resource_type: String,
    /// `deleted`, `would-delete`, `skipped`, `failed`, `held` or `refused`.
    pub outcome: Decision,
    pub detail: String,
}

/// `POST /reap` (202) and `GET /reap/jobs/{id}`: an on-call reap job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
            results: j.results.iter().map(ReapItemView::from).collect(),
            error: j.error.clone(),
        }
    }
}
