//! Projection workers: one durable JetStream pull consumer per projection, feeding
//! `projections::runner`.
//!
//! The messages that have arrived are applied together in one transaction (each event's write
//! and offset behind its own savepoint), then acked one by one.
//! A message that failed is handed back with a growing delay; once it has been delivered
//! `max_deliver` times it is parked in `dead_letters` and acked, so that the consumer moves on.
//! One that cannot be applied yet (its predecessor is not in) waits for it, however long,
//! unless the predecessor is parked. Several workers (in one process or
//! several) may share a consumer: the offsets keep the order per aggregate.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::{self, Message};
use futures::StreamExt;
use projections::StoredEvent;
use projections::dead_letters;
use projections::runner::{self, Outcome, Projection, ProjectionError};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::relay::{RelayConfig, ensure_stream};

/// How a projection consumes.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Messages delivered but not yet acked, at most.
    pub max_ack_pending: i64,
    /// Deliveries of an event that fails before it is parked. An event waiting for an earlier
    /// one of its aggregate is not parked for that: it waits as long as it takes.
    pub max_deliver: i64,
    /// Redelivery when a message is neither acked nor handed back.
    pub ack_wait: Duration,
    /// The first redelivery delay after a failure; it doubles with each attempt.
    pub retry_delay: Duration,
    /// The longest redelivery delay.
    pub max_retry_delay: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            max_ack_pending: 1000,
            max_deliver: 8,
            ack_wait: Duration::from_secs(30),
            retry_delay: Duration::from_millis(20),
            max_retry_delay: Duration::from_secs(5),
        }
    }
}

/// Why a worker's session with the bus ended.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// JetStream refused or failed.
    #[error("jetstream: {0}")]
    Bus(String),
    /// Postgres failed while parking.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

pub(crate) fn bus(error: impl std::fmt::Display) -> WorkerError {
    WorkerError::Bus(error.to_string())
}

/// A durable consumer of the events of `aggregate_types`, created or brought to `config`.
pub(crate) async fn durable_consumer(
    js: &jetstream::Context,
    name: &str,
    description: &str,
    aggregate_types: &[&str],
    config: &WorkerConfig,
) -> Result<PullConsumer, WorkerError> {
    let relay = RelayConfig::default();
    ensure_stream(js, &relay).await.map_err(bus)?;
    let stream = js.get_stream(&relay.stream).await.map_err(bus)?;
    let consumer = pull::Config {
        durable_name: Some(name.to_owned()),
        description: Some(description.to_owned()),
        filter_subjects: aggregate_types
            .iter()
            .map(|t| format!("events.*.{t}.*"))
            .collect(),
        ack_policy: AckPolicy::Explicit,
        ack_wait: config.ack_wait,
        // Unbounded: the worker decides when to park (see `WorkerConfig::max_deliver`).
        max_deliver: -1,
        max_ack_pending: config.max_ack_pending,
        ..Default::default()
    };
    // Creating is idempotent for an unchanged configuration; a changed one is updated.
    match stream.create_consumer(consumer.clone()).await {
        Ok(consumer) => Ok(consumer),
        Err(_) => stream.update_consumer(consumer).await.map_err(bus),
    }
}

/// `work`'s output, or `None` once `shutdown` changes first: a worker setting up its consumer
/// while NATS is unreachable waits for it (see `ensure_stream`) and must still stop when asked.
pub(crate) async fn unless_stopped<T>(
    shutdown: &mut watch::Receiver<bool>,
    work: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        out = work => Some(out),
        _ = shutdown.changed() => None,
    }
}

/// Hands back an event whose predecessor is not in yet. It waits however long that takes
/// (a predecessor delivered to a process that died comes back only after `ack_wait`), unless
/// the predecessor is parked: then it is parked behind it, in order.
pub(crate) async fn wait_for_predecessor(
    (pool, consumer, config): (&PgPool, &str, &WorkerConfig),
    message: Message,
    event: &StoredEvent,
) -> Result<(), WorkerError> {
    let delivered = message.info().map_or(1, |i| i.delivered);
    if dead_letters::parked_before(pool, consumer, event).await? {
        let attempts = i32::try_from(delivered).unwrap_or(i32::MAX);
        let why = "an earlier event of its aggregate is parked";
        tracing::error!(consumer, event_id = %event.event_id, position = event.position, "event parked: {why}");
        dead_letters::park(pool, consumer, event, why, attempts).await?;
        return message.ack_with(AckKind::Term).await.map_err(bus);
    }
    if delivered % 20 == 0 {
        tracing::warn!(
            consumer,
            position = event.position,
            delivered,
            "still waiting for an earlier event of its aggregate"
        );
    }
    message
        .ack_with(AckKind::Nak(Some(config.delay(delivered))))
        .await
        .map_err(bus)
}

/// Messages applied in one transaction, at most.
const BATCH: usize = 200;

/// Called with the time from an event's commit to its effect's commit in the read model.
pub type LagObserver = std::sync::Arc<dyn Fn(Duration) + Send + Sync>;

/// One projection's worker.
#[derive(Clone)]
pub struct ProjectionWorker<P> {
    pool: PgPool,
    js: jetstream::Context,
    projection: P,
    config: WorkerConfig,
    observer: Option<LagObserver>,
}

impl<P> std::fmt::Debug for ProjectionWorker<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionWorker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<P: Projection + Clone> ProjectionWorker<P> {
    /// A worker for `projection`.
    pub fn new(pool: PgPool, js: jetstream::Context, projection: P, config: WorkerConfig) -> Self {
        Self {
            pool,
            js,
            projection,
            config,
            observer: None,
        }
    }

    /// Reports each applied event's commit-to-visible time (for metrics and benchmarks).
    pub fn with_lag_observer(mut self, observer: LagObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Consumes until `shutdown` turns true, starting over after a failure.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // A sender gone without a word stops it too (`changed` would no longer wait).
        while !*shutdown.borrow() && shutdown.has_changed().is_ok() {
            if let Err(e) = self.consume(&mut shutdown).await {
                tracing::warn!(projection = P::NAME, error = %e, "projection worker failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    async fn consume(&self, shutdown: &mut watch::Receiver<bool>) -> Result<(), WorkerError> {
        let consumer = unless_stopped(
            shutdown,
            durable_consumer(
                &self.js,
                &format!("projection-{}", P::NAME),
                &format!("The {} read model", P::NAME),
                P::AGGREGATE_TYPES,
                &self.config,
            ),
        )
        .await;
        let Some(consumer) = consumer else {
            return Ok(());
        };
        let consumer = consumer?;
        // Whatever has arrived is applied together, up to a batch at a time.
        let mut batches = consumer.messages().await.map_err(bus)?.ready_chunks(BATCH);
        tracing::info!(projection = P::NAME, "projection worker consuming");
        loop {
            let batch = tokio::select! {
                batch = batches.next() => batch,
                _ = shutdown.changed() => return Ok(()),
            };
            let Some(batch) = batch else {
                return Err(bus("the message stream ended"));
            };
            let messages = batch
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map_err(bus)?;
            self.handle(messages).await?;
        }
    }

    /// Applies a batch of messages in one transaction, then acks each, hands it back, or
    /// parks it.
    async fn handle(&self, messages: Vec<Message>) -> Result<(), WorkerError> {
        let mut events = Vec::with_capacity(messages.len());
        let mut readable = Vec::with_capacity(messages.len());
        for message in messages {
            match serde_json::from_slice::<StoredEvent>(&message.payload) {
                Ok(event) => {
                    events.push(event);
                    readable.push(message);
                }
                Err(e) => {
                    // Without its ids it cannot be parked or ordered: nothing but the relay
                    // publishes here, so this is a stranger's message.
                    tracing::error!(projection = P::NAME, subject = %message.subject, error = %e, "not an event envelope; dropped");
                    message.ack_with(AckKind::Term).await.map_err(bus)?;
                }
            }
        }
        let outcomes = match runner::apply_batch(&self.pool, &self.projection, &events).await {
            Ok(outcomes) => outcomes,
            Err(e) => {
                tracing::warn!(projection = P::NAME, error = %e, "batch failed; handing it back");
                let error = e.to_string();
                events
                    .iter()
                    .map(|_| Err(ProjectionError::Batch(error.clone())))
                    .collect()
            }
        };
        let now = chrono::Utc::now();
        for ((message, event), outcome) in readable.into_iter().zip(&events).zip(outcomes) {
            if let (Some(observe), Ok(Outcome::Applied)) = (&self.observer, &outcome) {
                observe((now - event.recorded_at).to_std().unwrap_or_default());
            }
            self.settle(message, event, outcome).await?;
        }
        Ok(())
    }

    /// Acks an applied message, hands a failed one back, or parks it at its last delivery.
    async fn settle(
        &self,
        message: Message,
        event: &StoredEvent,
        outcome: Result<Outcome, ProjectionError>,
    ) -> Result<(), WorkerError> {
        let delivered = message.info().map_or(1, |i| i.delivered);
        let failure = match outcome {
            Ok(Outcome::Applied | Outcome::AlreadyApplied) => {
                return message.ack().await.map_err(bus);
            }
            Ok(Outcome::TooEarly) => {
                let on = (&self.pool, P::NAME, &self.config);
                return wait_for_predecessor(on, message, event).await;
            }
            Err(ProjectionError::Raced) => {
                return message
                    .ack_with(AckKind::Nak(Some(self.config.retry_delay)))
                    .await
                    .map_err(bus);
            }
            Err(e) => e.to_string(),
        };
        if delivered >= self.config.max_deliver {
            tracing::error!(projection = P::NAME, event_id = %event.event_id, position = event.position, error = %failure, "event parked after {delivered} deliveries");
            let attempts = i32::try_from(delivered).unwrap_or(i32::MAX);
            dead_letters::park(&self.pool, P::NAME, event, &failure, attempts).await?;
            return message.ack_with(AckKind::Term).await.map_err(bus);
        }
        tracing::debug!(projection = P::NAME, position = event.position, delivered, error = %failure, "handing the event back");
        message
            .ack_with(AckKind::Nak(Some(self.delay(delivered))))
            .await
            .map_err(bus)
    }

    fn delay(&self, delivered: i64) -> Duration {
        self.config.delay(delivered)
    }
}

impl WorkerConfig {
    /// The redelivery delay after `delivered` deliveries: doubling, capped.
    pub(crate) fn delay(&self, delivered: i64) -> Duration {
        let doublings = u32::try_from(delivered.saturating_sub(1).min(16)).unwrap_or(16);
        self.retry_delay
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.max_retry_delay)
    }
}
