//! `Idempotency-Key` on POST: the first answer is stored and replayed for every repeat, and
//! a repeat writes nothing.

use adapters::Claim;
use adapters::idempotency::request_hash;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use commands::Principal;
use domain::values::TenantId;
use serde_json::json;

use crate::error::{ApiError, ErrorType};
use crate::state::AppState;

/// Request bodies larger than this are refused.
pub const MAX_BODY: usize = 1024 * 1024;

/// Middleware for POST routes; runs after authentication.
pub async fn idempotent_posts(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if request.method() != Method::POST {
        return Ok(next.run(request).await);
    }
    let Some(key) = request.headers().get("idempotency-key") else {
        return Ok(next.run(request).await);
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255)
        .map(str::to_owned)
        .ok_or_else(|| {
            ApiError::invalid(
                "Idempotency-Key",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
        })?;
    // Keys are scoped per tenant; the operator's (authenticated before this runs) share one scope.
    let tenant = request
        .extensions()
        .get::<Principal>()
        .map_or_else(TenantId::default, |p| p.tenant_id);
    let (parts, body) = request.into_parts();
    let bytes = to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::ValidationFailed,
            "request body too large",
        )
    })?;
    let hash = request_hash(parts.method.as_str(), parts.uri.path(), &bytes);
    match app.idempotency.claim(tenant, &key, &hash).await? {
        Claim::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = (status, axum::Json(body)).into_response();
            response
                .headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            Ok(response)
        }
        Claim::InProgress => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorType::TransactionFailed,
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )),
        Claim::Mismatch => Err(ApiError::invalid(
            "Idempotency-Key",
            "this Idempotency-Key was used for a different request",
        )
        .with_details(json!({ "field": "Idempotency-Key", "reason": "KeyReused" }))),
        Claim::Fresh => {
            let response = next
                .run(Request::from_parts(parts, Body::from(bytes)))
                .await;
            remember(&app, tenant, &key, response).await
        }
    }
}

/// Stores a final answer (anything but a 5xx) and hands it on.
async fn remember(
    app: &AppState,
    tenant: TenantId,
    key: &str,
    response: Response,
) -> Result<Response, ApiError> {
    let status = response.status();
    if status.is_server_error() {
        if let Err(e) = app.idempotency.abandon(tenant, key).await {
            tracing::warn!(error = %e, "could not release an idempotency key");
        }
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let bytes = to_bytes(body, usize::MAX)
        .await
        .map_err(ApiError::internal)?;
    let value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    app.idempotency
        .complete(tenant, key, status.as_u16(), &value)
        .await?;
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// Runs `work` once per tenant, key and request: a repeat with the same request gets the
/// first answer and runs nothing; the same key with another request is refused. A failed
/// run wrote nothing, so its key is released and a retry runs again. For callers without
/// HTTP bodies of their own (tool calls, voice-agent functions); `request` is hashed.
pub async fn once(
    app: &AppState,
    tenant: TenantId,
    key: &str,
    request: (&str, &str, &[u8]),
    work: impl Future<Output = Result<serde_json::Value, ApiError>>,
) -> Result<serde_json::Value, ApiError> {
    let (channel, name, body) = request;
    let hash = request_hash(channel, name, body);
    match app.idempotency.claim(tenant, key, &hash).await? {
        Claim::Replay { body, .. } => Ok(body),
        Claim::InProgress => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorType::TransactionFailed,
            "the same request is still being processed; retry shortly",
        )),
        Claim::Mismatch => Err(ApiError::invalid(
            "idempotency_key",
            "this idempotency key was used for a different request",
        )),
        Claim::Fresh => match work.await {
            Ok(value) => {
                app.idempotency.complete(tenant, key, 200, &value).await?;
                Ok(value)
            }
            Err(e) => {
                if let Err(release) = app.idempotency.abandon(tenant, key).await {
                    tracing::warn!(error = %release, "could not release an idempotency key");
                }
                Err(e)
            }
        },
    }
}
