use domain::tenant::ServiceDetails;
use domain::values::ServiceId;
use domain::{Tenant, TenantCommand};

use crate::{CommandError, CommandMeta, Commands, Outcome, Permission, Principal, Store};

impl<S: Store> Commands<S> {
    /// Adds a service to the catalog.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %service_id))]
    pub async fn define_service(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        service_id: ServiceId,
        details: ServiceDetails,
    ) -> Result<Outcome<Tenant>, CommandError> {
        who.require(Permission::ManageCompany)?;
        self.run_tenant(
            TenantCommand::DefineService {
                service_id,
                details,
            },
            meta,
        )
        .await
    }

    /// Replaces a service's details.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %service_id))]
    pub async fn update_service(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        service_id: ServiceId,
        details: ServiceDetails,
    ) -> Result<Outcome<Tenant>, CommandError> {
        who.require(Permission::ManageCompany)?;
        self.run_tenant(
            TenantCommand::UpdateService {
                service_id,
                details,
            },
            meta,
        )
        .await
    }

    /// Withdraws a service from new bookings.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %service_id))]
    pub async fn retire_service(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        service_id: ServiceId,
    ) -> Result<Outcome<Tenant>, CommandError> {
        who.require(Permission::ManageCompany)?;
        self.run_tenant(TenantCommand::RetireService { service_id }, meta)
            .await
    }
}
