//! Staff: hiring, profile, schedule, overrides, skills, time blocks.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use chrono::NaiveDate;
use commands::{
    AssignSkillInput, BlockTimeInput, HireStaffInput, OverrideInput, ScheduleInput,
    StaffProfileInput,
};
use domain::values::{BlockId, BookingId, BranchId, ServiceId, StaffId, TimeRange};
use projections::StaffCalendars;
use projections::audit::{self, AsOf};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::created;
use crate::auth::Caller;
use crate::consistency::caught_up;
use crate::error::{ApiError, Json, Path, Query};
use crate::state::AppState;
use crate::views::{BlockView, Data, StaffSummary, StaffView};

/// `/staff…`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/staff", get(list).post(hire))
        .route("/staff/{staff_id}/calendar", get(calendar))
        .route("/staff/{staff_id}", get(show).put(update_profile))
        .route("/staff/{staff_id}/schedule", put(update_schedule))
        .route("/staff/{staff_id}/overrides/{date}", put(set_override))
        .route(
            "/staff/{staff_id}/services/{service_id}",
            put(assign).delete(unassign),
        )
        .route("/staff/{staff_id}/blocks", post(block))
        .route("/staff/{staff_id}/blocks/{block_id}", delete(unblock))
        .route("/staff/{staff_id}/deactivate", post(deactivate))
}

type StaffAnswer = Result<axum::Json<Data<StaffView>>, ApiError>;

fn answer(out: &commands::Outcome<domain::Staff>) -> StaffAnswer {
    Ok(axum::Json(Data::of(StaffView::of(&out.state)?, out)))
}

/// Which staff to list.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectoryQuery {
    /// Only this branch's staff.
    pub branch_id: Option<BranchId>,
    /// Wait until the read model holds the command that answered with this position.
    #[schemars(range(min = 1))]
    pub min_position: Option<i64>,
}

/// The staff directory.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Directory {
    /// By name.
    pub data: Vec<StaffSummary>,
}

async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<DirectoryQuery>,
) -> Result<axum::Json<Directory>, ApiError> {
    caught_up::<StaffCalendars>(&app.pool, query.min_position).await?;
    let staff = projections::staff_calendar::list(
        &app.pool,
        caller.who.tenant_id.0,
        query.branch_id.map(|b| b.0),
    )
    .await
    .map_err(ApiError::internal)?;
    Ok(axum::Json(Directory {
        data: staff.iter().filter_map(StaffSummary::of).collect(),
    }))
}

/// Which part of a calendar.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalendarQuery {
    /// First local date; today when absent.
    pub start_date: Option<NaiveDate>,
    /// Last local date (at most 31 days after the first); a week from the first when absent.
    pub end_date: Option<NaiveDate>,
    /// The calendar as it was then: a version number or an RFC 3339 time, folded from the
    /// staff member's events.
    pub as_of: Option<String>,
    /// Wait until the read model holds the command that answered with this position.
    #[schemars(range(min = 1))]
    pub min_position: Option<i64>,
}

/// A hold or reservation on a calendar.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CalendarSlot {
    /// The booking.
    pub booking_id: BookingId,
    /// The appointment.
    pub appointment: TimeRange,
    /// With the service's buffers.
    pub occupied: TimeRange,
    /// When a hold lapses; null for a reservation.
    pub held_until: Option<chrono::DateTime<chrono::Utc>>,
}

/// A staff calendar over some dates.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CalendarView {
    /// Who.
    pub staff_id: StaffId,
    /// First local date.
    pub start_date: NaiveDate,
    /// Last local date.
    pub end_date: NaiveDate,
    /// The version it was folded up to, when read `as_of`.
    pub version: Option<u64>,
    /// Holds and reservations overlapping the dates, by start.
    pub entries: Vec<CalendarSlot>,
    /// Absences overlapping the dates.
    pub blocks: Vec<BlockView>,
}

impl CalendarSlot {
    fn of_busy(b: &domain::availability::Busy) -> Self {
        Self {
            booking_id: b.booking_id,
            appointment: b.appointment,
            occupied: b.occupied,
            held_until: b.held_until,
        }
    }

    fn of_entry(e: &domain::staff::CalendarEntry) -> Self {
        Self {
            booking_id: e.booking_id,
            appointment: e.appointment,
            occupied: e.occupied,
            held_until: match e.state {
                domain::staff::EntryState::Held { expires_at } => Some(expires_at),
                domain::staff::EntryState::Reserved => None,
            },
        }
    }
}

/// The staff member folded from their events up to `as_of` (a version or a time).
async fn staff_as_of(
    app: &AppState,
    caller: &Caller,
    staff_id: StaffId,
    as_of: &str,
) -> Result<(domain::Staff, u64), ApiError> {
    let as_of: AsOf = as_of
        .parse()
        .map_err(|e: String| ApiError::invalid("as_of", e))?;
    let (staff, version) = audit::fold_as_of::<domain::Staff>(
        &app.pool,
        caller.who.tenant_id.0,
        &staff_id.to_string(),
        as_of,
    )
    .await
    .map_err(ApiError::internal)?
    .ok_or_else(|| ApiError::not_found("staff member"))?;
    Ok((staff, u64::try_from(version).unwrap_or_default()))
}

async fn calendar(
    State(app): State<AppState>,
    caller: Caller,
    Path(staff_id): Path<StaffId>,
    Query(query): Query<CalendarQuery>,
) -> Result<axum::Json<CalendarView>, ApiError> {
    caught_up::<StaffCalendars>(&app.pool, query.min_position).await?;
    let (live, span) = super::availability::staff_days(
        &app,
        &caller,
        staff_id,
        (query.start_date, query.end_date),
        0,
        6,
    )
    .await?;
    let tz = live.staff.time_zone.unwrap_or(chrono_tz::UTC);
    let window = span.instants(tz);
    let (staff, entries, version) = match &query.as_of {
        None => {
            let entries = live.busy().iter().map(CalendarSlot::of_busy).collect();
            (live.staff, entries, None)
        }
        Some(as_of) => {
            let (staff, version) = staff_as_of(&app, &caller, staff_id, as_of).await?;
            let entries = staff
                .calendar
                .iter()
                .filter(|e| e.occupied.overlaps(&window))
                .map(CalendarSlot::of_entry)
                .collect();
            (staff, entries, Some(version))
        }
    };
    let mut entries: Vec<CalendarSlot> = entries;
    entries.sort_by_key(|e| e.appointment.start);
    Ok(axum::Json(CalendarView {
        staff_id,
        start_date: span.start,
        end_date: span.end,
        version,
        entries,
        blocks: staff
            .blocks
            .iter()
            .filter(|(_, b)| b.range.overlaps(&window))
            .map(|(id, b)| BlockView {
                id: *id,
                block: b.clone(),
            })
            .collect(),
    }))
}

async fn hire(
    State(app): State<AppState>,
    caller: Caller,
    Json(input): Json<HireStaffInput>,
) -> Result<(StatusCode, axum::Json<Data<StaffView>>), ApiError> {
    let out = app
        .commands
        .hire_staff(&caller.who, &caller.meta, StaffId::new(), input)
        .await?;
    Ok(created(Data::of(StaffView::of(&out.state)?, &out)))
}

async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(staff_id): Path<StaffId>,
) -> StaffAnswer {
    let (staff, version) = app
        .commands
        .staff_member(caller.who.tenant_id, staff_id)
        .await?;
    Ok(axum::Json(Data {
        data: StaffView::of(&staff)?,
        version,
        position: None,
    }))
}

async fn update_profile(
    State(app): State<AppState>,
    caller: Caller,
    Path(staff_id): Path<StaffId>,
    Json(input): Json<StaffProfileInput>,
) -> StaffAnswer {
    answer(
        &app.commands
            .update_staff_profile(&caller.who, &caller.meta, staff_id, input)
            .await?,
    )
}

async fn update_schedule(
    State(app): State<AppState>,
    caller: Caller,
    Path(staff_id): Path<StaffId>,
    Json(input): Json<ScheduleInput>,
) -> StaffAnswer {
    answer(
        &app.commands
            .update_staff_schedule(&caller.who, &caller.meta, staff_id, input)
            .await?,
    )
}

async fn set_override(
    State(app): State<AppState>,
    caller: Caller,
    Path((staff_id, date)): Path<(StaffId, NaiveDate)>,
    Json(input): Json<OverrideInput>,
) -> StaffAnswer {
    answer(
        &app.commands
            .set_schedule_override(&caller.who, &caller.meta, staff_id, date, input)
            .await?,
    )
}

async fn assign(
    State(app): State<AppState>,
    caller: Caller,
    Path((staff_id, service_id)): Path<(StaffId, ServiceId)>,
    Json(input): Json<AssignSkillInput>,
) -> StaffAnswer {
    answer(
        &app.commands
            .assign_staff_to_service(&caller.who, &caller.meta, staff_id, service_id, input)
            .await?,
    )
}

async fn unassign(
    State(app): State<AppState>,
    caller: Caller,
    Path((staff_id, service_id)): Path<(StaffId, ServiceId)>,
) -> StaffAnswer {
    answer(
        &app.commands
            .unassign_staff_from_service(&caller.who, &caller.meta, staff_id, service_id)
            .await?,
    )
}

async fn block(
    State(app): State<AppState>,
    caller: Caller,
    Path(staff_id): Path<StaffId>,
    Json(input): Json<BlockTimeInput>,
) -> Result<(StatusCode, axum::Json<Data<StaffView>>), ApiError> {
    let out = app
        .commands
        .block_staff_time(&caller.who, &caller.meta, staff_id, BlockId::new(), input)
        .await?;
    Ok(created(Data::of(StaffView::of(&out.state)?, &out)))
}

async fn unblock(
    State(app): State<AppState>,
    caller: Caller,
    Path((staff_id, block_id)): Path<(StaffId, BlockId)>,
) -> StaffAnswer {
    answer(
        &app.commands
            .unblock_staff_time(&caller.who, &caller.meta, staff_id, block_id)
            .await?,
    )
}

async fn deactivate(
    State(app): State<AppState>,
    caller: Caller,
    Path(staff_id): Path<StaffId>,
) -> StaffAnswer {
    answer(
        &app.commands
            .deactivate_staff(&caller.who, &caller.meta, staff_id)
            .await?,
    )
}
