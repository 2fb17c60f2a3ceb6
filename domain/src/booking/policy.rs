use crate::tenant::{Branch, Service, Tenant};
use crate::values::{BranchId, Plan, ServiceId, TimeRange};

use super::BookingError;

/// Checks a booking's placement against the tenant: the branch exists and is active, the
/// service is live and offered there, and the appointment lies in the branch's business hours
/// (in the branch's own zone).
pub fn check_placement<'t>(
    tenant: &'t Tenant,
    branch_id: BranchId,
    service_id: ServiceId,
    appointment: &TimeRange,
) -> Result<(&'t Branch, &'t Service), BookingError> {
    let branch = tenant
        .branches
        .get(&branch_id)
        .ok_or(BookingError::BranchNotFound(branch_id))?;
    if !branch.active {
        return Err(BookingError::BranchInactive(branch_id));
    }
    let service = tenant
        .live_service(service_id)
        .map_err(|_| BookingError::ServiceNotFound(service_id))?;
    if !service.branch_ids.contains(&branch_id) {
        return Err(BookingError::ServiceNotOffered(service_id, branch_id));
    }
    let date = appointment
        .start
        .with_timezone(&branch.time_zone)
        .date_naive();
    if !branch
        .business_hours
        .admits(date, branch.time_zone, appointment)
    {
        return Err(BookingError::OutsideBusinessHours);
    }
    Ok((branch, service))
}

/// Checks the plan's monthly bookings against the number already made this month.
pub fn check_monthly_limit(plan: Plan, made_this_month: u64) -> Result<(), BookingError> {
    match plan.limits().bookings_per_month {
        Some(limit) if made_this_month >= u64::from(limit) => {
            Err(BookingError::MonthlyLimitReached(limit))
        }
        _ => Ok(()),
    }
}
