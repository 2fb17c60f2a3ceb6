//! Free times from the staff calendars read model, decided by the same availability rules
//! the booking API answers with.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use domain::Tenant;
use domain::availability::SlotSearch;
use domain::settings::BookingRules;
use domain::values::{BranchId, ServiceId, StaffId, TimeRange};
use projections::staff_calendar::{CalendarCache, CalendarFilter};
use sagas::ports::{Alternatives, PortError};
use sqlx::PgPool;

/// How far ahead alternatives are looked for.
const HORIZON_DAYS: i64 = 14;

/// Alternatives from Postgres.
#[derive(Debug)]
pub struct PgAlternatives {
    pool: PgPool,
    calendars: CalendarCache,
    cap_advance_days: u32,
}

impl PgAlternatives {
    /// Alternatives within the server's cap on advance days.
    pub fn new(pool: PgPool, cap_advance_days: u32) -> Self {
        Self {
            pool,
            calendars: CalendarCache::default(),
            cap_advance_days,
        }
    }
}

#[async_trait]
impl Alternatives for PgAlternatives {
    async fn free_starts(
        &self,
        tenant: &Tenant,
        branch: BranchId,
        service: ServiceId,
        (staff, time): (StaffId, TimeRange),
        (now, count): (DateTime<Utc>, usize),
    ) -> Result<Vec<DateTime<Utc>>, PortError> {
        let (Some(branch), Some(service)) =
            (tenant.branches.get(&branch), tenant.services.get(&service))
        else {
            return Ok(vec![]);
        };
        let mut rules: BookingRules = tenant.settings.booking_rules;
        rules.max_advance_days = rules.max_advance_days.min(self.cap_advance_days);
        let today = now.with_timezone(&branch.time_zone).date_naive();
        let window = TimeRange {
            start: now - Duration::days(1),
            end: now + Duration::days(HORIZON_DAYS + 1),
        };
        let filter = CalendarFilter {
            tenant_id: tenant.id.map(|t| t.0).unwrap_or_default(),
            branch_ids: Some(vec![branch.id.0]),
            staff_ids: None,
        };
        let calendars = self
            .calendars
            .calendars(&self.pool, &filter, &window)
            .await
            .map_err(|e| PortError::Transient(e.to_string()))?;
        let search = SlotSearch {
            branch,
            service,
            rules,
            dates: today..=today + Duration::days(HORIZON_DAYS),
            now,
        };
        let mut starts: Vec<DateTime<Utc>> = calendars
            .iter()
            .flat_map(|c| search.slots(c))
            .filter(|s| !(s.staff_id == staff && s.start < time.end && time.start < s.end))
            .map(|s| s.start)
            .collect();
        starts.sort_unstable();
        starts.dedup();
        starts.truncate(count);
        Ok(starts)
    }
}
