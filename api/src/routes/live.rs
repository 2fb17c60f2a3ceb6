//! Live updates as Server-Sent Events: the tenant's audit trail tailed from a position, and a
//! branch's channel (bookings made, moved, cancelled, changed; staff changes).
//!
//! Both read the event store itself, in store order and below the running-transaction
//! horizon, so a client sees every event exactly once and in order, whichever instance wrote
//! it. What the relay publishes on NATS only wakes the stream up; a one-second tick covers a
//! bus that is down. Each SSE message's id is the event's position: a client that reconnects
//! with `Last-Event-ID` resumes after it.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use chrono::{DateTime, Utc};
use domain::values::BranchId;
use futures::{Stream, StreamExt};
use projections::audit::{self, AuditFilter};
use projections::event::StoredEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, Path, Query};
use crate::reads;
use crate::state::AppState;

/// `/audit/stream`, `/branches/{id}/events`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/audit/stream", get(audit_stream))
        .route("/branches/{branch_id}/events", get(branch_events))
}

/// Where a live stream starts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    /// Only events after this position; from now on when absent. A `Last-Event-ID` header
    /// (sent by a reconnecting client) takes precedence.
    pub from_position: Option<i64>,
}

/// Events per read.
const PAGE: i64 = 500;

/// The longest wait between looks at the store.
const TICK: Duration = Duration::from_secs(1);

/// The tenant's events after a position, as they commit.
struct Tail {
    pool: PgPool,
    filter: AuditFilter,
    wake: Option<async_nats::Subscriber>,
    pending: VecDeque<StoredEvent>,
}

impl Tail {
    async fn start(app: &AppState, tenant_id: Uuid, after: i64) -> Self {
        // Without the bus the tick alone paces the stream.
        let wake = app
            .nats
            .subscribe(format!("events.{tenant_id}.>"))
            .await
            .ok();
        Self {
            pool: app.pool.clone(),
            filter: AuditFilter {
                tenant_id,
                after,
                limit: PAGE,
                ..AuditFilter::default()
            },
            wake,
            pending: VecDeque::new(),
        }
    }

    async fn next(&mut self) -> Result<StoredEvent, sqlx::Error> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.filter.after = event.position;
                return Ok(event);
            }
            let page = audit::events(&self.pool, &self.filter).await?;
            if page.is_empty() {
                let woken = async {
                    match self.wake.as_mut() {
                        Some(wake) => {
                            wake.next().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                let _ = tokio::time::timeout(TICK, woken).await;
                continue;
            }
            self.pending.extend(page);
        }
    }
}

/// The position to start after: `Last-Event-ID`, else `from_position`, else the newest
/// settled event.
async fn start_after(
    pool: &PgPool,
    headers: &HeaderMap,
    from_position: Option<i64>,
) -> Result<i64, ApiError> {
    let resumed = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.trim().parse::<i64>().ok())
                .ok_or_else(|| ApiError::invalid("Last-Event-ID", "not an event position"))
        })
        .transpose()?;
    if let Some(position) = resumed.or(from_position) {
        if position < 0 {
            return Err(ApiError::invalid("from_position", "must not be negative"));
        }
        return Ok(position);
    }
    sqlx::query_scalar(
        "SELECT COALESCE(max(position), 0) FROM events
         WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())",
    )
    .fetch_one(pool)
    .await
    .map_err(ApiError::internal)
}

fn sse(
    stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + Send + 'static> {
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The tenant's events as they commit; each message is a stored event with its metadata,
/// named by its event type.
async fn audit_stream(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(query): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + Send + 'static>, ApiError> {
    let after = start_after(&app.pool, &headers, query.from_position).await?;
    let tail = Tail::start(&app, caller.who.tenant_id.0, after).await;
    let stream = futures::stream::unfold(Some(tail), |tail| async move {
        let mut tail = tail?;
        match tail.next().await {
            Ok(event) => {
                let message = Event::default()
                    .id(event.position.to_string())
                    .event(event.event_type.clone())
                    .json_data(&event)
                    .unwrap_or_else(|_| Event::default().comment("unserializable event"));
                Some((Ok(message), Some(tail)))
            }
            Err(e) => {
                tracing::warn!(error = %e, "audit stream stopped");
                Some((
                    Ok(Event::default()
                        .event("error")
                        .data("stream interrupted; reconnect")),
                    None,
                ))
            }
        }
    });
    Ok(sse(stream))
}

/// A change at a branch, as its channel sends it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BranchUpdate {
    /// `booking.created`, `booking.moved`, `booking.cancelled`, `booking.updated` or
    /// `staff.updated`.
    pub kind: &'static str,
    /// The booking or staff member.
    pub aggregate_id: String,
    /// The event behind it.
    pub event_type: String,
    /// Its store position (also the SSE id).
    pub position: i64,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// The event's payload.
    pub payload: serde_json::Value,
}

fn kind_of(event: &StoredEvent) -> Option<&'static str> {
    match (event.aggregate_type.as_str(), event.event_type.as_str()) {
        ("Booking", "BookingCreated") => Some("booking.created"),
        ("Booking", "BookingRescheduled") => Some("booking.moved"),
        ("Booking", "BookingCancelled") => Some("booking.cancelled"),
        ("Booking", _) => Some("booking.updated"),
        // Holds and reservations show up as booking changes.
        ("Staff", "SlotHeld" | "SlotReserved" | "ReservationConfirmed" | "SlotReleased") => None,
        ("Staff", _) => Some("staff.updated"),
        _ => None,
    }
}

/// Which branch each booking and staff member belongs to, learnt from their first event.
struct Branches {
    pool: PgPool,
    known: HashMap<String, Option<Uuid>>,
}

impl Branches {
    async fn of(&mut self, event: &StoredEvent) -> Result<Option<Uuid>, sqlx::Error> {
        if let Some(known) = self.known.get(&event.aggregate_id) {
            return Ok(*known);
        }
        let branch: Option<String> = sqlx::query_scalar(
            "SELECT COALESCE(payload -> 'BookingCreated' ->> 'branch_id',
                             payload -> 'StaffHired' ->> 'branch_id')
             FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence = 1",
        )
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .fetch_optional(&self.pool)
        .await?
        .flatten();
        let branch = branch.and_then(|b| Uuid::parse_str(&b).ok());
        self.known.insert(event.aggregate_id.clone(), branch);
        Ok(branch)
    }
}

/// A branch's channel: its bookings created, moved, cancelled or changed, and its staff's
/// changes, as they commit.
async fn branch_events(
    State(app): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(branch_id): Path<BranchId>,
    Query(query): Query<StreamQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + Send + 'static>, ApiError> {
    let (tenant, _) = reads::tenant(&app, caller.who.tenant_id).await?;
    crate::views::branch(&tenant, branch_id)?;
    let after = start_after(&app.pool, &headers, query.from_position).await?;
    let tail = Tail::start(&app, caller.who.tenant_id.0, after).await;
    let branches = Branches {
        pool: app.pool.clone(),
        known: HashMap::new(),
    };
    let stream = futures::stream::unfold(Some((tail, branches)), move |state| async move {
        let (mut tail, mut branches) = state?;
        loop {
            let found = match tail.next().await {
                Ok(event) => match kind_of(&event) {
                    Some(kind) => branches.of(&event).await.map(|b| (event, kind, b)),
                    None => continue,
                },
                Err(e) => Err(e),
            };
            match found {
                Ok((event, kind, Some(branch))) if branch == branch_id.0 => {
                    let update = BranchUpdate {
                        kind,
                        aggregate_id: event.aggregate_id,
                        event_type: event.event_type,
                        position: event.position,
                        recorded_at: event.recorded_at,
                        payload: event.payload,
                    };
                    let message = Event::default()
                        .id(update.position.to_string())
                        .event(kind)
                        .json_data(&update)
                        .unwrap_or_else(|_| Event::default().comment("unserializable event"));
                    return Some((Ok(message), Some((tail, branches))));
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "branch channel stopped");
                    let message = Event::default()
                        .event("error")
                        .data("stream interrupted; reconnect");
                    return Some((Ok(message), None));
                }
            }
        }
    });
    Ok(sse(stream))
}
