//! The bookings read model: one row per booking, the Booking aggregate as its events left it,
//! with the columns that dashboards and the voice agent filter on.
//!
//! The row holds the aggregate's own fold (`domain::Booking::apply`), so the read model cannot
//! drift from what the write side decided on.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use domain::booking::BookingStatus;
use domain::{Aggregate, Booking, BookingEvent};
use serde::Deserialize;
use serde_json::value::RawValue;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::event::StoredEvent;
use crate::runner::{Projection, ProjectionError};

/// The projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bookings;

impl Projection for Bookings {
    const NAME: &'static str = "bookings";
    const AGGREGATE_TYPES: &'static [&'static str] = &["Booking"];

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        apply_to(
            conn,
            LIVE,
            &event.aggregate_id,
            event.sequence,
            event.position,
            decode(&event.payload)?,
        )
        .await
    }

    /// Reads the batch's bookings in one query, folds in memory, writes in one statement.
    async fn apply_all(
        &self,
        conn: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> Result<(), ProjectionError> {
        let unreadable = |e: uuid::Error| ProjectionError::Unreadable(format!("booking id: {e}"));
        let ids = events
            .iter()
            .map(|e| Uuid::parse_str(&e.aggregate_id).map_err(unreadable))
            .collect::<Result<Vec<_>, _>>()?;
        let stored: Vec<(Uuid, Json<Booking>)> = sqlx::query_as(&format!(
            "SELECT booking_id, state FROM {LIVE} WHERE booking_id = ANY($1)"
        ))
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        let mut folded: HashMap<Uuid, (Booking, i64, i64)> = stored
            .into_iter()
            .map(|(id, Json(b))| (id, (b, 0, 0)))
            .collect();
        // Every stored row read above belongs to a booking of this batch: all are rewritten.
        for (id, event) in ids.into_iter().zip(events) {
            let change = decode(&event.payload)?;
            let (booking, version, position) = folded.entry(id).or_default();
            booking.apply(change);
            (*version, *position) = (event.sequence, event.position);
        }
        let rows = folded
            .into_iter()
            .map(|(id, (booking, version, position))| Row::of(id, &booking, version, position))
            .collect::<Result<Vec<_>, _>>()?;
        insert_rows(conn, LIVE, &rows).await?;
        Ok(())
    }
}

/// The live table.
pub(crate) const LIVE: &str = "bookings_view";

/// A stored event's payload as the booking event it holds (read in place, not copied).
fn decode(payload: &serde_json::Value) -> Result<BookingEvent, ProjectionError> {
    BookingEvent::deserialize(payload).map_err(|e| ProjectionError::Unreadable(e.to_string()))
}

/// Folds one booking event (its booking's `sequence`th) into `table`'s row for its booking.
pub(crate) async fn apply_to(
    conn: &mut PgConnection,
    table: &str,
    aggregate_id: &str,
    sequence: i64,
    position: i64,
    change: BookingEvent,
) -> Result<(), ProjectionError> {
    let id = Uuid::parse_str(aggregate_id)
        .map_err(|e| ProjectionError::Unreadable(format!("booking id: {e}")))?;
    let mut booking = sqlx::query_scalar::<_, Json<Booking>>(&format!(
        "SELECT state FROM {table} WHERE booking_id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await?
    .map(|Json(b)| b)
    .unwrap_or_default();
    booking.apply(change);
    let row = Row::of(id, &booking, sequence, position)?;
    insert_rows(conn, table, &[row]).await?;
    Ok(())
}

/// Writes rows into `table`, replacing the bookings' earlier rows.
pub(crate) async fn insert_rows(
    conn: &mut PgConnection,
    table: &str,
    rows: &[Row],
) -> Result<(), sqlx::Error> {
    write_rows(
        conn,
        table,
        rows,
        "ON CONFLICT (booking_id) DO UPDATE SET
            staff_id = EXCLUDED.staff_id, customer_phone = EXCLUDED.customer_phone,
            status = EXCLUDED.status, start_at = EXCLUDED.start_at, end_at = EXCLUDED.end_at,
            version = EXCLUDED.version, position = EXCLUDED.position, state = EXCLUDED.state",
    )
    .await
}

/// Writes rows of bookings `table` does not hold: a rebuild's fresh table, which has no index
/// to find an earlier row by while it is filled.
pub(crate) async fn insert_new_rows(
    conn: &mut PgConnection,
    table: &str,
    rows: &[Row],
) -> Result<(), sqlx::Error> {
    write_rows(conn, table, rows, "").await
}

async fn write_rows(
    conn: &mut PgConnection,
    table: &str,
    rows: &[Row],
    on_conflict: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO {table} (booking_id, tenant_id, branch_id, service_id, staff_id, customer_phone, status, source, start_at, end_at, version, position, state)
         SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], $6::text[], $7::text[], $8::text[], $9::timestamptz[], $10::timestamptz[], $11::bigint[], $12::bigint[], $13::jsonb[])
         {on_conflict}"
    ))
    .bind(rows.iter().map(|r| r.booking_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.tenant_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.branch_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.service_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.staff_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.customer_phone.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.source.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.start).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.end).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.version).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.position).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| Json(&*r.state)).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A booking's row: the filterable columns and the aggregate's state.
pub(crate) struct Row {
    booking_id: Uuid,
    tenant_id: Uuid,
    branch_id: Uuid,
    service_id: Uuid,
    staff_id: Uuid,
    customer_phone: String,
    status: &'static str,
    source: String,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    version: i64,
    position: i64,
    /// The aggregate, serialized once, straight from its fields.
    state: Box<RawValue>,
}

impl Row {
    /// The row of booking `id` as its events up to `version` (at `position`) left it.
    pub(crate) fn of(
        id: Uuid,
        b: &Booking,
        version: i64,
        position: i64,
    ) -> Result<Self, ProjectionError> {
        let missing = || ProjectionError::Unreadable("event before BookingCreated".to_owned());
        let (Some(tenant), Some(branch), Some(service), Some(staff), Some(customer), Some(at)) = (
            b.tenant_id,
            b.branch_id,
            b.service_id,
            b.staff_id,
            b.customer.as_ref(),
            b.appointment,
        ) else {
            return Err(missing());
        };
        let source = serde_json::to_value(b.source)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let state = serde_json::value::to_raw_value(b)
            .map_err(|e| ProjectionError::Unreadable(e.to_string()))?;
        Ok(Self {
            booking_id: id,
            tenant_id: tenant.0,
            branch_id: branch.0,
            service_id: service.0,
            staff_id: staff.0,
            customer_phone: customer.phone.as_str().to_owned(),
            status: status_name(b.status),
            source,
            start: at.start,
            end: at.end,
            version,
            position,
            state,
        })
    }
}

/// The stored name of a status, as the API spells it.
pub fn status_name(status: BookingStatus) -> &'static str {
    match status {
        BookingStatus::Held => "held",
        BookingStatus::Confirmed => "confirmed",
        BookingStatus::Completed => "completed",
        BookingStatus::Cancelled => "cancelled",
        BookingStatus::NoShow => "no_show",
    }
}

/// Which bookings to list: always one tenant's, narrowed by the optional fields, ordered by
/// start time, resumed after `after`.
#[derive(Debug, Clone, Default)]
pub struct BookingFilter {
    /// The tenant (always applied).
    pub tenant_id: Uuid,
    /// One branch.
    pub branch_id: Option<Uuid>,
    /// One staff member.
    pub staff_id: Option<Uuid>,
    /// One customer, E.164.
    pub customer_phone: Option<String>,
    /// One status.
    pub status: Option<BookingStatus>,
    /// Starting at or after.
    pub from: Option<DateTime<Utc>>,
    /// Starting before.
    pub to: Option<DateTime<Utc>>,
    /// The last booking of the previous page: its start and id.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    /// Page size.
    pub limit: i64,
}

/// One page of bookings, in start order.
pub async fn list(pool: &PgPool, filter: &BookingFilter) -> Result<Vec<Booking>, sqlx::Error> {
    let (after_start, after_id) = filter.after.unzip();
    let rows: Vec<Json<Booking>> = sqlx::query_scalar(
        "SELECT state FROM bookings_view
         WHERE tenant_id = $1
           AND ($2::uuid IS NULL OR branch_id = $2)
           AND ($3::uuid IS NULL OR staff_id = $3)
           AND ($4::text IS NULL OR customer_phone = $4)
           AND ($5::text IS NULL OR status = $5)
           AND ($6::timestamptz IS NULL OR start_at >= $6)
           AND ($7::timestamptz IS NULL OR start_at < $7)
           AND ($8::timestamptz IS NULL OR (start_at, booking_id) > ($8, $9))
         ORDER BY start_at, booking_id
         LIMIT $10",
    )
    .bind(filter.tenant_id)
    .bind(filter.branch_id)
    .bind(filter.staff_id)
    .bind(filter.customer_phone.as_deref())
    .bind(filter.status.map(status_name))
    .bind(filter.from)
    .bind(filter.to)
    .bind(after_start)
    .bind(after_id)
    .bind(filter.limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|Json(b)| b).collect())
}

/// One booking of the tenant with its version, as the read model has it, if the read model
/// has applied every event the store holds for it; `None` when it has not (yet). Answering a
/// row that is behind would let a reader see a booking go back to an older state after
/// seeing the newer one from the store.
pub async fn get_current(
    pool: &PgPool,
    tenant_id: Uuid,
    booking_id: Uuid,
) -> Result<Option<(Booking, i64)>, sqlx::Error> {
    let row: Option<(Json<Booking>, i64)> = sqlx::query_as(
        "SELECT state, version FROM bookings_view
         WHERE booking_id = $1 AND tenant_id = $2
           AND version >= (SELECT COALESCE(max(sequence), 0) FROM events
                           WHERE aggregate_type = 'Booking' AND aggregate_id = $1::text)",
    )
    .bind(booking_id)
    .bind(tenant_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(Json(b), v)| (b, v)))
}
