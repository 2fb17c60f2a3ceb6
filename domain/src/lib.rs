//! The booking domain: aggregates, value types and rules. Pure: no I/O, no async runtime of
//! its own, no clock reads (every decision gets `now` passed in).
//!
//! # Layout
//!
//! * [`values`]: parsed value types: ids, phone numbers, money, time ranges, schedules, plans.
//! * [`settings`]: a tenant's configurable rules.
//! * [`tenant`]: the Tenant aggregate (plan, branches, catalog, phone routing).
//! * [`staff`]: the Staff aggregate and the calendar that prevents double booking.
//! * [`booking`]: the Booking aggregate and the placement policy.
//! * [`availability`]: free slots and working time, decided by the rules bookings are.
//!
//! Each aggregate has a synchronous `decide(&self, command) -> Result<Vec<Event>, Error>`;
//! `cqrs_es::Aggregate::handle` only forwards the decided events to the sink, and `apply` only
//! assigns state.
#![warn(missing_docs)]

pub mod availability;
pub mod booking;
pub mod settings;
pub mod staff;
pub mod tenant;
pub mod values;

pub use booking::{
    Booking, BookingCommand, BookingError, BookingEvent, CalendarOutcome, CalendarSync,
    DepositOutcome,
};
pub use staff::{Staff, StaffCommand, StaffError, StaffEvent};
pub use tenant::{Tenant, TenantCommand, TenantError, TenantEvent};

/// The aggregate trait, for readers that fold events (read models, audit) without depending on
/// cqrs-es themselves.
pub use cqrs_es::Aggregate;
