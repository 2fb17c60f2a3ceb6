//! Deposits: a booking of a service with a deposit stays held until the deposit is paid.
//!
//! When such a booking is created, a payment is opened with the provider (Stripe) and recorded
//! on the booking (`DepositRequested`, with what the customer's payment page needs). The
//! provider's webhook then records the payment and confirms the booking, or records the
//! failure and cancels it. If nothing is paid by the booking's `payment_due` (its hold's
//! expiry) the booking is cancelled, which frees the slot, and the open payment is closed. A
//! paid deposit is refunded when the booking is cancelled within the tenant's policy (not
//! late), or by us (it lapsed, or its slot was lost before the payment came).
//! Each call carries an idempotency key derived from the booking and the step.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use commands::{CancelBookingInput, Channel, CommandMeta, Commands, Principal, Store};
use domain::values::{BookingId, Money, TenantId};
use domain::{BookingEvent, DepositOutcome};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ports::{PaymentRequest, Payments, PortError};
use crate::runtime::{Driver, JobRun, Reaction, Saga, SagaError, SagaEvent};

/// How long after a transient failure a step is tried again.
pub const RETRY_AFTER: Duration = Duration::minutes(5);

/// The saga.
#[derive(Debug, Clone, Copy, Default)]
pub struct DepositPayments;

/// The deposit a booking asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Due {
    /// Tenant.
    pub tenant_id: TenantId,
    /// How much.
    pub amount: Money,
    /// When an unpaid deposit lets the booking lapse.
    pub due: Option<DateTime<Utc>>,
    /// The customer's e-mail, for the receipt.
    pub email: Option<String>,
    /// What the customer quotes.
    pub confirmation_number: String,
}

/// The saga's state per booking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepositState {
    /// The deposit, for bookings that ask for one.
    pub deposit: Option<Due>,
    /// The open payment.
    pub intent: Option<String>,
    /// Paid.
    pub paid: bool,
    /// Paid back.
    pub refunded: bool,
    /// Confirmed.
    pub confirmed: bool,
    /// Cancelled.
    pub cancelled: bool,
}

/// A step with the payment provider, or with the booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentJob {
    /// Open the payment.
    Request,
    /// The deposit is due: cancel the booking unless it is paid.
    Expire,
    /// Close the unpaid payment of a cancelled booking.
    CloseIntent,
    /// Pay the deposit back.
    Refund,
}

impl PaymentJob {
    fn name(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Expire => "expire",
            Self::CloseIntent => "close-intent",
            Self::Refund => "refund",
        }
    }
}

/// What a step came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// Done (or nothing to do).
    Done,
    /// Failed for now: try again later.
    Retry(String),
    /// Failed for good; an operator is told.
    Failed(String),
}

impl DepositState {
    /// Folds a booking event in; the jobs it sets and drops.
    fn apply(
        &mut self,
        change: BookingEvent,
        now: DateTime<Utc>,
    ) -> (Vec<(PaymentJob, DateTime<Utc>)>, Vec<PaymentJob>) {
        let mut schedule: Vec<(PaymentJob, DateTime<Utc>)> = Vec::new();
        let mut cancel = Vec::new();
        match change {
            BookingEvent::BookingCreated {
                tenant_id,
                customer,
                confirmation_number,
                deposit: Some(amount),
                payment_due,
                ..
            } => {
                self.deposit = Some(Due {
                    tenant_id,
                    amount,
                    due: payment_due,
                    email: customer.email,
                    confirmation_number,
                });
                schedule.push((PaymentJob::Request, now));
                if let Some(due) = payment_due {
                    schedule.push((PaymentJob::Expire, due));
                }
            }
            BookingEvent::DepositRequested { payment_intent, .. } => {
                self.intent = Some(payment_intent);
            }
            BookingEvent::DepositPaid { payment_intent, .. } => {
                self.intent = Some(payment_intent);
                self.paid = true;
                cancel.push(PaymentJob::Expire);
                // Paid after the booking was gone: it goes back.
                if self.cancelled {
                    schedule.push((PaymentJob::Refund, now));
                }
            }
            BookingEvent::BookingConfirmed { .. } => {
                self.confirmed = true;
                cancel.push(PaymentJob::Expire);
            }
            BookingEvent::BookingCancelled { late, actor, .. } if self.deposit.is_some() => {
                self.cancelled = true;
                cancel.push(PaymentJob::Expire);
                // A late cancellation by the customer's side keeps the deposit; one by us
                // (a lapse, a lost slot) or within the policy gives it back.
                let by_customer = actor.starts_with("api_key:");
                if self.paid && !self.refunded && (!late || !by_customer) {
                    schedule.push((PaymentJob::Refund, now));
                } else if !self.paid && self.intent.is_some() {
                    schedule.push((PaymentJob::CloseIntent, now));
                }
            }
            BookingEvent::DepositRefunded { .. } => self.refunded = true,
            _ => {}
        }
        (schedule, cancel)
    }
}

impl Saga for DepositPayments {
    const NAME: &'static str = "payments";
    const AGGREGATE_TYPE: &'static str = "Booking";
    type State = DepositState;
    type Job = PaymentJob;
    type Outcome = PaymentOutcome;

    fn react(
        state: &DepositState,
        event: &SagaEvent,
        now: DateTime<Utc>,
    ) -> Result<Reaction<DepositState, PaymentJob>, SagaError> {
        let change: BookingEvent = serde_json::from_value(event.payload.clone())
            .map_err(|e| SagaError::Unreadable(e.to_string()))?;
        let mut next = state.clone();
        let (schedule, cancel) = next.apply(change, now);
        let mut reaction = Reaction::just(next);
        for job in cancel {
            reaction = reaction.and_cancel(job.name());
        }
        for (job, due) in schedule {
            reaction = reaction.and_schedule(job.name(), due, job);
        }
        Ok(reaction)
    }

    fn settle(
        state: &DepositState,
        job: &PaymentJob,
        outcome: PaymentOutcome,
        now: DateTime<Utc>,
    ) -> Reaction<DepositState, PaymentJob> {
        let reaction = Reaction::just(state.clone());
        match outcome {
            PaymentOutcome::Retry(_) => reaction.and_schedule(job.name(), now + RETRY_AFTER, *job),
            PaymentOutcome::Done | PaymentOutcome::Failed(_) => reaction,
        }
    }
}

/// Performs the payment steps.
#[derive(Debug)]
pub struct PaymentsDriver<S> {
    commands: Arc<Commands<S>>,
    payments: Option<Arc<dyn Payments>>,
    clock: crate::SharedClock,
}

impl<S: Store> PaymentsDriver<S> {
    /// A driver over the configured provider (none: deposits cannot be collected, and
    /// bookings that ask for one lapse at their due time).
    pub fn new(
        commands: Arc<Commands<S>>,
        payments: Option<Arc<dyn Payments>>,
        clock: crate::SharedClock,
    ) -> Self {
        Self {
            commands,
            payments,
            clock,
        }
    }

    fn meta(&self, run: &JobRun<DepositPayments>, tenant_id: TenantId) -> CommandMeta {
        CommandMeta {
            tenant_id,
            correlation_id: run.correlation_id,
            causation_id: run.causation_id,
            actor: format!("saga:{}", DepositPayments::NAME),
            source: Channel::Saga,
            now: self.clock.now(),
        }
    }

    /// Opens the payment and records it on the booking.
    async fn request(
        &self,
        meta: &CommandMeta,
        due: &Due,
        booking: BookingId,
    ) -> Result<(), PortError> {
        let provider = self
            .payments
            .as_ref()
            .ok_or_else(|| PortError::Rejected("no payment provider is configured".to_owned()))?;
        let request = PaymentRequest {
            booking_id: booking,
            tenant_id: due.tenant_id,
            amount_minor: due.amount.amount_minor,
            currency: serde_json::to_value(due.amount.currency)
                .ok()
                .and_then(|c| c.as_str().map(str::to_ascii_lowercase))
                .unwrap_or_default(),
            description: format!("Deposit, booking {}", due.confirmation_number),
            receipt_email: due.email.clone(),
        };
        let intent = provider.create_intent(&request).await?;
        let outcome = DepositOutcome::Requested {
            payment_intent: intent.id,
            client_secret: intent.client_secret,
        };
        self.commands
            .record_deposit(meta, booking, outcome)
            .await
            .map_err(|e| PortError::Transient(e.to_string()))?;
        Ok(())
    }

    async fn step(
        &self,
        run: &JobRun<DepositPayments>,
        due: &Due,
        booking: BookingId,
    ) -> Result<PaymentOutcome, PortError> {
        let meta = self.meta(run, due.tenant_id);
        let state = &run.state;
        let recorded = |e: commands::CommandError| PortError::Transient(e.to_string());
        let provider = || {
            self.payments
                .as_ref()
                .ok_or_else(|| PortError::Rejected("no payment provider is configured".to_owned()))
        };
        match run.job {
            PaymentJob::Request if state.intent.is_none() && !state.cancelled => {
                self.request(&meta, due, booking).await?;
            }
            PaymentJob::Expire if !state.paid && !state.confirmed && !state.cancelled => {
                let input = CancelBookingInput {
                    reason: "the deposit was not paid in time".to_owned(),
                };
                let who = Principal::internal(due.tenant_id);
                match self
                    .commands
                    .cancel_booking(&who, &meta, booking, input)
                    .await
                {
                    Ok(_) | Err(commands::CommandError::Booking(_)) => {}
                    Err(e) => return Err(recorded(e)),
                }
            }
            PaymentJob::CloseIntent if !state.paid => {
                if let Some(intent) = &state.intent {
                    match provider()?.cancel_intent(booking, intent).await {
                        // Already closed or paid meanwhile: nothing left to close.
                        Ok(()) | Err(PortError::Rejected(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            PaymentJob::Refund if state.paid && !state.refunded => {
                if let Some(intent) = &state.intent {
                    let refund = provider()?.refund(booking, intent).await?;
                    self.commands
                        .record_deposit(&meta, booking, DepositOutcome::Refunded { refund })
                        .await
                        .map_err(recorded)?;
                }
            }
            _ => {}
        }
        Ok(PaymentOutcome::Done)
    }
}

impl<S: Store> Driver for PaymentsDriver<S> {
    type Saga = DepositPayments;

    async fn perform(&self, run: &JobRun<DepositPayments>) -> PaymentOutcome {
        let Some(due) = &run.state.deposit else {
            return PaymentOutcome::Done;
        };
        let Ok(booking) = Uuid::parse_str(&run.instance_id).map(BookingId) else {
            return PaymentOutcome::Failed(format!("{} is not a booking id", run.instance_id));
        };
        match self.step(run, due, booking).await {
            Ok(outcome) => outcome,
            Err(e) if e.is_transient() => {
                tracing::warn!(booking_id = %booking, job = run.job.name(), error = %e, "payment step failed; retrying later");
                PaymentOutcome::Retry(e.to_string())
            }
            Err(e) => {
                tracing::error!(booking_id = %booking, job = run.job.name(), error = %e, "payment step refused");
                PaymentOutcome::Failed(e.to_string())
            }
        }
    }
}
