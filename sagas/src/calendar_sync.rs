//! Calendar sync: every confirmed booking mirrored to the tenant's Cal.com, moved when it
//! moves and cancelled when it is cancelled, the outcome recorded on the booking.
//!
//! The saga keeps what Cal.com should show (`wanted`) and what it last knew Cal.com to show
//! (`remote`); a single `sync` job brings the one to the other, so a burst of changes costs
//! one round of calls and the calls happen in order. Cal.com takes no idempotency key: a step
//! that may have acted before (a claim that died, a failed attempt) first looks at Cal.com,
//! by our id in the booking's metadata or by following a reschedule, before it acts again.
//!
//! A transient failure leaves the booking confirmed with the sync pending and tries again in
//! five minutes, alerting operators after three failures in a row; Cal.com saying the slot is
//! taken cancels our booking (its slot is released with it).

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use commands::{CancelBookingInput, Channel, CommandMeta, Commands, Principal, Store};
use domain::booking::Customer;
use domain::values::{BookingId, ServiceId, StaffId, TenantId};
use domain::{BookingEvent, CalendarOutcome};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::clock::SharedClock;
use crate::ports::{
    Accounts, Calendar, CalendarAccount, CalendarBooking, PortError, RemoteBooking,
};
use crate::runtime::{Driver, JobRun, Reaction, Saga, SagaError, SagaEvent};

/// How long after a transient failure the sync is tried again.
pub const RETRY_AFTER: Duration = Duration::minutes(5);

/// Failures in a row after which operators are alerted.
pub const ALERT_AFTER: u32 = 3;

/// The job's one name: a newer change moves it rather than adding another.
const SYNC: &str = "sync";

/// The saga.
#[derive(Debug, Clone, Copy, Default)]
pub struct CalendarSync;

/// What Cal.com should show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Wanted {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Service.
    pub service_id: ServiceId,
    /// Staff member.
    pub staff_id: StaffId,
    /// Start.
    pub start: DateTime<Utc>,
    /// The branch's zone.
    pub time_zone: String,
    /// Who comes.
    pub customer: Customer,
    /// Notes.
    pub notes: Option<String>,
    /// Confirmed: from then on it is mirrored.
    pub confirmed: bool,
    /// Cancelled, with the reason.
    pub cancelled: Option<String>,
}

/// The saga's state per booking.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    /// What Cal.com should show.
    pub wanted: Option<Wanted>,
    /// What Cal.com was last seen to show.
    pub remote: Option<RemoteBooking>,
    /// Failed attempts in a row.
    pub failures: u32,
    /// Refused for good: not tried again unless an operator retries it.
    pub refused: bool,
}

/// The job: bring Cal.com in line with `wanted`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SyncJob {
    /// Sync now.
    Sync,
}

/// What a sync came to.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncOutcome {
    /// The tenant has no Cal.com account: nothing to do.
    NotConnected,
    /// Cal.com shows what it should (the booking it holds, if any).
    InSync(Option<RemoteBooking>),
    /// It failed.
    Failed(PortError),
}

impl Saga for CalendarSync {
    const NAME: &'static str = "calendar-sync";
    const AGGREGATE_TYPE: &'static str = "Booking";
    type State = SyncState;
    type Job = SyncJob;
    type Outcome = SyncOutcome;

    fn react(
        state: &SyncState,
        event: &SagaEvent,
        now: DateTime<Utc>,
    ) -> Result<Reaction<SyncState, SyncJob>, SagaError> {
        let change: BookingEvent = serde_json::from_value(event.payload.clone())
            .map_err(|e| SagaError::Unreadable(e.to_string()))?;
        let mut next = state.clone();
        let sync = match (change, next.wanted.as_mut()) {
            (
                BookingEvent::BookingCreated {
                    tenant_id,
                    service_id,
                    staff_id,
                    customer,
                    appointment,
                    time_zone,
                    notes,
                    confirmed_at,
                    ..
                },
                _,
            ) => {
                // Confirmed as it was made: it is synced now, no BookingConfirmed follows.
                let confirmed = confirmed_at.is_some();
                next.wanted = Some(Wanted {
                    tenant_id,
                    service_id,
                    staff_id,
                    start: appointment.start,
                    time_zone: time_zone.name().to_owned(),
                    customer,
                    notes,
                    confirmed,
                    cancelled: None,
                });
                confirmed
            }
            (BookingEvent::BookingConfirmed { .. }, Some(wanted)) => {
                wanted.confirmed = true;
                true
            }
            (BookingEvent::BookingRescheduled { to, staff_to, .. }, Some(wanted)) => {
                wanted.start = to.start;
                wanted.staff_id = staff_to;
                wanted.confirmed
            }
            (BookingEvent::BookingCancelled { reason, .. }, Some(wanted)) => {
                wanted.cancelled = Some(reason);
                // A refused create left nothing in Cal.com to cancel.
                next.remote.is_some() || (wanted.confirmed && !next.refused)
            }
            (BookingEvent::BookingDetailsUpdated { customer, notes }, Some(wanted)) => {
                wanted.customer = customer;
                wanted.notes = notes;
                false
            }
            _ => false,
        };
        let reaction = Reaction::just(next);
        Ok(if sync {
            reaction.and_schedule(SYNC, now, SyncJob::Sync)
        } else {
            reaction
        })
    }

    /// Tries again now, even after a refusal (the operator has fixed the mapping or key).
    fn retry(state: &SyncState, now: DateTime<Utc>) -> Reaction<SyncState, SyncJob> {
        let mut next = state.clone();
        next.refused = false;
        Reaction::just(next).and_schedule(SYNC, now, SyncJob::Sync)
    }

    fn settle(
        state: &SyncState,
        _job: &SyncJob,
        outcome: SyncOutcome,
        now: DateTime<Utc>,
    ) -> Reaction<SyncState, SyncJob> {
        let mut next = state.clone();
        match outcome {
            SyncOutcome::NotConnected => Reaction::just(next),
            SyncOutcome::InSync(remote) => {
                next.remote = remote;
                next.failures = 0;
                next.refused = false;
                Reaction::just(next)
            }
            SyncOutcome::Failed(error) => {
                next.failures += 1;
                if error.is_transient() {
                    Reaction::just(next).and_schedule(SYNC, now + RETRY_AFTER, SyncJob::Sync)
                } else {
                    // Not tried again, even if an event (our own compensation) set it again
                    // while this run was out.
                    next.refused = true;
                    Reaction::just(next).and_cancel(SYNC)
                }
            }
        }
    }
}

/// How the driver retries within one run.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Retries after the first try (`MCP_MAX_RETRIES`).
    pub max_retries: u32,
    /// The first backoff; it doubles, with jitter.
    pub backoff: StdDuration,
    /// The longest wait for a rate limit's reset before giving up for this run.
    pub max_rate_limit_wait: StdDuration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            backoff: StdDuration::from_millis(200),
            max_rate_limit_wait: StdDuration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `attempt` (from 1) after `error`: the rate limit's reset, or an
    /// exponential backoff with full jitter.
    pub fn wait(&self, attempt: u32, error: &PortError) -> StdDuration {
        if let PortError::RateLimited(seconds) = error {
            return StdDuration::from_secs(*seconds).min(self.max_rate_limit_wait);
        }
        let ceiling = self
            .backoff
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(10)));
        let jitter = f64::from(Uuid::new_v4().as_u128() as u32) / f64::from(u32::MAX);
        ceiling.mul_f64(0.5 + jitter / 2.0)
    }
}

/// Performs the sync against Cal.com and records the outcome on the booking.
#[derive(Debug)]
pub struct CalendarSyncDriver<S> {
    commands: Arc<Commands<S>>,
    calendar: Arc<dyn Calendar>,
    accounts: Arc<dyn Accounts>,
    pool: PgPool,
    clock: SharedClock,
    retry: RetryPolicy,
}

impl<S: Store> CalendarSyncDriver<S> {
    /// A driver over these ports.
    pub fn new(
        commands: Arc<Commands<S>>,
        calendar: Arc<dyn Calendar>,
        accounts: Arc<dyn Accounts>,
        pool: PgPool,
        clock: SharedClock,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            commands,
            calendar,
            accounts,
            pool,
            clock,
            retry,
        }
    }

    /// Tries, and retries transient failures with backoff, up to the policy's limit.
    async fn sync(
        &self,
        run: &JobRun<CalendarSync>,
        wanted: &Wanted,
        account: &CalendarAccount,
    ) -> Result<Option<RemoteBooking>, PortError> {
        let booking_id = BookingId(
            Uuid::parse_str(&run.instance_id).map_err(|e| PortError::Rejected(e.to_string()))?,
        );
        let mut attempt = 0;
        loop {
            // Whatever may have acted before is looked at before acting again.
            let careful = run.claims > 1 || run.state.failures > 0 || attempt > 0;
            let target = Target {
                account,
                booking_id,
                wanted,
                known: run.state.remote.as_ref(),
                careful,
            };
            match self.reconcile(&target).await {
                Err(error) if error.is_transient() && attempt < self.retry.max_retries => {
                    attempt += 1;
                    let wait = self.retry.wait(attempt, &error);
                    tracing::info!(booking_id = %booking_id, %error, attempt, ?wait, "calendar sync failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                result => return result,
            }
        }
    }

    /// One round: look if careful, then cancel, create or move as `wanted` says.
    async fn reconcile(&self, t: &Target<'_>) -> Result<Option<RemoteBooking>, PortError> {
        let calendar = &self.calendar;
        let event_type = t
            .account
            .event_type(t.wanted.service_id, t.wanted.staff_id)
            .ok_or_else(|| {
                PortError::Rejected(format!(
                    "no Cal.com event type is mapped for service {} and staff member {}",
                    t.wanted.service_id, t.wanted.staff_id
                ))
            })?;
        let mut remote = t.known.cloned();
        if t.careful {
            remote = match remote {
                Some(known) => Some(self.follow(t.account, known).await?),
                None => {
                    calendar
                        .find(t.account, t.booking_id, event_type, t.wanted.start)
                        .await?
                }
            };
        }
        if let Some(reason) = &t.wanted.cancelled {
            return match remote {
                Some(live) if !live.cancelled => {
                    calendar.cancel(t.account, &live.uid, reason).await?;
                    Ok(Some(RemoteBooking {
                        cancelled: true,
                        ..live
                    }))
                }
                other => Ok(other),
            };
        }
        if !t.wanted.confirmed {
            return Ok(remote);
        }
        let same_type = |r: &RemoteBooking| r.event_type_id.is_none_or(|id| id == event_type);
        match remote {
            Some(live) if !live.cancelled && same_type(&live) && live.start == t.wanted.start => {
                Ok(Some(live))
            }
            Some(live) if !live.cancelled && same_type(&live) => calendar
                .reschedule(t.account, &live.uid, t.wanted.start)
                .await
                .map(Some),
            other => self.create(t, event_type, other).await.map(Some),
        }
    }

    /// Creates the booking, cancelling first what `replaced` still holds under another host's
    /// event type.
    async fn create(
        &self,
        t: &Target<'_>,
        event_type: i64,
        replaced: Option<RemoteBooking>,
    ) -> Result<RemoteBooking, PortError> {
        if let Some(live) = replaced.filter(|r| !r.cancelled) {
            self.calendar
                .cancel(t.account, &live.uid, "moved to another staff member")
                .await?;
        }
        let request = CalendarBooking {
            booking_id: t.booking_id,
            tenant_id: t.wanted.tenant_id,
            event_type_id: event_type,
            start: t.wanted.start,
            name: t.wanted.customer.name.clone(),
            email: t.wanted.customer.email.clone(),
            phone: t.wanted.customer.phone.as_str().to_owned(),
            time_zone: t.wanted.time_zone.clone(),
            language: self.language(t.wanted.tenant_id).await,
            notes: t.wanted.notes.clone(),
        };
        self.calendar.create(t.account, &request).await
    }

    /// The booking `known` became: a reschedule made in an earlier, unrecorded attempt left
    /// it cancelled with a pointer to its successor.
    async fn follow(
        &self,
        account: &CalendarAccount,
        known: RemoteBooking,
    ) -> Result<RemoteBooking, PortError> {
        let mut current = self.calendar.get(account, &known.uid).await?;
        for _ in 0..8 {
            match (&current.rescheduled_to, current.cancelled) {
                (Some(next), true) => current = self.calendar.get(account, next).await?,
                _ => break,
            }
        }
        Ok(current)
    }

    async fn language(&self, tenant: TenantId) -> String {
        match self.commands.tenant(tenant).await {
            Ok((t, _)) => serde_json::to_value(t.settings.locale)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "de".to_owned()),
            Err(_) => "de".to_owned(),
        }
    }

    fn meta(&self, run: &JobRun<CalendarSync>, tenant_id: TenantId) -> CommandMeta {
        CommandMeta {
            tenant_id,
            correlation_id: run.correlation_id,
            causation_id: run.causation_id,
            actor: format!("saga:{}", CalendarSync::NAME),
            source: Channel::Saga,
            now: self.clock.now(),
        }
    }

    /// Records the outcome on the booking; compensates a taken slot; alerts operators.
    async fn record(
        &self,
        run: &JobRun<CalendarSync>,
        wanted: &Wanted,
        result: &Result<Option<RemoteBooking>, PortError>,
    ) -> Result<(), commands::CommandError> {
        let booking_id = BookingId(Uuid::parse_str(&run.instance_id).unwrap_or_default());
        let meta = self.meta(run, wanted.tenant_id);
        let outcome = match result {
            Ok(None) => return Ok(()),
            Ok(Some(remote)) => CalendarOutcome::Synced {
                uid: remote.uid.clone(),
            },
            Err(error) => CalendarOutcome::Failed {
                reason: error.to_string(),
                permanent: !error.is_transient(),
                attempts: run.state.failures + 1,
            },
        };
        self.commands
            .record_calendar_sync(&meta, booking_id, outcome)
            .await?;
        let Err(error) = result else {
            return Ok(());
        };
        if let PortError::SlotTaken(message) = error
            && wanted.cancelled.is_none()
        {
            let saga = Principal::internal(wanted.tenant_id);
            let input = CancelBookingInput {
                reason: format!("the slot is taken in the calendar: {message}"),
            };
            match self
                .commands
                .cancel_booking(&saga, &meta, booking_id, input)
                .await
            {
                Ok(_) | Err(commands::CommandError::Booking(_)) => {}
                Err(e) => return Err(e),
            }
        }
        if !error.is_transient() || run.state.failures + 1 >= ALERT_AFTER {
            self.alert(run, wanted, error)
                .await
                .map_err(|e| commands::CommandError::Unavailable(e.to_string()))?;
        }
        Ok(())
    }

    async fn alert(
        &self,
        run: &JobRun<CalendarSync>,
        wanted: &Wanted,
        error: &PortError,
    ) -> Result<(), sqlx::Error> {
        // One alert per booking and failure count, however often this step runs.
        let key = format!(
            "{}:{}:{}",
            CalendarSync::NAME,
            run.instance_id,
            run.state.failures + 1
        );
        let id = Uuid::new_v5(&Uuid::NAMESPACE_OID, key.as_bytes());
        tracing::error!(booking_id = %run.instance_id, %error, failures = run.state.failures + 1, "calendar sync needs an operator");
        sqlx::query(
            "INSERT INTO operator_alerts (id, tenant_id, source, subject, message)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(wanted.tenant_id.0)
        .bind(CalendarSync::NAME)
        .bind(format!("booking {}", run.instance_id))
        .bind(format!(
            "Cal.com sync failed {} time(s) in a row: {error}",
            run.state.failures + 1
        ))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// What one round works towards.
struct Target<'a> {
    account: &'a CalendarAccount,
    booking_id: BookingId,
    wanted: &'a Wanted,
    known: Option<&'a RemoteBooking>,
    careful: bool,
}

impl<S: Store> Driver for CalendarSyncDriver<S> {
    type Saga = CalendarSync;

    async fn perform(&self, run: &JobRun<CalendarSync>) -> SyncOutcome {
        let Some(wanted) = &run.state.wanted else {
            return SyncOutcome::InSync(run.state.remote.clone());
        };
        let account = match self.accounts.calendar(wanted.tenant_id).await {
            Ok(Some(account)) => account,
            Ok(None) => return SyncOutcome::NotConnected,
            Err(e) => return SyncOutcome::Failed(e),
        };
        let result = self.sync(run, wanted, &account).await;
        if let Err(e) = self.record(run, wanted, &result).await {
            // Not recorded: the whole step runs again (carefully) later.
            tracing::warn!(booking_id = %run.instance_id, error = %e, "calendar sync outcome not recorded");
            return SyncOutcome::Failed(PortError::Transient(format!(
                "recording the outcome failed: {e}"
            )));
        }
        match result {
            Ok(remote) => SyncOutcome::InSync(remote),
            Err(error) => SyncOutcome::Failed(error),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;
    use crate::testing::{at, created, created_confirmed, fold, now};

    #[test]
    fn a_booking_confirmed_as_it_was_made_is_synced_at_once() {
        let reaction = fold::<CalendarSync>(&[created_confirmed(at(1))]);
        assert_eq!(reaction.schedule.len(), 1);
        assert_eq!(reaction.schedule[0].due, now());
        assert!(reaction.state.wanted.unwrap().confirmed);
    }

    #[test]
    fn a_held_booking_is_not_synced_and_a_confirmed_one_is_at_once() {
        let held = fold::<CalendarSync>(&[created(at(1))]);
        assert!(held.schedule.is_empty());
        let confirmed = fold::<CalendarSync>(&[
            created(at(1)),
            BookingEvent::BookingConfirmed {
                confirmed_at: now(),
            },
        ]);
        assert_eq!(confirmed.schedule.len(), 1);
        assert_eq!(confirmed.schedule[0].due, now());
        assert!(confirmed.state.wanted.unwrap().confirmed);
    }

    #[test]
    fn a_held_booking_cancelled_before_any_sync_calls_nothing() {
        let cancelled = fold::<CalendarSync>(&[
            created(at(1)),
            BookingEvent::BookingCancelled {
                reason: "changed mind".to_owned(),
                actor: "api_key:x".to_owned(),
                late: false,
                cancelled_at: now(),
            },
        ]);
        assert!(cancelled.schedule.is_empty());
        assert_eq!(
            cancelled.state.wanted.unwrap().cancelled.as_deref(),
            Some("changed mind")
        );
    }

    #[test]
    fn a_transient_failure_retries_in_five_minutes_and_a_taken_slot_stops() {
        let state = fold::<CalendarSync>(&[
            created(at(1)),
            BookingEvent::BookingConfirmed {
                confirmed_at: now(),
            },
        ])
        .state;
        let transient = CalendarSync::settle(
            &state,
            &SyncJob::Sync,
            SyncOutcome::Failed(PortError::Transient("timed out".to_owned())),
            now(),
        );
        assert_eq!(transient.state.failures, 1);
        assert_eq!(transient.schedule[0].due, now() + RETRY_AFTER);
        let taken = CalendarSync::settle(
            &transient.state,
            &SyncJob::Sync,
            SyncOutcome::Failed(PortError::SlotTaken("busy".to_owned())),
            now(),
        );
        assert!(taken.state.refused);
        assert!(taken.schedule.is_empty());
        assert_eq!(taken.cancel, [SYNC]);
        let remote = RemoteBooking {
            uid: "cal-1".to_owned(),
            start: now(),
            event_type_id: Some(1),
            cancelled: false,
            rescheduled_to: None,
        };
        let synced = CalendarSync::settle(
            &transient.state,
            &SyncJob::Sync,
            SyncOutcome::InSync(Some(remote.clone())),
            now(),
        );
        assert_eq!(synced.state.failures, 0);
        assert_eq!(synced.state.remote, Some(remote));
        assert!(synced.schedule.is_empty());
        assert_eq!(json!(SyncJob::Sync), json!("Sync"));
    }
}
