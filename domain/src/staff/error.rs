use crate::values::{BlockId, BookingId, ScheduleError, ServiceId};

/// Why a Staff command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StaffError {
    /// HireStaff on an existing stream.
    #[error("the staff member is already hired")]
    AlreadyHired,
    /// Any other command before HireStaff.
    #[error("the staff member does not exist")]
    NotHired,
    /// A command that needs an active staff member.
    #[error("the staff member is inactive")]
    Inactive,
    /// The plan allows no more staff in the branch.
    #[error("the plan allows {limit} staff member(s) per branch")]
    StaffLimitReached {
        /// The limit.
        limit: u32,
    },
    /// A name that is empty or too long.
    #[error("{field} must be 1 to 200 characters")]
    InvalidText {
        /// Which field.
        field: &'static str,
    },
    /// An e-mail address without `@`.
    #[error("{0:?} is not an e-mail address")]
    InvalidEmail(String),
    /// Hours that are not valid.
    #[error("invalid schedule: {0}")]
    InvalidSchedule(ScheduleError),
    /// Not qualified for the service.
    #[error("the staff member is not qualified for service {0}")]
    NotQualified(ServiceId),
    /// No such block.
    #[error("block {0} does not exist")]
    BlockNotFound(BlockId),
    /// The block id is already used.
    #[error("block {0} already exists")]
    BlockExists(BlockId),
    /// A block over reservations; move or cancel them first.
    #[error("the time overlaps {} booking(s); move or cancel them first", .0.len())]
    BlockOverlapsBookings(Vec<BookingId>),
    /// Deactivation with reservations still ahead.
    #[error("the staff member has {0} upcoming booking(s); move or cancel them first")]
    HasUpcomingBookings(usize),
    /// The appointment lies outside the working hours of its day, or over a break.
    #[error("the appointment is outside the staff member's working hours")]
    OutsideSchedule,
    /// The appointment starts in the past.
    #[error("the appointment starts in the past")]
    InThePast,
    /// Another hold, reservation or block overlaps it.
    #[error("the slot is no longer available")]
    SlotUnavailable,
    /// No hold of that booking at that time.
    #[error("there is no hold for booking {0} at that time")]
    HoldNotFound(BookingId),
    /// The hold lapsed before it was confirmed.
    #[error("the hold for booking {0} has expired")]
    HoldExpired(BookingId),
}
