//! What the passes saw and flagged, on the wire.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{Action, Source, Verdict};
use crate::resource::{Finding, StoredResource};

/// A resource as the store holds it, with its latest verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourceView {
    pub arn: String,
    pub account: String,
    pub region: String,
    pub resource_type: String,
    pub tags: BTreeMap<String, String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub gone_at: Option<DateTime<Utc>>,
    /// Provider state where known (EC2 instances).
    pub state: Option<String>,
    pub verdict: Verdict,
    pub reason: String,
    pub project: Option<String>,
    pub action: Action,
    pub lease_id: Option<String>,
    /// How inventory found it: `tagging`, `sweep` (a service's own list call: never-tagged
    /// resources) or `resource-explorer`.
    pub source: Source,
    /// When it was created, where the call that found it says.
    pub created_at: Option<DateTime<Utc>>,
    /// Who made it, from CloudTrail (`untagged` and `unknown-lease` resources), where known.
    pub creator: Option<String>,
}

impl From<StoredResource> for ResourceView {
    fn from(r: StoredResource) -> Self {
        ResourceView {
            arn: r.arn.to_string(),
            account: r.account,
            region: r.region,
            resource_type: r.resource_type,
            tags: r
                .tags
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            gone_at: r.gone_at,
            state: r.state,
            verdict: r.verdict,
            reason: r.reason,
            project: r.project.map(|p| p.to_string()),
            action: r.action,
            lease_id: r.lease_id,
            source: r.source,
            created_at: r.created_at,
            creator: r.creator,
        }
    }
}

/// `GET /resources`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResourceList {
    pub items: Vec<ResourceView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A finding: a resource in a verdict that needs attention.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FindingView {
    pub id: i64,
    pub arn: String,
    pub verdict: Verdict,
    pub action: Action,
    pub reason: String,
    pub project: Option<String>,
    pub lease_id: Option<String>,
    pub account: String,
    pub region: String,
    pub resource_type: String,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution: Option<String>,
    /// How inventory found its resource (see [`ResourceView::source`]).
    pub source: Source,
    /// When its resource was created, where known.
    pub created_at: Option<DateTime<Utc>>,
    /// Who made its resource, from CloudTrail, where known.
    pub creator: Option<String>,
}

impl From<Finding> for FindingView {
    fn from(f: Finding) -> Self {
        FindingView {
            id: f.id,
            arn: f.arn.to_string(),
            verdict: f.verdict,
            action: f.action,
            reason: f.reason,
            project: f.project.map(|p| p.to_string()),
            lease_id: f.lease_id,
            account: f.account,
            region: f.region,
            resource_type: f.resource_type,
            opened_at: f.opened_at,
            updated_at: f.updated_at,
            resolved_at: f.resolved_at,
            resolution: f.resolution,
            source: f.source,
            created_at: f.created_at,
            creator: f.creator,
        }
    }
}

/// `GET /findings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FindingList {
    pub items: Vec<FindingView>,
    pub next_cursor: Option<String>,
}

/// One transition of a finding (`opened`, `marked`, `resolved`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FindingEvent {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub verdict: String,
    pub detail: String,
}

/// `GET /findings/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FindingDetail {
    pub finding: FindingView,
    pub events: Vec<FindingEvent>,
}
