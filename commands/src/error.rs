use domain::{BookingError, StaffError, TenantError};

use crate::auth::Permission;

/// Why a use case failed. The API maps each variant to a status and error code.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A Tenant rule refused the command.
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// A Staff rule refused the command.
    #[error(transparent)]
    Staff(#[from] StaffError),
    /// A Booking rule refused the command.
    #[error(transparent)]
    Booking(#[from] BookingError),
    /// Input that could not be parsed.
    #[error("{field}: {message}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// No such resource for this tenant.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The caller's role lacks the permission.
    #[error("this API key lacks the {} permission", .0.as_str())]
    Forbidden(Permission),
    /// No qualified staff member is free at that time.
    #[error("no qualified staff member is free at that time")]
    NoStaffAvailable,
    /// Concurrent writers kept winning; the caller may retry.
    #[error("the resource changed concurrently; retry")]
    Conflict,
    /// A record the command was built from changed before it was written (its guard); the
    /// use case builds it again from the current record.
    #[error("a record the command relied on changed concurrently; retry")]
    Outdated,
    /// The database is unreachable.
    #[error("the event store is unavailable")]
    Unavailable(String),
    /// Anything else; details are logged, not returned.
    #[error("internal error")]
    Internal(String),
}

impl CommandError {
    /// An unparseable field.
    pub fn invalid(field: &'static str, message: impl std::fmt::Display) -> Self {
        Self::Invalid {
            field,
            message: message.to_string(),
        }
    }
}
