//! A manager's figures: the dashboard summary and time series, staff workload and
//! performance. Counts come from the bookings read model, working time from staff calendars.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use chrono::{Duration, NaiveDate};
use chrono_tz::Tz;
use domain::availability::day_plans;
use domain::values::{BranchId, Money, StaffId};
use projections::dashboard::{self, Bucket, HourCount, Outcomes, Point, Scope, SourceMix};
use projections::staff_calendar::CalendarFilter;
use projections::{Bookings, StaffCalendars};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::availability::{ratio, staff_days};
use crate::auth::Caller;
use crate::consistency::caught_up;
use crate::error::{ApiError, Path, Query};
use crate::reads::{self, DateSpan};
use crate::state::AppState;

/// `/dashboard/summary`, `/dashboard/timeseries`, `/staff/{id}/workload`, `/staff/{id}/performance`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard/summary", get(summary))
        .route("/dashboard/timeseries", get(timeseries))
        .route("/staff/{staff_id}/workload", get(workload))
        .route("/staff/{staff_id}/performance", get(performance))
}

/// Days a dashboard question may span.
const MAX_DAYS: u32 = 366;

/// A dashboard's scope: a branch or the whole tenant, over local dates.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SummaryQuery {
    /// One branch; the whole tenant when absent.
    pub branch_id: Option<BranchId>,
    /// First local date; 29 days before `to` when absent.
    pub from: Option<NaiveDate>,
    /// Last local date (at most 366 days after `from`); today, or 29 days after `from`, when
    /// absent.
    pub to: Option<NaiveDate>,
    /// Wait until the read models hold the command that answered with this position.
    #[schemars(range(min = 1))]
    pub min_position: Option<i64>,
}

/// Figures for a branch or the tenant over a range of dates.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Summary {
    /// First local date.
    pub from: NaiveDate,
    /// Last local date.
    pub to: NaiveDate,
    /// Bookings by outcome.
    #[serde(flatten)]
    pub outcomes: Outcomes,
    /// Completed bookings' prices.
    pub revenue: Money,
    /// Booked minutes over staff working minutes in the range, 0 to 1.
    pub utilization: f64,
    /// Where bookings came from.
    pub source_mix: SourceMix,
    /// The five busiest local hours, busiest first (cancelled bookings not counted).
    pub busiest_hours: Vec<HourCount>,
}

/// The zone dates are read in: the branch's, else the tenant's.
async fn scope_of(
    app: &AppState,
    caller: &Caller,
    branch_id: Option<BranchId>,
    (from, to): (Option<NaiveDate>, Option<NaiveDate>),
) -> Result<(Scope, DateSpan, Tz, domain::Tenant), ApiError> {
    let (tenant, _) = reads::tenant(app, caller.who.tenant_id).await?;
    let tz = match branch_id {
        Some(id) => crate::views::branch(&tenant, id)?.time_zone,
        None => tenant.settings.time_zone,
    };
    // Thirty days: ending today, or ending at `to`, or starting at `from`.
    let today = reads::today(caller.meta.now, tz);
    let last = to.unwrap_or(today);
    let span = DateSpan::parse(
        from,
        to.or_else(|| from.is_none().then_some(today)),
        ("from", "to"),
        last - Duration::days(29),
        29,
        MAX_DAYS,
    )?;
    let instants = span.instants(tz);
    Ok((
        Scope {
            tenant_id: caller.who.tenant_id.0,
            branch_id: branch_id.map(|b| b.0),
            staff_id: None,
            from: instants.start,
            to: instants.end,
        },
        span,
        tz,
        tenant,
    ))
}

async fn summary(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<SummaryQuery>,
) -> Result<axum::Json<Summary>, ApiError> {
    caught_up::<Bookings>(&app.pool, query.min_position).await?;
    caught_up::<StaffCalendars>(&app.pool, query.min_position).await?;
    let (scope, span, _, tenant) =
        scope_of(&app, &caller, query.branch_id, (query.from, query.to)).await?;
    let internal = ApiError::internal;
    let outcomes = dashboard::outcomes(&app.pool, &scope)
        .await
        .map_err(internal)?;
    let source_mix = dashboard::sources(&app.pool, &scope)
        .await
        .map_err(internal)?;
    let busiest_hours = dashboard::busiest_hours(&app.pool, &scope, 5)
        .await
        .map_err(internal)?;
    let calendars = app
        .calendars
        .calendars(
            &app.pool,
            &CalendarFilter {
                tenant_id: scope.tenant_id,
                branch_ids: scope.branch_id.map(|b| vec![b]),
                staff_ids: None,
            },
            &domain::values::TimeRange {
                start: scope.from,
                end: scope.to,
            },
        )
        .await
        .map_err(internal)?;
    // Staff off the rota keep their schedules but offer no working time.
    let (booked, working) = calendars
        .iter()
        .filter(|c| c.staff.active)
        .flat_map(|c| day_plans(c, &(span.start..=span.end), caller.meta.now))
        .fold((0, 0), |(b, w), d| {
            (b + d.booked_minutes, w + d.working_minutes)
        });
    Ok(axum::Json(Summary {
        from: span.start,
        to: span.end,
        revenue: Money {
            amount_minor: outcomes.revenue_minor,
            currency: tenant.settings.currency,
        },
        outcomes,
        utilization: ratio(booked, working),
        source_mix,
        busiest_hours,
    }))
}

/// A time series' scope and bucket width.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeseriesQuery {
    /// One branch; the whole tenant when absent.
    pub branch_id: Option<BranchId>,
    /// One staff member.
    pub staff_id: Option<StaffId>,
    /// First local date; 29 days before today when absent.
    pub from: Option<NaiveDate>,
    /// Last local date (at most 366 days after `from`); today when absent.
    pub to: Option<NaiveDate>,
    /// `hour`, `day` (default), `week` or `month`.
    #[schemars(extend("enum" = ["hour", "day", "week", "month"]))]
    pub interval: Option<String>,
    /// Wait until the read model holds the command that answered with this position.
    #[schemars(range(min = 1))]
    pub min_position: Option<i64>,
}

/// Bookings per bucket of local time.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Timeseries {
    /// The bucket width.
    pub interval: String,
    /// The zone buckets are in.
    pub time_zone: String,
    /// Buckets with bookings, in order.
    pub points: Vec<Point>,
}

async fn timeseries(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<TimeseriesQuery>,
) -> Result<axum::Json<Timeseries>, ApiError> {
    let interval = query.interval.as_deref().unwrap_or("day");
    let bucket = match interval {
        "hour" => Bucket::Hour,
        "day" => Bucket::Day,
        "week" => Bucket::Week,
        "month" => Bucket::Month,
        _ => {
            return Err(ApiError::invalid(
                "interval",
                "must be hour, day, week or month",
            ));
        }
    };
    caught_up::<Bookings>(&app.pool, query.min_position).await?;
    let (mut scope, _, tz, _) =
        scope_of(&app, &caller, query.branch_id, (query.from, query.to)).await?;
    scope.staff_id = query.staff_id.map(|s| s.0);
    let points = dashboard::timeseries(&app.pool, &scope, bucket, tz.name())
        .await
        .map_err(ApiError::internal)?;
    Ok(axum::Json(Timeseries {
        interval: interval.to_owned(),
        time_zone: tz.name().to_owned(),
        points,
    }))
}

/// Local dates of a staff member.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffSpanQuery {
    /// First local date.
    pub start_date: Option<NaiveDate>,
    /// Last local date (at most 31 days after the first).
    pub end_date: Option<NaiveDate>,
    /// Wait until the read models hold the command that answered with this position.
    #[schemars(range(min = 1))]
    pub min_position: Option<i64>,
}

/// One day of a staff member's workload.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WorkloadDay {
    /// Local date.
    pub date: NaiveDate,
    /// Held and reserved appointments.
    pub appointments: usize,
    /// Their minutes.
    pub booked_minutes: i64,
    /// Working minutes less breaks.
    pub working_minutes: i64,
    /// Booked over working, 0 to 1.
    pub utilization: f64,
}

/// A staff member's workload per day (today and the next six by default).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Workload {
    /// Who.
    pub staff_id: StaffId,
    /// Each date.
    pub days: Vec<WorkloadDay>,
    /// Appointments over the range.
    pub appointments: usize,
    /// Booked over working minutes over the range.
    pub utilization: f64,
}

async fn workload(
    State(app): State<AppState>,
    caller: Caller,
    Path(staff_id): Path<StaffId>,
    Query(query): Query<StaffSpanQuery>,
) -> Result<axum::Json<Workload>, ApiError> {
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
    let days: Vec<WorkloadDay> = day_plans(&calendar, &(span.start..=span.end), caller.meta.now)
        .into_iter()
        .map(|d| WorkloadDay {
            date: d.date,
            appointments: d.appointments,
            booked_minutes: d.booked_minutes,
            working_minutes: d.working_minutes,
            utilization: ratio(d.booked_minutes, d.working_minutes),
        })
        .collect();
    let booked = days.iter().map(|d| d.booked_minutes).sum();
    let working = days.iter().map(|d| d.working_minutes).sum();
    Ok(axum::Json(Workload {
        staff_id,
        appointments: days.iter().map(|d| d.appointments).sum(),
        utilization: ratio(booked, working),
        days,
    }))
}

/// How a staff member's bookings went over a range (the last 30 days by default).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Performance {
    /// Who.
    pub staff_id: StaffId,
    /// First local date.
    pub start_date: NaiveDate,
    /// Last local date.
    pub end_date: NaiveDate,
    /// Bookings by outcome.
    #[serde(flatten)]
    pub outcomes: Outcomes,
    /// No-shows over bookings that were due (completed plus no-shows), 0 to 1.
    pub no_show_rate: f64,
    /// Cancellations over all bookings, 0 to 1.
    pub cancellation_rate: f64,
    /// Booked over working minutes, 0 to 1.
    pub utilization: f64,
    /// Bookings (not cancelled) per day of the range.
    pub bookings_per_day: f64,
}

async fn performance(
    State(app): State<AppState>,
    caller: Caller,
    Path(staff_id): Path<StaffId>,
    Query(query): Query<StaffSpanQuery>,
) -> Result<axum::Json<Performance>, ApiError> {
    caught_up::<Bookings>(&app.pool, query.min_position).await?;
    caught_up::<StaffCalendars>(&app.pool, query.min_position).await?;
    let (calendar, span) = staff_days(
        &app,
        &caller,
        staff_id,
        (query.start_date, query.end_date),
        29,
        29,
    )
    .await?;
    let tz = calendar.staff.time_zone.unwrap_or(chrono_tz::UTC);
    let instants = span.instants(tz);
    let outcomes = dashboard::outcomes(
        &app.pool,
        &Scope {
            tenant_id: caller.who.tenant_id.0,
            branch_id: None,
            staff_id: Some(staff_id.0),
            from: instants.start,
            to: instants.end,
        },
    )
    .await
    .map_err(ApiError::internal)?;
    let plans = day_plans(&calendar, &(span.start..=span.end), caller.meta.now);
    let booked = plans.iter().map(|d| d.booked_minutes).sum();
    let working = plans.iter().map(|d| d.working_minutes).sum();
    let kept = outcomes.bookings - outcomes.cancellations;
    Ok(axum::Json(Performance {
        staff_id,
        start_date: span.start,
        end_date: span.end,
        no_show_rate: ratio(outcomes.no_shows, outcomes.completed + outcomes.no_shows),
        cancellation_rate: ratio(outcomes.cancellations, outcomes.bookings),
        utilization: ratio(booked, working),
        bookings_per_day: ratio(kept, span.days()),
        outcomes,
    }))
}
