//! Rate limits per plan and API key: `MCP_RATE_LIMIT_BASIC`, `…_PRO`, `…_ENTERPRISE` requests
//! per fixed window of `MCP_RATE_LIMIT_WINDOW` seconds. The count lives in Postgres (one
//! upsert per request), so every instance serving a tenant sees the same count. Every answer
//! carries `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (Unix
//! seconds); one over the limit is a 429 RATE_LIMIT_EXCEEDED with `retry_after`.

use std::collections::HashMap;
use std::sync::RwLock;
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
    let standing = count(&app, &who, app.rate_limits.limit(plan), Utc::now()).await?;
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

/// Adds the request to its key's current window; the first request of a window clears the
/// key's older ones.
async fn count(
    app: &AppState,
    who: &Principal,
    limit: u32,
    now: DateTime<Utc>,
) -> Result<Standing, ApiError> {
    let window = i64::from(app.rate_limits.rate_limit_window.max(1));
    let start_s = now.timestamp() - now.timestamp().rem_euclid(window);
    let start = DateTime::from_timestamp(start_s, 0).unwrap_or(now);
    let used: i32 = sqlx::query_scalar(
        "INSERT INTO rate_limit_windows (key_id, window_start, requests) VALUES ($1, $2, 1)
         ON CONFLICT (key_id, window_start)
         DO UPDATE SET requests = rate_limit_windows.requests + 1
         RETURNING requests",
    )
    .bind(who.key_id)
    .bind(start)
    .fetch_one(&app.pool)
    .await?;
    if used == 1 {
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
