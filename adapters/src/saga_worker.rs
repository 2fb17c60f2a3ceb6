//! Saga workers: a durable JetStream pull consumer per saga feeding `sagas::runtime::take`,
//! and a runner that performs the saga's due jobs.
//!
//! An event is acked once its step has committed (or was committed before); one whose step
//! failed is handed back with a growing delay and, at its last delivery, parked in
//! `dead_letters` under `saga:<name>` so the others flow on; one whose predecessor is not in
//! yet waits for it (see `projection_worker::wait_for_predecessor`).
//! Jobs are claimed from Postgres for a lease, so any instance runs them and a dead one's
//! claims lapse; a step that has set a job due now wakes the runner at once.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::{self, Message};
use futures::StreamExt;
use projections::{StoredEvent, dead_letters};
use sagas::runtime::{self, Taken};
use sagas::{Driver, Saga, SagaEvent, SharedClock};
use sqlx::PgPool;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::projection_worker::{
    WorkerConfig, WorkerError, bus, durable_consumer, unless_stopped, wait_for_predecessor,
};

/// How often the job runner looks for due jobs when nothing wakes it.
const POLL: Duration = Duration::from_millis(250);

/// One saga's worker.
pub struct SagaWorker<D> {
    pool: PgPool,
    js: jetstream::Context,
    driver: Arc<D>,
    clock: SharedClock,
    config: WorkerConfig,
    lease: chrono::Duration,
    wake: Arc<Notify>,
}

impl<D> std::fmt::Debug for SagaWorker<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SagaWorker")
            .field("config", &self.config)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl<D: Driver> SagaWorker<D> {
    /// A worker for `driver`'s saga; a claimed job is held for `lease` (longer than a job's
    /// calls with their retries can take).
    pub fn new(
        pool: PgPool,
        js: jetstream::Context,
        driver: Arc<D>,
        clock: SharedClock,
        config: WorkerConfig,
        lease: chrono::Duration,
    ) -> Self {
        Self {
            pool,
            js,
            driver,
            clock,
            config,
            lease,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Consumes events and runs jobs until `shutdown` turns true.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        // In a set, so that whoever aborts this task (a shutdown that cannot wait any longer)
        // aborts the consumer with it.
        let mut events = tokio::task::JoinSet::new();
        events.spawn({
            let this = this.clone();
            let mut shutdown = shutdown.clone();
            async move {
                // A sender gone without a word stops it too (`changed` would no longer wait).
                while !*shutdown.borrow() && shutdown.has_changed().is_ok() {
                    if let Err(e) = this.consume(&mut shutdown).await {
                        tracing::warn!(saga = D::Saga::NAME, error = %e, "saga consumer failed; retrying");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_millis(500)) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                }
            }
        });
        this.run_jobs(shutdown).await;
        while events.join_next().await.is_some() {}
    }

    async fn run_jobs(&self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() && shutdown.has_changed().is_ok() {
            let clock = self.clock.clone();
            if let Err(e) =
                runtime::run_due(&self.pool, &*self.driver, move || clock.now(), self.lease).await
            {
                tracing::warn!(saga = D::Saga::NAME, error = %e, "saga jobs failed; retrying");
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = self.wake.notified() => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn consume(&self, shutdown: &mut watch::Receiver<bool>) -> Result<(), WorkerError> {
        let consumer = unless_stopped(
            shutdown,
            durable_consumer(
                &self.js,
                &format!("saga-{}", D::Saga::NAME),
                &format!("The {} saga", D::Saga::NAME),
                &[D::Saga::AGGREGATE_TYPE],
                &self.config,
            ),
        )
        .await;
        let Some(consumer) = consumer else {
            return Ok(());
        };
        let consumer = consumer?;
        let mut messages = consumer.messages().await.map_err(bus)?;
        tracing::info!(saga = D::Saga::NAME, "saga consuming");
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                _ = shutdown.changed() => return Ok(()),
            };
            let Some(message) = message else {
                return Err(bus("the message stream ended"));
            };
            self.handle(message.map_err(bus)?).await?;
        }
    }

    async fn handle(&self, message: Message) -> Result<(), WorkerError> {
        let Ok(stored) = serde_json::from_slice::<StoredEvent>(&message.payload) else {
            tracing::error!(saga = D::Saga::NAME, subject = %message.subject, "not an event envelope; dropped");
            return message.ack_with(AckKind::Term).await.map_err(bus);
        };
        let failure = match saga_event(&stored) {
            Err(e) => e,
            Ok(event) => match runtime::take::<D::Saga>(&self.pool, &event, self.clock.now()).await
            {
                Ok(Taken::Applied) => {
                    self.wake.notify_one();
                    return message.ack().await.map_err(bus);
                }
                Ok(Taken::Seen | Taken::Ignored) => return message.ack().await.map_err(bus),
                Ok(Taken::TooEarly) => {
                    let name = format!("saga:{}", D::Saga::NAME);
                    let on = (&self.pool, name.as_str(), &self.config);
                    return wait_for_predecessor(on, message, &stored).await;
                }
                Err(e) => e.to_string(),
            },
        };
        let delivered = message.info().map_or(1, |i| i.delivered);
        if delivered >= self.config.max_deliver {
            let name = format!("saga:{}", D::Saga::NAME);
            tracing::error!(saga = D::Saga::NAME, event_id = %stored.event_id, error = %failure, "event parked after {delivered} deliveries");
            let attempts = i32::try_from(delivered).unwrap_or(i32::MAX);
            dead_letters::park(&self.pool, &name, &stored, &failure, attempts).await?;
            return message.ack_with(AckKind::Term).await.map_err(bus);
        }
        message
            .ack_with(AckKind::Nak(Some(self.config.delay(delivered))))
            .await
            .map_err(bus)
    }
}

/// The saga's view of a stored event.
fn saga_event(stored: &StoredEvent) -> Result<SagaEvent, String> {
    let uuid = |field: &str, text: &str| {
        Uuid::parse_str(text).map_err(|e| format!("{field} {text:?} is not a UUID: {e}"))
    };
    Ok(SagaEvent {
        event_id: uuid("event_id", &stored.event_id)?,
        tenant_id: uuid("tenant_id", stored.tenant_id())?,
        aggregate_type: stored.aggregate_type.clone(),
        aggregate_id: stored.aggregate_id.clone(),
        sequence: stored.sequence,
        position: stored.position,
        payload: stored.payload.clone(),
        correlation_id: uuid(
            "correlation_id",
            stored.metadata["correlation_id"]
                .as_str()
                .unwrap_or_default(),
        )?,
    })
}

/// Takes the events saga `S` parked again, in store order (after the fault is fixed).
pub async fn retry_parked<S: Saga>(pool: &PgPool) -> Result<dead_letters::Retried, sqlx::Error> {
    let name = format!("saga:{}", S::NAME);
    let mut retried = dead_letters::Retried::default();
    for (event_id, stored) in dead_letters::parked(pool, &name).await? {
        let error = match saga_event(&stored) {
            Err(e) => Some(e),
            Ok(event) => match runtime::take::<S>(pool, &event, chrono::Utc::now()).await {
                Ok(Taken::Applied | Taken::Seen | Taken::Ignored) => None,
                Ok(Taken::TooEarly) => {
                    Some("an earlier event of its aggregate is not taken".to_owned())
                }
                // Lost the database: stop. A statement the database refused is the fault itself.
                Err(sagas::SagaError::Database(e)) if e.as_database_error().is_none() => {
                    return Err(e);
                }
                Err(e) => Some(e.to_string()),
            },
        };
        dead_letters::record_retry(pool, &name, &event_id, error, &mut retried).await?;
    }
    Ok(retried)
}

/// Gives up one event saga `S` parked, so the events after it can be taken; false when no
/// such event is parked.
pub async fn skip_parked<S: Saga>(pool: &PgPool, event_id: &str) -> Result<bool, sagas::SagaError> {
    let name = format!("saga:{}", S::NAME);
    let Some((_, stored)) = dead_letters::parked(pool, &name)
        .await?
        .into_iter()
        .find(|(id, _)| id == event_id)
    else {
        return Ok(false);
    };
    let event = saga_event(&stored).map_err(sagas::SagaError::Unreadable)?;
    runtime::skip::<S>(pool, &event).await?;
    dead_letters::forget(pool, &name, event_id).await?;
    Ok(true)
}

/// The sagas, by name.
pub const SAGAS: &[&str] = &["calendar-sync", "notifications", "payments"];

/// An operator's retry of one instance of the saga named `saga`: `None` when no saga has
/// that name, else whether the instance exists.
pub async fn retry_instance(
    pool: &PgPool,
    saga: &str,
    instance: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<bool>, sagas::SagaError> {
    use sagas::{CalendarSync, DepositPayments, Notifications};
    Ok(Some(match saga {
        CalendarSync::NAME => runtime::retry::<CalendarSync>(pool, instance, now).await?,
        Notifications::NAME => runtime::retry::<Notifications>(pool, instance, now).await?,
        DepositPayments::NAME => runtime::retry::<DepositPayments>(pool, instance, now).await?,
        _ => return Ok(None),
    }))
}
