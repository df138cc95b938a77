//! `/leases`: acquire, show, renew, beat, release, list.

use super::*;

pub(super) fn view(s: &AppState, l: &crate::model::Lease) -> LeaseView {
    LeaseView::new(l, s.leases.now(), s.leases.tags())
}

pub(super) async fn acquire(
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

pub(super) async fn show(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<LeaseView>, ApiError> {
    let lease = s.leases.get(&who, &id).await?;
    Ok(Json(view(&s, &lease)))
}

pub(super) async fn renew(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    Body(req): Body<RenewRequest>,
) -> Result<Json<LeaseView>, ApiError> {
    let lease = s.leases.renew(&who, &id, req.ttl).await?;
    Ok(Json(view(&s, &lease)))
}

pub(super) async fn heartbeat(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<LeaseView>, ApiError> {
    let lease = s.leases.heartbeat(&who, &id).await?;
    Ok(Json(view(&s, &lease)))
}

pub(super) async fn release(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<LeaseView>, ApiError> {
    let lease = s.leases.release(&who, &id).await?;
    Ok(Json(view(&s, &lease)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    project: Option<String>,
    state: Option<String>,
    owner: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

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
