//! Rate limits per plan and API key: `MCP_RATE_LIMIT_BASIC`, `…_PRO`, `…_ENTERPRISE` requests
//! per fixed window of `MCP_RATE_LIMIT_WINDOW` seconds. The count lives in Postgres, so every
//! instance serving a tenant sees the same count; a key's requests that arrive while its
//! count is being written are added by the next write together (one upsert for all of them,
//! each told its own place in the window). Every answer
//! carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (Unix
//! seconds); one over the limit is a 429 RATE_LIMIT_EXCEEDED with `retry_after`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use commands::Principal;
use domain::values::{Plan, TenantId};
use serde_json::json;

use crate::config::RateLimitConfig;
use crate::error::{ApiError, ErrorType};
use crate::state::AppState;

/// How long a tenant's plan is trusted without reading it again.
const PLAN_TTL: Duration = Duration::from_secs(30);

/// Tenants' plans, recently read.
#[derive(Debug, Default)]
pub struct PlanCache(RwLock<HashMap<TenantId, (Plan, Instant)>>);

impl PlanCache {
    async fn plan(&self, app: &AppState, tenant: TenantId) -> Result<Plan, ApiError> {
        if let Some((plan, at)) = self.0.read().ok().and_then(|m| m.get(&tenant).copied())
            && at.elapsed() < PLAN_TTL
        {
            return Ok(plan);
        }
        let (found, _) = crate::reads::tenant(app, tenant).await?;
        if let Ok(mut map) = self.0.write() {
            if map.len() >= 10_000 {
                map.clear();
            }
            map.insert(tenant, (found.plan, Instant::now()));
        }
        Ok(found.plan)
    }
}

impl RateLimitConfig {
    /// Requests a key of this plan may make per window.
    pub fn limit(&self, plan: Plan) -> u32 {
        match plan {
            Plan::Basic => self.rate_limit_basic,
            Plan::Professional => self.rate_limit_pro,
            Plan::Enterprise => self.rate_limit_enterprise,
        }
    }
}

/// Where a key stands in the current window.
#[derive(Debug, Clone, Copy)]
struct Standing {
    limit: u32,
    used: i64,
    reset: DateTime<Utc>,
}

impl Standing {
    fn remaining(self) -> i64 {
        (i64::from(self.limit) - self.used).max(0)
    }

    fn stamp(self, headers: &mut HeaderMap) {
        let mut put = |name: &'static str, value: i64| {
            headers.insert(name, HeaderValue::from(value));
        };
        put("x-ratelimit-limit", i64::from(self.limit));
        put("x-ratelimit-remaining", self.remaining());
        put("x-ratelimit-reset", self.reset.timestamp());
    }
}

/// Middleware, after authentication: counts the request against its key's window.
pub async fn limit_requests(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(who) = request.extensions().get::<Principal>().cloned() else {
        return Ok(next.run(request).await);
    };
    let plan = app.plans.plan(&app, who.tenant_id).await?;
    let standing = app
        .request_counts
        .count(&app, &who, app.rate_limits.limit(plan))
        .await?;
    if standing.used > i64::from(standing.limit) {
        let retry_after = (standing.reset - Utc::now()).num_seconds().max(1);
        let error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorType::RateLimitExceeded,
            format!(
                "this key may make {} requests per {} seconds; try again in {retry_after} s",
                standing.limit, app.rate_limits.rate_limit_window
            ),
        )
        .with_details(json!({ "limit": standing.limit, "retry_after": retry_after }));
        let mut response = error.into_response();
        standing.stamp(response.headers_mut());
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(retry_after));
        return Ok(response);
    }
    let mut response = next.run(request).await;
    standing.stamp(response.headers_mut());
    Ok(response)
}

/// A key's requests waiting to be counted, each with where to send its place in the window.
type Waiting = Vec<tokio::sync::oneshot::Sender<Result<Standing, ApiError>>>;

/// One key's counting: the requests waiting, and the turn to write them.
#[derive(Default)]
struct KeyCount {
    waiting: std::sync::Mutex<Waiting>,
    turn: tokio::sync::Mutex<()>,
}

/// The request counts of every key seen, written to Postgres in groups.
#[derive(Default)]
pub struct RequestCounts(std::sync::Mutex<HashMap<uuid::Uuid, Arc<KeyCount>>>);

impl std::fmt::Debug for RequestCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestCounts").finish_non_exhaustive()
    }
}

impl RequestCounts {
    /// Adds one request to its key's current window and says where the key stands. Requests
    /// of one key queue while a write of its count is in flight; whoever gets the next turn
    /// writes all of them at once.
    async fn count(
        &self,
        app: &AppState,
        who: &Principal,
        limit: u32,
    ) -> Result<Standing, ApiError> {
        let key = self.key(who.key_id);
        let (sender, mut answer) = tokio::sync::oneshot::channel();
        key.waiting
            .lock()
            .map_err(|_| ApiError::internal("request counts poisoned"))?
            .push(sender);
        let _turn = key.turn.lock().await;
        match answer.try_recv() {
            // An earlier turn counted this request with its own.
            Ok(standing) => return standing,
            Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
            Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                // That turn's request went away before it answered: count this one now.
                let (sender, fresh) = tokio::sync::oneshot::channel();
                answer = fresh;
                key.waiting
                    .lock()
                    .map_err(|_| ApiError::internal("request counts poisoned"))?
                    .push(sender);
            }
        }
        let waiting = std::mem::take(
            &mut *key
                .waiting
                .lock()
                .map_err(|_| ApiError::internal("request counts poisoned"))?,
        );
        let added = i64::try_from(waiting.len()).unwrap_or(i64::MAX);
        match add(app, who, added, limit, Utc::now()).await {
            Ok(last) => {
                // The k-th of n requests written together is request `last - n + k` of the window.
                for (k, sender) in (1..).zip(waiting) {
                    let _ = sender.send(Ok(Standing {
                        used: last.used - added + k,
                        ..last
                    }));
                }
            }
            Err(e) => {
                for sender in waiting {
                    let _ = sender.send(Err(e.clone()));
                }
            }
        }
        answer
            .try_recv()
            .unwrap_or_else(|_| Err(ApiError::internal("request not counted")))
    }

    fn key(&self, key_id: uuid::Uuid) -> Arc<KeyCount> {
        let Ok(mut keys) = self.0.lock() else {
            return Arc::default();
        };
        if keys.len() >= 10_000 {
            keys.retain(|_, k| Arc::strong_count(k) > 1);
        }
        keys.entry(key_id).or_default().clone()
    }
}

/// Adds `n` requests to the key's current window; the first write of a window clears the
/// key's older ones. The standing is the window's count after them.
async fn add(
    app: &AppState,
    who: &Principal,
    n: i64,
    limit: u32,
    now: DateTime<Utc>,
) -> Result<Standing, ApiError> {
    let window = i64::from(app.rate_limits.rate_limit_window.max(1));
    let start_s = now.timestamp() - now.timestamp().rem_euclid(window);
    let start = DateTime::from_timestamp(start_s, 0).unwrap_or(now);
    let requests = i32::try_from(n).unwrap_or(i32::MAX);
    let used: i32 = sqlx::query_scalar(
        "INSERT INTO rate_limit_windows (key_id, window_start, requests) VALUES ($1, $2, $3)
         ON CONFLICT (key_id, window_start)
         DO UPDATE SET requests = rate_limit_windows.requests + EXCLUDED.requests
         RETURNING requests",
    )
    .bind(who.key_id)
    .bind(start)
    .bind(requests)
    .fetch_one(&app.pool)
    .await?;
    if used == requests {
        sqlx::query("DELETE FROM rate_limit_windows WHERE key_id = $1 AND window_start < $2")
            .bind(who.key_id)
            .bind(start)
            .execute(&app.pool)
            .await?;
    }
    Ok(Standing {
        limit,
        used: i64::from(used),
        reset: start + chrono::Duration::seconds(window),
    })
}
