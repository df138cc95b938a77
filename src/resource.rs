//! Plain domain records of the audit pass: what inventory saw, what evaluation made of it,
//! findings, walks and runs.
//!
//! Architecture Invariant: data only. No SDK types (inventory converts at its edge), no SQL,
//! no clock.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{
    Action, Arn, ControllerRef, Decision, HumanDuration, Image, ProjectName, ReapMode,
    ResourceType, RunOutcome, Source, Tags, TaskName, Verdict, WalkOutcome,
};

/// One resource as a walk of (account, region) saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub arn: Arn,
    pub account: String,
    pub region: String,
    pub resource_type: String,
    pub tags: Tags,
    /// Provider state where inventory knows it (EC2 instances: `running`, `terminated`, …).
    pub state: Option<String>,
    /// Which inventory call found it.
    pub source: Source,
    /// When it was created, where the call that found it says (launch or create time).
    pub created_at: Option<DateTime<Utc>>,
    /// EC2 instances and launch templates, while the rules hold an image catalog: the image
    /// it runs or launches.
    pub image: Option<Image>,
}

impl Observed {
    /// EC2 keeps listing terminated instances for a while; they are not live resources.
    pub fn is_terminated(&self) -> bool {
        self.state.as_deref() == Some("terminated")
    }
}

/// An observed resource with its evaluation, as persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub observed: Observed,
    pub verdict: Verdict,
    pub reason: String,
    pub project: Option<ProjectName>,
    pub action: Action,
    pub grace: HumanDuration,
    pub lease_id: Option<String>,
    pub lease_ended_at: Option<DateTime<Utc>>,
}

/// A resource as stored, with its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredResource {
    pub arn: Arn,
    pub account: String,
    pub region: String,
    pub resource_type: String,
    pub tags: Tags,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub gone_at: Option<DateTime<Utc>>,
    pub state: Option<String>,
    pub verdict: Verdict,
    pub reason: String,
    pub project: Option<ProjectName>,
    pub action: Action,
    pub lease_id: Option<String>,
    pub source: Source,
    pub created_at: Option<DateTime<Utc>>,
    /// Who made it, from CloudTrail, where known.
    pub creator: Option<String>,
}

/// A finding: a resource in a verdict that needs attention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: i64,
    pub arn: Arn,
    pub verdict: Verdict,
    pub action: Action,
    pub reason: String,
    pub project: Option<ProjectName>,
    pub lease_id: Option<String>,
    pub account: String,
    pub region: String,
    pub resource_type: String,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution: Option<String>,
    /// How inventory found its resource, and when that was created where known.
    pub source: Source,
    pub created_at: Option<DateTime<Utc>>,
    /// Who made its resource, from CloudTrail, where known.
    pub creator: Option<String>,
}

/// How one walk of (account, region) ended.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalkRecord {
    pub account: String,
    pub region: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: DateTime<Utc>,
    pub outcome: WalkOutcome,
    /// Why a walk is incomplete.
    pub reason: Option<String>,
    pub pages: u64,
    pub resources: u64,
    /// The sweep that ran with this walk, if one was due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sweep: Option<SweepRecord>,
}

impl WalkRecord {
    pub fn is_complete(&self) -> bool {
        self.outcome == WalkOutcome::Complete
    }

    /// The types whose sweep failed in this walk: nothing of them in its (account, region) is
    /// resolved or deleted this pass.
    pub fn incomplete_types(&self) -> impl Iterator<Item = ResourceType> + '_ {
        self.sweep
            .iter()
            .flat_map(|s| s.types.iter())
            .filter(|t| t.outcome != WalkOutcome::Complete)
            .map(|t| t.resource_type)
    }
}

/// The sweep of one (account, region): each type listed by its service's own call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SweepRecord {
    pub started_at: DateTime<Utc>,
    pub types: Vec<TypeSweepRecord>,
    /// Only the credentials, which are listed every pass: not a sweep that makes the next
    /// one wait `discovery.interval`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub credentials_only: bool,
}

impl SweepRecord {
    pub fn is_complete(&self) -> bool {
        self.types
            .iter()
            .all(|t| t.outcome == WalkOutcome::Complete)
    }
}

/// How the sweep of one type went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeSweepRecord {
    pub resource_type: ResourceType,
    pub outcome: WalkOutcome,
    /// Why it is incomplete: the failed call and its error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the list call returned.
    pub listed: u64,
    /// Of those, what the tagging walk did not return (never tagged, mostly).
    pub not_in_tagging: u64,
}

/// One run of a task (scan, cost, digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub task: TaskName,
    pub trigger: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    pub outcome: RunOutcome,
    pub summary: serde_json::Value,
}

/// What persisting one page changed in the findings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageChanges {
    pub opened: u64,
    pub updated: u64,
}

/// What closing a walk changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkChanges {
    pub gone: u64,
    pub resolved: u64,
}

/// A marked finding, with what the reaper needs to plan and re-verify it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReapCandidate {
    pub finding_id: i64,
    pub arn: Arn,
    pub account: String,
    pub region: String,
    pub resource_type: String,
    pub project: Option<ProjectName>,
    pub verdict: Verdict,
    pub reason: String,
    pub lease_id: Option<String>,
    pub owner: Option<String>,
    /// The owner tag as the pass saw it (a change at the last moment wins).
    pub owner_tag: Option<String>,
    pub deadline: DateTime<Utc>,
    pub lease_ended_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// `deleting` when a delete call was started and its outcome never recorded (a crash).
    pub reap_state: Option<String>,
    /// An access key: when ephemera deactivated it (the first of its two steps), if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deactivated_at: Option<DateTime<Utc>>,
    /// The decision last recorded for it, to record a repeat once.
    pub last_decision: Option<Decision>,
    /// It carried no tags at all when last seen (never tagged, or every tag removed): such a
    /// resource is deleted only in an account dedicated to ephemeral work.
    pub tagless: bool,
    /// The controller its tags name (a stack, a node group, an Auto Scaling group, an ECS
    /// service): it is reaped only with that controller, never alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller: Option<ControllerRef>,
    /// Which inventory call last found it.
    pub source: Source,
    /// When it was created, where inventory learnt it.
    pub created_at: Option<DateTime<Utc>>,
    /// Who made it, from CloudTrail, where known.
    pub creator: Option<String>,
    /// Passes in a row that skipped it for the reason of its last skip (0: its last decision
    /// was no skip), and when the latest did.
    pub skip_count: u32,
    pub last_skipped_at: Option<DateTime<Utc>>,
}

/// One reaper decision, as appended to the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub run_id: Option<String>,
    /// `scheduler`, or the principal who reaped by hand.
    pub actor: String,
    pub mode: ReapMode,
    pub arn: String,
    pub lease_id: Option<String>,
    pub verdict: Option<String>,
    pub decision: Decision,
    pub detail: String,
}

/// An audit record as stored: the entry, its place in the chain and the hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

/// Where the audit chain breaks, as `audit verify` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditBreak {
    /// The first record that does not check out (for a removed tail: the last one expected).
    pub seq: i64,
    /// `edited`, `inserted or removed before it`, `missing` (removed), `tail removed`.
    pub problem: String,
}

/// What a scan did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScanReport {
    pub run_id: String,
    /// Who started the pass, as the audit log names it: `scheduler`, `once` (`scan --once`)
    /// or the API principal.
    pub actor: String,
    /// `success` (every walk complete), `partial` (some incomplete) or `failed`.
    pub outcome: RunOutcome,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// Accounts audited this pass (static and from the organization).
    #[serde(default)]
    pub accounts: u64,
    /// Why the organization's accounts could not be read (the pass used the last ones known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_error: Option<String>,
    /// Every walk of the pass (in memory; the stored run summary leaves them to the walks
    /// table).
    #[serde(default)]
    pub walks: Vec<WalkRecord>,
    pub resources_seen: u64,
    /// Resources seen this pass, by verdict, each counted once.
    pub verdicts: BTreeMap<String, u64>,
    pub findings_opened: u64,
    pub findings_updated: u64,
    pub findings_resolved: u64,
    pub resources_gone: u64,
    /// What the act step did (absent when it could not run).
    pub reap: Option<ReapSummary>,
    /// The audit chain's head after the pass, published (log, run summary, on-call mail) so
    /// that `audit verify --head` can later show a removed tail or an emptied log.
    pub audit_head: Option<crate::audit::AuditHead>,
    /// Active leases running longer than their project's recent p95 times its factor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrunning: Vec<OverrunningLease>,
}

/// An active lease past its project's runtime threshold (runtime early warning).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverrunningLease {
    pub lease_id: String,
    pub project: String,
    pub task: String,
    pub owner: String,
    pub running_seconds: i64,
    pub p95_seconds: i64,
    pub threshold_seconds: i64,
}

/// The act step of a pass, in counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReapSummary {
    pub armed: bool,
    pub marked: u64,
    pub would_delete: u64,
    pub deleted: u64,
    pub skipped: u64,
    pub failed: u64,
    pub held: u64,
    pub capped: Vec<String>,
}
