//! The audit log on the wire.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{Decision, ReapMode};
use crate::resource::{AuditBreak, AuditRecord};

/// One record of the audit log, with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecordView {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub run_id: Option<String>,
    /// `scheduler`, `once`, or the principal who reaped by hand.
    pub actor: String,
    pub mode: ReapMode,
    /// The resource's ARN, or the scope of a cap (`pass`, `project:NAME`).
    pub arn: String,
    pub lease_id: Option<String>,
    pub verdict: Option<String>,
    pub decision: Decision,
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl From<AuditRecord> for AuditRecordView {
    fn from(r: AuditRecord) -> Self {
        let e = r.entry;
        AuditRecordView {
            seq: r.seq,
            at: e.at,
            run_id: e.run_id,
            actor: e.actor,
            mode: e.mode,
            arn: e.arn,
            lease_id: e.lease_id,
            verdict: e.verdict,
            decision: e.decision,
            detail: e.detail,
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

/// `GET /audit`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditList {
    pub items: Vec<AuditRecordView>,
    pub next_cursor: Option<String>,
}

/// `GET /audit/verify` (and `ephemera audit verify --config`): `{ok, records}` when the chain
/// checks out, else `{ok: false, broken_at, problem}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"ok": false, "broken_at": 42, "problem": "edited"}))]
pub struct AuditVerdict {
    pub ok: bool,
    /// Records checked, when the chain checks out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// The first record that does not check out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<i64>,
    /// `edited`, `inserted or removed before it`, `missing`, `tail removed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

impl From<Result<u64, AuditBreak>> for AuditVerdict {
    fn from(outcome: Result<u64, AuditBreak>) -> Self {
        match outcome {
            Ok(n) => AuditVerdict {
                ok: true,
                records: Some(n),
                broken_at: None,
                problem: None,
            },
            Err(b) => AuditVerdict {
                ok: false,
                records: None,
                broken_at: Some(b.seq),
                problem: Some(b.problem),
            },
        }
    }
}
