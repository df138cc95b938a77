//! Spend on the wire.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::cost::refresh::CostReport;
use crate::model::RunOutcome;

/// Spend of one project, task or region (the key named by `by`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CostItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Dollars, six decimals (`12.345678`).
    pub usd: String,
    pub micro_usd: i64,
    /// Some day of it is still an estimate in Cost Explorer.
    pub estimated: bool,
}

impl CostItem {
    /// The project, task or region this item is the spend of.
    pub fn key(&self) -> &str {
        self.project
            .as_deref()
            .or(self.task.as_deref())
            .or(self.region.as_deref())
            .unwrap_or_default()
    }
}

/// `GET /cost`: spend from the store since a day, largest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"by": "project", "since": "2026-03-01", "until": "2026-03-30",
    "items": [{"project": "web", "usd": "12.345678", "micro_usd": 12345678, "estimated": false}],
    "total_usd": "12.345678"}))]
pub struct CostView {
    /// `project`, `task` or `region`.
    pub by: String,
    pub since: NaiveDate,
    pub until: NaiveDate,
    pub items: Vec<CostItem>,
    pub total_usd: String,
}

/// What a cost refresh did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CostReportView {
    /// Per grouping, the first day asked for (the last is today).
    pub fetched_from: BTreeMap<String, NaiveDate>,
    /// Billed Cost Explorer requests.
    pub requests: u64,
    /// Identity tags Cost Explorer does not have active, when that was checked.
    pub inactive_tags: Vec<String>,
}

impl From<CostReport> for CostReportView {
    fn from(r: CostReport) -> Self {
        CostReportView {
            fetched_from: r.fetched_from,
            requests: r.requests,
            inactive_tags: r.inactive_tags,
        }
    }
}

/// `POST /cost/refresh` (200).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CostRefreshView {
    pub run_id: String,
    pub outcome: RunOutcome,
    pub report: CostReportView,
}
