use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use cqrs_es::DomainEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{BookingSource, Customer};
use crate::values::{BookingId, BranchId, Money, ServiceId, StaffId, TenantId, TimeRange};

/// What happened to a Booking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[expect(
    clippy::large_enum_variant,
    reason = "events live one at a time, on their way from the store into a fold"
)]
pub enum BookingEvent {
    /// The booking exists: held, or, with `confirmed_at`, confirmed as it was made.
    ///
    /// Version 2 added `confirmed_at`. A version 1 event has none: its booking starts held
    /// and a `BookingConfirmed` follows when it is confirmed.
    BookingCreated {
        /// Id.
        booking_id: BookingId,
        /// Tenant.
        tenant_id: TenantId,
        /// Branch.
        branch_id: BranchId,
        /// Service.
        service_id: ServiceId,
        /// Staff.
        staff_id: StaffId,
        /// Customer.
        customer: Customer,
        /// When.
        appointment: TimeRange,
        /// The branch's zone.
        #[schemars(with = "String")]
        time_zone: Tz,
        /// Origin.
        source: BookingSource,
        /// Voice call.
        call_id: Option<String>,
        /// Quoted on the phone.
        confirmation_number: String,
        /// Price.
        price: Money,
        /// Notes.
        notes: Option<String>,
        /// When it was made.
        created_at: DateTime<Utc>,
        /// The deposit to be paid before it is confirmed, if its service asks for one.
        #[serde(default)]
        deposit: Option<Money>,
        /// When an unpaid deposit lets the booking lapse.
        #[serde(default)]
        payment_due: Option<DateTime<Utc>>,
        /// Set when the booking was confirmed as it was made (no hold asked for, no deposit
        /// due): no `BookingConfirmed` follows.
        #[serde(default)]
        confirmed_at: Option<DateTime<Utc>>,
    },
    /// Confirmed.
    BookingConfirmed {
        /// When.
        confirmed_at: DateTime<Utc>,
    },
    /// Moved.
    BookingRescheduled {
        /// Old time.
        from: TimeRange,
        /// New time.
        to: TimeRange,
        /// Old staff.
        staff_from: StaffId,
        /// New staff.
        staff_to: StaffId,
    },
    /// Cancelled.
    BookingCancelled {
        /// Why.
        reason: String,
        /// Who.
        actor: String,
        /// Inside the cancellation cut-off.
        late: bool,
        /// When.
        cancelled_at: DateTime<Utc>,
    },
    /// Took place.
    BookingCompleted {
        /// When recorded.
        completed_at: DateTime<Utc>,
    },
    /// The customer did not come.
    BookingMarkedNoShow {
        /// When recorded.
        marked_at: DateTime<Utc>,
    },
    /// The external calendar mirrors the booking as it is now.
    CalendarSynced {
        /// The calendar's id for it.
        uid: String,
        /// When recorded.
        synced_at: DateTime<Utc>,
    },
    /// Mirroring it to the external calendar failed.
    CalendarSyncFailed {
        /// What went wrong.
        reason: String,
        /// Refused for good (otherwise it is retried).
        permanent: bool,
        /// Attempts so far.
        attempts: u32,
        /// When recorded.
        failed_at: DateTime<Utc>,
    },
    /// The deposit can be paid: the payment provider's intent for it.
    DepositRequested {
        /// The provider's id (Stripe's `pi_…`).
        payment_intent: String,
        /// What the customer's payment page completes the payment with.
        client_secret: Option<String>,
    },
    /// The deposit is paid.
    DepositPaid {
        /// The provider's id.
        payment_intent: String,
        /// When recorded.
        paid_at: DateTime<Utc>,
    },
    /// The deposit's payment failed.
    DepositFailed {
        /// Why.
        reason: String,
        /// When recorded.
        failed_at: DateTime<Utc>,
    },
    /// The deposit was paid back.
    DepositRefunded {
        /// The provider's refund id.
        refund: String,
        /// When recorded.
        refunded_at: DateTime<Utc>,
    },
    /// Customer details or notes changed.
    BookingDetailsUpdated {
        /// Customer.
        customer: Customer,
        /// Notes.
        notes: Option<String>,
    },
}

impl DomainEvent for BookingEvent {
    fn event_type(&self) -> String {
        let name = match self {
            Self::BookingCreated { .. } => "BookingCreated",
            Self::BookingConfirmed { .. } => "BookingConfirmed",
            Self::BookingRescheduled { .. } => "BookingRescheduled",
            Self::BookingCancelled { .. } => "BookingCancelled",
            Self::BookingCompleted { .. } => "BookingCompleted",
            Self::BookingMarkedNoShow { .. } => "BookingMarkedNoShow",
            Self::BookingDetailsUpdated { .. } => "BookingDetailsUpdated",
            Self::CalendarSynced { .. } => "CalendarSynced",
            Self::CalendarSyncFailed { .. } => "CalendarSyncFailed",
            Self::DepositRequested { .. } => "DepositRequested",
            Self::DepositPaid { .. } => "DepositPaid",
            Self::DepositFailed { .. } => "DepositFailed",
            Self::DepositRefunded { .. } => "DepositRefunded",
        };
        name.to_owned()
    }

    fn event_version(&self) -> String {
        let version = match self {
            Self::BookingCreated { .. } => "2",
            _ => "1",
        };
        version.to_owned()
    }
}
