//! Voice calls: the call log merged from Retell's webhooks, the holds a call has taken (released
//! when it ends unconfirmed), and callback tasks for calls that could not end in a booking.

use chrono::{DateTime, Utc};
use commands::{CancelBookingInput, CommandMeta, Principal};
use domain::booking::BookingStatus;
use domain::values::{BookingId, BranchId, TenantId};
use serde::Serialize;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// Where a call stands; a later stage is never overwritten by an earlier one, so webhooks
/// may arrive in any order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallStage {
    /// `call_started`.
    Ongoing,
    /// `call_ended`.
    Ended,
    /// `call_analyzed`.
    Analyzed,
}

impl CallStage {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ongoing => "ongoing",
            Self::Ended => "ended",
            Self::Analyzed => "analyzed",
        }
    }
}

/// What one webhook tells about a call; absent fields keep what an earlier one said.
#[derive(Debug, Clone, Default)]
pub struct CallFacts {
    /// The branch it was routed to.
    pub branch_id: Option<BranchId>,
    /// Retell's agent.
    pub agent_id: Option<String>,
    /// `inbound` or `outbound`.
    pub direction: Option<String>,
    /// Caller.
    pub from_number: Option<String>,
    /// Called.
    pub to_number: Option<String>,
    /// Start.
    pub started_at: Option<DateTime<Utc>>,
    /// End.
    pub ended_at: Option<DateTime<Utc>>,
    /// Length.
    pub duration_ms: Option<i64>,
    /// Why it ended.
    pub disconnection_reason: Option<String>,
    /// Retell's summary.
    pub summary: Option<String>,
    /// `Positive`, `Negative`, `Neutral`, `Unknown`.
    pub sentiment: Option<String>,
    /// Whether Retell judged it successful.
    pub successful: Option<bool>,
    /// `custom_analysis_data`.
    pub analysis: Option<Value>,
}

/// Merges `facts` into the call's row.
pub async fn record(
    pool: &PgPool,
    tenant: TenantId,
    call_id: &str,
    stage: CallStage,
    facts: &CallFacts,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO calls (tenant_id, call_id, status, branch_id, agent_id, direction, from_number,
                            to_number, started_at, ended_at, duration_ms, disconnection_reason,
                            summary, sentiment, successful, analysis)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
         ON CONFLICT (tenant_id, call_id) DO UPDATE SET
            status = CASE
                WHEN array_position(ARRAY['ongoing','ended','analyzed'], EXCLUDED.status)
                   > array_position(ARRAY['ongoing','ended','analyzed'], calls.status)
                THEN EXCLUDED.status ELSE calls.status END,
            branch_id = COALESCE(calls.branch_id, EXCLUDED.branch_id),
            agent_id = COALESCE(EXCLUDED.agent_id, calls.agent_id),
            direction = COALESCE(EXCLUDED.direction, calls.direction),
            from_number = COALESCE(EXCLUDED.from_number, calls.from_number),
            to_number = COALESCE(EXCLUDED.to_number, calls.to_number),
            started_at = COALESCE(EXCLUDED.started_at, calls.started_at),
            ended_at = COALESCE(EXCLUDED.ended_at, calls.ended_at),
            duration_ms = COALESCE(EXCLUDED.duration_ms, calls.duration_ms),
            disconnection_reason = COALESCE(EXCLUDED.disconnection_reason, calls.disconnection_reason),
            summary = COALESCE(EXCLUDED.summary, calls.summary),
            sentiment = COALESCE(EXCLUDED.sentiment, calls.sentiment),
            successful = COALESCE(EXCLUDED.successful, calls.successful),
            analysis = COALESCE(EXCLUDED.analysis, calls.analysis),
            updated_at = now()",
    )
    .bind(tenant.0)
    .bind(call_id)
    .bind(stage.as_str())
    .bind(facts.branch_id.map(|b| b.0))
    .bind(&facts.agent_id)
    .bind(&facts.direction)
    .bind(&facts.from_number)
    .bind(&facts.to_number)
    .bind(facts.started_at)
    .bind(facts.ended_at)
    .bind(facts.duration_ms)
    .bind(&facts.disconnection_reason)
    .bind(&facts.summary)
    .bind(&facts.sentiment)
    .bind(facts.successful)
    .bind(facts.analysis.as_ref().map(sqlx::types::Json))
    .execute(pool)
    .await?;
    Ok(())
}

/// How a call ended for the business.
pub async fn set_outcome(
    pool: &PgPool,
    tenant: TenantId,
    call_id: &str,
    outcome: &str,
    booking_id: Option<BookingId>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE calls SET outcome = $3, booking_id = COALESCE($4, booking_id), updated_at = now()
          WHERE tenant_id = $1 AND call_id = $2",
    )
    .bind(tenant.0)
    .bind(call_id)
    .bind(outcome)
    .bind(booking_id.map(|b| b.0))
    .execute(pool)
    .await?;
    Ok(())
}

/// Remembers that `call_id` holds `booking_id`, so the hold is released when the call ends.
pub async fn remember_hold(
    pool: &PgPool,
    tenant: TenantId,
    call_id: &str,
    booking_id: BookingId,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO call_holds (tenant_id, call_id, booking_id) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(tenant.0)
    .bind(call_id)
    .bind(booking_id.0)
    .execute(pool)
    .await?;
    Ok(())
}

/// Releases every hold the call took and did not confirm: the held booking is cancelled and
/// its slot freed at once. Returns the bookings released.
pub async fn release_holds(
    app: &AppState,
    tenant: TenantId,
    call_id: &str,
    meta: &CommandMeta,
) -> Result<Vec<BookingId>, ApiError> {
    let held: Vec<(Uuid,)> = sqlx::query_as(
        "SELECT booking_id FROM call_holds
          WHERE tenant_id = $1 AND call_id = $2 AND released_at IS NULL",
    )
    .bind(tenant.0)
    .bind(call_id)
    .fetch_all(&app.pool)
    .await?;
    let internal = Principal::internal(tenant);
    let mut released = Vec::new();
    for (id,) in held {
        let booking_id = BookingId(id);
        let (booking, _) = app.commands.booking(tenant, booking_id).await?;
        if booking.status == BookingStatus::Held {
            let reason = CancelBookingInput {
                reason: "the call ended before the hold was confirmed".to_owned(),
            };
            app.commands
                .cancel_booking(&internal, meta, booking_id, reason)
                .await?;
            released.push(booking_id);
        }
        sqlx::query(
            "UPDATE call_holds SET released_at = now()
              WHERE tenant_id = $1 AND call_id = $2 AND booking_id = $3",
        )
        .bind(tenant.0)
        .bind(call_id)
        .bind(id)
        .execute(&app.pool)
        .await?;
    }
    Ok(released)
}

/// A caller to ring back.
#[derive(Debug, Clone, Serialize)]
pub struct CallbackTask<'a> {
    /// The call.
    pub call_id: &'a str,
    /// Where the call went.
    pub branch_id: Option<BranchId>,
    /// Whom to call.
    pub phone: Option<&'a str>,
    /// Their name, if given.
    pub name: Option<&'a str>,
    /// Why no booking was made.
    pub reason: &'a str,
    /// What the call's analysis extracted.
    pub details: &'a Value,
}

/// Opens a callback task for a call (once per call).
pub async fn open_callback(
    pool: &PgPool,
    tenant: TenantId,
    task: &CallbackTask<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO callback_tasks (id, tenant_id, call_id, branch_id, phone, name, reason, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id, call_id) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(tenant.0)
    .bind(task.call_id)
    .bind(task.branch_id.map(|b| b.0))
    .bind(task.phone)
    .bind(task.name)
    .bind(task.reason)
    .bind(sqlx::types::Json(task.details))
    .execute(pool)
    .await?;
    Ok(())
}
