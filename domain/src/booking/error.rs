use crate::values::{BranchId, ServiceId};

use super::BookingStatus;

/// Why a booking was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BookingError {
    /// CreateBooking on an existing booking.
    #[error("the booking already exists")]
    AlreadyExists,
    /// Any other command before CreateBooking.
    #[error("the booking does not exist")]
    NotFound,
    /// Duration outside 15 to 480 minutes.
    #[error("a booking must last 15 to 480 minutes, got {0}")]
    InvalidDuration(i64),
    /// Starts sooner than the minimum notice.
    #[error("bookings need at least {0} minutes' notice")]
    TooShortNotice(u32),
    /// Starts beyond the maximum advance.
    #[error("bookings can be made at most {0} days ahead")]
    TooFarInAdvance(u32),
    /// Outside the branch's opening hours.
    #[error("the appointment is outside the branch's business hours")]
    OutsideBusinessHours,
    /// The branch takes no bookings.
    #[error("branch {0} is inactive")]
    BranchInactive(BranchId),
    /// No such branch.
    #[error("branch {0} does not exist")]
    BranchNotFound(BranchId),
    /// No such live service.
    #[error("service {0} does not exist or is retired")]
    ServiceNotFound(ServiceId),
    /// The service is not offered at the branch.
    #[error("service {0} is not offered at branch {1}")]
    ServiceNotOffered(ServiceId, BranchId),
    /// The plan's monthly bookings are used up.
    #[error("the plan allows {0} bookings a month")]
    MonthlyLimitReached(u32),
    /// A change the booking's status does not allow.
    #[error("a {from:?} booking cannot be {action}")]
    IllegalTransition {
        /// Current status.
        from: BookingStatus,
        /// What was attempted.
        action: &'static str,
    },
    /// Completed or no-show before the appointment began.
    #[error("the appointment has not started yet")]
    NotStartedYet,
    /// Text fields out of bounds.
    #[error("{field} must be {max} characters at most and not empty")]
    InvalidText {
        /// Which field.
        field: &'static str,
        /// Its limit.
        max: usize,
    },
    /// A deposit outcome for a booking that asks for none.
    #[error("the booking has no deposit")]
    NoDeposit,
    /// A refund of a deposit that was not paid.
    #[error("the deposit was not paid")]
    DepositNotPaid,
    /// An e-mail address without `@`.
    #[error("{0:?} is not an e-mail address")]
    InvalidEmail(String),
}
