use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::{BookingSource, CalendarOutcome, Customer, DepositOutcome};
use crate::settings::BookingRules;
use crate::values::{BookingId, BranchId, Money, ServiceId, StaffId, TenantId, TimeRange};

/// Everything a new booking records.
#[derive(Debug, Clone, PartialEq)]
pub struct NewBooking {
    /// Its id.
    pub booking_id: BookingId,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Branch.
    pub branch_id: BranchId,
    /// Service.
    pub service_id: ServiceId,
    /// Staff member whose calendar holds it.
    pub staff_id: StaffId,
    /// Who comes.
    pub customer: Customer,
    /// When.
    pub appointment: TimeRange,
    /// The branch's zone.
    pub time_zone: Tz,
    /// Where the booking came from.
    pub source: BookingSource,
    /// The voice call that made it, if any.
    pub call_id: Option<String>,
    /// What the customer quotes on the phone.
    pub confirmation_number: String,
    /// The service's price at booking time.
    pub price: Money,
    /// Free text.
    pub notes: Option<String>,
    /// A deposit due before the booking is confirmed.
    pub deposit: Option<Money>,
    /// When an unpaid deposit lets the booking lapse.
    pub payment_due: Option<DateTime<Utc>>,
}

/// Commands on a Booking.
#[derive(Debug, Clone, PartialEq)]
pub enum BookingCommand {
    /// Records a booking whose slot is held; `confirm` also confirms it.
    CreateBooking {
        /// The booking.
        booking: Box<NewBooking>,
        /// The tenant's rules, with max advance days already capped by the server's limit.
        rules: BookingRules,
        /// Confirm at once (no deposit, no pending hold).
        confirm: bool,
        /// The decision time.
        now: DateTime<Utc>,
    },
    /// Confirms a held booking.
    ConfirmBooking {
        /// The decision time.
        now: DateTime<Utc>,
    },
    /// Moves a booking to a new time and possibly a new staff member.
    RescheduleBooking {
        /// The new appointment.
        appointment: TimeRange,
        /// The staff member holding the new slot.
        staff_id: StaffId,
        /// The tenant's rules.
        rules: BookingRules,
        /// The decision time.
        now: DateTime<Utc>,
    },
    /// Cancels a held or confirmed booking.
    CancelBooking {
        /// Why.
        reason: String,
        /// Who: an API key id, `saga:<name>`, `webhook:<source>`.
        actor: String,
        /// The tenant's cut-off: later cancellations are marked late.
        cutoff_hours: u32,
        /// The decision time.
        now: DateTime<Utc>,
    },
    /// Records that the appointment took place.
    CompleteBooking {
        /// The decision time.
        now: DateTime<Utc>,
    },
    /// Records that the customer did not come.
    MarkNoShow {
        /// The decision time.
        now: DateTime<Utc>,
    },
    /// Records what mirroring the booking to the external calendar came to.
    RecordCalendarSync {
        /// The outcome.
        outcome: CalendarOutcome,
        /// The decision time.
        now: DateTime<Utc>,
    },
    /// Records what became of the booking's deposit.
    RecordDeposit {
        /// The outcome.
        outcome: DepositOutcome,
        /// The decision time.
        now: DateTime<Utc>,
    },
    /// Changes customer name, e-mail or notes.
    UpdateBookingDetails {
        /// New name.
        customer_name: Option<String>,
        /// New e-mail.
        customer_email: Option<String>,
        /// New notes.
        notes: Option<String>,
    },
}
