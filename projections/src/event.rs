//! One stored event: what the relay publishes on the bus, what projections apply, what dead
//! letters keep and what the audit trail lists.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An event with its place in the store and its metadata.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct StoredEvent {
    /// Global position in the event store; events are listed in this order.
    pub position: i64,
    /// UUIDv7, unique across the store.
    pub event_id: String,
    /// `Tenant`, `Staff` or `Booking`.
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// The event's sequence in its aggregate's stream, from 1.
    pub sequence: i64,
    /// Stable type name.
    pub event_type: String,
    /// Its schema version.
    pub event_version: String,
    /// When its transaction began.
    pub recorded_at: DateTime<Utc>,
    /// The event as stored.
    pub payload: Value,
    /// Tenant, correlation, causation, actor, source, time.
    pub metadata: Value,
}

impl StoredEvent {
    /// The tenant it belongs to, from its metadata.
    pub fn tenant_id(&self) -> &str {
        self.metadata["tenant_id"].as_str().unwrap_or_default()
    }
}
