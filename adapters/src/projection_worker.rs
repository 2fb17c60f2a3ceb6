//! Projection workers: one durable JetStream pull consumer per projection, feeding
//! `projections::runner`.
//!
//! Each message is applied in its own transaction (write and offset together), then acked.
//! A message that cannot be applied yet (its predecessor is not in) or failed is handed back
//! with a growing delay; once it has been delivered `max_deliver` times it is parked in
//! `dead_letters` and acked, so that the consumer moves on. Several workers (in one process or
//! several) may share a consumer: the offsets keep the order per aggregate.

use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::{self, Message};
use futures::StreamExt;
use projections::dead_letters;
use projections::runner::{self, Delivered, Outcome, Projection, ProjectionError};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::relay::{RelayConfig, ensure_stream};

/// How a projection consumes.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Messages delivered but not yet acked, at most.
    pub max_ack_pending: i64,
    /// Deliveries before an event is parked.
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

fn bus(error: impl std::fmt::Display) -> WorkerError {
    WorkerError::Bus(error.to_string())
}

/// One projection's worker.
#[derive(Debug, Clone)]
pub struct ProjectionWorker<P> {
    pool: PgPool,
    js: jetstream::Context,
    projection: P,
    config: WorkerConfig,
}

impl<P: Projection + Clone> ProjectionWorker<P> {
    /// A worker for `projection`.
    pub fn new(pool: PgPool, js: jetstream::Context, projection: P, config: WorkerConfig) -> Self {
        Self {
            pool,
            js,
            projection,
            config,
        }
    }

    /// Consumes until `shutdown` turns true, starting over after a failure.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            if let Err(e) = self.consume(&mut shutdown).await {
                tracing::warn!(projection = P::NAME, error = %e, "projection worker failed; retrying");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }

    /// The projection's durable consumer, created or brought to this configuration.
    async fn consumer(&self) -> Result<PullConsumer, WorkerError> {
        let relay = RelayConfig::default();
        ensure_stream(&self.js, &relay).await.map_err(bus)?;
        let stream = self.js.get_stream(&relay.stream).await.map_err(bus)?;
        let name = format!("projection-{}", P::NAME);
        let config = pull::Config {
            durable_name: Some(name.clone()),
            description: Some(format!("The {} read model", P::NAME)),
            filter_subjects: P::AGGREGATE_TYPES
                .iter()
                .map(|t| format!("events.*.{t}.*"))
                .collect(),
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.config.ack_wait,
            max_deliver: self.config.max_deliver,
            max_ack_pending: self.config.max_ack_pending,
            ..Default::default()
        };
        // Creating is idempotent for an unchanged configuration; a changed one is updated.
        match stream.create_consumer(config.clone()).await {
            Ok(consumer) => Ok(consumer),
            Err(_) => stream.update_consumer(config).await.map_err(bus),
        }
    }

    async fn consume(&self, shutdown: &mut watch::Receiver<bool>) -> Result<(), WorkerError> {
        let consumer = self.consumer().await?;
        let mut messages = consumer.messages().await.map_err(bus)?;
        tracing::info!(projection = P::NAME, "projection worker consuming");
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                _ = shutdown.changed() => return Ok(()),
            };
            match message {
                Some(Ok(message)) => self.handle(message).await?,
                Some(Err(e)) => return Err(bus(e)),
                None => return Err(bus("the message stream ended")),
            }
        }
    }

    /// Applies one message and acks it, hands it back, or parks it.
    async fn handle(&self, message: Message) -> Result<(), WorkerError> {
        let delivered = message.info().map_or(1, |i| i.delivered);
        let event: Delivered = match serde_json::from_slice(&message.payload) {
            Ok(event) => event,
            Err(e) => {
                // Without its ids it cannot be parked or ordered: nothing but the relay
                // publishes here, so this is a stranger's message.
                tracing::error!(projection = P::NAME, subject = %message.subject, error = %e, "not an event envelope; dropped");
                return message.ack_with(AckKind::Term).await.map_err(bus);
            }
        };
        let failure = match runner::apply(&self.pool, &self.projection, &event).await {
            Ok(Outcome::Applied | Outcome::AlreadyApplied) => {
                return message.ack().await.map_err(bus);
            }
            Ok(Outcome::TooEarly) => "an earlier event of its aggregate is not applied".to_owned(),
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
            dead_letters::park(&self.pool, P::NAME, &event, &failure, attempts).await?;
            return message.ack_with(AckKind::Term).await.map_err(bus);
        }
        tracing::debug!(projection = P::NAME, position = event.position, delivered, error = %failure, "handing the event back");
        message
            .ack_with(AckKind::Nak(Some(self.delay(delivered))))
            .await
            .map_err(bus)
    }

    /// The redelivery delay after `delivered` deliveries: doubling, capped.
    fn delay(&self, delivered: i64) -> Duration {
        let doublings = u32::try_from(delivered.saturating_sub(1).min(16)).unwrap_or(16);
        self.config
            .retry_delay
            .saturating_mul(2u32.saturating_pow(doublings))
            .min(self.config.max_retry_delay)
    }
}
