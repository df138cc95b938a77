//! `/scans` and `/status`: passes started and how they went.

use super::*;

#[utoipa::path(post, path = "/api/v1/scans", tag = "scans", responses((status = 202, description = "Started; `Location` names the run", body = dto::ScanStarted), (status = 409, description = "`scan-running`: a pass or on-call reaping runs, here or in another process", body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn start_scan(
    State(s): State<AppState>,
    Caller(who): Caller,
) -> Result<Response, ApiError> {
    forbid_unless(&who, &[crate::auth::Role::Operator], "start a scan")?;
    match s
        .tasks
        .start_scan(&format!("api:{}", who.name), &who.name)
        .await
    {
        Ok(run_id) => {
            let body = dto::ScanStarted {
                run_id: run_id.clone(),
                outcome: crate::model::RunOutcome::Running,
            };
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

#[utoipa::path(get, path = "/api/v1/scans/{id}", tag = "scans", params(("id" = String, Path, description = "The run id")), responses((status = 200, body = dto::ScanView), (status = 404, description = "`run-not-found`", body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn show_scan(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<dto::ScanView>, ApiError> {
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
    Ok(Json(scoped(
        &who,
        dto::ScanView {
            run: run.into(),
            walks: walks.into_iter().map(Into::into).collect(),
        },
    )))
}

#[utoipa::path(get, path = "/api/v1/status", tag = "scans", responses((status = 200, body = dto::StatusView), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn status(
    State(s): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<dto::StatusView>, ApiError> {
    let runs = s.store.latest_runs().await.map_err(|e| internal(&e))?;
    let walks = match runs.iter().find(|r| r.task == crate::model::TaskName::Scan) {
        Some(r) => s
            .store
            .walks_of(r.id.clone())
            .await
            .map_err(|e| internal(&e))?,
        None => vec![],
    };
    let lessee = who.role == crate::auth::Role::Lessee;
    Ok(Json(dto::StatusView {
        tasks: runs
            .into_iter()
            .map(|r| {
                let v = dto::RunView::from(r);
                if lessee {
                    v.for_lessee(|p| who.can_see(p))
                } else {
                    v
                }
            })
            .collect(),
        running_scan: s.tasks.running_scan().await,
        last_scan_walks: walks
            .into_iter()
            .map(|w| {
                let v = dto::WalkView::from(w);
                if lessee { v.for_lessee() } else { v }
            })
            .collect(),
    }))
}

/// A run as `who` may see it: lessees get no error texts and only their projects' caps.
fn scoped(who: &crate::auth::Principal, v: dto::ScanView) -> dto::ScanView {
    if who.role != crate::auth::Role::Lessee {
        return v;
    }
    dto::ScanView {
        run: v.run.for_lessee(|p| who.can_see(p)),
        walks: v.walks.into_iter().map(dto::WalkView::for_lessee).collect(),
    }
}
