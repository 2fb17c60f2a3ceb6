use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Branch, Service};
use crate::settings::TenantSettings;
use crate::values::{BranchId, PhoneNumber, Plan, ServiceId, TenantId};

use super::command::BranchDetails;

/// What happened to a Tenant. Stored events are never edited; new shapes get new versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum TenantEvent {
    /// The tenant was registered.
    TenantRegistered {
        /// Its id.
        tenant_id: TenantId,
        /// Company name.
        name: String,
        /// Contact address.
        contact_email: Option<String>,
        /// Subscription.
        plan: Plan,
        /// Initial settings.
        settings: TenantSettings,
        /// When.
        registered_at: DateTime<Utc>,
    },
    /// Name or contact changed.
    TenantUpdated {
        /// Company name.
        name: String,
        /// Contact address.
        contact_email: Option<String>,
    },
    /// The plan changed.
    PlanChanged {
        /// Before.
        from: Plan,
        /// After.
        to: Plan,
    },
    /// Settings replaced.
    TenantSettingsUpdated {
        /// The new settings.
        settings: TenantSettings,
    },
    /// A branch was opened.
    BranchCreated {
        /// The branch as created.
        branch: Branch,
    },
    /// A branch's details changed.
    BranchUpdated {
        /// Which branch.
        branch_id: BranchId,
        /// Its new details.
        details: BranchDetails,
    },
    /// A branch takes bookings again.
    BranchActivated {
        /// Which branch.
        branch_id: BranchId,
    },
    /// A branch takes no new bookings.
    BranchDeactivated {
        /// Which branch.
        branch_id: BranchId,
    },
    /// Calls to a number now reach a branch.
    PhoneNumberAssigned {
        /// Which branch.
        branch_id: BranchId,
        /// The number.
        phone: PhoneNumber,
    },
    /// A number no longer routes anywhere.
    PhoneNumberReleased {
        /// The branch it routed to.
        branch_id: BranchId,
        /// The number.
        phone: PhoneNumber,
    },
    /// A service was added to the catalog.
    ServiceDefined {
        /// The service.
        service: Service,
    },
    /// A service's details changed.
    ServiceUpdated {
        /// The service as it is now.
        service: Service,
    },
    /// A service takes no new bookings.
    ServiceRetired {
        /// Which service.
        service_id: ServiceId,
    },
}

impl DomainEvent for TenantEvent {
    fn event_type(&self) -> String {
        let name = match self {
            Self::TenantRegistered { .. } => "TenantRegistered",
            Self::TenantUpdated { .. } => "TenantUpdated",
            Self::PlanChanged { .. } => "PlanChanged",
            Self::TenantSettingsUpdated { .. } => "TenantSettingsUpdated",
            Self::BranchCreated { .. } => "BranchCreated",
            Self::BranchUpdated { .. } => "BranchUpdated",
            Self::BranchActivated { .. } => "BranchActivated",
            Self::BranchDeactivated { .. } => "BranchDeactivated",
            Self::PhoneNumberAssigned { .. } => "PhoneNumberAssigned",
            Self::PhoneNumberReleased { .. } => "PhoneNumberReleased",
            Self::ServiceDefined { .. } => "ServiceDefined",
            Self::ServiceUpdated { .. } => "ServiceUpdated",
            Self::ServiceRetired { .. } => "ServiceRetired",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
