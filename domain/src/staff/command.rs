use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use super::SkillLevel;
use crate::values::{
    BlockId, BookingId, BranchId, DayHours, PhoneNumber, ServiceId, StaffId, TenantId, TimeRange,
    WeeklyHours,
};

/// Commands on a Staff member and their calendar.
#[derive(Debug, Clone, PartialEq)]
pub enum StaffCommand {
    /// Opens the staff stream, within the plan's staff-per-branch limit.
    HireStaff {
        /// The new staff member's id.
        staff_id: StaffId,
        /// Owning tenant.
        tenant_id: TenantId,
        /// Where they work.
        branch_id: BranchId,
        /// The branch's zone: schedules are wall-clock times there.
        time_zone: Tz,
        /// Full name.
        name: String,
        /// E-mail, if any.
        email: Option<String>,
        /// Phone, if any.
        phone: Option<PhoneNumber>,
        /// Weekly working hours with breaks.
        schedule: WeeklyHours,
        /// Active staff in the branch now, from the staff directory.
        staff_in_branch: u32,
        /// The plan's limit per branch; `None` is unlimited.
        limit: Option<u32>,
    },
    /// Changes contact details.
    UpdateStaffProfile {
        /// New name, if any.
        name: Option<String>,
        /// New e-mail, if any.
        email: Option<String>,
        /// New phone, if any.
        phone: Option<PhoneNumber>,
    },
    /// Replaces the weekly schedule.
    UpdateStaffSchedule {
        /// The new schedule.
        schedule: WeeklyHours,
    },
    /// Sets different hours for one date (empty ranges: a day off), or clears them.
    SetScheduleOverride {
        /// Local date.
        date: NaiveDate,
        /// Hours that day; `None` returns to the weekly schedule.
        hours: Option<DayHours>,
    },
    /// Qualifies the staff member for a service.
    AssignStaffToService {
        /// Which service.
        service_id: ServiceId,
        /// How skilled.
        level: SkillLevel,
    },
    /// Withdraws a qualification.
    UnassignStaffFromService {
        /// Which service.
        service_id: ServiceId,
    },
    /// Blocks time (vacation, sickness); refused over existing reservations.
    BlockStaffTime {
        /// The new block's id.
        block_id: BlockId,
        /// When.
        range: TimeRange,
        /// Why, e.g. "vacation".
        reason: String,
        /// The decision time.
        now: DateTime<Utc>,
    },
    /// Removes a block.
    UnblockStaffTime {
        /// Which block.
        block_id: BlockId,
    },
    /// Takes the staff member off the rota; refused while upcoming reservations remain.
    DeactivateStaff {
        /// The decision time.
        now: DateTime<Utc>,
    },
    /// Holds a slot for a booking until `expires_at`.
    HoldSlot {
        /// The booking it is for.
        booking_id: BookingId,
        /// The service booked.
        service_id: ServiceId,
        /// The appointment itself.
        appointment: TimeRange,
        /// Minutes blocked before it.
        buffer_before_minutes: u32,
        /// Minutes blocked after it.
        buffer_after_minutes: u32,
        /// When the hold lapses unless confirmed.
        expires_at: DateTime<Utc>,
        /// The decision time.
        now: DateTime<Utc>,
    },
    /// Reserves a slot for a booking at once: a hold and its confirmation in one decision
    /// (and one event). A live hold of the booking on the same appointment is confirmed.
    ReserveSlot {
        /// The booking it is for.
        booking_id: BookingId,
        /// The service booked.
        service_id: ServiceId,
        /// The appointment itself.
        appointment: TimeRange,
        /// Minutes blocked before it.
        buffer_before_minutes: u32,
        /// Minutes blocked after it.
        buffer_after_minutes: u32,
        /// The decision time.
        now: DateTime<Utc>,
    },
    /// Turns a live hold into a reservation, releasing the booking's other entries.
    ConfirmReservation {
        /// The booking.
        booking_id: BookingId,
        /// Start of the held appointment.
        start: DateTime<Utc>,
        /// The decision time.
        now: DateTime<Utc>,
    },
    /// Frees every hold and reservation of a booking.
    ReleaseSlot {
        /// The booking.
        booking_id: BookingId,
    },
}
