//! The audit trail: a tenant's events as stored, with their metadata, in store order.
//!
//! Read straight from the event store (the source of truth), always filtered by the tenant's
//! id, which every event carries in its metadata and the store indexes with its position.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::event::StoredEvent;

/// Which events: always one tenant's, narrowed by the optional fields, after `after`.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// The tenant (always applied).
    pub tenant_id: uuid::Uuid,
    /// One aggregate type.
    pub aggregate_type: Option<String>,
    /// One aggregate.
    pub aggregate_id: Option<String>,
    /// One event type.
    pub event_type: Option<String>,
    /// Recorded at or after.
    pub from: Option<DateTime<Utc>>,
    /// Recorded before.
    pub to: Option<DateTime<Utc>>,
    /// Only positions above this one.
    pub after: i64,
    /// At most this many.
    pub limit: i64,
    /// Include the newest events even if a transaction older than theirs is still running.
    /// Pages that are read one after another by position leave this off: a position below
    /// the last one seen may still commit, and would be skipped. A single read (one
    /// aggregate's history) turns it on to see a command's events at once.
    pub unsettled: bool,
}

/// One page of a tenant's events, in store order.
pub async fn events(pool: &PgPool, filter: &AuditFilter) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as(
        "SELECT position, COALESCE(event_id::text, '') AS event_id, aggregate_type, aggregate_id, sequence,
                event_type, event_version, recorded_at, payload, metadata
         FROM events
         WHERE tenant_id = $1 AND position > $2
           AND ($3::text IS NULL OR aggregate_type = $3)
           AND ($4::text IS NULL OR aggregate_id = $4)
           AND ($5::text IS NULL OR event_type = $5)
           AND ($6::timestamptz IS NULL OR recorded_at >= $6)
           AND ($7::timestamptz IS NULL OR recorded_at < $7)
           -- Unless asked otherwise, only transactions older than every one still running:
           -- a page never ends before an event that is still being written.
           AND ($9 OR tx_id < pg_snapshot_xmin(pg_current_snapshot()))
         ORDER BY position
         LIMIT $8",
    )
    .bind(filter.tenant_id)
    .bind(filter.after)
    .bind(filter.aggregate_type.as_deref())
    .bind(filter.aggregate_id.as_deref())
    .bind(filter.event_type.as_deref())
    .bind(filter.from)
    .bind(filter.to)
    .bind(filter.limit)
    .bind(filter.unsettled)
    .fetch_all(pool)
    .await
}

/// A moment in an aggregate's past: a time, or a version (its sequence number).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// Every event recorded at or before it.
    Time(DateTime<Utc>),
    /// Every event up to this sequence number.
    Version(i64),
}

impl std::str::FromStr for AsOf {
    type Err = String;

    /// A whole number is a version; anything else must be an RFC 3339 time.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Ok(version) = s.parse::<i64>() {
            return if version >= 0 {
                Ok(Self::Version(version))
            } else {
                Err("a version is not negative".to_owned())
            };
        }
        DateTime::parse_from_rfc3339(s)
            .map(|t| Self::Time(t.with_timezone(&Utc)))
            .map_err(|_| "expected a version number or an RFC 3339 time".to_owned())
    }
}

/// The tenant's aggregate `id` of type `A` folded from its events up to `as_of`, with the
/// version reached; `None` if it had no events by then.
pub async fn fold_as_of<A: domain::Aggregate + Default>(
    pool: &PgPool,
    tenant_id: uuid::Uuid,
    id: &str,
    as_of: AsOf,
) -> Result<Option<(A, i64)>, crate::ProjectionError> {
    let (version, time) = match as_of {
        AsOf::Version(v) => (Some(v), None),
        AsOf::Time(t) => (None, Some(t)),
    };
    let rows: Vec<(i64, serde_json::Value)> = sqlx::query_as(
        "SELECT sequence, payload FROM events
         WHERE tenant_id = $1 AND aggregate_type = $2 AND aggregate_id = $3
           AND ($4::bigint IS NULL OR sequence <= $4)
           AND ($5::timestamptz IS NULL OR recorded_at <= $5)
         ORDER BY sequence",
    )
    .bind(tenant_id)
    .bind(A::TYPE)
    .bind(id)
    .bind(version)
    .bind(time)
    .fetch_all(pool)
    .await?;
    let Some(reached) = rows.last().map(|(sequence, _)| *sequence) else {
        return Ok(None);
    };
    let mut state = A::default();
    for (_, payload) in rows {
        let event: A::Event = serde_json::from_value(payload)
            .map_err(|e| crate::ProjectionError::Unreadable(e.to_string()))?;
        state.apply(event);
    }
    Ok(Some((state, reached)))
}
