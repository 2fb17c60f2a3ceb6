//! The staff read model: the directory (each staff member as their events left them: profile,
//! skills, weekly schedule, overrides, blocks) and their calendars (holds and reservations, one
//! row each), which availability is computed from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

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

    /// Folds a batch's calendar events per entry in memory and writes them in three
    /// statements (holds, confirmations, releases); profile events are folded one by one.
    async fn apply_all(
        &self,
        conn: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> Result<(), ProjectionError> {
        apply_events(conn, "", events).await
    }
}

/// Applies events in order to the tables with `suffix`: profile events one by one, calendar
/// events folded per entry and written together at the end.
async fn apply_events(
    conn: &mut PgConnection,
    suffix: &str,
    events: &[&StoredEvent],
) -> Result<(), ProjectionError> {
    let mut changes = CalendarChanges::default();
    for event in events {
        let change: StaffEvent = serde_json::from_value(event.payload.clone())
            .map_err(|e| ProjectionError::Unreadable(e.to_string()))?;
        let staff_id = Uuid::parse_str(&event.aggregate_id)
            .map_err(|e| ProjectionError::Unreadable(format!("staff id: {e}")))?;
        if let Some(profile) = changes.note(staff_id, change, event)? {
            fold_profile(conn, suffix, staff_id, profile, event).await?;
        }
    }
    changes.write(conn, suffix).await
}

/// What a batch does to calendar entries, per entry: its last state wins.
#[derive(Default)]
struct CalendarChanges {
    entries: HashMap<(Uuid, Uuid, DateTime<Utc>), Change>,
}

enum Change {
    /// Write the hold (as a reservation if `held_until` is None).
    Hold(Uuid, Hold),
    /// Turn an entry written before this batch into a reservation.
    Confirm,
    /// Delete the entry.
    Release,
}

impl CalendarChanges {
    /// Records a new hold or reservation.
    fn enter(
        &mut self,
        staff_id: Uuid,
        hold: Hold,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let tenant_id = Uuid::parse_str(event.tenant_id())
            .map_err(|e| ProjectionError::Unreadable(format!("tenant id: {e}")))?;
        self.entries.insert(
            (staff_id, hold.booking_id, hold.appointment.start),
            Change::Hold(tenant_id, hold),
        );
        Ok(())
    }

    /// Records a calendar event; hands back any other event for the caller to fold.
    fn note(
        &mut self,
        staff_id: Uuid,
        change: StaffEvent,
        event: &StoredEvent,
    ) -> Result<Option<StaffEvent>, ProjectionError> {
        match change {
            StaffEvent::SlotHeld {
                booking_id,
                service_id,
                appointment,
                occupied,
                expires_at,
                ..
            } => {
                let hold = Hold {
                    booking_id: booking_id.0,
                    service_id: service_id.0,
                    appointment,
                    occupied,
                    expires_at: Some(expires_at),
                };
                self.enter(staff_id, hold, event)?;
            }
            StaffEvent::SlotReserved {
                booking_id,
                service_id,
                appointment,
                occupied,
                ..
            } => {
                let reservation = Hold {
                    booking_id: booking_id.0,
                    service_id: service_id.0,
                    appointment,
                    occupied,
                    expires_at: None,
                };
                self.enter(staff_id, reservation, event)?;
            }
            StaffEvent::ReservationConfirmed {
                booking_id,
                appointment,
            } => {
                let key = (staff_id, booking_id.0, appointment.start);
                match self.entries.get_mut(&key) {
                    Some(Change::Hold(_, hold)) => hold.expires_at = None,
                    Some(Change::Confirm | Change::Release) => {}
                    None => {
                        self.entries.insert(key, Change::Confirm);
                    }
                }
            }
            StaffEvent::SlotReleased {
                booking_id,
                appointment,
            } => {
                self.entries
                    .insert((staff_id, booking_id.0, appointment.start), Change::Release);
            }
            profile => return Ok(Some(profile)),
        }
        Ok(None)
    }

    async fn write(self, conn: &mut PgConnection, suffix: &str) -> Result<(), ProjectionError> {
        let mut holds: Vec<(Uuid, Uuid, Hold)> = Vec::new();
        let mut confirms: Vec<(Uuid, Uuid, DateTime<Utc>)> = Vec::new();
        let mut releases: Vec<(Uuid, Uuid, DateTime<Utc>)> = Vec::new();
        for ((staff_id, booking_id, start), change) in self.entries {
            match change {
                Change::Hold(tenant_id, hold) => holds.push((staff_id, tenant_id, hold)),
                Change::Confirm => confirms.push((staff_id, booking_id, start)),
                Change::Release => releases.push((staff_id, booking_id, start)),
            }
        }
        if !holds.is_empty() {
            sqlx::query(&format!(
                "INSERT INTO calendar_entries{suffix} (staff_id, booking_id, start_at, end_at,
                     occupied_from, occupied_to, tenant_id, service_id, held_until)
                 SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::timestamptz[],
                     $5::timestamptz[], $6::timestamptz[], $7::uuid[], $8::uuid[], $9::timestamptz[])
                 ON CONFLICT (staff_id, booking_id, start_at) DO UPDATE SET
                     end_at = EXCLUDED.end_at, occupied_from = EXCLUDED.occupied_from,
                     occupied_to = EXCLUDED.occupied_to, held_until = EXCLUDED.held_until"
            ))
            .bind(holds.iter().map(|(s, _, _)| *s).collect::<Vec<_>>())
            .bind(holds.iter().map(|(_, _, h)| h.booking_id).collect::<Vec<_>>())
            .bind(holds.iter().map(|(_, _, h)| h.appointment.start).collect::<Vec<_>>())
            .bind(holds.iter().map(|(_, _, h)| h.appointment.end).collect::<Vec<_>>())
            .bind(holds.iter().map(|(_, _, h)| h.occupied.start).collect::<Vec<_>>())
            .bind(holds.iter().map(|(_, _, h)| h.occupied.end).collect::<Vec<_>>())
            .bind(holds.iter().map(|(_, t, _)| *t).collect::<Vec<_>>())
            .bind(holds.iter().map(|(_, _, h)| h.service_id).collect::<Vec<_>>())
            .bind(holds.iter().map(|(_, _, h)| h.expires_at).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        for (rows, statement) in [
            (
                confirms,
                format!("UPDATE calendar_entries{suffix} c SET held_until = NULL
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[]) AS u(staff_id, booking_id, start_at)
                 WHERE c.staff_id = u.staff_id AND c.booking_id = u.booking_id AND c.start_at = u.start_at"),
            ),
            (
                releases,
                format!("DELETE FROM calendar_entries{suffix} c
                 USING UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[]) AS u(staff_id, booking_id, start_at)
                 WHERE c.staff_id = u.staff_id AND c.booking_id = u.booking_id AND c.start_at = u.start_at"),
            ),
        ] {
            if rows.is_empty() {
                continue;
            }
            sqlx::query(&statement)
                .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.2).collect::<Vec<_>>())
                .execute(&mut *conn)
                .await?;
        }
        Ok(())
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
        apply_events(conn, suffix, &[event]).await
    }
}

/// A SlotHeld's or SlotReserved's entry; without `expires_at`, a reservation.
struct Hold {
    booking_id: Uuid,
    service_id: Uuid,
    appointment: TimeRange,
    occupied: TimeRange,
    expires_at: Option<DateTime<Utc>>,
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

/// A calendar entry's columns.
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

/// Staff members and their calendars as last read, each kept while its stream stands still.
///
/// A staff member's offset in `projection_offsets` moves with every event applied to their
/// row or calendar, in the same transaction: a read first fetches the offsets of the staff it
/// needs (one small query), then loads only those whose offset moved since they were cached.
/// The offset is read before the rows it tags, so a cached calendar is never newer than its
/// tag says; at worst it is loaded once more. Shared by every request of an instance.
#[derive(Debug, Default)]
pub struct CalendarCache {
    cached: Mutex<HashMap<Uuid, Arc<Cached>>>,
}

#[derive(Debug)]
struct Cached {
    /// The staff stream's last applied sequence when this was read.
    sequence: i64,
    /// Holds every entry that ends after this instant.
    since: DateTime<Utc>,
    staff: Staff,
    busy: Vec<Busy>,
}

impl CalendarCache {
    /// The calendars matching `filter`, with their holds and reservations that overlap
    /// `window`, in name order.
    pub async fn calendars(
        &self,
        pool: &PgPool,
        filter: &CalendarFilter,
        window: &TimeRange,
    ) -> Result<Vec<StaffCalendar>, sqlx::Error> {
        let current: Vec<(Uuid, i64)> = sqlx::query_as(
            "SELECT v.staff_id, COALESCE(o.last_sequence, 0) FROM staff_view v
             LEFT JOIN projection_offsets o ON o.projection = $4 AND o.aggregate_type = 'Staff'
                 AND o.aggregate_id = v.staff_id::text
             WHERE v.tenant_id = $1 AND ($2::uuid[] IS NULL OR v.branch_id = ANY($2))
               AND ($3::uuid[] IS NULL OR v.staff_id = ANY($3))
             ORDER BY v.name, v.staff_id",
        )
        .bind(filter.tenant_id)
        .bind(filter.branch_ids.as_deref())
        .bind(filter.staff_ids.as_deref())
        .bind(StaffCalendars::NAME)
        .fetch_all(pool)
        .await?;
        // An entry is at most a day long (480 minutes plus buffers).
        let since = window.start - Duration::days(1);
        let stale: Vec<(Uuid, i64)> = {
            let cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
            current
                .iter()
                .filter(|(id, sequence)| {
                    cached
                        .get(id)
                        .is_none_or(|c| c.sequence != *sequence || c.since > since)
                })
                .copied()
                .collect()
        };
        if !stale.is_empty() {
            let loaded = load(pool, &stale, since).await?;
            let mut cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
            cached.extend(loaded);
        }
        let cached = self.cached.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(current
            .iter()
            .filter_map(|(id, _)| cached.get(id))
            .map(|c| {
                let busy = c
                    .busy
                    .iter()
                    .filter(|b| b.occupied.start < window.end && window.start < b.occupied.end)
                    .copied()
                    .collect();
                StaffCalendar::new(c.staff.clone(), busy)
            })
            .collect())
    }
}

/// Reads staff members' rows and every calendar entry of theirs ending after `since`.
async fn load(
    pool: &PgPool,
    staff: &[(Uuid, i64)],
    since: DateTime<Utc>,
) -> Result<Vec<(Uuid, Arc<Cached>)>, sqlx::Error> {
    let ids: Vec<Uuid> = staff.iter().map(|(id, _)| *id).collect();
    let states: HashMap<Uuid, Staff> = sqlx::query_as::<_, (Uuid, Json<Staff>)>(
        "SELECT staff_id, state FROM staff_view WHERE staff_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?
    .into_iter()
    .map(|(id, Json(s))| (id, s))
    .collect();
    let rows: Vec<Entry> = sqlx::query_as(
        "SELECT staff_id, booking_id, start_at, end_at, occupied_from, occupied_to, held_until
         FROM calendar_entries
         WHERE staff_id = ANY($1) AND occupied_from >= $2 - interval '1 day'
           AND occupied_to > $2",
    )
    .bind(&ids)
    .bind(since)
    .fetch_all(pool)
    .await?;
    let mut busy: HashMap<Uuid, Vec<Busy>> = HashMap::new();
    for (staff_id, booking_id, start, end, from, to, held_until) in rows {
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
    let mut states = states;
    Ok(staff
        .iter()
        .filter_map(|(id, sequence)| {
            let staff = states.remove(id)?;
            let mut entries = busy.remove(id).unwrap_or_default();
            entries.sort_by_key(|b| b.occupied.start);
            Some((
                *id,
                Arc::new(Cached {
                    sequence: *sequence,
                    since,
                    staff,
                    busy: entries,
                }),
            ))
        })
        .collect())
}
