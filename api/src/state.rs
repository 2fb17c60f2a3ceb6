//! The state every handler shares.

use std::sync::Arc;

use adapters::circuit::CircuitBreaker;
use adapters::integrations::PgAccounts;
use adapters::{ApiKeys, Idempotency, PgStore};
use commands::Commands;
use secrecy::SecretString;
use sqlx::PgPool;

use crate::auth::KeyCache;

/// Cloned into every handler; everything inside is shared.
#[derive(Clone, Debug)]
pub struct AppState(pub Arc<Shared>);

/// What the handlers need.
#[derive(Debug)]
pub struct Shared {
    /// The write side (shared with the sagas).
    pub commands: Arc<Commands<PgStore>>,
    /// Tenants' sealed integration credentials.
    pub accounts: PgAccounts,
    /// One circuit breaker per integration.
    pub circuits: Vec<Arc<CircuitBreaker>>,
    /// Checks Twilio's delivery reports, when SMS is configured.
    pub twilio_callbacks: Option<crate::integrations::TwilioCallbacks>,
    /// Checks Stripe's webhooks, when configured.
    pub stripe_webhook_secret: Option<SecretString>,
    /// The time sagas and circuits read.
    pub clock: sagas::SharedClock,
    /// API key store.
    pub keys: ApiKeys,
    /// Recently verified keys, so a request does not cost a key look-up.
    pub key_cache: KeyCache,
    /// Idempotency records.
    pub idempotency: Idempotency,
    /// The database, for health checks.
    pub pool: PgPool,
    /// The NATS client, for health checks.
    pub nats: async_nats::Client,
    /// Staff calendars recently read, for availability.
    pub calendars: projections::staff_calendar::CalendarCache,
    /// The operator's token; operator routes are closed without one.
    pub operator_token: Option<SecretString>,
    /// Host names `/mcp` answers to.
    pub mcp_allowed_hosts: Vec<String>,
    /// Requests per key and window, by plan.
    pub rate_limits: crate::config::RateLimitConfig,
    /// Tenants' plans, for the rate limits.
    pub plans: crate::rate_limit::PlanCache,
    /// Requests counted against the rate limits, written in groups.
    pub request_counts: crate::rate_limit::RequestCounts,
    /// What each key last changed through the MCP tools, for its next reads.
    pub own_writes: crate::consistency::OwnWrites,
    /// Request counts and timings.
    pub http_metrics: crate::metrics::HttpMetrics,
    /// Whether `/metrics` answers.
    pub metrics_enabled: bool,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
