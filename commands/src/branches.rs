use domain::tenant::BranchDetails;
use domain::values::{BranchId, PhoneNumber};
use domain::{Tenant, TenantCommand};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::{CommandError, CommandMeta, Commands, Outcome, Permission, Principal, Store};

/// A branch to create or the new details of one.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BranchInput {
    /// Its details.
    #[serde(flatten)]
    pub details: BranchDetails,
}

/// A number callers dial.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneNumberInput {
    /// E.164, or national with the tenant's default country code.
    #[schemars(regex(pattern = domain::values::patterns::PHONE_INPUT))]
    pub phone_number: String,
}

impl<S: Store> Commands<S> {
    /// Opens a branch, within the plan's limit.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %branch_id))]
    pub async fn create_branch(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        branch_id: BranchId,
        input: BranchInput,
    ) -> Result<Outcome<Tenant>, CommandError> {
        who.require(Permission::ManageCompany)?;
        let command = TenantCommand::CreateBranch {
            branch_id,
            details: input.details,
        };
        self.run_tenant(command, meta).await
    }

    /// Replaces a branch's details.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %branch_id))]
    pub async fn update_branch(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        branch_id: BranchId,
        input: BranchInput,
    ) -> Result<Outcome<Tenant>, CommandError> {
        who.require(Permission::ManageCompany)?;
        let command = TenantCommand::UpdateBranch {
            branch_id,
            details: input.details,
        };
        self.run_tenant(command, meta).await
    }

    /// Opens or closes a branch for bookings.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %branch_id, active))]
    pub async fn set_branch_active(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        branch_id: BranchId,
        active: bool,
    ) -> Result<Outcome<Tenant>, CommandError> {
        who.require(Permission::ManageCompany)?;
        let command = if active {
            TenantCommand::ActivateBranch { branch_id }
        } else {
            TenantCommand::DeactivateBranch { branch_id }
        };
        self.run_tenant(command, meta).await
    }

    /// Routes a number to a branch.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %branch_id))]
    pub async fn assign_phone_number(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        branch_id: BranchId,
        input: PhoneNumberInput,
    ) -> Result<Outcome<Tenant>, CommandError> {
        who.require(Permission::ManageCompany)?;
        let phone = self.parse_phone(meta, &input.phone_number).await?;
        self.run_tenant(TenantCommand::AssignPhoneNumber { branch_id, phone }, meta)
            .await
    }

    /// Stops routing a number.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id))]
    pub async fn release_phone_number(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        raw: &str,
    ) -> Result<Outcome<Tenant>, CommandError> {
        who.require(Permission::ManageCompany)?;
        let phone = self.parse_phone(meta, raw).await?;
        self.run_tenant(TenantCommand::ReleasePhoneNumber { phone }, meta)
            .await
    }

    /// Parses a number with the tenant's default country code.
    pub(crate) async fn parse_phone(
        &self,
        meta: &CommandMeta,
        raw: &str,
    ) -> Result<PhoneNumber, CommandError> {
        let (tenant, _) = self.tenant(meta.tenant_id).await?;
        PhoneNumber::parse(raw, tenant.settings.default_country_code)
            .map_err(|e| CommandError::invalid("phone_number", e))
    }
}
