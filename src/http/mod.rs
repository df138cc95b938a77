//! The HTTP API (`/api/v1`), health endpoints and `/metrics`.
//!
//! Architecture Invariant: the only module that knows axum and the JSON wire types. Errors are
//! mapped to a status and a stable code in one place ([`ApiError`]); handlers hold no logic
//! beyond translating between the wire and the [`LeaseRegistry`].

mod audit;
mod cost;
pub mod dto;
mod error;
mod extract;
mod findings;
mod leases;
pub mod openapi;
mod reap;
mod reload;
mod scans;
pub mod serve;

use audit::*;
use cost::*;
pub use error::ApiError;
use error::*;
use extract::*;
pub use extract::{Body, Caller, Params};
use findings::*;
use leases::*;
use reap::*;
use reload::*;
pub use reload::{Reload, ReloadFuture};
use scans::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Path, Query, Request, State,
};
use axum::http::{HeaderValue, Method, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::auth::{Principal, Principals};
use crate::lease::{AcquireRequest, LeaseError, LeaseRegistry};
use crate::metrics::Metrics;
use crate::model::LeaseState;
use crate::model::{LeaseId, ProjectName};
use crate::policy::Denial;
use crate::store::{LeaseFilter, Store};
use dto::{ErrorBody, LeaseList, LeaseView, ReapJobView, ReapRequest, RenewRequest};

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub leases: LeaseRegistry,
    pub principals: crate::live::Live<Principals>,
    /// Verifies OIDC ID tokens; its issuers are replaced on reload along with the principals.
    pub oidc: crate::oidc::Oidc,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    pub tasks: crate::tasks::Tasks,
    pub reap_jobs: crate::jobs::ReapJobs,
    /// Whether this replica leads: a follower's `/metrics` leaves out the estate-wide series.
    pub leadership: crate::leader::Leadership,
    /// Re-reads the config and rules (`POST /api/v1/reload`); none where nothing can reload.
    pub reload: Option<Arc<dyn Reload>>,
}

/// Per-request limits of `[api]`.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    pub max_body_bytes: usize,
    pub request_timeout: std::time::Duration,
    pub max_concurrent_requests: usize,
}

/// The whole HTTP surface.
pub fn router(state: AppState, limits: RequestLimits) -> Router {
    let max_body_bytes = limits.max_body_bytes;
    let in_flight = Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_requests));
    let timeout = limits.request_timeout;
    let api = Router::new()
        .route("/leases", post(acquire).get(list))
        .route("/leases/{id}", get(show))
        .route("/leases/{id}/timeline", get(timeline))
        .route("/leases/{id}/renew", post(renew))
        .route("/leases/{id}/heartbeat", post(heartbeat))
        .route("/leases/{id}/release", post(release))
        .route("/scans", post(start_scan))
        .route("/scans/{id}", get(show_scan))
        .route("/status", get(status))
        .route("/resources", get(list_resources))
        .route("/findings", get(list_findings))
        .route("/findings/{id}", get(show_finding))
        .route("/plan", get(show_plan))
        .route("/reap", post(reap))
        .route("/reap/jobs/{id}", get(show_reap_job))
        .route("/audit", get(list_audit))
        .route("/audit/verify", get(verify_audit))
        .route("/cost", get(show_cost))
        .route("/cost/refresh", post(refresh_cost))
        .route("/reload", post(reload))
        .route("/openapi.json", get(openapi::openapi));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            let in_flight = in_flight.clone();
            async move { bounded(in_flight, timeout, req, next).await }
        }))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// At most `max_concurrent_requests` in flight, each at most `request_timeout`: beyond, 503
/// `overloaded` at once (shedding is cheaper than queueing), and 503 `request-timeout` for a
/// request that ran out of time. Probes and scrapes count too: a flood of them is what this
/// stops.
async fn bounded(
    in_flight: Arc<tokio::sync::Semaphore>,
    timeout: std::time::Duration,
    req: Request,
    next: Next,
) -> Response {
    let Ok(_permit) = in_flight.try_acquire_owned() else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "too many requests in flight; retry shortly",
        )
        .into_response();
    };
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request-timeout",
            "the request took longer than the server's request_timeout",
        )
        .into_response(),
    }
}

// ---- middleware -----------------------------------------------------------------------------

static REQUEST_SEQ: AtomicU64 = AtomicU64::new(1);

/// A span per request (with the principal once known), request metrics by route pattern.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let id = REQUEST_SEQ.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("request", id, method, route = %route, principal = tracing::field::Empty);
    let start = Instant::now();
    let resp = next.run(req).instrument(span.clone()).await;
    let elapsed = start.elapsed();
    let status = resp.status();
    state
        .metrics
        .http_requests
        .with_label_values(&[route.as_str(), method, status.as_str()])
        .inc();
    state
        .metrics
        .http_duration
        .with_label_values(&[route.as_str(), method])
        .observe(elapsed.as_secs_f64());
    span.in_scope(|| {
        let ms = elapsed.as_secs_f64() * 1000.0;
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), ms, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), ms, "request done");
        }
    });
    resp
}

// ---- handlers -------------------------------------------------------------------------------

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "method not allowed on this endpoint",
    )
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "meta", security(()), responses((status = 200, body = dto::Health)))]
async fn healthz() -> Json<dto::Health> {
    Json(dto::Health {
        status: "ok".into(),
    })
}

/// Readiness: the store answers.
#[utoipa::path(get, path = "/readyz", tag = "meta", security(()), responses((status = 200, body = dto::Health), (status = 503, description = "`store-unavailable`", body = dto::ErrorBody)))]
async fn readyz(State(s): State<AppState>) -> Response {
    match s.store.ping().await {
        Ok(()) => Json(dto::Health {
            status: "ready".into(),
        })
        .into_response(),
        Err(e) => {
            tracing::error!(error = %crate::error_chain(&e), "store not ready");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
                "the store does not answer",
            )
            .into_response()
        }
    }
}

/// Prometheus metrics, text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "meta", security(()), responses((status = 200, description = "The exposition", content_type = "text/plain")))]
async fn metrics(State(s): State<AppState>) -> Response {
    // A follower exports no estate-wide series, so it has no leases to count.
    let leader = s.leadership.is_leader();
    let _fresh = if leader {
        let (fresh, counted) = s.leases.fresh_gauges().await;
        if let Err(e) = counted {
            s.metrics
                .store_errors
                .with_label_values(&["count_leases"])
                .inc();
            tracing::error!(error = %crate::error_chain(&e), "cannot count leases for metrics");
        }
        Some(fresh)
    } else {
        None
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render_for(leader),
    )
        .into_response()
}
