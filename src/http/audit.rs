//! `/audit` and `/audit/verify`: the audit log and its chain.

use super::*;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditLogQuery {
    arn: Option<String>,
    decision: Option<String>,
    run_id: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// The audit log, oldest first. Operators and viewers.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditLogQuery), responses((status = 200, body = dto::AuditList), (status = 400, body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn list_audit(
    State(s): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<AuditLogQuery>,
) -> Result<Json<dto::AuditList>, ApiError> {
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
    Ok(Json(dto::AuditList {
        items: items.into_iter().map(Into::into).collect(),
        next_cursor: next.map(|n| n.to_string()),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct VerifyQuery {
    /// A head published earlier, `SEQ:HASH`.
    head: Option<String>,
}

/// Checks the audit chain (against a published head, if given). Operators and viewers.
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", params(VerifyQuery), responses((status = 200, description = "Whether the chain checks out (and contains the head)", body = dto::AuditVerdict), (status = 400, body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn verify_audit(
    State(s): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<VerifyQuery>,
) -> Result<Json<dto::AuditVerdict>, ApiError> {
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
    Ok(Json(dto::AuditVerdict::from(outcome)))
}
