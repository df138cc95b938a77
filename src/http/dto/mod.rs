//! The API's JSON shapes: one type per request and response body, shared by the server and the
//! CLI client, each with its OpenAPI schema (utoipa). Kept apart from the domain types so the
//! wire format changes only on purpose; the domain's words (verdicts, outcomes, decisions)
//! appear here as the closed string sets they are.

mod audit;
mod cost;
mod findings;
mod leases;
mod reap;
mod scans;

pub use audit::{AuditList, AuditRecordView, AuditVerdict};
pub use cost::{CostItem, CostRefreshView, CostReportView, CostView};
pub use findings::{
    FindingDetail, FindingEvent, FindingList, FindingView, ResourceList, ResourceView,
};
pub use leases::{LeaseList, LeaseTimeline, LeaseView, RenewRequest, TimelineEntryView};
pub use reap::{
    CapView, PlanItemView, PlanMemberView, PlanStatus, PlanStep, PlanView, ReapItemView,
    ReapJobState, ReapJobView, ReapPlanView, ReapRequest, ReviewedItem, ReviewedPlanBody,
};
pub use scans::{
    HIDDEN, RunView, ScanStarted, ScanView, StatusView, SweepView, TypeSweepView, WalkView,
};

use chrono::SecondsFormat;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/v1/reload`: what a reload applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"config": "/etc/ephemera/ephemera.toml", "principals": 5, "projects": 3, "schedules_changed": false, "tls_reloaded": true, "restart_needed": ["enforcement"]}))]
pub struct ReloadReport {
    /// The config file read.
    pub config: String,
    /// Principals now known.
    pub principals: u64,
    /// Projects the rules now define.
    pub projects: u64,
    /// Whether the scan or cost schedule changed (the scheduler was restarted with it).
    pub schedules_changed: bool,
    /// Whether the API's certificate and key (`[api.tls]`) were read again: new connections
    /// present them. False when the API serves plain HTTP.
    #[serde(default)]
    pub tls_reloaded: bool,
    /// Config sections that changed but take effect only at the next start.
    pub restart_needed: Vec<String>,
}

/// Every error body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"code": "ttl-above-max", "message": "ttl: 30d is above the project's max_ttl 7d"}))]
pub struct ErrorBody {
    /// Stable, machine-readable (e.g. `ttl-above-max`).
    pub code: String,
    pub message: String,
}

/// `GET /healthz` and `GET /readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"status": "ok"}))]
pub struct Health {
    /// `ok` (the process answers) or `ready` (and its store does).
    pub status: String,
}

/// A time as leases show it: RFC 3339, milliseconds, `Z`.
pub(crate) fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The domain's words as OpenAPI string enums, their texts taken from the words themselves.
macro_rules! word_schemas {
    ($($t:ty => $all:expr),+ $(,)?) => {$(
        impl utoipa::PartialSchema for $t {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some($all.iter().map(|w| w.as_str())))
                    .into()
            }
        }

        impl utoipa::ToSchema for $t {}
    )+};
}

use strum::VariantArray;

word_schemas!(
    crate::model::Verdict => crate::model::Verdict::ALL,
    crate::model::Action => crate::model::Action::ALL,
    crate::model::LeaseState => crate::model::LeaseState::ALL,
    crate::model::Decision => crate::model::Decision::VARIANTS,
    crate::model::RunOutcome => crate::model::RunOutcome::VARIANTS,
    crate::model::WalkOutcome => crate::model::WalkOutcome::VARIANTS,
    crate::model::TaskName => crate::model::TaskName::VARIANTS,
    crate::model::ReapMode => crate::model::ReapMode::VARIANTS,
    crate::model::Source => crate::model::Source::VARIANTS,
    crate::model::ResourceType => crate::model::ResourceType::VARIANTS,
);
