use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::settings::TenantSettings;
use crate::values::{
    BranchId, Coordinates, Money, PhoneNumber, Plan, ServiceId, TenantId, WeeklyHours,
};

/// What a branch is, as given when it is created or changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BranchDetails {
    /// Display name, e.g. "Mitte".
    #[schemars(length(min = 1, max = 200), regex(pattern = crate::values::patterns::TEXT))]
    pub name: String,
    /// Street and number.
    #[schemars(length(min = 1, max = 200), regex(pattern = crate::values::patterns::TEXT))]
    pub address: String,
    /// City, e.g. "Berlin".
    #[schemars(length(min = 1, max = 200), regex(pattern = crate::values::patterns::TEXT))]
    pub city: String,
    /// Latitude and longitude, for routing callers to the nearest branch.
    pub coordinates: Option<Coordinates>,
    /// The branch's IANA zone; the tenant's when absent.
    #[schemars(with = "Option<crate::values::patterns::TimeZoneName>")]
    pub time_zone: Option<Tz>,
    /// Opening hours per weekday.
    pub business_hours: WeeklyHours,
}

/// A service of the catalog, as given when it is defined or changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceDetails {
    /// Display name, e.g. "Haircut".
    #[schemars(length(min = 1, max = 200), regex(pattern = crate::values::patterns::TEXT))]
    pub name: String,
    /// Length of the appointment, 15 to 480 minutes.
    #[schemars(range(min = 15, max = 480))]
    pub duration_minutes: u32,
    /// Price in minor units.
    pub price: Money,
    /// Preparation time blocked before the appointment.
    #[schemars(range(max = 240))]
    pub buffer_before_minutes: u32,
    /// Clean-up time blocked after the appointment.
    #[schemars(range(max = 240))]
    pub buffer_after_minutes: u32,
    /// Branches that offer the service.
    #[schemars(length(min = 1))]
    pub branch_ids: Vec<BranchId>,
    /// A deposit to be paid before the booking is confirmed.
    pub deposit: Option<Money>,
}

/// Commands on a Tenant.
#[derive(Debug, Clone, PartialEq)]
pub enum TenantCommand {
    /// Opens the tenant's stream.
    RegisterTenant {
        /// The new tenant's id.
        tenant_id: TenantId,
        /// Company name.
        name: String,
        /// Where the operator reaches the company.
        contact_email: Option<String>,
        /// Subscription.
        plan: Plan,
        /// Time zone, locale, booking rules, channels.
        settings: TenantSettings,
        /// When it happened.
        now: DateTime<Utc>,
    },
    /// Changes name or contact.
    UpdateTenant {
        /// New name, if any.
        name: Option<String>,
        /// New contact address, if any.
        contact_email: Option<String>,
    },
    /// Moves to another plan; refused if the tenant has more active branches than it allows.
    ChangePlan {
        /// The new plan.
        plan: Plan,
    },
    /// Replaces the settings.
    UpdateTenantSettings {
        /// The new settings.
        settings: TenantSettings,
    },
    /// Adds an active branch, within the plan's limit.
    CreateBranch {
        /// The new branch's id.
        branch_id: BranchId,
        /// Its details.
        details: BranchDetails,
    },
    /// Replaces a branch's details.
    UpdateBranch {
        /// Which branch.
        branch_id: BranchId,
        /// Its new details.
        details: BranchDetails,
    },
    /// Reopens a branch, within the plan's limit.
    ActivateBranch {
        /// Which branch.
        branch_id: BranchId,
    },
    /// Closes a branch for new bookings.
    DeactivateBranch {
        /// Which branch.
        branch_id: BranchId,
    },
    /// Routes calls to a number to a branch.
    AssignPhoneNumber {
        /// Which branch.
        branch_id: BranchId,
        /// The number callers dial.
        phone: PhoneNumber,
    },
    /// Stops routing a number.
    ReleasePhoneNumber {
        /// The number.
        phone: PhoneNumber,
    },
    /// Adds a service to the catalog.
    DefineService {
        /// The new service's id.
        service_id: ServiceId,
        /// Its details.
        details: ServiceDetails,
    },
    /// Replaces a service's details.
    UpdateService {
        /// Which service.
        service_id: ServiceId,
        /// Its new details.
        details: ServiceDetails,
    },
    /// Withdraws a service from new bookings.
    RetireService {
        /// Which service.
        service_id: ServiceId,
    },
}
