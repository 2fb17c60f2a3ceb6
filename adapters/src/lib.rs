//! Infrastructure: the Postgres event store, the relay to NATS JetStream, the migration set,
//! API keys and idempotency records.
//!
//! # Layout
//!
//! * [`event_store`]: `cqrs_es::EventStore` over postgres-es's tables, with snapshots that
//!   equal the fold and a global position per event.
//! * [`relay`]: the gap-safe tail of the events table that publishes to stream `EVENTS`;
//!   [`appends`] wakes it when events were appended.
//! * [`projection_worker`]: a durable JetStream consumer per projection, feeding
//!   `projections::runner`, parking what keeps failing.
//! * [`saga_worker`]: a durable JetStream consumer per saga feeding `sagas::runtime`, and
//!   the runner of its due jobs.
//! * [`calcom`], [`circuit`]: Cal.com API v2 behind the `sagas::ports::Calendar` port, with a
//!   circuit breaker per integration; [`integrations`]: tenants' sealed credentials;
//!   [`twilio`], [`mail`]: SMS and e-mail behind the notification ports; [`webhooks`]:
//!   inbound webhook signatures.
//! * [`directory`]: cross-aggregate look-ups for the write side; [`alternatives`]: free
//!   times to offer instead of a booking that could not be kept.
//! * [`api_keys`], [`idempotency`]: what the HTTP API keeps in Postgres.
//! * [`MIGRATOR`]: every table, from `migrations/`.

pub mod alternatives;
pub mod api_keys;
mod append;
pub mod appends;
pub mod calcom;
pub mod circuit;
pub mod directory;
pub mod event_store;
pub mod idempotency;
pub mod integrations;
pub mod mail;
mod outbound;
pub mod parked;
pub mod projection_worker;
pub mod relay;
pub mod saga_worker;
pub mod stripe;
pub mod twilio;
pub mod webhooks;

pub use api_keys::{ApiKeys, NewApiKey};
pub use appends::Appends;
pub use directory::PgDirectory;
pub use event_store::{PgStore, SnapshotPolicy};
pub use idempotency::{Claim, Idempotency};
pub use projection_worker::{ProjectionWorker, WorkerConfig};
pub use relay::{Relay, RelayConfig};
pub use saga_worker::SagaWorker;

/// The schema, applied by `bookingd migrate` and at start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
