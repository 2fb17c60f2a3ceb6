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

/// The request's correlation id: `X-Correlation-Id` or `X-Request-Id` if it is a UUID, else new.
pub fn correlation_id(headers: &HeaderMap) -> Uuid {
    ["x-correlation-id", "x-request-id"]
        .iter()
        .find_map(|h| headers.get(*h)?.to_str().ok()?.parse().ok())
        .unwrap_or_else(Uuid::now_v7)
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
