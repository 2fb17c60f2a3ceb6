//! What the API answers with: resources as clients see them, and the command envelope
//! `{data, version, position}`.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use commands::Outcome;
use domain::booking::{
    BookingSource, BookingStatus, CalendarSync, Cancellation, Customer, Deposit,
};
use domain::settings::TenantSettings;
use domain::staff::{CalendarEntry, SkillLevel, TimeBlock};
use domain::tenant::{Branch, Service};
use domain::values::{
    BlockId, BookingId, BranchId, DayHours, Money, PhoneNumber, Plan, PlanFeatures, PlanLimits,
    ServiceId, StaffId, TenantId, TimeRange, WeeklyHours,
};
use domain::{Booking, Staff, Tenant};
use schemars::JsonSchema;
use serde::Serialize;

use crate::error::ApiError;

/// A command's answer: the resource after it, its stream version, and the event store
/// position of the last event it wrote (pass it as `min_position` to read your write).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Data<T> {
    /// The resource.
    pub data: T,
    /// The aggregate's version (its last event's sequence number).
    pub version: u64,
    /// Global position of the last event written; null when nothing changed.
    pub position: Option<i64>,
}

impl<T> Data<T> {
    /// Wraps a view with the outcome's version and position.
    pub fn of<A>(data: T, outcome: &Outcome<A>) -> Self {
        Self {
            data,
            version: outcome.version,
            position: outcome.position,
        }
    }
}

/// A tenant with its plan's limits and features.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TenantView {
    /// Id.
    pub id: TenantId,
    /// Company name.
    pub name: String,
    /// Contact.
    pub contact_email: Option<String>,
    /// Plan.
    pub plan: Plan,
    /// The plan's limits (null: unlimited).
    pub limits: PlanLimits,
    /// The plan's features.
    pub features: PlanFeatures,
    /// Settings.
    pub settings: TenantSettings,
    /// Branches.
    pub branches: Vec<Branch>,
    /// Catalog, retired services included.
    pub services: Vec<Service>,
}

impl TenantView {
    /// The view of a registered tenant.
    pub fn of(tenant: &Tenant) -> Result<Self, ApiError> {
        Ok(Self {
            id: tenant.id.ok_or_else(|| ApiError::not_found("tenant"))?,
            name: tenant.name.clone(),
            contact_email: tenant.contact_email.clone(),
            plan: tenant.plan,
            limits: tenant.plan.limits(),
            features: tenant.plan.features(),
            settings: tenant.settings.clone(),
            branches: tenant.branches.values().cloned().collect(),
            services: tenant.services.values().cloned().collect(),
        })
    }
}

/// The tenant as the original design shapes it: who, what the plan allows, what it includes.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TenantProfile {
    /// The company.
    pub tenant: TenantSummary,
    /// The plan's features.
    pub features: PlanFeatures,
    /// The plan's limits (null: unlimited).
    pub limits: PlanLimits,
}

/// A tenant's own details.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TenantSummary {
    /// Id.
    pub id: TenantId,
    /// Company name.
    pub name: String,
    /// Contact.
    pub contact_email: Option<String>,
    /// Plan.
    pub plan: Plan,
    /// Settings.
    pub settings: TenantSettings,
    /// Branches, active or not.
    pub branches: usize,
    /// Live services.
    pub services: usize,
    /// When it was registered.
    pub registered_at: Option<DateTime<Utc>>,
}

impl TenantProfile {
    /// The profile of a registered tenant.
    pub fn of(tenant: &Tenant) -> Result<Self, ApiError> {
        Ok(Self {
            tenant: TenantSummary {
                id: tenant.id.ok_or_else(|| ApiError::not_found("tenant"))?,
                name: tenant.name.clone(),
                contact_email: tenant.contact_email.clone(),
                plan: tenant.plan,
                settings: tenant.settings.clone(),
                branches: tenant.branches.len(),
                services: tenant.services.values().filter(|s| !s.retired).count(),
                registered_at: tenant.registered_at,
            },
            features: tenant.plan.features(),
            limits: tenant.plan.limits(),
        })
    }
}

/// A branch with the services it offers and its staff.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BranchDetail {
    /// The branch.
    #[serde(flatten)]
    pub branch: Branch,
    /// Live services offered here, by name.
    pub services: Vec<Service>,
    /// Its staff, by name.
    pub staff: Vec<StaffSummary>,
}

/// A staff member in a directory.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StaffSummary {
    /// Id.
    pub id: StaffId,
    /// Branch.
    pub branch_id: BranchId,
    /// Name.
    pub name: String,
    /// E-mail.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<PhoneNumber>,
    /// On the rota.
    pub active: bool,
    /// Services and skill level (1-5).
    pub skills: BTreeMap<ServiceId, SkillLevel>,
    /// Weekly hours in the branch's zone.
    pub schedule: WeeklyHours,
}

impl StaffSummary {
    /// The directory entry of a hired staff member.
    pub fn of(staff: &Staff) -> Option<Self> {
        Some(Self {
            id: staff.id?,
            branch_id: staff.branch_id?,
            name: staff.name.clone(),
            email: staff.email.clone(),
            phone: staff.phone.clone(),
            active: staff.active,
            skills: staff.skills.clone(),
            schedule: staff.schedule.clone(),
        })
    }
}

impl BranchDetail {
    /// The branch with the tenant's services offered there and the staff given.
    pub fn of(tenant: &Tenant, branch: &Branch, staff: &[Staff]) -> Self {
        let mut services: Vec<Service> = tenant
            .services
            .values()
            .filter(|s| !s.retired && s.branch_ids.contains(&branch.id))
            .cloned()
            .collect();
        services.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            branch: branch.clone(),
            services,
            staff: staff
                .iter()
                .filter(|s| s.branch_id == Some(branch.id))
                .filter_map(StaffSummary::of)
                .collect(),
        }
    }
}

/// A branch of the tenant, by id.
pub fn branch(tenant: &Tenant, id: BranchId) -> Result<Branch, ApiError> {
    tenant
        .branches
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("branch"))
}

/// A service of the tenant, by id.
pub fn service(tenant: &Tenant, id: ServiceId) -> Result<Service, ApiError> {
    tenant
        .services
        .get(&id)
        .cloned()
        .ok_or_else(|| ApiError::not_found("service"))
}

/// A time block with its id.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BlockView {
    /// Id.
    pub id: BlockId,
    /// The block.
    #[serde(flatten)]
    pub block: TimeBlock,
}

/// A staff member with their calendar.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StaffView {
    /// Id.
    pub id: StaffId,
    /// Branch.
    pub branch_id: BranchId,
    /// Name.
    pub name: String,
    /// E-mail.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<PhoneNumber>,
    /// On the rota.
    pub active: bool,
    /// Services and skill level (1-5).
    pub skills: BTreeMap<ServiceId, SkillLevel>,
    /// Weekly hours in the branch's zone.
    pub schedule: WeeklyHours,
    /// Dates with their own hours.
    pub overrides: BTreeMap<NaiveDate, DayHours>,
    /// Absences.
    pub blocks: Vec<BlockView>,
    /// Recent and upcoming holds and reservations.
    pub calendar: Vec<CalendarEntry>,
}

impl StaffView {
    /// The view of a hired staff member.
    pub fn of(staff: &Staff) -> Result<Self, ApiError> {
        let (Some(id), Some(branch_id)) = (staff.id, staff.branch_id) else {
            return Err(ApiError::not_found("staff member"));
        };
        Ok(Self {
            id,
            branch_id,
            name: staff.name.clone(),
            email: staff.email.clone(),
            phone: staff.phone.clone(),
            active: staff.active,
            skills: staff.skills.clone(),
            schedule: staff.schedule.clone(),
            overrides: staff.overrides.clone(),
            blocks: staff
                .blocks
                .iter()
                .map(|(id, block)| BlockView {
                    id: *id,
                    block: block.clone(),
                })
                .collect(),
            calendar: staff.calendar.clone(),
        })
    }
}

/// A booking.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BookingView {
    /// Id.
    pub id: BookingId,
    /// Branch.
    pub branch_id: BranchId,
    /// Service.
    pub service_id: ServiceId,
    /// Staff.
    pub staff_id: StaffId,
    /// Customer.
    pub customer: Customer,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// The branch's zone, for display.
    pub time_zone: String,
    /// Status.
    pub status: BookingStatus,
    /// Origin.
    pub source: BookingSource,
    /// Voice call.
    pub call_id: Option<String>,
    /// Quoted on the phone.
    pub confirmation_number: String,
    /// Price.
    pub price: Money,
    /// Notes.
    pub notes: Option<String>,
    /// When made.
    pub created_at: DateTime<Utc>,
    /// When confirmed.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// How it was cancelled.
    pub cancellation: Option<Cancellation>,
    /// Its mirror in the tenant's Cal.com.
    pub calendar_sync: CalendarSync,
    /// Its deposit, if its service asks for one; `client_secret` completes the payment.
    pub deposit: Option<Deposit>,
}

impl BookingView {
    /// The view of an existing booking.
    pub fn of(b: &Booking) -> Result<Self, ApiError> {
        let missing = || ApiError::not_found("booking");
        let appointment: TimeRange = b.appointment.ok_or_else(missing)?;
        Ok(Self {
            id: b.id.ok_or_else(missing)?,
            branch_id: b.branch_id.ok_or_else(missing)?,
            service_id: b.service_id.ok_or_else(missing)?,
            staff_id: b.staff_id.ok_or_else(missing)?,
            customer: b.customer.clone().ok_or_else(missing)?,
            start: appointment.start,
            end: appointment.end,
            time_zone: b
                .time_zone
                .map(|tz| tz.name().to_owned())
                .unwrap_or_default(),
            status: b.status,
            source: b.source,
            call_id: b.call_id.clone(),
            confirmation_number: b.confirmation_number.clone(),
            price: b.price.ok_or_else(missing)?,
            notes: b.notes.clone(),
            created_at: b.created_at.ok_or_else(missing)?,
            confirmed_at: b.confirmed_at,
            cancellation: b.cancellation.clone(),
            calendar_sync: b.calendar_sync.clone(),
            deposit: b.deposit.clone(),
        })
    }
}
