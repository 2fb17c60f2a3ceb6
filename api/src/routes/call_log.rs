//! The call log and the callbacks it leaves: what the voice agent's calls came to, and the
//! callers someone has to ring back.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use commands::Permission;
use domain::values::{BookingId, BranchId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, Path, Query};
use crate::state::AppState;

/// `/calls`, `/callbacks…`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/calls", get(list_calls))
        .route("/callbacks", get(list_callbacks))
        .route("/callbacks/{callback_id}/resolve", post(resolve_callback))
}

/// Which calls.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallsQuery {
    /// One branch.
    pub branch_id: Option<BranchId>,
    /// Started at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Started before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// At most this many, newest first: 1 to 200; 50 when absent.
    #[schemars(range(min = 1, max = 200))]
    pub limit: Option<u32>,
}

/// One voice call, merged from Retell's webhooks.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Call {
    /// Retell's call id.
    pub call_id: String,
    /// The branch it was routed to.
    pub branch_id: Option<BranchId>,
    /// `ongoing`, `ended` or `analyzed`.
    pub status: String,
    /// Caller.
    pub from_number: Option<String>,
    /// Number called.
    pub to_number: Option<String>,
    /// Start.
    pub started_at: Option<DateTime<Utc>>,
    /// End.
    pub ended_at: Option<DateTime<Utc>>,
    /// Length in milliseconds.
    pub duration_ms: Option<i64>,
    /// Why it ended (`user_hangup`, `agent_hangup`, …).
    pub disconnection_reason: Option<String>,
    /// The agent's summary.
    pub summary: Option<String>,
    /// The caller's mood as the analysis judged it.
    pub sentiment: Option<String>,
    /// `booked`, `callback` or `no_booking`, once analysed.
    pub outcome: Option<String>,
    /// The booking it made.
    pub booking_id: Option<BookingId>,
}

/// Calls, newest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CallLog {
    /// The calls.
    pub data: Vec<Call>,
}

type CallRow = (
    String,
    Option<Uuid>,
    String,
    Option<String>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Uuid>,
);

fn limit(given: Option<u32>) -> Result<i64, ApiError> {
    let limit = given.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 200"));
    }
    Ok(i64::from(limit))
}

async fn list_calls(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<CallsQuery>,
) -> Result<axum::Json<CallLog>, ApiError> {
    let limit = limit(query.limit)?;
    let rows: Vec<CallRow> = sqlx::query_as(
        "SELECT call_id, branch_id, status, from_number, to_number, started_at, ended_at,
                duration_ms, disconnection_reason, summary, sentiment, outcome, booking_id
           FROM calls
          WHERE tenant_id = $1 AND ($2::uuid IS NULL OR branch_id = $2)
            AND ($3::timestamptz IS NULL OR started_at >= $3)
            AND ($4::timestamptz IS NULL OR started_at < $4)
          ORDER BY started_at DESC NULLS LAST, call_id
          LIMIT $5",
    )
    .bind(caller.who.tenant_id.0)
    .bind(query.branch_id.map(|b| b.0))
    .bind(query.from)
    .bind(query.to)
    .bind(limit)
    .fetch_all(&app.pool)
    .await?;
    let data = rows
        .into_iter()
        .map(|r| Call {
            call_id: r.0,
            branch_id: r.1.map(BranchId),
            status: r.2,
            from_number: r.3,
            to_number: r.4,
            started_at: r.5,
            ended_at: r.6,
            duration_ms: r.7,
            disconnection_reason: r.8,
            summary: r.9,
            sentiment: r.10,
            outcome: r.11,
            booking_id: r.12.map(BookingId),
        })
        .collect();
    Ok(axum::Json(CallLog { data }))
}

/// Which callbacks.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CallbacksQuery {
    /// `open` (the default) or `resolved`.
    #[schemars(extend("enum" = ["open", "resolved"]))]
    pub status: Option<String>,
    /// At most this many, oldest first: 1 to 200; 50 when absent.
    #[schemars(range(min = 1, max = 200))]
    pub limit: Option<u32>,
}

/// A caller to ring back.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Callback {
    /// Id.
    pub id: Uuid,
    /// The call that left it.
    pub call_id: String,
    /// The branch the call went to.
    pub branch_id: Option<BranchId>,
    /// Whom to call.
    pub phone: Option<String>,
    /// Their name, if given.
    pub name: Option<String>,
    /// Why no booking was made.
    pub reason: String,
    /// What the call's analysis extracted.
    pub details: Value,
    /// `open` or `resolved`.
    pub status: String,
    /// When it was opened.
    pub created_at: DateTime<Utc>,
    /// When it was resolved.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Callbacks, oldest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Callbacks {
    /// The callbacks.
    pub data: Vec<Callback>,
}

type CallbackRow = (
    Uuid,
    String,
    Option<Uuid>,
    Option<String>,
    Option<String>,
    String,
    sqlx::types::Json<Value>,
    String,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

const CALLBACK_COLUMNS: &str =
    "id, call_id, branch_id, phone, name, reason, details, status, created_at, resolved_at";

fn callback(r: CallbackRow) -> Callback {
    Callback {
        id: r.0,
        call_id: r.1,
        branch_id: r.2.map(BranchId),
        phone: r.3,
        name: r.4,
        reason: r.5,
        details: r.6.0,
        status: r.7,
        created_at: r.8,
        resolved_at: r.9,
    }
}

async fn list_callbacks(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<CallbacksQuery>,
) -> Result<axum::Json<Callbacks>, ApiError> {
    let status = query.status.as_deref().unwrap_or("open");
    if !matches!(status, "open" | "resolved") {
        return Err(ApiError::invalid("status", "open or resolved"));
    }
    let limit = limit(query.limit)?;
    let rows: Vec<CallbackRow> = sqlx::query_as(&format!(
        "SELECT {CALLBACK_COLUMNS} FROM callback_tasks
          WHERE tenant_id = $1 AND status = $2 ORDER BY created_at, id LIMIT $3"
    ))
    .bind(caller.who.tenant_id.0)
    .bind(status)
    .bind(limit)
    .fetch_all(&app.pool)
    .await?;
    Ok(axum::Json(Callbacks {
        data: rows.into_iter().map(callback).collect(),
    }))
}

async fn resolve_callback(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<axum::Json<Callback>, ApiError> {
    caller.who.require(Permission::CreateBookings)?;
    let row: Option<CallbackRow> = sqlx::query_as(&format!(
        "UPDATE callback_tasks SET status = 'resolved', resolved_at = COALESCE(resolved_at, now())
          WHERE tenant_id = $1 AND id = $2 RETURNING {CALLBACK_COLUMNS}"
    ))
    .bind(caller.who.tenant_id.0)
    .bind(id)
    .fetch_optional(&app.pool)
    .await?;
    row.map(|r| axum::Json(callback(r)))
        .ok_or_else(|| ApiError::not_found("callback"))
}
