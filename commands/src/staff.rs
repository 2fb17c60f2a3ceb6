use chrono::{DateTime, NaiveDate, Utc};
use domain::staff::SkillLevel;
use domain::values::{BlockId, BranchId, DayHours, ServiceId, StaffId, TimeRange, WeeklyHours};
use domain::{Staff, StaffCommand};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::{CommandError, CommandMeta, Commands, Outcome, Permission, Principal, Store};

/// A staff member to hire.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HireStaffInput {
    /// Where they work.
    pub branch_id: BranchId,
    /// Full name.
    #[schemars(length(min = 1, max = 200), regex(pattern = domain::values::patterns::TEXT))]
    pub name: String,
    /// E-mail.
    #[serde(default)]
    #[schemars(length(max = 254), regex(pattern = domain::values::patterns::EMAIL))]
    pub email: Option<String>,
    /// Phone, E.164 or national.
    #[serde(default)]
    #[schemars(regex(pattern = domain::values::patterns::PHONE_INPUT))]
    pub phone: Option<String>,
    /// Weekly hours (wall-clock, the branch's zone).
    #[serde(default)]
    pub schedule: WeeklyHours,
}

/// Changes to a staff member's contact details.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffProfileInput {
    /// New name.
    #[serde(default)]
    #[schemars(length(min = 1, max = 200), regex(pattern = domain::values::patterns::TEXT))]
    pub name: Option<String>,
    /// New e-mail.
    #[serde(default)]
    #[schemars(length(max = 254), regex(pattern = domain::values::patterns::EMAIL))]
    pub email: Option<String>,
    /// New phone.
    #[serde(default)]
    #[schemars(regex(pattern = domain::values::patterns::PHONE_INPUT))]
    pub phone: Option<String>,
}

/// A new weekly schedule.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleInput {
    /// Hours per weekday, with breaks.
    pub schedule: WeeklyHours,
}

/// Hours for one date.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideInput {
    /// The hours that day (no ranges: a day off); null returns to the weekly schedule.
    pub hours: Option<DayHours>,
}

/// A qualification.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignSkillInput {
    /// 1 (trainee) to 5 (expert).
    #[schemars(with = "u8", range(min = 1, max = 5))]
    pub level: SkillLevel,
}

/// Time away.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockTimeInput {
    /// First instant.
    pub start: DateTime<Utc>,
    /// First instant after.
    pub end: DateTime<Utc>,
    /// Why, e.g. "vacation".
    #[schemars(length(min = 1, max = 200), regex(pattern = domain::values::patterns::TEXT))]
    pub reason: String,
}

impl<S: Store> Commands<S> {
    /// Hires a staff member into a branch, within the plan's staff-per-branch limit.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %staff_id))]
    pub async fn hire_staff(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        staff_id: StaffId,
        input: HireStaffInput,
    ) -> Result<Outcome<Staff>, CommandError> {
        who.require(Permission::ManageStaff)?;
        let (tenant, _) = self.tenant(meta.tenant_id).await?;
        let branch = tenant.branch(input.branch_id)?;
        let phone = match input.phone {
            Some(raw) => Some(
                domain::values::PhoneNumber::parse(&raw, tenant.settings.default_country_code)
                    .map_err(|e| CommandError::invalid("phone", e))?,
            ),
            None => None,
        };
        let staff_in_branch = self
            .directory
            .active_staff(meta.tenant_id, input.branch_id)
            .await?
            .len();
        let command = StaffCommand::HireStaff {
            staff_id,
            tenant_id: meta.tenant_id,
            branch_id: branch.id,
            time_zone: branch.time_zone,
            name: input.name,
            email: input.email,
            phone,
            schedule: input.schedule,
            staff_in_branch: u32::try_from(staff_in_branch).unwrap_or(u32::MAX),
            limit: tenant.plan.limits().staff_per_branch,
        };
        self.run_staff(staff_id, command, meta).await
    }

    /// Changes contact details.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %staff_id))]
    pub async fn update_staff_profile(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        staff_id: StaffId,
        input: StaffProfileInput,
    ) -> Result<Outcome<Staff>, CommandError> {
        who.require(Permission::ManageStaff)?;
        let phone = match input.phone {
            Some(raw) => Some(self.parse_phone(meta, &raw).await?),
            None => None,
        };
        let command = StaffCommand::UpdateStaffProfile {
            name: input.name,
            email: input.email,
            phone,
        };
        self.run_staff(staff_id, command, meta).await
    }

    /// Replaces the weekly schedule.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %staff_id))]
    pub async fn update_staff_schedule(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        staff_id: StaffId,
        input: ScheduleInput,
    ) -> Result<Outcome<Staff>, CommandError> {
        who.require(Permission::ManageStaff)?;
        self.run_staff(
            staff_id,
            StaffCommand::UpdateStaffSchedule {
                schedule: input.schedule,
            },
            meta,
        )
        .await
    }

    /// Sets or clears the hours of one date.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %staff_id, %date))]
    pub async fn set_schedule_override(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        staff_id: StaffId,
        date: NaiveDate,
        input: OverrideInput,
    ) -> Result<Outcome<Staff>, CommandError> {
        who.require(Permission::ManageStaff)?;
        self.run_staff(
            staff_id,
            StaffCommand::SetScheduleOverride {
                date,
                hours: input.hours,
            },
            meta,
        )
        .await
    }

    /// Qualifies a staff member for a live service of the tenant.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %staff_id, %service_id))]
    pub async fn assign_staff_to_service(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        staff_id: StaffId,
        service_id: ServiceId,
        input: AssignSkillInput,
    ) -> Result<Outcome<Staff>, CommandError> {
        who.require(Permission::ManageStaff)?;
        let (tenant, _) = self.tenant(meta.tenant_id).await?;
        tenant.live_service(service_id)?;
        self.run_staff(
            staff_id,
            StaffCommand::AssignStaffToService {
                service_id,
                level: input.level,
            },
            meta,
        )
        .await
    }

    /// Withdraws a qualification.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %staff_id, %service_id))]
    pub async fn unassign_staff_from_service(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        staff_id: StaffId,
        service_id: ServiceId,
    ) -> Result<Outcome<Staff>, CommandError> {
        who.require(Permission::ManageStaff)?;
        self.run_staff(
            staff_id,
            StaffCommand::UnassignStaffFromService { service_id },
            meta,
        )
        .await
    }

    /// Blocks time away.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %staff_id, %block_id))]
    pub async fn block_staff_time(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        staff_id: StaffId,
        block_id: BlockId,
        input: BlockTimeInput,
    ) -> Result<Outcome<Staff>, CommandError> {
        who.require(Permission::ManageStaff)?;
        let range =
            TimeRange::new(input.start, input.end).map_err(|e| CommandError::invalid("end", e))?;
        let command = StaffCommand::BlockStaffTime {
            block_id,
            range,
            reason: input.reason,
            now: meta.now,
        };
        self.run_staff(staff_id, command, meta).await
    }

    /// Removes a block.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %staff_id, %block_id))]
    pub async fn unblock_staff_time(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        staff_id: StaffId,
        block_id: BlockId,
    ) -> Result<Outcome<Staff>, CommandError> {
        who.require(Permission::ManageStaff)?;
        self.run_staff(staff_id, StaffCommand::UnblockStaffTime { block_id }, meta)
            .await
    }

    /// Takes a staff member off the rota.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %staff_id))]
    pub async fn deactivate_staff(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        staff_id: StaffId,
    ) -> Result<Outcome<Staff>, CommandError> {
        who.require(Permission::ManageStaff)?;
        self.run_staff(
            staff_id,
            StaffCommand::DeactivateStaff { now: meta.now },
            meta,
        )
        .await
    }
}
