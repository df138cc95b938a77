//! `/resources` and `/findings`: what the passes saw and flagged.

use super::*;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct InventoryQuery {
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

pub(super) fn audit_filter(
    who: &Principal,
    q: InventoryQuery,
) -> Result<crate::store::AuditFilter, ApiError> {
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

#[utoipa::path(get, path = "/api/v1/resources", tag = "findings", params(InventoryQuery), responses((status = 200, body = dto::ResourceList), (status = 400, body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn list_resources(
    State(s): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<InventoryQuery>,
) -> Result<Json<dto::ResourceList>, ApiError> {
    let f = audit_filter(&who, q)?;
    let (items, next) = s.store.list_resources(f).await.map_err(|e| internal(&e))?;
    Ok(Json(dto::ResourceList {
        items: items.into_iter().map(Into::into).collect(),
        next_cursor: next,
    }))
}

#[utoipa::path(get, path = "/api/v1/findings", tag = "findings", params(InventoryQuery), responses((status = 200, body = dto::FindingList), (status = 400, body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn list_findings(
    State(s): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<InventoryQuery>,
) -> Result<Json<dto::FindingList>, ApiError> {
    let f = audit_filter(&who, q)?;
    if let Some(c) = &f.after {
        page_cursor::<i64>(c)?;
    }
    let (items, next) = s.store.list_findings(f).await.map_err(|e| internal(&e))?;
    Ok(Json(dto::FindingList {
        items: items.into_iter().map(Into::into).collect(),
        next_cursor: next,
    }))
}

/// One finding with its transitions.
#[utoipa::path(get, path = "/api/v1/findings/{id}", tag = "findings", params(("id" = i64, Path, description = "The finding id")), responses((status = 200, body = dto::FindingDetail), (status = 404, description = "`finding-not-found`", body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn show_finding(
    State(s): State<AppState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> Result<Json<dto::FindingDetail>, ApiError> {
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
    let events = s
        .store
        .finding_events(n)
        .await
        .map_err(|e| internal(&e))?
        .into_iter()
        .map(|(at, kind, verdict, detail)| dto::FindingEvent {
            at,
            kind,
            verdict,
            detail,
        })
        .collect();
    Ok(Json(dto::FindingDetail {
        finding: f.into(),
        events,
    }))
}
