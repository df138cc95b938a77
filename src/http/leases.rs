//! `/leases`: acquire, show, renew, beat, release, list.

use super::*;

pub(super) fn view(s: &AppState, l: &crate::model::Lease) -> LeaseView {
    LeaseView::new(l, s.leases.now(), s.leases.tags())
}

#[utoipa::path(post, path = "/api/v1/leases", tag = "leases", request_body = crate::lease::AcquireRequest, params(("Idempotency-Key" = Option<String>, Header, description = "The idempotency key, when the body has none")), responses((status = 201, description = "Acquired; `Location` names it", body = dto::LeaseView), (status = 200, description = "The key names an active lease of the project: that lease, nothing new", body = dto::LeaseView), (status = 409, description = "A quota or policy denies it (`quota-exceeded`, `ttl-above-max`, …), or the key names an active lease of another task or owner (`idempotency-key-conflict`)", body = dto::ErrorBody), (status = 422, description = "A field is invalid", body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn acquire(
    State(s): State<AppState>,
    Caller(who): Caller,
    headers: axum::http::HeaderMap,
    Body(mut req): Body<AcquireRequest>,
) -> Result<Response, ApiError> {
    if req.key.is_none()
        && let Some(k) = headers.get("idempotency-key")
    {
        req.key = Some(
            k.to_str()
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid-request",
                        "key: the Idempotency-Key header is not text",
                    )
                })?
                .to_owned(),
        );
    }
    let acquired = s.leases.acquire(&who, req).await?;
    let lease = acquired.lease;
    let location = format!("/api/v1/leases/{}", lease.id);
    let status = if acquired.existing {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut resp = (status, Json(view(&s, &lease))).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

#[utoipa::path(get, path = "/api/v1/leases/{id}", tag = "leases", params(("id" = String, Path, description = "The lease id, however spelt")), responses((status = 200, body = dto::LeaseView), (status = 404, description = "`lease-not-found`", body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn show(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<LeaseView>, ApiError> {
    let lease = s.leases.get(&who, &id).await?;
    let mut v = view(&s, &lease);
    v.teardown_complete_at = s
        .store
        .teardown_complete_at(lease.id)
        .await
        .map_err(crate::lease::LeaseError::from)?
        .map(dto::ts);
    Ok(Json(v))
}

#[utoipa::path(get, path = "/api/v1/leases/{id}/timeline", tag = "leases", params(("id" = String, Path, description = "The lease id, however spelt")), responses((status = 200, description = "The lease's story, oldest first: acquired, renewals, heartbeat gaps, its end, its resources first and last seen (by type and region), findings and marks, mail sent, the reaper's audit records, teardown complete, spend so far", body = dto::LeaseTimeline), (status = 400, description = "`invalid-lease-id`: the id is not a lease id", body = dto::ErrorBody), (status = 404, description = "`lease-not-found`", body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn timeline(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<dto::LeaseTimeline>, ApiError> {
    // Unlike `GET /leases/{id}` (404 for any id it cannot find), a malformed id is the
    // caller's mistake to see: a 400 tells a typo from a purged lease.
    let lease_id = id.parse::<LeaseId>().map_err(|_| invalid_lease_id(&id))?;
    let (lease, entries) = s.leases.timeline(&who, lease_id).await?;
    Ok(Json(dto::LeaseTimeline {
        lease_id: lease.id.to_string(),
        state: lease.state(s.leases.now()),
        entries: entries.iter().map(dto::TimelineEntryView::new).collect(),
    }))
}

#[utoipa::path(post, path = "/api/v1/leases/{id}/renew", tag = "leases", params(("id" = String, Path, description = "The lease id")), request_body = dto::RenewRequest, responses((status = 200, body = dto::LeaseView), (status = 409, description = "`lease-expired`, `lease-released`, or the TTL is above the project's maximum", body = dto::ErrorBody), (status = 404, body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn renew(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Body(req): Body<RenewRequest>,
) -> Result<Json<LeaseView>, ApiError> {
    let lease = s.leases.renew(&who, &id, req.ttl).await?;
    Ok(Json(view(&s, &lease)))
}

#[utoipa::path(post, path = "/api/v1/leases/{id}/heartbeat", tag = "leases", params(("id" = String, Path, description = "The lease id")), responses((status = 200, body = dto::LeaseView), (status = 409, description = "`lease-expired` or `lease-released`", body = dto::ErrorBody), (status = 404, body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn heartbeat(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<LeaseView>, ApiError> {
    let lease = s.leases.heartbeat(&who, &id).await?;
    Ok(Json(view(&s, &lease)))
}

#[utoipa::path(post, path = "/api/v1/leases/{id}/release", tag = "leases", params(("id" = String, Path, description = "The lease id")), responses((status = 200, body = dto::LeaseView), (status = 409, description = "`lease-released`", body = dto::ErrorBody), (status = 404, body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn release(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<LeaseView>, ApiError> {
    let lease = s.leases.release(&who, &id).await?;
    Ok(Json(view(&s, &lease)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    project: Option<String>,
    state: Option<String>,
    owner: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/leases", tag = "leases", params(ListQuery), responses((status = 200, description = "A page of leases, newest first", body = dto::LeaseList), (status = 400, description = "A query parameter is invalid", body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn list(
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
