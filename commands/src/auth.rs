use domain::values::TenantId;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::CommandError;

/// What an API key may do, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything within the tenant.
    Admin,
    /// Runs branches: staff, bookings, integrations.
    Manager,
    /// Books and cancels.
    Staff,
    /// An AI voice or chat agent: books, cancels, uses MCP.
    Agent,
    /// Reads only.
    Readonly,
}

/// The permissions of the original design, checked per operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    /// Create, confirm, move and complete bookings.
    CreateBookings,
    /// Cancel bookings.
    CancelBookings,
    /// Tenant, plan, settings, branches, services, phone numbers, API keys.
    ManageCompany,
    /// Hire staff and change their schedules and skills.
    ManageStaff,
    /// See integration health.
    ViewIntegrations,
    /// Use the Model Context Protocol endpoint.
    AccessMcp,
}

impl Permission {
    /// The name used in error messages and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateBookings => "create-bookings",
            Self::CancelBookings => "cancel-bookings",
            Self::ManageCompany => "manage-company",
            Self::ManageStaff => "manage-staff",
            Self::ViewIntegrations => "view-integrations",
            Self::AccessMcp => "access-mcp",
        }
    }
}

impl Role {
    /// Parses `admin`, `manager`, `staff`, `agent` or `readonly`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "manager" => Some(Self::Manager),
            "staff" => Some(Self::Staff),
            "agent" => Some(Self::Agent),
            "readonly" => Some(Self::Readonly),
            _ => None,
        }
    }

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Manager => "manager",
            Self::Staff => "staff",
            Self::Agent => "agent",
            Self::Readonly => "readonly",
        }
    }

    /// The permission map.
    pub fn allows(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Self::Admin => true,
            Self::Manager => !matches!(permission, P::ManageCompany),
            Self::Staff => matches!(permission, P::CreateBookings | P::CancelBookings),
            Self::Agent => matches!(
                permission,
                P::CreateBookings | P::CancelBookings | P::AccessMcp
            ),
            Self::Readonly => false,
        }
    }
}

/// The authenticated caller: one tenant, one role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The API key's id, recorded as the actor of its commands.
    pub key_id: Uuid,
    /// The only tenant the key can see or change.
    pub tenant_id: TenantId,
    /// What it may do.
    pub role: Role,
}

impl Principal {
    /// Refuses unless the role has the permission.
    pub fn require(&self, permission: Permission) -> Result<(), CommandError> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(CommandError::Forbidden(permission))
        }
    }

    /// The tenant's own machinery (a saga, a verified webhook): every permission, no key;
    /// its commands name their actor in their metadata.
    pub fn internal(tenant_id: TenantId) -> Self {
        Self {
            key_id: Uuid::nil(),
            tenant_id,
            role: Role::Admin,
        }
    }

    /// The actor recorded in event metadata.
    pub fn actor(&self) -> String {
        format!("api_key:{}", self.key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_admins_manage_the_company() {
        for role in [Role::Manager, Role::Staff, Role::Agent, Role::Readonly] {
            assert!(!role.allows(Permission::ManageCompany), "{role:?}");
        }
        assert!(Role::Admin.allows(Permission::ManageCompany));
    }

    #[test]
    fn agents_book_and_cancel_but_do_not_manage_staff() {
        assert!(Role::Agent.allows(Permission::CreateBookings));
        assert!(Role::Agent.allows(Permission::CancelBookings));
        assert!(!Role::Agent.allows(Permission::ManageStaff));
    }

    #[test]
    fn readonly_keys_change_nothing() {
        assert!(!Role::Readonly.allows(Permission::CreateBookings));
    }
}
