use crate::values::{BranchId, Plan, ScheduleError, ServiceId};

/// Why a Tenant command was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TenantError {
    /// RegisterTenant on an existing tenant.
    #[error("the tenant is already registered")]
    AlreadyRegistered,
    /// Any other command before RegisterTenant.
    #[error("the tenant is not registered")]
    NotRegistered,
    /// A name that is empty or longer than 200 characters.
    #[error("{field} must be 1 to 200 characters")]
    InvalidText {
        /// Which field.
        field: &'static str,
    },
    /// An e-mail address without `@`.
    #[error("{0:?} is not an e-mail address")]
    InvalidEmail(String),
    /// The plan allows no more active branches.
    #[error("the {plan:?} plan allows {limit} active branch(es)")]
    BranchLimitReached {
        /// Current plan.
        plan: Plan,
        /// Its limit.
        limit: u32,
    },
    /// A downgrade below the number of active branches.
    #[error("the {plan:?} plan allows {limit} active branch(es) but {active} are active")]
    PlanTooSmall {
        /// Requested plan.
        plan: Plan,
        /// Its limit.
        limit: u32,
        /// Active branches now.
        active: u32,
    },
    /// No branch with that id.
    #[error("branch {0} does not exist")]
    BranchNotFound(BranchId),
    /// The branch id is already used.
    #[error("branch {0} already exists")]
    BranchExists(BranchId),
    /// ActivateBranch on an active branch.
    #[error("branch {0} is already active")]
    BranchAlreadyActive(BranchId),
    /// DeactivateBranch on an inactive branch.
    #[error("branch {0} is already inactive")]
    BranchAlreadyInactive(BranchId),
    /// Business hours that are not valid.
    #[error("invalid business hours: {0}")]
    InvalidHours(ScheduleError),
    /// Coordinates outside the globe.
    #[error("coordinates must have latitude in -90..90 and longitude in -180..180")]
    InvalidCoordinates,
    /// The number routes to another branch already.
    #[error("the phone number is already assigned to branch {0}")]
    PhoneNumberTaken(BranchId),
    /// ReleasePhoneNumber for a number that routes nowhere.
    #[error("the phone number is not assigned")]
    PhoneNumberNotAssigned,
    /// No service with that id.
    #[error("service {0} does not exist")]
    ServiceNotFound(ServiceId),
    /// The service id is already used.
    #[error("service {0} already exists")]
    ServiceExists(ServiceId),
    /// The service was retired.
    #[error("service {0} is retired")]
    ServiceRetired(ServiceId),
    /// A duration outside 15 to 480 minutes.
    #[error("service duration must be 15 to 480 minutes, got {0}")]
    InvalidDuration(u32),
    /// A buffer longer than 240 minutes.
    #[error("buffers must be 0 to 240 minutes")]
    InvalidBuffer,
    /// Deposit currency differs from the price or exceeds it.
    #[error("the deposit must be in the price's currency and not exceed it")]
    InvalidDeposit,
    /// A service offered nowhere, or at an unknown branch.
    #[error("a service must be offered at one or more existing branches")]
    InvalidServiceBranches,
    /// Settings that are not valid.
    #[error("invalid settings: {0}")]
    InvalidSettings(String),
}
