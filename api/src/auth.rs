//! Authentication: API keys (Bearer) for tenants, a token for the operator, and the
//! per-request command metadata built from them.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use chrono::Utc;
use commands::{Channel, CommandMeta, Principal};
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::{ApiError, ErrorType};
use crate::state::AppState;

/// How long a verified key is trusted without asking the database again.
const CACHE_TTL: Duration = Duration::from_secs(30);
const CACHE_CAPACITY: usize = 10_000;

/// Verified keys by the SHA-256 of their secret.
#[derive(Debug, Default)]
pub struct KeyCache(RwLock<HashMap<[u8; 32], (Principal, Instant)>>);

impl KeyCache {
    fn get(&self, digest: &[u8; 32]) -> Option<Principal> {
        let map = self.0.read().ok()?;
        let (principal, at) = map.get(digest)?;
        (at.elapsed() < CACHE_TTL).then(|| principal.clone())
    }

    fn put(&self, digest: [u8; 32], principal: Principal) {
        if let Ok(mut map) = self.0.write() {
            if map.len() >= CACHE_CAPACITY {
                map.clear();
            }
            map.insert(digest, (principal, Instant::now()));
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware: resolves the Bearer API key to a principal, or answers 401.
pub async fn require_api_key(
    State(app): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let secret = bearer(request.headers()).ok_or_else(|| {
        ApiError::unauthorized("missing API key: send Authorization: Bearer <key>")
    })?;
    let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    let principal = match app.key_cache.get(&digest) {
        Some(p) => p,
        None => {
            let p = app
                .keys
                .authenticate(secret)
                .await?
                .ok_or_else(|| ApiError::unauthorized("invalid API key"))?;
            app.key_cache.put(digest, p.clone());
            p
        }
    };
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

/// The caller of a tenant route and the metadata its commands carry.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub who: Principal,
    /// Metadata for the events.
    pub meta: CommandMeta,
}

/// The request's correlation id: the trace id of a W3C `traceparent`, else `X-Correlation-Id`
/// or `X-Request-Id` if it is a UUID, else new. [`correlate`] makes sure there is one, so every
/// reader of a request agrees.
pub fn correlation_id(headers: &HeaderMap) -> Uuid {
    given_correlation(headers).unwrap_or_else(Uuid::now_v7)
}

fn given_correlation(headers: &HeaderMap) -> Option<Uuid> {
    let traced = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(trace_id);
    traced.or_else(|| {
        ["x-correlation-id", "x-request-id"]
            .iter()
            .find_map(|h| headers.get(*h)?.to_str().ok()?.parse().ok())
    })
}

/// The trace id of `00-<32 hex>-<16 hex>-<2 hex>` (all zeros is invalid).
fn trace_id(traceparent: &str) -> Option<Uuid> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || trace.len() != 32 || span.len() != 16 {
        return None;
    }
    Uuid::try_parse(trace).ok().filter(|id| !id.is_nil())
}

/// Middleware, outermost: gives a request without a correlation id a new one (as
/// `X-Correlation-Id`), so its log span, its events and its answer share one; the answer
/// carries it back.
pub async fn correlate(mut request: Request, next: Next) -> Response {
    let id = given_correlation(request.headers()).unwrap_or_else(Uuid::now_v7);
    let value = axum::http::HeaderValue::from_str(&id.to_string())
        .unwrap_or_else(|_| axum::http::HeaderValue::from_static(""));
    request
        .headers_mut()
        .insert("x-correlation-id", value.clone());
    let mut response = next.run(request).await;
    response.headers_mut().insert("x-correlation-id", value);
    response
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let who = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("missing API key"))?;
        let meta = CommandMeta {
            tenant_id: who.tenant_id,
            correlation_id: correlation_id(&parts.headers),
            causation_id: Uuid::now_v7(),
            actor: who.actor(),
            source: Channel::Api,
            now: Utc::now(),
        };
        Ok(Self { who, meta })
    }
}

/// The operator, authenticated by `BOOKINGD_OPERATOR_TOKEN`.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Some(expected) = &app.operator_token else {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                ErrorType::PermissionDenied,
                "operator routes are disabled: BOOKINGD_OPERATOR_TOKEN is not set",
            ));
        };
        let given = bearer(&parts.headers)
            .ok_or_else(|| ApiError::unauthorized("missing operator token"))?;
        // Compare digests so the comparison time does not depend on where the strings differ.
        let same =
            Sha256::digest(given.as_bytes()) == Sha256::digest(expected.expose_secret().as_bytes());
        if same {
            Ok(Self)
        } else {
            Err(ApiError::unauthorized("invalid operator token"))
        }
    }
}

#[cfg(test)]
mod correlation_tests {
    use super::*;

    #[test]
    fn a_traceparent_gives_its_trace_id_and_wins_over_other_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        headers.insert("x-correlation-id", Uuid::nil().to_string().parse().unwrap());
        assert_eq!(
            correlation_id(&headers).to_string(),
            "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"
        );
        for bad in [
            "00-0000000000000000000000000000000-00f067aa0ba902b7-01",
            "garbage",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            headers.insert("traceparent", bad.parse().unwrap());
            assert_eq!(correlation_id(&headers), Uuid::nil(), "{bad}");
        }
    }
}
