//! The HTTP API (`/api/v1`), health endpoints and `/metrics`.
//!
//! Architecture Invariant: the only module that knows axum and the JSON wire types. Errors are
//! mapped to a status and a stable code in one place ([`ApiError`]); handlers hold no logic
//! beyond translating between the wire and the [`LeaseRegistry`].

pub mod dto;

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
    pub principals: Arc<Principals>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    pub tasks: crate::tasks::Tasks,
    pub reap_jobs: crate::jobs::ReapJobs,
}

/// The whole HTTP surface.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let api = Router::new()
        .route("/leases", post(acquire).get(list))
        .route("/leases/{id}", get(show))
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
        .route("/cost/refresh", post(refresh_cost));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

// ---- errors ---------------------------------------------------------------------------------

/// An error response: status, stable code, human message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(ErrorBody {
                code: self.code.to_owned(),
                message: self.message,
            }),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<crate::tasks::TaskError> for ApiError {
    /// The errors of on-call reaping (a scan or a cost refresh maps its own).
    fn from(e: crate::tasks::TaskError) -> Self {
        match e {
            crate::tasks::TaskError::AlreadyRunning(id) => ApiError::new(
                StatusCode::CONFLICT,
                "scan-running",
                format!("a scan is running (run {id}); reap after it ends"),
            ),
            e @ crate::tasks::TaskError::Busy(_) => ApiError::new(
                StatusCode::CONFLICT,
                "scan-running",
                format!("{e}; reap after it ends"),
            ),
            crate::tasks::TaskError::Store(e) => internal(&e),
        }
    }
}

fn reap_job_not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "reap-job-not-found",
        format!("no reap job {id} (jobs are kept in memory: the last 100, until a restart)"),
    )
}

impl From<LeaseError> for ApiError {
    fn from(e: LeaseError) -> Self {
        let status = match &e {
            LeaseError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            LeaseError::Denied(d) => match d {
                Denial::NotALessee { .. } => StatusCode::FORBIDDEN,
                Denial::QuotaExceeded { .. } => StatusCode::CONFLICT,
                Denial::UnknownProject(_)
                | Denial::TtlAboveMax { .. }
                | Denial::HeartbeatAboveTtl { .. }
                | Denial::RegionNotAllowed { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            },
            LeaseError::NotFound(_) => StatusCode::NOT_FOUND,
            LeaseError::Forbidden(_) => StatusCode::FORBIDDEN,
            LeaseError::Ended(_) => StatusCode::CONFLICT,
            LeaseError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &e {
            // The chain was logged where it happened; callers get no internals.
            LeaseError::Store(_) => "internal error; see the daemon's log".to_owned(),
            other => other.to_string(),
        };
        ApiError::new(status, e.code(), message)
    }
}

// ---- extractors -----------------------------------------------------------------------------

/// The authenticated caller.
#[derive(Debug)]
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let unauth = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", m);
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauth("missing `Authorization: Bearer TOKEN` header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauth("the Authorization header must be `Bearer TOKEN`"))?;
        let p = state
            .principals
            .authenticate(token)
            .ok_or_else(|| unauth("unknown token"))?;
        tracing::Span::current().record("principal", p.name.as_str());
        Ok(Caller(p.clone()))
    }
}

/// A query string; a malformed one (unknown key, wrong type) is 400 `invalid-query`.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Params(q))
            .map_err(|e| invalid_query(e.body_text()))
    }
}

fn invalid_query(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid-query", message)
}

/// A page size: 100 unless asked, at most 1000.
fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(100) {
        n @ 1..=1000 => Ok(n),
        _ => Err(invalid_query("limit must be between 1 and 1000")),
    }
}

/// A page cursor (a row id, or a lease id) as an earlier page handed it out.
fn page_cursor<T: std::str::FromStr>(c: &str) -> Result<T, ApiError> {
    c.parse()
        .map_err(|_| invalid_query(format!("`{c}` is not a cursor from a previous page")))
}

/// A JSON body; an empty body reads as `{}`. Errors become 400 (not JSON), 422 (wrong
/// shape) or 413 (too large).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    "request body is over the size limit",
                )
            } else {
                ApiError::new(r.status(), "bad-body", r.body_text())
            }
        })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(Body).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-request",
                    e.to_string(),
                ),
                _ => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed-json",
                    format!("request body is not valid JSON: {e}"),
                ),
            }
        })
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

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

async fn readyz(State(s): State<AppState>) -> Response {
    match s.store.ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ready"})).into_response(),
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

async fn metrics(State(s): State<AppState>) -> Response {
    if let Err(e) = s.leases.refresh_gauges().await {
        s.metrics
            .store_errors
            .with_label_values(&["count_leases"])
            .inc();
        tracing::error!(error = %crate::error_chain(&e), "cannot count leases for metrics");
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

fn view(s: &AppState, l: &crate::model::Lease) -> LeaseView {
    LeaseView::new(l, s.leases.now(), s.leases.tags())
}

async fn acquire(
    State(s): State<AppState>,
    Caller(who): Caller,
    Body(req): Body<AcquireRequest>,
) -> Result<Response, ApiError> {
    let lease = s.leases.acquire(&who, req).await?;
    let location = format!("/api/v1/leases/{}", lease.id);
    let mut resp = (StatusCode::CREATED, Json(view(&s, &lease))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn show(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<LeaseView>, ApiError> {
    let lease = s.leases.get(&who, &id).await?;
    Ok(Json(view(&s, &lease)))
}

async fn renew(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Body(req): Body<RenewRequest>,
) -> Result<Json<LeaseView>, ApiError> {
    let lease = s.leases.renew(&who, &id, req.ttl).await?;
    Ok(Json(view(&s, &lease)))
}

async fn heartbeat(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<LeaseView>, ApiError> {
    let lease = s.leases.heartbeat(&who, &id).await?;
    Ok(Json(view(&s, &lease)))
}

async fn release(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<LeaseView>, ApiError> {
    let lease = s.leases.release(&who, &id).await?;
    Ok(Json(view(&s, &lease)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    project: Option<String>,
    state: Option<String>,
    owner: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(
    State(s): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<ListQuery>,
) -> Result<Json<LeaseList>, ApiError> {
    let filter = LeaseFilter {
        project: q
            .project
            .as_deref()
            .map(ProjectName::parse)
            .transpose()
            .map_err(invalid_query)?,
        projects_in: None,
        state: q
            .state
            .as_deref()
            .map(|st| {
                LeaseState::parse(st).ok_or_else(|| {
                    invalid_query(format!(
                        "state must be active, expired or released, not `{st}`"
                    ))
                })
            })
            .transpose()?,
        owner: q.owner,
        before: q
            .cursor
            .as_deref()
            .map(page_cursor::<LeaseId>)
            .transpose()?,
        limit: page_limit(q.limit)?,
    };
    let page = s.leases.list(&who, filter).await?;
    Ok(Json(LeaseList {
        items: page.items.iter().map(|l| view(&s, l)).collect(),
        next_cursor: page.next.map(|id| id.to_string()),
    }))
}

// ---- audit pass ------------------------------------------------------------------------------

fn internal(e: &crate::store::StoreError) -> ApiError {
    tracing::error!(error = %crate::error_chain(e), "store failed");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; see the daemon's log",
    )
}

async fn start_scan(State(s): State<AppState>, Caller(who): Caller) -> Result<Response, ApiError> {
    forbid_unless(&who, &[crate::auth::Role::Operator], "start a scan")?;
    match s
        .tasks
        .start_scan(&format!("api:{}", who.name), &who.name)
        .await
    {
        Ok(run_id) => {
            let body =
                serde_json::json!({"run_id": run_id, "outcome": crate::model::RunOutcome::Running});
            let mut resp = (StatusCode::ACCEPTED, Json(body)).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/scans/{run_id}")) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Ok(resp)
        }
        Err(crate::tasks::TaskError::AlreadyRunning(id)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "scan-running",
            format!("a scan is already running (run {id})"),
        )),
        Err(e @ crate::tasks::TaskError::Busy(_)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "scan-running",
            e.to_string(),
        )),
        Err(crate::tasks::TaskError::Store(e)) => Err(internal(&e)),
    }
}

async fn show_scan(
    State(s): State<AppState>,
    Caller(_who): Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let run = s
        .store
        .get_run(id.clone())
        .await
        .map_err(|e| internal(&e))?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "run-not-found",
                format!("no run {id}"),
            )
        })?;
    let walks = s.store.walks_of(id).await.map_err(|e| internal(&e))?;
    Ok(Json(serde_json::json!({"run": run, "walks": walks})))
}

async fn status(
    State(s): State<AppState>,
    Caller(_who): Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let runs = s.store.latest_runs().await.map_err(|e| internal(&e))?;
    let walks = match runs.iter().find(|r| r.task == crate::model::TaskName::Scan) {
        Some(r) => s
            .store
            .walks_of(r.id.clone())
            .await
            .map_err(|e| internal(&e))?,
        None => vec![],
    };
    Ok(Json(serde_json::json!({
        "tasks": runs,
        "running_scan": s.tasks.running_scan().await,
        "last_scan_walks": walks,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    verdict: Option<String>,
    project: Option<String>,
    region: Option<String>,
    account: Option<String>,
    resource_type: Option<String>,
    /// Resources: include gone ones; findings: include resolved ones.
    all: Option<bool>,
    limit: Option<u32>,
    cursor: Option<String>,
}

fn audit_filter(who: &Principal, q: AuditQuery) -> Result<crate::store::AuditFilter, ApiError> {
    let verdict = q
        .verdict
        .as_deref()
        .map(|v| {
            crate::model::Verdict::parse(v)
                .ok_or_else(|| invalid_query(format!("`{v}` is not a verdict")))
        })
        .transpose()?;
    let limit = page_limit(q.limit)?;
    // Lessees see the resources of their projects only.
    let projects_in = (who.role == crate::auth::Role::Lessee).then(|| {
        who.projects
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
    });
    if let (Some(p), Some(mine)) = (&q.project, &projects_in)
        && !mine.contains(p)
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("principal `{}` may not see project `{p}`", who.name),
        ));
    }
    Ok(crate::store::AuditFilter {
        verdict,
        project: q.project,
        projects_in,
        region: q.region,
        account: q.account,
        resource_type: q.resource_type,
        include_closed: q.all.unwrap_or(false),
        after: q.cursor,
        limit,
    })
}

async fn list_resources(
    State(s): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let f = audit_filter(&who, q)?;
    let (items, next) = s.store.list_resources(f).await.map_err(|e| internal(&e))?;
    Ok(Json(
        serde_json::json!({"items": items, "next_cursor": next}),
    ))
}

async fn list_findings(
    State(s): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<AuditQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let f = audit_filter(&who, q)?;
    if let Some(c) = &f.after {
        page_cursor::<i64>(c)?;
    }
    let (items, next) = s.store.list_findings(f).await.map_err(|e| internal(&e))?;
    Ok(Json(
        serde_json::json!({"items": items, "next_cursor": next}),
    ))
}

/// One finding with its transitions.
async fn show_finding(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "finding-not-found",
            format!("no finding {id}"),
        )
    };
    let n: i64 = id.parse().map_err(|_| not_found())?;
    let f = s
        .store
        .get_finding(n)
        .await
        .map_err(|e| internal(&e))?
        .ok_or_else(not_found)?;
    if who.role == crate::auth::Role::Lessee
        && !f.project.as_ref().is_some_and(|p| who.can_see(p.as_str()))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("principal `{}` may not see finding {id}", who.name),
        ));
    }
    let events: Vec<serde_json::Value> = s
        .store
        .finding_events(n)
        .await
        .map_err(|e| internal(&e))?
        .into_iter()
        .map(|(at, kind, verdict, detail)| serde_json::json!({"at": at, "kind": kind, "verdict": verdict, "detail": detail}))
        .collect();
    Ok(Json(serde_json::json!({"finding": f, "events": events})))
}

// ---- reaper ---------------------------------------------------------------------------------

fn forbid_unless(who: &Principal, roles: &[crate::auth::Role], what: &str) -> Result<(), ApiError> {
    if roles.contains(&who.role) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("principal `{}` may not {what}", who.name),
        ))
    }
}

/// The deletion plan as it stands (lessees see their projects' items only).
async fn show_plan(
    State(s): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut plan = s
        .tasks
        .reaper()
        .current_plan()
        .await
        .map_err(|e| internal(&e))?;
    if who.role == crate::auth::Role::Lessee {
        plan.items.retain(|i| {
            i.candidate
                .project
                .as_ref()
                .is_some_and(|p| who.can_see(p.as_str()))
        });
        // A project's cap names the project: lessees see the pass cap and their own.
        plan.capped.retain(|c| {
            c.scope
                .strip_prefix("project:")
                .is_none_or(|p| who.can_see(p))
        });
    }
    Ok(Json(serde_json::json!({
        "armed": s.tasks.armed(),
        "items": plan.items,
        "capped": plan.capped,
    })))
}

/// On-call reaping: the same guards as a pass, except the grace deadline. Operators only.
/// A plan only is answered at once (200; it deletes nothing); otherwise a job is started that
/// the daemon owns (202, `Location: /api/v1/reap/jobs/{id}`): the client may go away.
async fn reap(
    State(s): State<AppState>,
    Caller(who): Caller,
    Body(req): Body<ReapRequest>,
) -> Result<Response, ApiError> {
    forbid_unless(&who, &[crate::auth::Role::Operator], "reap resources")?;
    if req.arns.is_empty() || req.arns.len() > 1000 {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
            "`arns` must hold 1 to 1000 ARNs",
        ));
    }
    if let Some(bad) = req
        .arns
        .iter()
        .find(|a| crate::model::Arn::parse(a).is_err())
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-request",
            format!("`{bad}` is not an ARN"),
        ));
    }
    if req.plan_only {
        let (plan, results) = s
            .tasks
            .plan_reap(&req.arns)
            .await
            .map_err(|e| internal(&e))?;
        return Ok(Json(serde_json::json!({
            "armed": s.tasks.armed(),
            "plan": plan.items,
            "capped": plan.capped,
            "results": results,
        }))
        .into_response());
    }
    let job = s.reap_jobs.start(req.arns, &who.name).await?;
    let mut resp = (StatusCode::ACCEPTED, Json(ReapJobView::new(&job))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/reap/jobs/{}", job.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// An on-call reap job: its starter, operators and viewers may read it; to anyone else it
/// does not exist.
async fn show_reap_job(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<ReapJobView>, ApiError> {
    let job = s
        .reap_jobs
        .get(&id)
        .filter(|j| who.may_see_job_of(&j.principal))
        .ok_or_else(|| reap_job_not_found(&id))?;
    Ok(Json(ReapJobView::new(&job)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditLogQuery {
    arn: Option<String>,
    decision: Option<String>,
    run_id: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// The audit log, oldest first. Operators and viewers.
async fn list_audit(
    State(s): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<AuditLogQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::auth::Role;
    forbid_unless(&who, &[Role::Operator, Role::Viewer], "read the audit log")?;
    let after = q.cursor.as_deref().map(page_cursor).transpose()?;
    let (items, next) = s
        .store
        .audit_list(crate::store::AuditQuery {
            arn: q.arn,
            decision: q.decision,
            run_id: q.run_id,
            after,
            limit: page_limit(q.limit)?,
        })
        .await
        .map_err(|e| internal(&e))?;
    Ok(Json(
        serde_json::json!({"items": items, "next_cursor": next.map(|n| n.to_string())}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyQuery {
    /// A head published earlier, `SEQ:HASH`.
    head: Option<String>,
}

/// Checks the audit chain (against a published head, if given). Operators and viewers.
async fn verify_audit(
    State(s): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<VerifyQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::auth::Role;
    forbid_unless(
        &who,
        &[Role::Operator, Role::Viewer],
        "verify the audit log",
    )?;
    let head = q
        .head
        .map(|h| h.parse::<crate::audit::AuditHead>())
        .transpose()
        .map_err(invalid_query)?;
    let outcome = s.store.audit_verify(head).await.map_err(|e| internal(&e))?;
    Ok(Json(dto::audit_verdict(outcome)))
}

// ---- spend ----------------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CostQuery {
    by: Option<String>,
    since: Option<String>,
}

/// Spend from the store (never a Cost Explorer call): per project, task or region since a
/// day (`2026-03-01`) or for the last days (`30d`, today included).
async fn show_cost(
    State(s): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<CostQuery>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use crate::auth::Role;
    let by = q.by.unwrap_or_else(|| "project".into());
    if !["project", "task", "region"].contains(&by.as_str()) {
        return Err(invalid_query(format!(
            "`by` is project, task or region, not `{by}`"
        )));
    }
    if who.role == Role::Lessee && by != "project" {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "lessees see spend by project (their own) only",
        ));
    }
    let today = s.tasks.today();
    let since_text = q.since.unwrap_or_else(|| "30d".into());
    let since = match since_text.parse::<chrono::NaiveDate>() {
        Ok(d) => d,
        Err(_) => {
            let d = crate::model::HumanDuration::parse(&since_text)
                .ok()
                .filter(|d| d.as_secs().is_multiple_of(86_400) && d.as_secs() > 0)
                .ok_or_else(|| {
                    invalid_query(format!(
                        "`since` is a day (2026-03-01) or whole days (30d), not `{since_text}`"
                    ))
                })?;
            today - chrono::TimeDelta::days((d.as_secs() / 86_400) as i64 - 1)
        }
    };
    let dimension = if by == "task" { "task" } else { "project" };
    let totals = s
        .store
        .spend_totals(dimension, since)
        .await
        .map_err(|e| internal(&e))?;
    let mut sums: std::collections::BTreeMap<String, (i64, bool)> = Default::default();
    for t in totals {
        let key = if by == "region" {
            t.region
        } else if t.key.is_empty() {
            "untagged".into()
        } else {
            t.key
        };
        if !who.can_see(&key) {
            continue;
        }
        let e = sums.entry(key).or_default();
        e.0 += t.micro_usd;
        e.1 |= t.estimated;
    }
    let mut items: Vec<(String, i64, bool)> =
        sums.into_iter().map(|(k, (m, e))| (k, m, e)).collect();
    items.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let total: i64 = items.iter().map(|i| i.1).sum();
    Ok(Json(serde_json::json!({
        "by": by,
        "since": since,
        "until": today,
        "items": items.iter().map(|(k, m, e)| serde_json::json!({
            by.as_str(): k, "usd": crate::cost::format_usd(*m), "micro_usd": m, "estimated": e,
        })).collect::<Vec<_>>(),
        "total_usd": crate::cost::format_usd(total),
    })))
}

/// Runs a cost refresh now (billed: about two Cost Explorer requests). Operators only.
async fn refresh_cost(
    State(s): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    forbid_unless(&who, &[crate::auth::Role::Operator], "refresh spend")?;
    match s.tasks.run_cost(&format!("api:{}", who.name)).await {
        Ok(crate::tasks::CostRun {
            run_id,
            outcome,
            result: Ok(report),
        }) => Ok(Json(
            serde_json::json!({"run_id": run_id, "outcome": outcome, "report": report}),
        )),
        Ok(crate::tasks::CostRun {
            run_id,
            result: Err(e),
            ..
        }) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "cost-explorer-failed",
            format!("run {run_id}: {}", crate::error_chain(&e)),
        )),
        Err(crate::tasks::TaskError::AlreadyRunning(_) | crate::tasks::TaskError::Busy(_)) => {
            Err(ApiError::new(
                StatusCode::CONFLICT,
                "cost-running",
                "a cost refresh is already running",
            ))
        }
        Err(crate::tasks::TaskError::Store(e)) => Err(internal(&e)),
    }
}
