//! Errors: every failure becomes a status and a stable code here, and nowhere else.

use super::*;

/// An error response: status, stable code, human message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
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

impl From<crate::oidc::OidcError> for ApiError {
    /// A refused ID token is 401, unless the issuer's keys could not be fetched: then the
    /// token may well be good, so 503 tells the job to retry rather than give up.
    fn from(e: crate::oidc::OidcError) -> Self {
        match e {
            e @ crate::oidc::OidcError::KeysUnavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "oidc-unavailable",
                e.to_string(),
            ),
            e => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                format!("invalid ID token: {e}"),
            ),
        }
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

pub(super) fn reap_job_not_found(id: &str) -> ApiError {
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
                | Denial::RegionNotAllowed { .. }
                | Denial::UnknownOwner(_) => StatusCode::UNPROCESSABLE_ENTITY,
            },
            LeaseError::NotFound(_) => StatusCode::NOT_FOUND,
            LeaseError::Forbidden(_) => StatusCode::FORBIDDEN,
            LeaseError::Ended(_) | LeaseError::KeyConflict { .. } => StatusCode::CONFLICT,
            LeaseError::Store(e) if e.is_unavailable() => StatusCode::SERVICE_UNAVAILABLE,
            LeaseError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = match &e {
            // The chain was logged where it happened; callers get no internals.
            LeaseError::Store(e) if e.is_unavailable() => UNAVAILABLE.to_owned(),
            LeaseError::Store(_) => "internal error; see the daemon's log".to_owned(),
            other => other.to_string(),
        };
        ApiError::new(status, e.code(), message)
    }
}

/// A path's lease id that is no lease id at all (400, `invalid-lease-id`).
pub(super) fn invalid_lease_id(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid-lease-id",
        format!(
            "`{}` is not a lease id",
            crate::model::printable(id)
                .chars()
                .take(80)
                .collect::<String>()
        ),
    )
}

pub(super) fn invalid_query(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid-query", message)
}

const UNAVAILABLE: &str = "the store does not answer; retry later";

pub(super) fn internal(e: &crate::store::StoreError) -> ApiError {
    tracing::error!(error = %crate::error_chain(e), "store failed");
    if e.is_unavailable() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store-unavailable",
            UNAVAILABLE,
        );
    }
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; see the daemon's log",
    )
}

pub(super) fn forbid_unless(
    who: &Principal,
    roles: &[crate::auth::Role],
    what: &str,
) -> Result<(), ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    /// A store out of reach is 503 `store-unavailable` (retry later); any other store
    /// failure stays a 500 with no internals.
    #[test]
    fn an_unreachable_store_is_a_503() {
        let down = || StoreError::Unavailable {
            target: "postgres://e@db:5432/e".into(),
            reason: "connection refused".into(),
        };
        for (e, status, code) in [
            (
                ApiError::from(LeaseError::Store(down())),
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
            ),
            (
                internal(&down()),
                StatusCode::SERVICE_UNAVAILABLE,
                "store-unavailable",
            ),
            (
                ApiError::from(LeaseError::Store(StoreError::Corrupt("x".into()))),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
            (
                internal(&StoreError::Corrupt("x".into())),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
        ] {
            assert_eq!((e.status, e.code), (status, code));
            assert!(!e.message.contains("db:5432"), "{}", e.message);
        }
    }
}
