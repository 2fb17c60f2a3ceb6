//! Availability: free slots for a service, a staff member's free time, who is free at a time.
//! Computed from the staff calendars read model by `domain::availability`, with the rules
//! bookings are decided by, so a slot offered here is one a booking made now would get.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use domain::Tenant;
use domain::availability::{DayPlan, Slot, SlotSearch, StaffCalendar, day_plans};
use domain::booking::{check_placement, check_timing};
use domain::staff::SkillLevel;
use domain::tenant::Branch;
use domain::values::{BranchId, ServiceId, StaffId, TimeRange};
use projections::staff_calendar::{self, CalendarFilter};
use projections::{StaffCalendars, Tenants};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::consistency::caught_up;
use crate::error::{ApiError, Json, Path, Query};
use crate::reads::{self, DateSpan};
use crate::state::AppState;

/// `/bookings/check-availability`, `/staff/{id}/availability`, `/staff/available`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/bookings/check-availability", post(check))
        .route("/staff/available", get(available_staff))
        .route("/staff/{staff_id}/availability", get(staff_availability))
}

/// Days one availability question may span.
const MAX_SPAN_DAYS: u32 = 31;

/// A question for free slots.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckAvailabilityInput {
    /// The service.
    pub service_id: ServiceId,
    /// One local date; or give `start_date` (and `end_date`).
    #[serde(default)]
    pub date: Option<NaiveDate>,
    /// First local date of a range.
    #[serde(default)]
    pub start_date: Option<NaiveDate>,
    /// Last local date of a range (at most 31 days after the first); the first when absent.
    #[serde(default)]
    pub end_date: Option<NaiveDate>,
    /// Only these branches; every active branch offering the service when absent.
    #[serde(default)]
    pub branch_ids: Option<Vec<BranchId>>,
    /// Only this staff member's slots.
    #[serde(default)]
    pub preferred_staff_id: Option<StaffId>,
    /// Wait until the read models hold the command that answered with this position.
    #[serde(default)]
    #[schemars(range(min = 1))]
    pub min_position: Option<i64>,
}

/// Free slots, and the first one from the requested range on.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Availability {
    /// Whether any slot is free in the range.
    pub available: bool,
    /// Every free slot, by start, then branch and staff.
    pub slots: Vec<Slot>,
    /// The first free slot in or after the range, up to the advance limit; null if none.
    pub next_available: Option<Slot>,
}

pub(crate) async fn check(
    State(app): State<AppState>,
    caller: Caller,
    Json(input): Json<CheckAvailabilityInput>,
) -> Result<axum::Json<Availability>, ApiError> {
    caught_up::<Tenants>(&app.pool, input.min_position).await?;
    caught_up::<StaffCalendars>(&app.pool, input.min_position).await?;
    let (tenant, _) = reads::tenant(&app, caller.who.tenant_id).await?;
    let now = caller.meta.now;
    let service = tenant
        .live_service(input.service_id)
        .map_err(|_| ApiError::not_found("service"))?;
    let span = match (input.date, input.start_date) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "date",
                "give either date or start_date, not both",
            ));
        }
        (Some(date), None) => DateSpan {
            start: date,
            end: date,
        },
        (None, Some(start)) => DateSpan::parse(
            Some(start),
            input.end_date,
            ("start_date", "end_date"),
            start,
            0,
            MAX_SPAN_DAYS,
        )?,
        (None, None) => return Err(ApiError::invalid("date", "give date or start_date")),
    };
    let branches = branches_for(&tenant, service.id, input.branch_ids.as_deref())?;
    let rules = app.commands.rules(&tenant);
    let search = Search {
        app: &app,
        tenant: &tenant,
        branches: &branches,
        service_id: service.id,
        staff_id: input.preferred_staff_id,
        now,
    };
    let slots = search.slots(span).await?;
    let mut next_available = slots.first().copied();
    // Look ahead a week at a time, up to the advance limit.
    let last_day = reads::today(
        now + Duration::days(i64::from(rules.max_advance_days)),
        chrono_tz::UTC,
    ) + Duration::days(1);
    let mut from = span.end + Duration::days(1);
    while next_available.is_none() && from <= last_day {
        let week = DateSpan {
            start: from,
            end: (from + Duration::days(6)).min(last_day),
        };
        next_available = search.slots(week).await?.first().copied();
        from = week.end + Duration::days(1);
    }
    Ok(axum::Json(Availability {
        available: !slots.is_empty(),
        slots,
        next_available,
    }))
}

/// The branches to search: the ones asked for (each must exist), else every active branch
/// offering the service.
fn branches_for(
    tenant: &Tenant,
    service_id: ServiceId,
    asked: Option<&[BranchId]>,
) -> Result<Vec<Branch>, ApiError> {
    match asked {
        Some(ids) => ids
            .iter()
            .map(|id| crate::views::branch(tenant, *id))
            .collect(),
        None => Ok(tenant
            .branches
            .values()
            .filter(|b| b.active && tenant.services[&service_id].branch_ids.contains(&b.id))
            .cloned()
            .collect()),
    }
}

/// One slot search over some branches.
struct Search<'a> {
    app: &'a AppState,
    tenant: &'a Tenant,
    branches: &'a [Branch],
    service_id: ServiceId,
    staff_id: Option<StaffId>,
    now: DateTime<Utc>,
}

impl Search<'_> {
    async fn slots(&self, span: DateSpan) -> Result<Vec<Slot>, ApiError> {
        if self.branches.is_empty() {
            return Ok(vec![]);
        }
        let service = &self.tenant.services[&self.service_id];
        let rules = self.app.commands.rules(self.tenant);
        // A day either side covers every branch's zone.
        let window = TimeRange {
            start: reads::midnight(span.start, chrono_tz::UTC) - Duration::days(1),
            end: reads::midnight(span.end, chrono_tz::UTC) + Duration::days(2),
        };
        let calendars = self
            .app
            .calendars
            .calendars(
                &self.app.pool,
                &CalendarFilter {
                    tenant_id: self.tenant.id.map(|t| t.0).unwrap_or_default(),
                    branch_ids: Some(self.branches.iter().map(|b| b.id.0).collect()),
                    staff_ids: self.staff_id.map(|s| vec![s.0]),
                },
                &window,
            )
            .await
            .map_err(ApiError::internal)?;
        let mut slots: Vec<Slot> = self
            .branches
            .iter()
            .flat_map(|branch| {
                let search = SlotSearch {
                    branch,
                    service,
                    rules,
                    dates: span.start..=span.end,
                    now: self.now,
                };
                calendars
                    .iter()
                    .flat_map(move |c| search.slots(c))
                    .collect::<Vec<_>>()
            })
            .collect();
        slots.sort_by_key(|s| (s.start, s.branch_id.0, s.staff_id.0));
        Ok(slots)
    }
}

/// The dates of a staff member's availability.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffAvailabilityQuery {
    /// First local date; today when absent.
    pub start_date: Option<NaiveDate>,
    /// Last local date (at most 31 days after the first); a week from the first when absent.
    pub end_date: Option<NaiveDate>,
    /// Wait until the read model holds the command that answered with this position.
    #[schemars(range(min = 1))]
    pub min_position: Option<i64>,
}

/// A staff member's working and free time per day.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StaffAvailability {
    /// The staff member.
    pub staff_id: StaffId,
    /// Their zone: dates are local to it.
    pub time_zone: String,
    /// Each date of the range.
    pub days: Vec<DayPlan>,
    /// Working minutes less breaks, over the range.
    pub total_working_minutes: i64,
    /// Minutes of holds and reservations, over the range.
    pub total_booked_minutes: i64,
    /// Minutes still free (and not past), over the range.
    pub total_available_minutes: i64,
    /// Booked minutes over working minutes, 0 to 1; 0 without working time.
    pub utilization: f64,
}

async fn staff_availability(
    State(app): State<AppState>,
    caller: Caller,
    Path(staff_id): Path<StaffId>,
    Query(query): Query<StaffAvailabilityQuery>,
) -> Result<axum::Json<StaffAvailability>, ApiError> {
    caught_up::<StaffCalendars>(&app.pool, query.min_position).await?;
    let (calendar, span) = staff_days(
        &app,
        &caller,
        staff_id,
        (query.start_date, query.end_date),
        0,
        6,
    )
    .await?;
    let days = day_plans(&calendar, &(span.start..=span.end), caller.meta.now);
    Ok(axum::Json(StaffAvailability::of(staff_id, &calendar, days)))
}

impl StaffAvailability {
    fn of(staff_id: StaffId, calendar: &StaffCalendar, days: Vec<DayPlan>) -> Self {
        let total_working_minutes = days.iter().map(|d| d.working_minutes).sum();
        let total_booked_minutes = days.iter().map(|d| d.booked_minutes).sum();
        let total_available_minutes = days.iter().map(|d| d.free_minutes).sum();
        Self {
            staff_id,
            time_zone: calendar
                .staff
                .time_zone
                .map(|tz| tz.name().to_owned())
                .unwrap_or_default(),
            days,
            total_working_minutes,
            total_booked_minutes,
            total_available_minutes,
            utilization: ratio(total_booked_minutes, total_working_minutes),
        }
    }
}

/// `part / whole`, 0 when `whole` is 0, rounded to 4 places.
pub(crate) fn ratio(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        return 0.0;
    }
    let r = part as f64 / whole as f64;
    (r * 10_000.0).round() / 10_000.0
}

/// A staff member's calendar over a span of their local dates (`back` days before today to
/// `ahead` days after the start, unless given).
pub(crate) async fn staff_days(
    app: &AppState,
    caller: &Caller,
    staff_id: StaffId,
    (start, end): (Option<NaiveDate>, Option<NaiveDate>),
    back: i64,
    ahead: u32,
) -> Result<(StaffCalendar, DateSpan), ApiError> {
    let (staff, _) = staff_calendar::get(&app.pool, caller.who.tenant_id.0, staff_id.0)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("staff member"))?;
    let tz = staff.time_zone.unwrap_or(chrono_tz::UTC);
    let today = reads::today(caller.meta.now, tz) - Duration::days(back);
    let span = DateSpan::parse(
        start,
        end,
        ("start_date", "end_date"),
        today,
        ahead,
        MAX_SPAN_DAYS,
    )?;
    let mut calendars = app
        .calendars
        .calendars(
            &app.pool,
            &CalendarFilter {
                tenant_id: caller.who.tenant_id.0,
                branch_ids: None,
                staff_ids: Some(vec![staff_id.0]),
            },
            &span.instants(tz),
        )
        .await
        .map_err(ApiError::internal)?;
    let calendar = calendars
        .pop()
        .ok_or_else(|| ApiError::not_found("staff member"))?;
    Ok((calendar, span))
}

/// Who could take a service at a time.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AvailableStaffQuery {
    /// The service.
    pub service_id: ServiceId,
    /// The branch.
    pub branch_id: BranchId,
    /// The start (RFC 3339).
    pub date_time: DateTime<Utc>,
    /// Minutes, 15 to 480; the service's duration when absent.
    pub duration: Option<u32>,
    /// Wait until the read models hold the command that answered with this position.
    #[schemars(range(min = 1))]
    pub min_position: Option<i64>,
}

/// A staff member free for the appointment.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FreeStaff {
    /// Who.
    pub staff_id: StaffId,
    /// Name.
    pub name: String,
    /// Skill at the service, 1 to 5.
    pub skill_level: SkillLevel,
    /// Minutes already booked that day.
    pub booked_minutes_that_day: i64,
    /// 1 for the first recommendation: most skilled, then least busy that day.
    pub rank: usize,
}

/// The staff free for an appointment, best first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FreeStaffList {
    /// Qualified staff members free for it.
    pub data: Vec<FreeStaff>,
    /// When nobody can be offered because of the time itself (notice, advance limit,
    /// business hours), why.
    pub reason: Option<String>,
}

pub(crate) async fn available_staff(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<AvailableStaffQuery>,
) -> Result<axum::Json<FreeStaffList>, ApiError> {
    caught_up::<Tenants>(&app.pool, query.min_position).await?;
    caught_up::<StaffCalendars>(&app.pool, query.min_position).await?;
    let (tenant, _) = reads::tenant(&app, caller.who.tenant_id).await?;
    let now = caller.meta.now;
    let branch = crate::views::branch(&tenant, query.branch_id)?;
    let mut service = tenant
        .live_service(query.service_id)
        .map_err(|_| ApiError::not_found("service"))?
        .clone();
    if let Some(minutes) = query.duration {
        if !(15..=480).contains(&minutes) {
            return Err(ApiError::invalid("duration", "must be 15 to 480 minutes"));
        }
        service.duration_minutes = minutes;
    }
    let appointment = TimeRange::starting_at(query.date_time, service.duration_minutes)
        .map_err(|e| ApiError::invalid("date_time", e.to_string()))?;
    let refused = check_timing(&appointment, &app.commands.rules(&tenant), now)
        .and_then(|()| check_placement(&tenant, branch.id, service.id, &appointment).map(|_| ()));
    if let Err(e) = refused {
        return Ok(axum::Json(FreeStaffList {
            data: vec![],
            reason: Some(e.to_string()),
        }));
    }
    let date = query
        .date_time
        .with_timezone(&branch.time_zone)
        .date_naive();
    let day = DateSpan {
        start: date,
        end: date,
    };
    let calendars = app
        .calendars
        .calendars(
            &app.pool,
            &CalendarFilter {
                tenant_id: caller.who.tenant_id.0,
                branch_ids: Some(vec![branch.id.0]),
                staff_ids: None,
            },
            &day.instants(branch.time_zone),
        )
        .await
        .map_err(ApiError::internal)?;
    let free = ranked(&calendars, &service, &appointment, date, now);
    Ok(axum::Json(FreeStaffList {
        data: free,
        reason: None,
    }))
}

/// The calendars' staff free for the appointment, ranked: most skilled first, then the least
/// booked that day, then by name.
fn ranked(
    calendars: &[StaffCalendar],
    service: &domain::tenant::Service,
    appointment: &TimeRange,
    date: NaiveDate,
    now: DateTime<Utc>,
) -> Vec<FreeStaff> {
    let mut free: Vec<FreeStaff> = calendars
        .iter()
        .filter(|c| c.can_take(service, appointment, now))
        .filter_map(|c| {
            let booked = day_plans(c, &(date..=date), now)
                .iter()
                .map(|d| d.booked_minutes)
                .sum();
            Some(FreeStaff {
                staff_id: c.staff.id?,
                name: c.staff.name.clone(),
                skill_level: *c.staff.skills.get(&service.id)?,
                booked_minutes_that_day: booked,
                rank: 0,
            })
        })
        .collect();
    free.sort_by(|a, b| {
        b.skill_level
            .cmp(&a.skill_level)
            .then(a.booked_minutes_that_day.cmp(&b.booked_minutes_that_day))
            .then(a.name.cmp(&b.name))
    });
    for (i, f) in free.iter_mut().enumerate() {
        f.rank = i + 1;
    }
    free
}
