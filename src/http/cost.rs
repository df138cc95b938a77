//! `/cost` and `/cost/refresh`: spend from the store, and a refresh now.

use super::*;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct CostQuery {
    by: Option<String>,
    since: Option<String>,
}

/// Spend from the store (never a Cost Explorer call): per project, task or region since a
/// day (`2026-03-01`) or for the last days (`30d`, today included).
#[utoipa::path(get, path = "/api/v1/cost", tag = "spend", params(CostQuery), responses((status = 200, body = dto::CostView), (status = 400, body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn show_cost(
    State(s): State<AppState>,
    Caller(who): Caller,
    Params(q): Params<CostQuery>,
) -> Result<Json<dto::CostView>, ApiError> {
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
    let items = items
        .into_iter()
        .map(|(k, m, e)| dto::CostItem {
            project: (by == "project").then(|| k.clone()),
            task: (by == "task").then(|| k.clone()),
            region: (by == "region").then(|| k.clone()),
            usd: crate::cost::format_usd(m),
            micro_usd: m,
            estimated: e,
        })
        .collect();
    Ok(Json(dto::CostView {
        by,
        since,
        until: today,
        items,
        total_usd: crate::cost::format_usd(total),
    }))
}

/// Runs a cost refresh now (billed: about two Cost Explorer requests). Operators only.
#[utoipa::path(post, path = "/api/v1/cost/refresh", tag = "spend", responses((status = 200, body = dto::CostRefreshView), (status = 409, description = "`cost-running`", body = dto::ErrorBody), (status = 502, description = "`cost-explorer-failed`", body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn refresh_cost(
    State(s): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<dto::CostRefreshView>, ApiError> {
    forbid_unless(&who, &[crate::auth::Role::Operator], "refresh spend")?;
    match s.tasks.run_cost(&format!("api:{}", who.name)).await {
        Ok(crate::tasks::CostRun {
            run_id,
            outcome,
            result: Ok(report),
        }) => Ok(Json(dto::CostRefreshView {
            run_id,
            outcome,
            report: report.into(),
        })),
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
