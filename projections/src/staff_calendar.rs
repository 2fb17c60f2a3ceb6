//! The staff read model: the directory (each staff member as their events left them: profile,
//! skills, weekly schedule, overrides, blocks) and their calendars (holds and reservations, one
//! row each), which availability is computed from.

use chrono::{DateTime, Duration, Utc};
use domain::availability::{Busy, StaffCalendar};
use domain::values::{BookingId, TimeRange};
use domain::{Aggregate, Staff, StaffEvent};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::event::StoredEvent;
use crate::rebuild::Rebuild;
use crate::runner::{Projection, ProjectionError};

/// The projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct StaffCalendars;

impl Projection for StaffCalendars {
    const NAME: &'static str = "staff";
    const AGGREGATE_TYPES: &'static [&'static str] = &["Staff"];

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_in(conn, "", event).await
    }
}

impl Rebuild for StaffCalendars {
    const TABLES: &'static [&'static str] = &["staff_view", "calendar_entries"];

    async fn apply_in(
        &self,
        conn: &mut PgConnection,
        suffix: &str,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let change: StaffEvent = serde_json::from_value(event.payload.clone())
            .map_err(|e| ProjectionError::Unreadable(e.to_string()))?;
        let staff_id = Uuid::parse_str(&event.aggregate_id)
            .map_err(|e| ProjectionError::Unreadable(format!("staff id: {e}")))?;
        match change {
            StaffEvent::SlotHeld {
                booking_id,
                service_id,
                appointment,
                occupied,
                expires_at,
                ..
            } => {
                let entry = Hold {
                    booking_id: booking_id.0,
                    service_id: service_id.0,
                    appointment,
                    occupied,
                    expires_at,
                };
                record_hold(conn, suffix, staff_id, event, &entry).await?;
            }
            StaffEvent::ReservationConfirmed {
                booking_id,
                appointment,
            } => {
                sqlx::query(&format!(
                    "UPDATE calendar_entries{suffix} SET held_until = NULL
                     WHERE staff_id = $1 AND booking_id = $2 AND start_at = $3"
                ))
                .bind(staff_id)
                .bind(booking_id.0)
                .bind(appointment.start)
                .execute(&mut *conn)
                .await?;
            }
            StaffEvent::SlotReleased {
                booking_id,
                appointment,
            } => {
                sqlx::query(&format!(
                    "DELETE FROM calendar_entries{suffix}
                     WHERE staff_id = $1 AND booking_id = $2 AND start_at = $3"
                ))
                .bind(staff_id)
                .bind(booking_id.0)
                .bind(appointment.start)
                .execute(&mut *conn)
                .await?;
            }
            profile => fold_profile(conn, suffix, staff_id, profile, event).await?,
        }
        Ok(())
    }
}

/// A SlotHeld's entry.
struct Hold {
    booking_id: Uuid,
    service_id: Uuid,
    appointment: TimeRange,
    occupied: TimeRange,
    expires_at: DateTime<Utc>,
}

/// Writes a hold; a repeated hold of the same appointment replaces the earlier one.
async fn record_hold(
    conn: &mut PgConnection,
    suffix: &str,
    staff_id: Uuid,
    event: &StoredEvent,
    hold: &Hold,
) -> Result<(), ProjectionError> {
    let tenant_id = Uuid::parse_str(event.tenant_id())
        .map_err(|e| ProjectionError::Unreadable(format!("tenant id: {e}")))?;
    sqlx::query(&format!(
        "INSERT INTO calendar_entries{suffix} (staff_id, booking_id, start_at, end_at,
             occupied_from, occupied_to, tenant_id, service_id, held_until)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (staff_id, booking_id, start_at) DO UPDATE SET
             end_at = EXCLUDED.end_at, occupied_from = EXCLUDED.occupied_from,
             occupied_to = EXCLUDED.occupied_to, held_until = EXCLUDED.held_until"
    ))
    .bind(staff_id)
    .bind(hold.booking_id)
    .bind(hold.appointment.start)
    .bind(hold.appointment.end)
    .bind(hold.occupied.start)
    .bind(hold.occupied.end)
    .bind(tenant_id)
    .bind(hold.service_id)
    .bind(hold.expires_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Folds a non-calendar event into the staff member's row.
async fn fold_profile(
    conn: &mut PgConnection,
    suffix: &str,
    staff_id: Uuid,
    change: StaffEvent,
    event: &StoredEvent,
) -> Result<(), ProjectionError> {
    let mut staff = sqlx::query_scalar::<_, Json<Staff>>(&format!(
        "SELECT state FROM staff_view{suffix} WHERE staff_id = $1"
    ))
    .bind(staff_id)
    .fetch_optional(&mut *conn)
    .await?
    .map(|Json(s)| s)
    .unwrap_or_default();
    staff.apply(change);
    let (Some(tenant_id), Some(branch_id)) = (staff.tenant_id, staff.branch_id) else {
        return Err(ProjectionError::Unreadable(
            "staff event before StaffHired".to_owned(),
        ));
    };
    sqlx::query(&format!(
        "INSERT INTO staff_view{suffix} (staff_id, tenant_id, branch_id, name, active, version, position, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (staff_id) DO UPDATE SET
            name = EXCLUDED.name, active = EXCLUDED.active, version = EXCLUDED.version,
            position = EXCLUDED.position, state = EXCLUDED.state"
    ))
    .bind(staff_id)
    .bind(tenant_id.0)
    .bind(branch_id.0)
    .bind(&staff.name)
    .bind(staff.active)
    .bind(event.sequence)
    .bind(event.position)
    .bind(Json(&staff))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The tenant's staff, optionally of one branch, by name.
pub async fn list(
    pool: &PgPool,
    tenant_id: Uuid,
    branch_id: Option<Uuid>,
) -> Result<Vec<Staff>, sqlx::Error> {
    let rows: Vec<Json<Staff>> = sqlx::query_scalar(
        "SELECT state FROM staff_view
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR branch_id = $2)
         ORDER BY name, staff_id",
    )
    .bind(tenant_id)
    .bind(branch_id)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|Json(s)| s).collect())
}

/// One staff member of the tenant, with the version of their last profile change.
pub async fn get(
    pool: &PgPool,
    tenant_id: Uuid,
    staff_id: Uuid,
) -> Result<Option<(Staff, i64)>, sqlx::Error> {
    let row: Option<(Json<Staff>, i64)> = sqlx::query_as(
        "SELECT state, version FROM staff_view WHERE staff_id = $1 AND tenant_id = $2",
    )
    .bind(staff_id)
    .bind(tenant_id)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|(Json(s), v)| (s, v)))
}

type Entry = (
    Uuid,
    Uuid,
    DateTime<Utc>,
    DateTime<Utc>,
    DateTime<Utc>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
);

/// Which calendars to load: the tenant's staff of some branches, or some staff members.
#[derive(Debug, Clone, Default)]
pub struct CalendarFilter {
    /// The tenant (always applied).
    pub tenant_id: Uuid,
    /// Only these branches (none: all).
    pub branch_ids: Option<Vec<Uuid>>,
    /// Only these staff members (none: all).
    pub staff_ids: Option<Vec<Uuid>>,
}

/// The calendars matching `filter`, with their holds and reservations that overlap `window`.
pub async fn calendars(
    pool: &PgPool,
    filter: &CalendarFilter,
    window: &TimeRange,
) -> Result<Vec<StaffCalendar>, sqlx::Error> {
    let staff: Vec<(Uuid, Json<Staff>)> = sqlx::query_as(
        "SELECT staff_id, state FROM staff_view
         WHERE tenant_id = $1 AND ($2::uuid[] IS NULL OR branch_id = ANY($2))
           AND ($3::uuid[] IS NULL OR staff_id = ANY($3))
         ORDER BY name, staff_id",
    )
    .bind(filter.tenant_id)
    .bind(filter.branch_ids.as_deref())
    .bind(filter.staff_ids.as_deref())
    .fetch_all(pool)
    .await?;
    let ids: Vec<Uuid> = staff.iter().map(|(id, _)| *id).collect();
    // An entry is at most a day long (480 minutes plus buffers): the lower bound on its
    // start keeps the index scan to the window.
    let entries: Vec<Entry> = sqlx::query_as(
        "SELECT staff_id, booking_id, start_at, end_at, occupied_from, occupied_to, held_until
             FROM calendar_entries
             WHERE staff_id = ANY($1) AND occupied_from >= $2 AND occupied_from < $3
               AND occupied_to > $4",
    )
    .bind(&ids)
    .bind(window.start - Duration::days(1))
    .bind(window.end)
    .bind(window.start)
    .fetch_all(pool)
    .await?;
    let mut busy: std::collections::HashMap<Uuid, Vec<Busy>> = std::collections::HashMap::new();
    for (staff_id, booking_id, start, end, from, to, held_until) in entries {
        busy.entry(staff_id).or_default().push(Busy {
            booking_id: BookingId(booking_id),
            appointment: TimeRange { start, end },
            occupied: TimeRange {
                start: from,
                end: to,
            },
            held_until,
        });
    }
    Ok(staff
        .into_iter()
        .map(|(id, Json(s))| StaffCalendar::new(s, busy.remove(&id).unwrap_or_default()))
        .collect())
}
