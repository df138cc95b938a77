//! `POST /api/v1/reload`: re-read the config and the rules while serving.

use std::future::Future;
use std::pin::Pin;

use super::*;

/// What a reload returns: the report, or why the new version was refused (the old one stays).
pub type ReloadFuture<'a> =
    Pin<Box<dyn Future<Output = Result<dto::ReloadReport, String>> + Send + 'a>>;

/// Re-reads the config and the rules; the daemon implements it (it owns what a reload
/// replaces), the API only asks.
pub trait Reload: Send + Sync + std::fmt::Debug {
    fn reload(&self, by: String) -> ReloadFuture<'_>;
}

#[utoipa::path(post, path = "/api/v1/reload", tag = "admin", responses((status = 200, description = "Read, validated and applied", body = dto::ReloadReport), (status = 422, description = "`reload-invalid`: the new config or rules are refused (the message names the file, line and field); the running version stays", body = dto::ErrorBody), (status = 401, description = "No or unknown bearer token", body = dto::ErrorBody), (status = 503, description = "`overloaded` (too many requests in flight), `request-timeout`, or `oidc-unavailable` (an ID token whose issuer's keys cannot be fetched now): retry later", body = dto::ErrorBody), (status = 403, description = "The principal's role does not allow it", body = dto::ErrorBody)))]
pub(super) async fn reload(
    State(s): State<AppState>,
    Caller(who): Caller,
) -> Result<Json<dto::ReloadReport>, ApiError> {
    forbid_unless(&who, &[crate::auth::Role::Operator], "reload the config")?;
    let Some(r) = &s.reload else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "reload-unavailable",
            "this server cannot reload",
        ));
    };
    r.reload(format!("api:{}", who.name))
        .await
        .map(Json)
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "reload-invalid", m))
}
