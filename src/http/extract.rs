//! Extractors: the caller's principal, query parameters and bodies, each failing with the
//! API's own errors; paging.

use super::*;

/// The authenticated caller.
#[derive(Debug)]
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let unauth = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", m);
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauth("missing `Authorization: Bearer TOKEN` header"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauth("the Authorization header must be `Bearer TOKEN`"))?;
        // The principals as they are now (a reload may replace them between two requests).
        let principals = state.principals.get();
        // Static tokens first, whatever their shape: a hash lookup, no network.
        if let Some(p) = principals.authenticate(token) {
            tracing::Span::current().record("principal", p.name.as_str());
            return Ok(Caller(p.clone()));
        }
        if !crate::oidc::looks_like_jwt(token) {
            return Err(unauth("unknown token"));
        }
        let outcome = |o: &str| state.metrics.oidc_tokens.with_label_values(&[o]).inc();
        let verified = state.oidc.verify(token).await.map_err(|e| {
            tracing::debug!(reason = %e, "ID token refused");
            outcome(match e {
                crate::oidc::OidcError::KeysUnavailable(_) => "unavailable",
                _ => "refused",
            });
            ApiError::from(e)
        })?;
        let p = principals
            .for_claims(&verified.issuer, &verified.claims)
            .map_err(|e| {
                tracing::debug!(issuer = %verified.issuer, reason = %e, "ID token matches no one principal");
                outcome("no-principal");
                unauth(&e.to_string())
            })?;
        outcome("accepted");
        tracing::Span::current().record("principal", p.name.as_str());
        Ok(Caller(p))
    }
}

/// A query string; a malformed one (unknown key, wrong type) is 400 `invalid-query`.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Params(q))
            .map_err(|e| invalid_query(e.body_text()))
    }
}

/// A page size: 100 unless asked, at most 1000.
pub(super) fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    match limit.unwrap_or(100) {
        n @ 1..=1000 => Ok(n),
        _ => Err(invalid_query("limit must be between 1 and 1000")),
    }
}

/// A page cursor (a row id, or a lease id) as an earlier page handed it out.
pub(super) fn page_cursor<T: std::str::FromStr>(c: &str) -> Result<T, ApiError> {
    c.parse()
        .map_err(|_| invalid_query(format!("`{c}` is not a cursor from a previous page")))
}

/// A JSON body; an empty body reads as `{}`. Errors become 400 (not JSON), 422 (wrong
/// shape) or 413 (too large).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body-too-large",
                    "request body is over the size limit",
                )
            } else {
                ApiError::new(r.status(), "bad-body", r.body_text())
            }
        })?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text).map(Body).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid-request",
                    e.to_string(),
                ),
                _ => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed-json",
                    format!("request body is not valid JSON: {e}"),
                ),
            }
        })
    }
}
