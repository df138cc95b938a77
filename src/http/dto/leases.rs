//! Leases on the wire.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::ts;

use crate::model::IdentityTags;
use crate::model::{Lease, LeaseState};

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
