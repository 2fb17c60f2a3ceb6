//! What read routes share: the tenant as the read model has it, and date spans in a zone.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use domain::Tenant;
use domain::values::{TenantId, TimeRange};

use crate::error::ApiError;
use crate::state::AppState;

/// The tenant from its read model. A tenant registered a moment ago may not be there yet: it
/// is then folded from its events, which for a tenant are few.
pub async fn tenant(app: &AppState, tenant_id: TenantId) -> Result<(Tenant, u64), ApiError> {
    match projections::tenants::get(&app.pool, tenant_id.0)
        .await
        .map_err(ApiError::internal)?
    {
        Some((tenant, version)) => Ok((tenant, u64::try_from(version).unwrap_or_default())),
        None => Ok(app.commands.tenant(tenant_id).await?),
    }
}

/// Local dates, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateSpan {
    /// First date.
    pub start: NaiveDate,
    /// Last date.
    pub end: NaiveDate,
}

impl DateSpan {
    /// From optional query parameters: a missing start is `default_start`, a missing end
    /// `default_days` later; the end may not precede the start, nor lie more than `max_days`
    /// after it.
    pub fn parse(
        start: Option<NaiveDate>,
        end: Option<NaiveDate>,
        (start_field, end_field): (&str, &str),
        default_start: NaiveDate,
        default_days: u32,
        max_days: u32,
    ) -> Result<Self, ApiError> {
        let start = start.unwrap_or(default_start);
        let end = end.unwrap_or(start + Duration::days(i64::from(default_days)));
        if end < start {
            return Err(ApiError::invalid(
                end_field,
                format!("must not be before {start_field}"),
            ));
        }
        if (end - start).num_days() > i64::from(max_days) {
            return Err(ApiError::invalid(
                end_field,
                format!("at most {max_days} days after {start_field}"),
            ));
        }
        Ok(Self { start, end })
    }

    /// The instants from the start's local midnight to the end's next local midnight.
    pub fn instants(&self, tz: Tz) -> TimeRange {
        TimeRange {
            start: midnight(self.start, tz),
            end: midnight(self.end + Duration::days(1), tz),
        }
    }

    /// Days covered.
    pub fn days(&self) -> i64 {
        (self.end - self.start).num_days() + 1
    }
}

/// Today in `tz`.
pub fn today(now: DateTime<Utc>, tz: Tz) -> NaiveDate {
    now.with_timezone(&tz).date_naive()
}

/// The first instant of `date` in `tz`.
pub fn midnight(date: NaiveDate, tz: Tz) -> DateTime<Utc> {
    let local = date.and_time(chrono::NaiveTime::MIN);
    tz.from_local_datetime(&local)
        .earliest()
        .map_or_else(|| local.and_utc(), |t| t.with_timezone(&Utc))
}
