//! Value types: parsed once at the edge, trusted everywhere after.

mod coordinates;
mod ids;
mod money;
pub mod patterns;
mod phone;
mod plan;
mod schedule;
mod text;
mod time_range;

pub use coordinates::Coordinates;
pub use ids::{BlockId, BookingId, BranchId, ServiceId, StaffId, TenantId};
pub use money::{Currency, Money, MoneyError};
pub use phone::{CountryCode, PhoneError, PhoneNumber};
pub use plan::{Plan, PlanFeatures, PlanLimits};
pub use schedule::{
    ClockRange, ClockTime, DayHours, ScheduleError, Weekday, WeeklyHours, local_range_to_utc,
};
pub use text::{bounded_text, is_email};
pub use time_range::{TimeRange, TimeRangeError};
