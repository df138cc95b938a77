//! `/plan`, `/reap` and `/reap/jobs`: the deletion plan and on-call reaping.

use super::*;

/// The deletion plan as it stands (lessees see their projects' items only).
#[utoipa::path(get, path = "/api/v1/plan", tag = "reaper", responses((status = 200, body = dto::PlanView), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn show_plan(
    State(s): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<dto::PlanView>, ApiError> {
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
    Ok(Json(dto::PlanView {
        armed: s.tasks.armed(),
        items: plan.items.into_iter().map(Into::into).collect(),
        capped: plan.capped.into_iter().map(Into::into).collect(),
    }))
}

/// On-call reaping: the same guards as a pass, except the grace deadline. Operators only.
/// With `plan`, exactly a reviewed plan: each item only while its state digest is unchanged
/// (the others are refused and listed); a plan whose digest is not its items' is a 422
/// `plan-digest-mismatch`.
/// A plan only is answered at once (200; it deletes nothing); otherwise a job is started that
/// the daemon owns (202, `Location: /api/v1/reap/jobs/{id}`): the client may go away.
#[utoipa::path(post, path = "/api/v1/reap", tag = "reaper", request_body = dto::ReapRequest, responses((status = 200, description = "`plan_only`: the plan; nothing deleted", body = dto::ReapPlanView), (status = 202, description = "A job started; `Location` names it", body = dto::ReapJobView), (status = 409, description = "`scan-running`: a pass or other reaping holds the act lock", body = dto::ErrorBody), (status = 422, body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn reap(
    State(s): State<AppState>,
    Caller(who): Caller,
    Body(req): Body<ReapRequest>,
) -> Result<Response, ApiError> {
    forbid_unless(&who, &[crate::auth::Role::Operator], "reap resources")?;
    let invalid = |m: String| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-request", m);
    let (arns, reviewed) = match req.plan {
        None => (req.arns, None),
        Some(_) if !req.arns.is_empty() => {
            return Err(invalid(
                "give `arns` or `plan`, not both: a plan names its items".into(),
            ));
        }
        Some(plan) => {
            let arns: Vec<String> = plan.items.iter().map(|i| i.arn.clone()).collect();
            let items: std::collections::BTreeMap<String, String> = plan
                .items
                .into_iter()
                .map(|i| (i.arn, i.state_digest))
                .collect();
            if items.len() != arns.len() {
                return Err(invalid("the plan names an ARN twice".into()));
            }
            let reviewed =
                crate::reaper::plan::ReviewedPlan::new(&plan.digest, items).map_err(|m| {
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "plan-digest-mismatch", m)
                })?;
            (arns, Some(reviewed))
        }
    };
    if arns.is_empty() || arns.len() > 1000 {
        return Err(invalid(
            "`arns` (or the plan's items) must hold 1 to 1000 ARNs".into(),
        ));
    }
    if let Some(bad) = arns.iter().find(|a| crate::model::Arn::parse(a).is_err()) {
        return Err(invalid(format!("`{bad}` is not an ARN")));
    }
    if req.plan_only {
        let (plan, results) = s
            .tasks
            .plan_reap(&arns, reviewed.as_ref())
            .await
            .map_err(|e| internal(&e))?;
        return Ok(Json(dto::ReapPlanView {
            armed: s.tasks.armed(),
            plan: plan.items.into_iter().map(Into::into).collect(),
            capped: plan.capped.into_iter().map(Into::into).collect(),
            results: results.into_iter().map(Into::into).collect(),
        })
        .into_response());
    }
    let job = s.reap_jobs.start(arns, reviewed, &who.name).await?;
    let mut resp = (StatusCode::ACCEPTED, Json(ReapJobView::new(&job))).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/reap/jobs/{}", job.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// An on-call reap job: its starter, operators and viewers may read it; to anyone else it
/// does not exist.
#[utoipa::path(get, path = "/api/v1/reap/jobs/{id}", tag = "reaper", params(("id" = String, Path, description = "The job id")), responses((status = 200, body = dto::ReapJobView), (status = 404, description = "`reap-job-not-found`", body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn show_reap_job(
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
