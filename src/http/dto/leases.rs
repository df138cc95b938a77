//! Leases on the wire.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ts;

use crate::model::IdentityTags;
use crate::model::{Lease, LeaseState, ResourceGroup, TimelineEntry, TimelineEvent};

/// A lease as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
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
    /// When a complete pass proved every resource of the ended lease gone (`lease show` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teardown_complete_at: Option<String>,
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
            teardown_complete_at: None,
        }
    }
}

/// `POST /leases/{id}/renew` body; all fields optional.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ttl": "2h"}))]
pub struct RenewRequest {
    /// New time to live, counted from now; defaults to the project's default TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// `GET /leases` response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LeaseList {
    pub items: Vec<LeaseView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `GET /leases/{id}/timeline`: the lease's whole story, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LeaseTimeline {
    pub lease_id: String,
    pub state: LeaseState,
    pub entries: Vec<TimelineEntryView>,
}

/// One entry of a lease's timeline. `kind` says which of the optional fields it carries.
/// Resources, findings and deletions come grouped by type and region (`count` of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"at": "2026-03-01T09:05:00.000Z", "kind": "resources-first-seen", "summary": "3 ec2:volume in us-east-1 first seen", "resource_type": "ec2:volume", "region": "us-east-1", "count": 3}))]
pub struct TimelineEntryView {
    pub at: String,
    /// `acquired`, `renewed`, `heartbeat-gap`, `expired`, `released`,
    /// `resources-first-seen`, `resources-last-seen`, `finding-opened`, `finding-updated`,
    /// `finding-marked`, `finding-resolved`, `notice-sent`, `deletion`, `teardown-complete`,
    /// `spend`.
    pub kind: String,
    /// One line for people.
    pub summary: String,
    /// Who acquired, renewed, beat or released it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// `renewed`: the end before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `acquired`: the end it was acquired with; `renewed`: the end after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `heartbeat-gap`: seconds since the previous beat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_seconds: Option<i64>,
    /// `acquired`, `heartbeat-gap`: the heartbeat interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval: Option<String>,
    /// `heartbeat-gap`: the lease had lapsed, and the beat revived it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revived: Option<bool>,
    /// `expired`: by a missed heartbeat (else at its end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_heartbeat: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Resources, findings, notices or audit records in the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// `resources-last-seen`: how many of them were still there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<u64>,
    /// `finding-*`: the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// `finding-marked`, `finding-resolved`: the deadline planned, or why it resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// `notice-sent`: the message sent (`expiry-warning`, `owner-digest`, `reaped-notice`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `notice-sent`: what it carried (`deletion-planned`, `reaped`; the message itself for an
    /// expiry warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    /// `deletion`: the audit record's decision (`deleted`, `would-delete`, `skipped`, `failed`,
    /// `refused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    /// `spend`: USD so far, a decimal string (money is never a float).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd: Option<String>,
    /// `spend`: some day of it is still an estimate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated: Option<bool>,
}

impl TimelineEntryView {
    pub fn new(e: &TimelineEntry) -> Self {
        let mut v = TimelineEntryView {
            at: ts(e.at),
            kind: e.event.kind(),
            summary: e.event.summary(),
            principal: None,
            from: None,
            to: None,
            gap_seconds: None,
            heartbeat_interval: None,
            revived: None,
            by_heartbeat: None,
            resource_type: None,
            region: None,
            count: None,
            live: None,
            verdict: None,
            detail: None,
            message: None,
            notice: None,
            recipient: None,
            decision: None,
            usd: None,
            estimated: None,
        };
        let group = |v: &mut TimelineEntryView, g: &ResourceGroup| {
            v.resource_type = Some(g.resource_type.clone());
            v.region = Some(g.region.clone());
            v.count = Some(g.count);
        };
        match &e.event {
            TimelineEvent::Acquired {
                principal,
                expires_at,
                heartbeat_interval,
            } => {
                v.principal = Some(principal.clone());
                v.to = Some(ts(*expires_at));
                v.heartbeat_interval = heartbeat_interval.map(|i| i.to_string());
            }
            TimelineEvent::Renewed {
                principal,
                from,
                to,
            } => {
                v.principal = Some(principal.clone());
                v.from = Some(ts(*from));
                v.to = Some(ts(*to));
            }
            TimelineEvent::HeartbeatGap {
                principal,
                gap,
                interval,
                revived,
            } => {
                v.principal = Some(principal.clone());
                v.gap_seconds = Some(gap.num_seconds());
                v.heartbeat_interval = Some(interval.to_string());
                v.revived = Some(*revived);
            }
            TimelineEvent::Expired { by_heartbeat } => v.by_heartbeat = Some(*by_heartbeat),
            TimelineEvent::Released { principal } => v.principal.clone_from(principal),
            TimelineEvent::ResourcesFirstSeen(g) => group(&mut v, g),
            TimelineEvent::ResourcesLastSeen { group: g, live } => {
                group(&mut v, g);
                v.live = Some(*live);
            }
            TimelineEvent::Finding {
                verdict,
                group: g,
                detail,
                ..
            } => {
                group(&mut v, g);
                v.verdict = Some(verdict.clone());
                v.detail = (!detail.is_empty()).then(|| detail.clone());
            }
            TimelineEvent::NoticeSent {
                notice,
                message,
                recipient,
                count,
            } => {
                v.notice = Some(notice.to_string());
                v.message = Some(message.to_string());
                v.recipient = Some(recipient.clone());
                v.count = Some(*count);
            }
            TimelineEvent::Deletion { decision, group: g } => {
                group(&mut v, g);
                v.decision = Some(decision.clone());
            }
            TimelineEvent::TeardownComplete => {}
            TimelineEvent::Spend {
                micro_usd,
                estimated,
            } => {
                v.usd = Some(crate::model::format_usd(*micro_usd));
                v.estimated = Some(*estimated);
            }
        }
        v
    }
}
