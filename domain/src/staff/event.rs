use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::SkillLevel;
use crate::values::{
    BlockId, BookingId, BranchId, DayHours, PhoneNumber, ServiceId, StaffId, TenantId, TimeRange,
    WeeklyHours,
};

/// What happened to a Staff member or their calendar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum StaffEvent {
    /// The staff member joined a branch.
    StaffHired {
        /// Id.
        staff_id: StaffId,
        /// Tenant.
        tenant_id: TenantId,
        /// Branch.
        branch_id: BranchId,
        /// The branch's zone.
        #[schemars(with = "String")]
        time_zone: Tz,
        /// Name.
        name: String,
        /// E-mail.
        email: Option<String>,
        /// Phone.
        phone: Option<PhoneNumber>,
        /// Weekly hours.
        schedule: WeeklyHours,
    },
    /// Contact details changed.
    StaffProfileUpdated {
        /// Name.
        name: String,
        /// E-mail.
        email: Option<String>,
        /// Phone.
        phone: Option<PhoneNumber>,
    },
    /// The weekly schedule changed.
    StaffScheduleUpdated {
        /// The new schedule.
        schedule: WeeklyHours,
    },
    /// One date has its own hours, or returned to the weekly schedule.
    ScheduleOverrideSet {
        /// Local date.
        date: NaiveDate,
        /// Hours, or `None` when cleared.
        hours: Option<DayHours>,
    },
    /// Qualified for a service.
    StaffAssignedToService {
        /// Service.
        service_id: ServiceId,
        /// Skill.
        level: SkillLevel,
    },
    /// No longer qualified for a service.
    StaffUnassignedFromService {
        /// Service.
        service_id: ServiceId,
    },
    /// Time blocked.
    StaffTimeBlocked {
        /// Block id.
        block_id: BlockId,
        /// When.
        range: TimeRange,
        /// Why.
        reason: String,
    },
    /// A block removed.
    StaffTimeUnblocked {
        /// Block id.
        block_id: BlockId,
    },
    /// Off the rota.
    StaffDeactivated,
    /// A slot is held for a booking.
    SlotHeld {
        /// Booking.
        booking_id: BookingId,
        /// Service.
        service_id: ServiceId,
        /// The appointment.
        appointment: TimeRange,
        /// The appointment with its buffers: what no other entry may overlap.
        occupied: TimeRange,
        /// When the hold lapses.
        expires_at: DateTime<Utc>,
        /// When it was taken; entries long past this are dropped from the calendar state.
        held_at: DateTime<Utc>,
    },
    /// A slot reserved at once, for a booking confirmed as it is made: what a `SlotHeld` and
    /// its `ReservationConfirmed` record, in one event.
    SlotReserved {
        /// Booking.
        booking_id: BookingId,
        /// Service.
        service_id: ServiceId,
        /// The appointment.
        appointment: TimeRange,
        /// The appointment with its buffers: what no other entry may overlap.
        occupied: TimeRange,
        /// When it was taken; entries long past this are dropped from the calendar state.
        reserved_at: DateTime<Utc>,
    },
    /// A hold became a reservation.
    ReservationConfirmed {
        /// Booking.
        booking_id: BookingId,
        /// The appointment.
        appointment: TimeRange,
    },
    /// A hold or reservation was freed.
    SlotReleased {
        /// Booking.
        booking_id: BookingId,
        /// The appointment that was freed.
        appointment: TimeRange,
    },
}

impl DomainEvent for StaffEvent {
    fn event_type(&self) -> String {
        let name = match self {
            Self::StaffHired { .. } => "StaffHired",
            Self::StaffProfileUpdated { .. } => "StaffProfileUpdated",
            Self::StaffScheduleUpdated { .. } => "StaffScheduleUpdated",
            Self::ScheduleOverrideSet { .. } => "ScheduleOverrideSet",
            Self::StaffAssignedToService { .. } => "StaffAssignedToService",
            Self::StaffUnassignedFromService { .. } => "StaffUnassignedFromService",
            Self::StaffTimeBlocked { .. } => "StaffTimeBlocked",
            Self::StaffTimeUnblocked { .. } => "StaffTimeUnblocked",
            Self::StaffDeactivated => "StaffDeactivated",
            Self::SlotHeld { .. } => "SlotHeld",
            Self::SlotReserved { .. } => "SlotReserved",
            Self::ReservationConfirmed { .. } => "ReservationConfirmed",
            Self::SlotReleased { .. } => "SlotReleased",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}
