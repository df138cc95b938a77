//! `/audit` and `/audit/verify`: the audit log and its chain.

use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuditLogQuery {
    arn: Option<String>,
    decision: Option<String>,
    run_id: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// The audit log, oldest first. Operators and viewers.
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VerifyQuery {
    /// A head published earlier, `SEQ:HASH`.
    head: Option<String>,
}

/// Checks the audit chain (against a published head, if given). Operators and viewers.
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
