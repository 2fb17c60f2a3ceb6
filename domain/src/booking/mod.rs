//! The Booking aggregate: one appointment from hold to completion, and the placement policy
//! that checks it against the tenant's branch, catalog and plan.

mod aggregate;
mod command;
mod error;
mod event;
mod policy;

pub use aggregate::{
    Booking, BookingSource, BookingStatus, CalendarOutcome, CalendarSync, Cancellation, Customer,
    Deposit, DepositOutcome, DepositStatus, check_timing,
};
pub use command::{BookingCommand, NewBooking};
pub use error::BookingError;
pub use event::BookingEvent;
pub use policy::{check_monthly_limit, check_placement};
