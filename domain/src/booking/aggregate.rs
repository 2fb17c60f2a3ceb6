use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::command::NewBooking;
use super::{BookingCommand, BookingError, BookingEvent};
use crate::settings::BookingRules;
use crate::values::{
    BookingId, BranchId, Money, PhoneNumber, ServiceId, StaffId, TenantId, TimeRange, bounded_text,
    is_email,
};

/// Where a booking came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "lowercase")]
pub enum BookingSource {
    /// The REST API or a dashboard.
    #[default]
    Api,
    /// The voice agent on a call.
    Phone,
    /// An agent through the Model Context Protocol.
    Mcp,
    /// Made in Cal.com directly.
    Calcom,
}

/// Where a booking is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    /// Slot held, awaiting confirmation (or payment).
    #[default]
    Held,
    /// Firm.
    Confirmed,
    /// Took place.
    Completed,
    /// Called off.
    Cancelled,
    /// The customer did not come.
    NoShow,
}

/// The customer of a booking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Customer {
    /// E.164.
    pub phone: PhoneNumber,
    /// Name as given.
    pub name: String,
    /// E-mail, if any.
    pub email: Option<String>,
}

/// How a booking was cancelled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Cancellation {
    /// Why.
    pub reason: String,
    /// Who.
    pub actor: String,
    /// Inside the cut-off.
    pub late: bool,
    /// When.
    pub at: DateTime<Utc>,
}

/// Where the booking stands in the external calendar (Cal.com).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CalendarSync {
    /// Not mirrored yet, or a change is on its way; after a failure that may pass, it is
    /// tried again.
    Pending {
        /// Failed attempts so far.
        #[serde(default)]
        attempts: u32,
        /// What the last one ran into.
        #[serde(default)]
        last_error: Option<String>,
        /// When that was recorded.
        #[serde(default)]
        last_attempt_at: Option<DateTime<Utc>>,
    },
    /// The calendar holds it as it is here.
    Synced {
        /// The calendar's id for it.
        uid: String,
        /// When that was recorded.
        at: DateTime<Utc>,
    },
    /// The calendar refused it for good; an operator may retry it.
    Failed {
        /// What the calendar said.
        reason: String,
        /// Attempts so far.
        attempts: u32,
        /// When that was recorded.
        at: DateTime<Utc>,
    },
}

impl Default for CalendarSync {
    fn default() -> Self {
        Self::Pending {
            attempts: 0,
            last_error: None,
            last_attempt_at: None,
        }
    }
}

/// What a calendar sync attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CalendarOutcome {
    /// The calendar now holds the booking as it is (or, cancelled, no longer blocks it).
    Synced {
        /// The calendar's id for it.
        uid: String,
    },
    /// It failed.
    Failed {
        /// What went wrong.
        reason: String,
        /// Refused for good.
        permanent: bool,
        /// Attempts so far.
        attempts: u32,
    },
}

/// Where a booking's deposit stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DepositStatus {
    /// To be paid; no payment is open yet.
    Due,
    /// A payment is open.
    Requested,
    /// Paid.
    Paid,
    /// The payment failed.
    Failed,
    /// Paid back.
    Refunded,
}

/// A booking's deposit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Deposit {
    /// How much.
    pub amount: Money,
    /// When an unpaid deposit lets the booking lapse.
    pub due: Option<DateTime<Utc>>,
    /// Where it stands.
    pub status: DepositStatus,
    /// The payment provider's intent.
    pub payment_intent: Option<String>,
    /// What the customer's payment page completes the payment with.
    pub client_secret: Option<String>,
    /// The refund, once paid back.
    pub refund: Option<String>,
}

/// What became of a deposit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DepositOutcome {
    /// A payment is open.
    Requested {
        /// The provider's id.
        payment_intent: String,
        /// For the customer's payment page.
        client_secret: Option<String>,
    },
    /// Paid.
    Paid {
        /// The provider's id.
        payment_intent: String,
    },
    /// The payment failed.
    Failed {
        /// Why.
        reason: String,
    },
    /// Paid back.
    Refunded {
        /// The provider's refund id.
        refund: String,
    },
}

/// One appointment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Booking {
    /// Set by BookingCreated.
    pub id: Option<BookingId>,
    /// Tenant.
    pub tenant_id: Option<TenantId>,
    /// Branch.
    pub branch_id: Option<BranchId>,
    /// Service.
    pub service_id: Option<ServiceId>,
    /// Staff.
    pub staff_id: Option<StaffId>,
    /// Customer.
    pub customer: Option<Customer>,
    /// When.
    pub appointment: Option<TimeRange>,
    /// The branch's zone.
    #[schemars(with = "Option<String>")]
    pub time_zone: Option<Tz>,
    /// Status.
    pub status: BookingStatus,
    /// Origin.
    pub source: BookingSource,
    /// Voice call.
    pub call_id: Option<String>,
    /// Quoted on the phone.
    pub confirmation_number: String,
    /// Price.
    pub price: Option<Money>,
    /// Notes.
    pub notes: Option<String>,
    /// When made.
    pub created_at: Option<DateTime<Utc>>,
    /// When confirmed.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// How it was cancelled.
    pub cancellation: Option<Cancellation>,
    /// Its mirror in the external calendar.
    #[serde(default)]
    pub calendar_sync: CalendarSync,
    /// Its deposit, if its service asks for one.
    #[serde(default)]
    pub deposit: Option<Deposit>,
}

fn bounded(field: &'static str, value: &str, max: usize) -> Result<String, BookingError> {
    bounded_text(value, max).ok_or(BookingError::InvalidText { field, max })
}

/// At most `max` characters of `text`.
fn truncated(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

fn email(value: Option<String>) -> Result<Option<String>, BookingError> {
    match value {
        Some(e) if !is_email(&e) => Err(BookingError::InvalidEmail(e)),
        other => Ok(other),
    }
}

fn notes(value: Option<String>) -> Result<Option<String>, BookingError> {
    value
        .filter(|n| !n.trim().is_empty())
        .map(|n| bounded("notes", &n, 2000))
        .transpose()
}

/// Checks duration, minimum notice and maximum advance of an appointment made at `now`.
pub fn check_timing(
    appointment: &TimeRange,
    rules: &BookingRules,
    now: DateTime<Utc>,
) -> Result<(), BookingError> {
    let minutes = appointment.minutes();
    if !(15..=480).contains(&minutes) {
        return Err(BookingError::InvalidDuration(minutes));
    }
    if appointment.start < now + Duration::minutes(i64::from(rules.min_notice_minutes)) {
        return Err(BookingError::TooShortNotice(rules.min_notice_minutes));
    }
    if appointment.start > now + Duration::days(i64::from(rules.max_advance_days)) {
        return Err(BookingError::TooFarInAdvance(rules.max_advance_days));
    }
    Ok(())
}

impl Booking {
    /// Decides a command against the current state. Pure: no I/O, no clock.
    #[expect(clippy::too_many_lines, reason = "one short arm per command")]
    pub fn decide(&self, command: BookingCommand) -> Result<Vec<BookingEvent>, BookingError> {
        if let BookingCommand::CreateBooking {
            booking,
            rules,
            confirm,
            now,
        } = command
        {
            return self.create(*booking, &rules, confirm, now);
        }
        if self.id.is_none() {
            return Err(BookingError::NotFound);
        }
        match command {
            BookingCommand::CreateBooking { .. } => Err(BookingError::AlreadyExists),
            BookingCommand::ConfirmBooking { now } => match self.status {
                BookingStatus::Held
                    if self
                        .deposit
                        .as_ref()
                        .is_some_and(|d| d.status != DepositStatus::Paid) =>
                {
                    Err(BookingError::DepositNotPaid)
                }
                BookingStatus::Held => {
                    Ok(vec![BookingEvent::BookingConfirmed { confirmed_at: now }])
                }
                BookingStatus::Confirmed => Ok(vec![]),
                from => Err(BookingError::IllegalTransition {
                    from,
                    action: "confirmed",
                }),
            },
            BookingCommand::RescheduleBooking {
                appointment,
                staff_id,
                rules,
                now,
            } => {
                self.require(
                    &[BookingStatus::Held, BookingStatus::Confirmed],
                    "rescheduled",
                )?;
                check_timing(&appointment, &rules, now)?;
                let (Some(from), Some(staff_from)) = (self.appointment, self.staff_id) else {
                    return Err(BookingError::NotFound);
                };
                if from == appointment && staff_from == staff_id {
                    return Ok(vec![]);
                }
                Ok(vec![BookingEvent::BookingRescheduled {
                    from,
                    to: appointment,
                    staff_from,
                    staff_to: staff_id,
                }])
            }
            BookingCommand::CancelBooking {
                reason,
                actor,
                cutoff_hours,
                now,
            } => {
                self.require(
                    &[BookingStatus::Held, BookingStatus::Confirmed],
                    "cancelled",
                )?;
                let late = self
                    .appointment
                    .is_some_and(|a| now > a.start - Duration::hours(i64::from(cutoff_hours)));
                Ok(vec![BookingEvent::BookingCancelled {
                    reason: bounded("reason", &reason, 500)?,
                    actor,
                    late,
                    cancelled_at: now,
                }])
            }
            BookingCommand::CompleteBooking { now } => {
                self.require(&[BookingStatus::Confirmed], "completed")?;
                self.require_started(now)?;
                Ok(vec![BookingEvent::BookingCompleted { completed_at: now }])
            }
            BookingCommand::MarkNoShow { now } => {
                self.require(&[BookingStatus::Confirmed], "marked as no-show")?;
                self.require_started(now)?;
                Ok(vec![BookingEvent::BookingMarkedNoShow { marked_at: now }])
            }
            BookingCommand::RecordCalendarSync { outcome, now } => Ok(self
                .record_calendar_sync(outcome, now)
                .into_iter()
                .collect()),
            BookingCommand::RecordDeposit { outcome, now } => {
                Ok(self.record_deposit(outcome, now)?.into_iter().collect())
            }
            BookingCommand::UpdateBookingDetails {
                customer_name,
                customer_email,
                notes: new_notes,
            } => {
                self.require(&[BookingStatus::Held, BookingStatus::Confirmed], "changed")?;
                let Some(current) = &self.customer else {
                    return Err(BookingError::NotFound);
                };
                let customer = Customer {
                    phone: current.phone.clone(),
                    name: match customer_name {
                        Some(n) => bounded("customer.name", &n, 200)?,
                        None => current.name.clone(),
                    },
                    email: match customer_email {
                        Some(e) => email(Some(e))?,
                        None => current.email.clone(),
                    },
                };
                let notes = match new_notes {
                    Some(n) => notes(Some(n))?,
                    None => self.notes.clone(),
                };
                Ok(vec![BookingEvent::BookingDetailsUpdated {
                    customer,
                    notes,
                }])
            }
        }
    }

    fn create(
        &self,
        b: NewBooking,
        rules: &BookingRules,
        confirm: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<BookingEvent>, BookingError> {
        if self.id.is_some() {
            return Err(BookingError::AlreadyExists);
        }
        check_timing(&b.appointment, rules, now)?;
        let customer = Customer {
            phone: b.customer.phone,
            name: bounded("customer.name", &b.customer.name, 200)?,
            email: email(b.customer.email)?,
        };
        Ok(vec![BookingEvent::BookingCreated {
            booking_id: b.booking_id,
            tenant_id: b.tenant_id,
            branch_id: b.branch_id,
            service_id: b.service_id,
            staff_id: b.staff_id,
            customer,
            appointment: b.appointment,
            time_zone: b.time_zone,
            source: b.source,
            call_id: b.call_id,
            confirmation_number: b.confirmation_number,
            price: b.price,
            notes: notes(b.notes)?,
            created_at: now,
            deposit: b.deposit,
            payment_due: b.deposit.and(b.payment_due),
            // A deposit is paid before the booking is confirmed.
            confirmed_at: (confirm && b.deposit.is_none()).then_some(now),
        }])
    }

    /// The event recording a sync attempt's outcome; none when it is already recorded (a saga
    /// step run again after a crash records nothing twice).
    fn record_calendar_sync(
        &self,
        outcome: CalendarOutcome,
        now: DateTime<Utc>,
    ) -> Option<BookingEvent> {
        match (outcome, &self.calendar_sync) {
            (CalendarOutcome::Synced { uid }, CalendarSync::Synced { uid: known, .. })
                if uid == *known =>
            {
                None
            }
            (
                CalendarOutcome::Failed {
                    permanent: false,
                    attempts,
                    ..
                },
                CalendarSync::Pending {
                    attempts: known, ..
                },
            )
            | (
                CalendarOutcome::Failed {
                    permanent: true,
                    attempts,
                    ..
                },
                CalendarSync::Failed {
                    attempts: known, ..
                },
            ) if attempts == *known => None,
            (CalendarOutcome::Synced { uid }, _) => Some(BookingEvent::CalendarSynced {
                uid,
                synced_at: now,
            }),
            (
                CalendarOutcome::Failed {
                    reason,
                    permanent,
                    attempts,
                },
                _,
            ) => Some(BookingEvent::CalendarSyncFailed {
                reason: truncated(&reason, 500),
                permanent,
                attempts,
                failed_at: now,
            }),
        }
    }

    /// The event recording a deposit's outcome; none when it is already recorded.
    fn record_deposit(
        &self,
        outcome: DepositOutcome,
        now: DateTime<Utc>,
    ) -> Result<Option<BookingEvent>, BookingError> {
        use DepositStatus as S;
        let status = self.deposit.as_ref().ok_or(BookingError::NoDeposit)?.status;
        Ok(match outcome {
            DepositOutcome::Requested { .. } if status != S::Due => None,
            DepositOutcome::Requested {
                payment_intent,
                client_secret,
            } => Some(BookingEvent::DepositRequested {
                payment_intent,
                client_secret,
            }),
            DepositOutcome::Paid { .. } if matches!(status, S::Paid | S::Refunded) => None,
            DepositOutcome::Paid { payment_intent } => Some(BookingEvent::DepositPaid {
                payment_intent,
                paid_at: now,
            }),
            DepositOutcome::Failed { .. } if !matches!(status, S::Due | S::Requested) => None,
            DepositOutcome::Failed { reason } => Some(BookingEvent::DepositFailed {
                reason: truncated(&reason, 500),
                failed_at: now,
            }),
            DepositOutcome::Refunded { .. } if status == S::Refunded => None,
            DepositOutcome::Refunded { .. } if status != S::Paid => {
                return Err(BookingError::DepositNotPaid);
            }
            DepositOutcome::Refunded { refund } => Some(BookingEvent::DepositRefunded {
                refund,
                refunded_at: now,
            }),
        })
    }

    fn require(&self, allowed: &[BookingStatus], action: &'static str) -> Result<(), BookingError> {
        if allowed.contains(&self.status) {
            Ok(())
        } else {
            Err(BookingError::IllegalTransition {
                from: self.status,
                action,
            })
        }
    }

    fn require_started(&self, now: DateTime<Utc>) -> Result<(), BookingError> {
        match self.appointment {
            Some(a) if now >= a.start => Ok(()),
            _ => Err(BookingError::NotStartedYet),
        }
    }
}

impl Aggregate for Booking {
    const TYPE: &'static str = "Booking";
    type Command = BookingCommand;
    type Event = BookingEvent;
    type Error = BookingError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    #[expect(clippy::too_many_lines, reason = "one assignment arm per event")]
    fn apply(&mut self, event: Self::Event) {
        match event {
            BookingEvent::BookingCreated {
                booking_id,
                tenant_id,
                branch_id,
                service_id,
                staff_id,
                customer,
                appointment,
                time_zone,
                source,
                call_id,
                confirmation_number,
                price,
                notes,
                created_at,
                deposit,
                payment_due,
                confirmed_at,
            } => {
                *self = Self {
                    id: Some(booking_id),
                    tenant_id: Some(tenant_id),
                    branch_id: Some(branch_id),
                    service_id: Some(service_id),
                    staff_id: Some(staff_id),
                    customer: Some(customer),
                    appointment: Some(appointment),
                    time_zone: Some(time_zone),
                    status: if confirmed_at.is_some() {
                        BookingStatus::Confirmed
                    } else {
                        BookingStatus::Held
                    },
                    source,
                    call_id,
                    confirmation_number,
                    price: Some(price),
                    notes,
                    created_at: Some(created_at),
                    confirmed_at,
                    cancellation: None,
                    calendar_sync: CalendarSync::default(),
                    deposit: deposit.map(|amount| Deposit {
                        amount,
                        due: payment_due,
                        status: DepositStatus::Due,
                        payment_intent: None,
                        client_secret: None,
                        refund: None,
                    }),
                };
            }
            BookingEvent::BookingConfirmed { confirmed_at } => {
                self.status = BookingStatus::Confirmed;
                self.confirmed_at = Some(confirmed_at);
            }
            BookingEvent::BookingRescheduled { to, staff_to, .. } => {
                self.appointment = Some(to);
                self.staff_id = Some(staff_to);
                self.calendar_sync = CalendarSync::default();
            }
            BookingEvent::DepositRequested {
                payment_intent,
                client_secret,
            } => {
                if let Some(d) = self.deposit.as_mut() {
                    d.status = DepositStatus::Requested;
                    d.payment_intent = Some(payment_intent);
                    d.client_secret = client_secret;
                }
            }
            BookingEvent::DepositPaid { payment_intent, .. } => {
                if let Some(d) = self.deposit.as_mut() {
                    d.status = DepositStatus::Paid;
                    d.payment_intent = Some(payment_intent);
                }
            }
            BookingEvent::DepositFailed { .. } => {
                if let Some(d) = self.deposit.as_mut() {
                    d.status = DepositStatus::Failed;
                }
            }
            BookingEvent::DepositRefunded { refund, .. } => {
                if let Some(d) = self.deposit.as_mut() {
                    d.status = DepositStatus::Refunded;
                    d.refund = Some(refund);
                }
            }
            BookingEvent::CalendarSynced { uid, synced_at } => {
                self.calendar_sync = CalendarSync::Synced { uid, at: synced_at };
            }
            BookingEvent::CalendarSyncFailed {
                reason,
                permanent,
                attempts,
                failed_at,
            } => {
                self.calendar_sync = if permanent {
                    CalendarSync::Failed {
                        reason,
                        attempts,
                        at: failed_at,
                    }
                } else {
                    CalendarSync::Pending {
                        attempts,
                        last_error: Some(reason),
                        last_attempt_at: Some(failed_at),
                    }
                };
            }
            BookingEvent::BookingCancelled {
                reason,
                actor,
                late,
                cancelled_at,
            } => {
                self.status = BookingStatus::Cancelled;
                self.cancellation = Some(Cancellation {
                    reason,
                    actor,
                    late,
                    at: cancelled_at,
                });
            }
            BookingEvent::BookingCompleted { .. } => self.status = BookingStatus::Completed,
            BookingEvent::BookingMarkedNoShow { .. } => self.status = BookingStatus::NoShow,
            BookingEvent::BookingDetailsUpdated { customer, notes } => {
                self.customer = Some(customer);
                self.notes = notes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{CountryCode, Currency};
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    type Spec = TestFramework<Booking>;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 6, 12, 0, 0).unwrap()
    }

    fn appointment(hours_ahead: i64) -> TimeRange {
        TimeRange::starting_at(now() + Duration::hours(hours_ahead), 30).unwrap()
    }

    fn new_booking(appointment: TimeRange) -> NewBooking {
        NewBooking {
            booking_id: BookingId(uuid::Uuid::from_u128(1)),
            tenant_id: TenantId(uuid::Uuid::from_u128(2)),
            branch_id: BranchId(uuid::Uuid::from_u128(3)),
            service_id: ServiceId(uuid::Uuid::from_u128(4)),
            staff_id: StaffId(uuid::Uuid::from_u128(5)),
            customer: Customer {
                phone: PhoneNumber::parse("0301234567", CountryCode(49)).unwrap(),
                name: "Eva".to_owned(),
                email: None,
            },
            appointment,
            time_zone: chrono_tz::Europe::Berlin,
            source: BookingSource::Api,
            call_id: None,
            confirmation_number: "ABC123".to_owned(),
            price: Money::new(4500, Currency::EUR).unwrap(),
            notes: None,
            deposit: None,
            payment_due: None,
        }
    }

    fn create(appointment: TimeRange) -> BookingCommand {
        BookingCommand::CreateBooking {
            booking: Box::new(new_booking(appointment)),
            rules: BookingRules::default(),
            confirm: true,
            now: now(),
        }
    }

    fn created() -> Vec<BookingEvent> {
        Booking::default().decide(create(appointment(48))).unwrap()
    }

    #[test]
    fn a_booking_made_with_notice_is_created_confirmed_in_one_event() {
        let events = created();
        assert!(matches!(
            &events[..],
            [BookingEvent::BookingCreated { confirmed_at: Some(at), .. }] if *at == now()
        ));
        let mut booking = Booking::default();
        booking.apply(events[0].clone());
        assert_eq!(booking.status, BookingStatus::Confirmed);
        assert_eq!(booking.confirmed_at, Some(now()));
    }

    #[test]
    fn a_version_one_creation_starts_held_and_its_confirmation_confirms_it() {
        let mut v1 = serde_json::to_value(&created()[0]).unwrap();
        v1["BookingCreated"]
            .as_object_mut()
            .unwrap()
            .remove("confirmed_at");
        let mut booking = Booking::default();
        booking.apply(serde_json::from_value(v1).unwrap());
        assert_eq!(booking.status, BookingStatus::Held);
        booking.apply(BookingEvent::BookingConfirmed {
            confirmed_at: now(),
        });
        assert_eq!(booking.status, BookingStatus::Confirmed);
    }

    #[test]
    fn a_booking_inside_the_minimum_notice_is_refused() {
        Spec::with(())
            .given_no_previous_events()
            .when(create(appointment(0)))
            .then_expect_error(BookingError::TooShortNotice(60));
    }

    #[test]
    fn a_booking_beyond_the_maximum_advance_is_refused() {
        Spec::with(())
            .given_no_previous_events()
            .when(create(appointment(24 * 91)))
            .then_expect_error(BookingError::TooFarInAdvance(90));
    }

    #[test]
    fn a_booking_of_nine_hours_is_refused() {
        let long = TimeRange::starting_at(now() + Duration::hours(48), 540).unwrap();
        Spec::with(())
            .given_no_previous_events()
            .when(create(long))
            .then_expect_error(BookingError::InvalidDuration(540));
    }

    #[test]
    fn a_cancelled_booking_cannot_be_confirmed() {
        let mut given = created();
        given.push(BookingEvent::BookingCancelled {
            reason: "ill".to_owned(),
            actor: "k".to_owned(),
            late: false,
            cancelled_at: now(),
        });
        Spec::with(())
            .given(given)
            .when(BookingCommand::ConfirmBooking { now: now() })
            .then_expect_error(BookingError::IllegalTransition {
                from: BookingStatus::Cancelled,
                action: "confirmed",
            });
    }

    #[test]
    fn a_cancellation_inside_the_cut_off_is_late() {
        let result = Spec::with(())
            .given(created())
            .when(BookingCommand::CancelBooking {
                reason: "sick".to_owned(),
                actor: "key".to_owned(),
                cutoff_hours: 72,
                now: now(),
            });
        assert!(matches!(
            &result.inspect_result().unwrap()[..],
            [BookingEvent::BookingCancelled { late: true, .. }]
        ));
    }

    #[test]
    fn a_booking_cannot_be_completed_before_it_starts() {
        Spec::with(())
            .given(created())
            .when(BookingCommand::CompleteBooking { now: now() })
            .then_expect_error(BookingError::NotStartedYet);
    }

    #[test]
    fn a_completed_booking_cannot_be_marked_no_show() {
        let mut given = created();
        given.push(BookingEvent::BookingCompleted {
            completed_at: now() + Duration::hours(49),
        });
        Spec::with(())
            .given(given)
            .when(BookingCommand::MarkNoShow {
                now: now() + Duration::hours(50),
            })
            .then_expect_error(BookingError::IllegalTransition {
                from: BookingStatus::Completed,
                action: "marked as no-show",
            });
    }

    #[test]
    fn rescheduling_records_the_old_and_new_time() {
        let to = appointment(72);
        Spec::with(())
            .given(created())
            .when(BookingCommand::RescheduleBooking {
                appointment: to,
                staff_id: StaffId(uuid::Uuid::from_u128(6)),
                rules: BookingRules::default(),
                now: now(),
            })
            .then_expect_events(vec![BookingEvent::BookingRescheduled {
                from: appointment(48),
                to,
                staff_from: StaffId(uuid::Uuid::from_u128(5)),
                staff_to: StaffId(uuid::Uuid::from_u128(6)),
            }]);
    }

    fn synced(uid: &str) -> BookingCommand {
        BookingCommand::RecordCalendarSync {
            outcome: CalendarOutcome::Synced {
                uid: uid.to_owned(),
            },
            now: now(),
        }
    }

    #[test]
    fn a_calendar_sync_is_recorded_once() {
        let mut given = created();
        given.push(BookingEvent::CalendarSynced {
            uid: "cal-1".to_owned(),
            synced_at: now(),
        });
        Spec::with(())
            .given(given.clone())
            .when(synced("cal-1"))
            .then_expect_events(vec![]);
        Spec::with(())
            .given(given)
            .when(synced("cal-2"))
            .then_expect_events(vec![BookingEvent::CalendarSynced {
                uid: "cal-2".to_owned(),
                synced_at: now(),
            }]);
    }

    #[test]
    fn a_failed_sync_is_recorded_per_attempt_and_a_reschedule_makes_it_pending() {
        let failed = |attempts| BookingCommand::RecordCalendarSync {
            outcome: CalendarOutcome::Failed {
                reason: "timed out".to_owned(),
                permanent: false,
                attempts,
            },
            now: now(),
        };
        let mut given = created();
        given.push(BookingEvent::CalendarSyncFailed {
            reason: "timed out".to_owned(),
            permanent: false,
            attempts: 1,
            failed_at: now(),
        });
        Spec::with(())
            .given(given.clone())
            .when(failed(1))
            .then_expect_events(vec![]);
        Spec::with(())
            .given(given.clone())
            .when(failed(2))
            .then_expect_events(vec![BookingEvent::CalendarSyncFailed {
                reason: "timed out".to_owned(),
                permanent: false,
                attempts: 2,
                failed_at: now(),
            }]);
        let mut booking = Booking::default();
        for event in given {
            booking.apply(event);
        }
        booking.apply(BookingEvent::BookingRescheduled {
            from: appointment(48),
            to: appointment(72),
            staff_from: StaffId(uuid::Uuid::from_u128(5)),
            staff_to: StaffId(uuid::Uuid::from_u128(5)),
        });
        assert_eq!(booking.calendar_sync, CalendarSync::default());
    }

    #[test]
    fn a_booking_with_a_deposit_is_held_until_it_is_paid() {
        let mut booking = new_booking(appointment(48));
        booking.deposit = Some(Money::new(1000, Currency::EUR).unwrap());
        booking.payment_due = Some(now() + Duration::minutes(5));
        let held = Booking::default()
            .decide(BookingCommand::CreateBooking {
                booking: Box::new(booking),
                rules: BookingRules::default(),
                confirm: true,
                now: now(),
            })
            .unwrap();
        assert_eq!(held.len(), 1, "not confirmed yet: {held:?}");
        let confirm = BookingCommand::ConfirmBooking { now: now() };
        Spec::with(())
            .given(held.clone())
            .when(confirm.clone())
            .then_expect_error(BookingError::DepositNotPaid);
        let paid = |intent: &str| BookingCommand::RecordDeposit {
            outcome: DepositOutcome::Paid {
                payment_intent: intent.to_owned(),
            },
            now: now(),
        };
        let mut given = held;
        given.push(BookingEvent::DepositPaid {
            payment_intent: "pi_1".to_owned(),
            paid_at: now(),
        });
        Spec::with(())
            .given(given.clone())
            .when(paid("pi_1"))
            .then_expect_events(vec![]);
        Spec::with(())
            .given(given)
            .when(confirm)
            .then_expect_events(vec![BookingEvent::BookingConfirmed {
                confirmed_at: now(),
            }]);
        Spec::with(())
            .given(created())
            .when(paid("pi_1"))
            .then_expect_error(BookingError::NoDeposit);
    }
}
