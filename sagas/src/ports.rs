//! The outside world as sagas see it; `adapters` implements each port over HTTP.

use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::values::{BookingId, ServiceId, StaffId, TenantId};
use serde::{Deserialize, Serialize};

/// Why a call to an external service failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// It may work later: a timeout, a 5xx, a refused connection.
    #[error("temporarily unavailable: {0}")]
    Transient(String),
    /// Too many requests: try again after this many seconds.
    #[error("rate limited for {0} s")]
    RateLimited(u64),
    /// The circuit is open: not even tried.
    #[error("circuit open: not tried")]
    CircuitOpen,
    /// The calendar already has something at that time for that host.
    #[error("the slot is taken: {0}")]
    SlotTaken(String),
    /// Refused for good (bad credentials, unknown event type, invalid request).
    #[error("refused: {0}")]
    Rejected(String),
}

impl PortError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Transient(_) | Self::RateLimited(_) | Self::CircuitOpen
        )
    }
}

/// A tenant's Cal.com account: its key and which event type takes which booking.
#[derive(Clone, Serialize, Deserialize)]
pub struct CalendarAccount {
    /// `cal_live_…` or `cal_test_…`.
    pub api_key: String,
    /// Event types by service and, optionally, staff member; the most specific match wins.
    pub event_types: Vec<EventTypeMapping>,
    /// Cal.com users (hosts) by staff member, to attribute inbound bookings.
    #[serde(default)]
    pub hosts: Vec<HostMapping>,
}

impl Debug for CalendarAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CalendarAccount")
            .field("api_key", &"<redacted>")
            .field("event_types", &self.event_types)
            .field("hosts", &self.hosts)
            .finish()
    }
}

impl CalendarAccount {
    /// The event type for a service done by a staff member.
    pub fn event_type(&self, service: ServiceId, staff: StaffId) -> Option<i64> {
        let for_service = self.event_types.iter().filter(|m| m.service_id == service);
        let mut fallback = None;
        for mapping in for_service {
            match mapping.staff_id {
                Some(s) if s == staff => return Some(mapping.event_type_id),
                None => fallback = Some(mapping.event_type_id),
                Some(_) => {}
            }
        }
        fallback
    }
}

/// Which Cal.com event type books a service (for one staff member, or for any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EventTypeMapping {
    /// Our service.
    pub service_id: ServiceId,
    /// Our staff member; none: any staff member without a mapping of their own.
    #[serde(default)]
    pub staff_id: Option<StaffId>,
    /// Cal.com's event type id.
    pub event_type_id: i64,
}

/// Which Cal.com user is which staff member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct HostMapping {
    /// Our staff member.
    pub staff_id: StaffId,
    /// Cal.com's user id.
    pub host_id: i64,
}

/// Looks up tenants' accounts with external services.
#[async_trait]
pub trait Accounts: Send + Sync + Debug {
    /// The tenant's Cal.com account, if it connected one.
    async fn calendar(&self, tenant: TenantId) -> Result<Option<CalendarAccount>, PortError>;
}

/// A booking as sent to the calendar.
#[derive(Debug, Clone, PartialEq)]
pub struct CalendarBooking {
    /// Ours, carried in the calendar booking's metadata.
    pub booking_id: BookingId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// The event type.
    pub event_type_id: i64,
    /// Start (UTC).
    pub start: DateTime<Utc>,
    /// Customer's name.
    pub name: String,
    /// Customer's e-mail.
    pub email: Option<String>,
    /// Customer's phone, E.164.
    pub phone: String,
    /// The branch's IANA zone.
    pub time_zone: String,
    /// `de` or `en`.
    pub language: String,
    /// Notes for the host.
    pub notes: Option<String>,
}

/// A booking as the calendar holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteBooking {
    /// The calendar's id.
    pub uid: String,
    /// Start (UTC).
    pub start: DateTime<Utc>,
    /// The event type.
    pub event_type_id: Option<i64>,
    /// Cancelled there.
    pub cancelled: bool,
    /// Where a reschedule moved it.
    pub rescheduled_to: Option<String>,
}

/// An external calendar (Cal.com API v2).
#[async_trait]
pub trait Calendar: Send + Sync + Debug {
    /// Creates a booking.
    async fn create(
        &self,
        account: &CalendarAccount,
        booking: &CalendarBooking,
    ) -> Result<RemoteBooking, PortError>;

    /// Finds the booking carrying our id in its metadata, booked under `event_type_id`
    /// around `start` (for a create that may have happened before a crash).
    async fn find(
        &self,
        account: &CalendarAccount,
        booking_id: BookingId,
        event_type_id: i64,
        start: DateTime<Utc>,
    ) -> Result<Option<RemoteBooking>, PortError>;

    /// One booking by its uid.
    async fn get(&self, account: &CalendarAccount, uid: &str) -> Result<RemoteBooking, PortError>;

    /// Moves a booking; the calendar answers with a new booking (a new uid).
    async fn reschedule(
        &self,
        account: &CalendarAccount,
        uid: &str,
        start: DateTime<Utc>,
    ) -> Result<RemoteBooking, PortError>;

    /// Cancels a booking.
    async fn cancel(
        &self,
        account: &CalendarAccount,
        uid: &str,
        reason: &str,
    ) -> Result<(), PortError>;
}

/// A text message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sms {
    /// E.164.
    pub to: String,
    /// The text (kept to GSM-7 characters where the templates can).
    pub body: String,
}

/// An e-mail to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// Address.
    pub to: String,
    /// The recipient's name.
    pub to_name: String,
    /// Who it is from, by name (the salon).
    pub from_name: String,
    /// Subject.
    pub subject: String,
    /// Plain text.
    pub text: String,
    /// An iCalendar attachment (`text/calendar`), with its method.
    pub calendar: Option<Invite>,
}

/// An iCalendar attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// `REQUEST` or `CANCEL`.
    pub method: String,
    /// The `.ics` text.
    pub ics: String,
}

/// What a provider said it sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// The provider's id for it (Twilio's `SM…` sid, the SMTP server's queue answer).
    pub provider_id: String,
}

/// Sends text messages (Twilio).
#[async_trait]
pub trait SmsGateway: Send + Sync + Debug {
    /// Sends one message.
    async fn send(&self, sms: &Sms) -> Result<Sent, PortError>;
}

/// Sends e-mail (SMTP).
#[async_trait]
pub trait Mailer: Send + Sync + Debug {
    /// Sends one e-mail.
    async fn send(&self, email: &Email) -> Result<Sent, PortError>;
}

/// A deposit to collect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRequest {
    /// The booking it secures (also the idempotency key's root).
    pub booking_id: BookingId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Minor units.
    pub amount_minor: i64,
    /// ISO 4217, as our money type spells it.
    pub currency: String,
    /// What the customer's statement and receipt say.
    pub description: String,
    /// Where the receipt goes.
    pub receipt_email: Option<String>,
}

/// A payment as the provider holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentIntent {
    /// The provider's id (`pi_…`).
    pub id: String,
    /// What the customer's payment page completes it with.
    pub client_secret: Option<String>,
}

/// A payment provider (Stripe PaymentIntents); every call carries an idempotency key derived
/// from the booking, so a repeat after a crash is answered, not repeated.
#[async_trait]
pub trait Payments: Send + Sync + Debug {
    /// Opens a payment for a deposit.
    async fn create_intent(&self, request: &PaymentRequest) -> Result<PaymentIntent, PortError>;

    /// Closes an unpaid payment.
    async fn cancel_intent(&self, booking: BookingId, intent: &str) -> Result<(), PortError>;

    /// Pays a deposit back; the refund's id.
    async fn refund(&self, booking: BookingId, intent: &str) -> Result<String, PortError>;
}

/// Free times to offer instead of a booking that could not be kept.
#[async_trait]
pub trait Alternatives: Send + Sync + Debug {
    /// Up to `count` free starts for `service` at `branch` in the next two weeks from `now`,
    /// leaving out `refused` (that staff member at that time), earliest first.
    async fn free_starts(
        &self,
        tenant: &domain::Tenant,
        branch: domain::values::BranchId,
        service: ServiceId,
        refused: (StaffId, domain::values::TimeRange),
        (now, count): (DateTime<Utc>, usize),
    ) -> Result<Vec<DateTime<Utc>>, PortError>;
}
