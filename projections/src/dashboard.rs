//! Dashboard figures, derived from the bookings read model: counts by outcome, revenue, the
//! source mix, busiest hours and time series, for a tenant, a branch or one staff member.
//!
//! Working time (for utilization) comes from staff calendars, not from here: see
//! `domain::availability::day_plans`.

use chrono::{DateTime, NaiveDateTime, Utc};
use schemars::JsonSchema;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

/// Whose bookings, starting when.
#[derive(Debug, Clone)]
pub struct Scope {
    /// The tenant (always applied).
    pub tenant_id: Uuid,
    /// One branch.
    pub branch_id: Option<Uuid>,
    /// One staff member.
    pub staff_id: Option<Uuid>,
    /// Starting at or after.
    pub from: DateTime<Utc>,
    /// Starting before.
    pub to: DateTime<Utc>,
}

/// Bookings by outcome and what they are worth.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema, sqlx::FromRow)]
pub struct Outcomes {
    /// Every booking starting in the range, whatever became of it.
    pub bookings: i64,
    /// Held, awaiting confirmation.
    pub held: i64,
    /// Confirmed and not yet completed.
    pub confirmed: i64,
    /// Completed.
    pub completed: i64,
    /// Cancelled.
    pub cancellations: i64,
    /// Not attended.
    pub no_shows: i64,
    /// Price of completed bookings, minor units.
    pub revenue_minor: i64,
    /// Price of confirmed and completed bookings, minor units.
    pub booked_value_minor: i64,
}

/// Where bookings came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema, sqlx::FromRow)]
pub struct SourceMix {
    /// By the voice agent.
    pub phone: i64,
    /// Through the REST API or a dashboard.
    pub api: i64,
    /// Through an MCP agent.
    pub mcp: i64,
    /// Made in Cal.com.
    pub calcom: i64,
}

/// One hour of the day and its bookings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema, sqlx::FromRow)]
pub struct HourCount {
    /// Local hour of the start, 0–23.
    pub hour: i32,
    /// Bookings starting in it (cancelled ones not counted).
    pub bookings: i64,
}

const SCOPE: &str = "tenant_id = $1 AND ($2::uuid IS NULL OR branch_id = $2)
    AND ($3::uuid IS NULL OR staff_id = $3) AND start_at >= $4 AND start_at < $5";

/// Counts and revenue.
pub async fn outcomes(pool: &PgPool, scope: &Scope) -> Result<Outcomes, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT count(*) AS bookings,
                count(*) FILTER (WHERE status = 'held') AS held,
                count(*) FILTER (WHERE status = 'confirmed') AS confirmed,
                count(*) FILTER (WHERE status = 'completed') AS completed,
                count(*) FILTER (WHERE status = 'cancelled') AS cancellations,
                count(*) FILTER (WHERE status = 'no_show') AS no_shows,
                COALESCE(sum(price_minor) FILTER (WHERE status = 'completed'), 0)::bigint
                    AS revenue_minor,
                COALESCE(sum(price_minor) FILTER (WHERE status IN ('confirmed', 'completed')), 0)::bigint
                    AS booked_value_minor
         FROM bookings_view WHERE {SCOPE}"
    ))
    .bind(scope.tenant_id)
    .bind(scope.branch_id)
    .bind(scope.staff_id)
    .bind(scope.from)
    .bind(scope.to)
    .fetch_one(pool)
    .await
}

/// Bookings by source.
pub async fn sources(pool: &PgPool, scope: &Scope) -> Result<SourceMix, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT count(*) FILTER (WHERE source = 'phone') AS phone,
                count(*) FILTER (WHERE source = 'api') AS api,
                count(*) FILTER (WHERE source = 'mcp') AS mcp,
                count(*) FILTER (WHERE source = 'calcom') AS calcom
         FROM bookings_view WHERE {SCOPE}"
    ))
    .bind(scope.tenant_id)
    .bind(scope.branch_id)
    .bind(scope.staff_id)
    .bind(scope.from)
    .bind(scope.to)
    .fetch_one(pool)
    .await
}

/// The busiest local hours of the day, busiest first, at most `top`.
pub async fn busiest_hours(
    pool: &PgPool,
    scope: &Scope,
    top: i64,
) -> Result<Vec<HourCount>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT extract(hour FROM start_at AT TIME ZONE (state ->> 'time_zone'))::int AS hour,
                count(*) AS bookings
         FROM bookings_view WHERE {SCOPE} AND status <> 'cancelled'
         GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT $6"
    ))
    .bind(scope.tenant_id)
    .bind(scope.branch_id)
    .bind(scope.staff_id)
    .bind(scope.from)
    .bind(scope.to)
    .bind(top)
    .fetch_all(pool)
    .await
}

/// The width of a time-series bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// An hour.
    Hour,
    /// A day.
    Day,
    /// A week, from Monday.
    Week,
    /// A month.
    Month,
}

impl Bucket {
    fn unit(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

/// One bucket of a time series.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema, sqlx::FromRow)]
pub struct Point {
    /// The bucket's start, local wall time in the zone asked for.
    pub bucket: NaiveDateTime,
    /// Bookings starting in it.
    pub bookings: i64,
    /// Completed.
    pub completed: i64,
    /// Cancelled.
    pub cancellations: i64,
    /// Not attended.
    pub no_shows: i64,
    /// Price of completed bookings, minor units.
    pub revenue_minor: i64,
}

/// Bookings per bucket of local time in `time_zone`, buckets without bookings left out.
pub async fn timeseries(
    pool: &PgPool,
    scope: &Scope,
    bucket: Bucket,
    time_zone: &str,
) -> Result<Vec<Point>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT date_trunc($6, start_at AT TIME ZONE $7) AS bucket,
                count(*) AS bookings,
                count(*) FILTER (WHERE status = 'completed') AS completed,
                count(*) FILTER (WHERE status = 'cancelled') AS cancellations,
                count(*) FILTER (WHERE status = 'no_show') AS no_shows,
                COALESCE(sum(price_minor) FILTER (WHERE status = 'completed'), 0)::bigint
                    AS revenue_minor
         FROM bookings_view WHERE {SCOPE}
         GROUP BY 1 ORDER BY 1"
    ))
    .bind(scope.tenant_id)
    .bind(scope.branch_id)
    .bind(scope.staff_id)
    .bind(scope.from)
    .bind(scope.to)
    .bind(bucket.unit())
    .bind(time_zone)
    .fetch_all(pool)
    .await
}
