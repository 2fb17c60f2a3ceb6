use domain::settings::TenantSettings;
use domain::values::Plan;
use domain::{Tenant, TenantCommand};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::{CommandError, CommandMeta, Commands, Outcome, Permission, Principal, Store};

/// A new tenant, as the operator registers it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterTenantInput {
    /// Company name.
    #[schemars(length(min = 1, max = 200), regex(pattern = domain::values::patterns::TEXT))]
    pub name: String,
    /// Contact e-mail.
    #[serde(default)]
    #[schemars(length(max = 254), regex(pattern = domain::values::patterns::EMAIL))]
    pub contact_email: Option<String>,
    /// Subscription; `basic` when absent.
    #[serde(default)]
    pub plan: Plan,
    /// Settings; defaults are German (Europe/Berlin, de, +49, EUR).
    #[serde(default)]
    pub settings: TenantSettings,
}

/// Changes to name or contact.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantInput {
    /// New name.
    #[serde(default)]
    #[schemars(length(min = 1, max = 200), regex(pattern = domain::values::patterns::TEXT))]
    pub name: Option<String>,
    /// New contact e-mail.
    #[serde(default)]
    #[schemars(length(max = 254), regex(pattern = domain::values::patterns::EMAIL))]
    pub contact_email: Option<String>,
}

/// A plan change.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePlanInput {
    /// The new plan.
    pub plan: Plan,
}

impl<S: Store> Commands<S> {
    /// Registers a tenant; the caller is the operator, so no API key is involved.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id))]
    pub async fn register_tenant(
        &self,
        meta: &CommandMeta,
        input: RegisterTenantInput,
    ) -> Result<Outcome<Tenant>, CommandError> {
        let command = TenantCommand::RegisterTenant {
            tenant_id: meta.tenant_id,
            name: input.name,
            contact_email: input.contact_email,
            plan: input.plan,
            settings: input.settings,
            now: meta.now,
        };
        self.run_tenant(command, meta).await
    }

    /// Changes name or contact.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id))]
    pub async fn update_tenant(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        input: UpdateTenantInput,
    ) -> Result<Outcome<Tenant>, CommandError> {
        who.require(Permission::ManageCompany)?;
        let command = TenantCommand::UpdateTenant {
            name: input.name,
            contact_email: input.contact_email,
        };
        self.run_tenant(command, meta).await
    }

    /// Moves to another plan.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id))]
    pub async fn change_plan(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        input: ChangePlanInput,
    ) -> Result<Outcome<Tenant>, CommandError> {
        who.require(Permission::ManageCompany)?;
        self.run_tenant(TenantCommand::ChangePlan { plan: input.plan }, meta)
            .await
    }

    /// Replaces the settings.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id))]
    pub async fn update_settings(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        settings: TenantSettings,
    ) -> Result<Outcome<Tenant>, CommandError> {
        who.require(Permission::ManageCompany)?;
        self.run_tenant(TenantCommand::UpdateTenantSettings { settings }, meta)
            .await
    }
}
