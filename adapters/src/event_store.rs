//! The Postgres event store behind every aggregate.
//!
//! It implements `cqrs_es::EventStore` over postgres-es's `events` and `snapshots` tables
//! (postgres-es's own repository can still read them) instead of using
//! `PersistedEventStore`, for three reasons:
//!
//! * cqrs-es 0.5.0's snapshot store applies a command's events to the aggregate a second time
//!   (the sink already applied them during `handle`), so its snapshots drift from the fold.
//!   Here the snapshot is the aggregate exactly as `handle` left it.
//! * Each event gets its own `event_id` (UUIDv7) in its metadata, and the commit returns each
//!   event's global `position` for read-your-writes.
//! * A load is one round trip (snapshot plus the events after it) and a commit is one
//!   statement (events, and the snapshot when due), where postgres-es needs four.

use std::collections::HashMap;

use commands::Versioned;
use cqrs_es::{
    Aggregate, AggregateContext, AggregateError, DomainEvent, EventEnvelope, EventStore,
};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// After how many events an aggregate type gets a fresh snapshot; absent means never.
#[derive(Debug, Clone, Default)]
pub struct SnapshotPolicy {
    every: HashMap<&'static str, u64>,
}

impl SnapshotPolicy {
    /// Snapshots `aggregate_type` every `events` events.
    pub fn with(mut self, aggregate_type: &'static str, events: u64) -> Self {
        self.every.insert(aggregate_type, events.max(1));
        self
    }

    /// Staff calendars and tenants grow without end; bookings stay short.
    pub fn standard() -> Self {
        Self::default().with("Staff", 50).with("Tenant", 50)
    }

    fn interval(&self, aggregate_type: &str) -> Option<u64> {
        self.every.get(aggregate_type).copied()
    }
}

/// The Postgres event store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    snapshots: SnapshotPolicy,
}

/// An aggregate as loaded, with the stream position it was loaded at.
#[derive(Debug)]
pub struct PgContext<A> {
    aggregate_id: String,
    aggregate: A,
    sequence: u64,
    snapshot_sequence: u64,
}

impl<A: Aggregate> AggregateContext<A> for PgContext<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.aggregate
    }
}

impl<A> Versioned for PgContext<A> {
    fn version(&self) -> u64 {
        self.sequence
    }
}

/// A row of the combined snapshot-and-events load: kind 0 is the snapshot, 1 an event.
type LoadRow = (i32, i64, String, Value);

const LOAD: &str = "
WITH snap AS (
    SELECT last_sequence, payload FROM snapshots
    WHERE aggregate_type = $1 AND aggregate_id = $2
    ORDER BY last_sequence DESC LIMIT 1
)
SELECT 0, last_sequence, '', payload FROM snap WHERE $3
UNION ALL
SELECT 1, e.sequence, e.event_type, e.payload FROM events e
WHERE e.aggregate_type = $1 AND e.aggregate_id = $2
  AND e.sequence > CASE WHEN $3 THEN COALESCE((SELECT last_sequence FROM snap), 0) ELSE 0 END
ORDER BY 1, 2";

const APPEND: &str = "
WITH appended AS (
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
    SELECT $1, $2, u.sequence, u.event_type, u.event_version, u.payload, u.metadata
    FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
        AS u(sequence, event_type, event_version, payload, metadata)
    ORDER BY u.sequence
    RETURNING sequence, position
)
SELECT sequence, position FROM appended ORDER BY sequence";

const APPEND_WITH_SNAPSHOT: &str = "
WITH appended AS (
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
    SELECT $1, $2, u.sequence, u.event_type, u.event_version, u.payload, u.metadata
    FROM UNNEST($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
        AS u(sequence, event_type, event_version, payload, metadata)
    ORDER BY u.sequence
    RETURNING sequence, position
), dropped AS (
    DELETE FROM snapshots WHERE aggregate_type = $1 AND aggregate_id = $2
), snapshot AS (
    INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload)
    VALUES ($1, $2, $8, $8, $9)
)
SELECT sequence, position FROM appended ORDER BY sequence";

/// A command's events as the column arrays of one multi-row insert, and as envelopes.
struct Columns<A: Aggregate> {
    sequences: Vec<i64>,
    types: Vec<String>,
    versions: Vec<String>,
    payloads: Vec<Value>,
    metadatas: Vec<Value>,
    envelopes: Vec<EventEnvelope<A>>,
}

impl<A: Aggregate> Columns<A> {
    /// Numbers the events from `first` and gives each its own `event_id`.
    fn of<E: std::error::Error>(
        aggregate_id: &str,
        first: u64,
        events: Vec<A::Event>,
        metadata: &HashMap<String, String>,
    ) -> Result<Self, AggregateError<E>> {
        let unexpected = |e: serde_json::Error| AggregateError::UnexpectedError(Box::new(e));
        let mut columns = Self {
            sequences: Vec::with_capacity(events.len()),
            types: Vec::with_capacity(events.len()),
            versions: Vec::with_capacity(events.len()),
            payloads: Vec::with_capacity(events.len()),
            metadatas: Vec::with_capacity(events.len()),
            envelopes: Vec::with_capacity(events.len()),
        };
        for (offset, event) in (0u64..).zip(events) {
            let sequence = first + offset;
            let mut meta = metadata.clone();
            meta.insert("event_id".to_owned(), Uuid::now_v7().to_string());
            columns
                .sequences
                .push(i64::try_from(sequence).unwrap_or(i64::MAX));
            columns.types.push(event.event_type());
            columns.versions.push(event.event_version());
            columns
                .payloads
                .push(serde_json::to_value(&event).map_err(unexpected)?);
            columns
                .metadatas
                .push(serde_json::to_value(&meta).map_err(unexpected)?);
            columns.envelopes.push(EventEnvelope {
                aggregate_id: aggregate_id.to_owned(),
                sequence: usize::try_from(sequence).unwrap_or(usize::MAX),
                payload: event,
                metadata: meta,
            });
        }
        Ok(columns)
    }
}

impl PgStore {
    /// A store on `pool` with the given snapshot policy.
    pub fn new(pool: PgPool, snapshots: SnapshotPolicy) -> Self {
        Self { pool, snapshots }
    }

    /// The pool it writes through.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn load_rows(
        &self,
        aggregate_type: &str,
        id: &str,
        use_snapshot: bool,
    ) -> Result<Vec<LoadRow>, sqlx::Error> {
        sqlx::query_as::<_, LoadRow>(LOAD)
            .bind(aggregate_type)
            .bind(id)
            .bind(use_snapshot)
            .fetch_all(&self.pool)
            .await
    }

    async fn load<A: Aggregate>(&self, id: &str) -> Result<PgContext<A>, AggregateError<A::Error>> {
        let use_snapshot = self.snapshots.interval(A::TYPE).is_some();
        let mut rows = self
            .load_rows(A::TYPE, id, use_snapshot)
            .await
            .map_err(map_sqlx)?;
        let mut context = PgContext {
            aggregate_id: id.to_owned(),
            aggregate: A::default(),
            sequence: 0,
            snapshot_sequence: 0,
        };
        if let Some((0, sequence, _, payload)) = rows.first() {
            match serde_json::from_value::<A>(payload.clone()) {
                Ok(aggregate) => {
                    context.aggregate = aggregate;
                    context.sequence = u64::try_from(*sequence).unwrap_or(0);
                    context.snapshot_sequence = context.sequence;
                    rows.remove(0);
                }
                Err(e) => {
                    // The aggregate's shape changed since the snapshot: fold everything.
                    tracing::warn!(aggregate = A::TYPE, id, error = %e, "snapshot unreadable; replaying the stream");
                    rows = self.load_rows(A::TYPE, id, false).await.map_err(map_sqlx)?;
                }
            }
        }
        for (_, sequence, _, payload) in rows {
            let event: A::Event = serde_json::from_value(payload)
                .map_err(|e| AggregateError::DeserializationError(Box::new(e)))?;
            context.aggregate.apply(event);
            context.sequence = u64::try_from(sequence).unwrap_or(context.sequence);
        }
        Ok(context)
    }

    async fn append<A: Aggregate>(
        &self,
        events: Vec<A::Event>,
        context: PgContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        if events.is_empty() {
            return Ok(vec![]);
        }
        let first = context.sequence + 1;
        let Columns {
            sequences,
            types,
            versions,
            payloads,
            metadatas,
            mut envelopes,
        } = Columns::of(&context.aggregate_id, first, events, &metadata)?;
        let last = first + envelopes.len() as u64 - 1;
        let snapshot_due = self
            .snapshots
            .interval(A::TYPE)
            .is_some_and(|every| last - context.snapshot_sequence >= every);
        let query = if snapshot_due {
            APPEND_WITH_SNAPSHOT
        } else {
            APPEND
        };
        let mut q = sqlx::query_as::<_, (i64, i64)>(query)
            .bind(A::TYPE)
            .bind(&context.aggregate_id)
            .bind(&sequences)
            .bind(&types)
            .bind(&versions)
            .bind(&payloads)
            .bind(&metadatas);
        if snapshot_due {
            // The sink applied the events during `handle`: the aggregate is the post-command state.
            let snapshot = serde_json::to_value(&context.aggregate)
                .map_err(|e| AggregateError::UnexpectedError(Box::new(e)))?;
            q = q
                .bind(i64::try_from(last).unwrap_or(i64::MAX))
                .bind(snapshot);
        }
        let positions = q.fetch_all(&self.pool).await.map_err(map_sqlx)?;
        for (envelope, (_, position)) in envelopes.iter_mut().zip(positions) {
            envelope
                .metadata
                .insert("position".to_owned(), position.to_string());
        }
        Ok(envelopes)
    }
}

impl<A> EventStore<A> for PgStore
where
    A: Aggregate + Send + Sync,
{
    type AC = PgContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        let rows = sqlx::query_as::<_, (i64, Value, Value)>(
            "SELECT sequence, payload, metadata FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(aggregate_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_sqlx)?;
        rows.into_iter()
            .map(|(sequence, payload, metadata)| {
                Ok(EventEnvelope {
                    aggregate_id: aggregate_id.to_owned(),
                    sequence: usize::try_from(sequence).unwrap_or(0),
                    payload: serde_json::from_value(payload)
                        .map_err(|e| AggregateError::DeserializationError(Box::new(e)))?,
                    metadata: serde_json::from_value(metadata)
                        .map_err(|e| AggregateError::DeserializationError(Box::new(e)))?,
                })
            })
            .collect()
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<PgContext<A>, AggregateError<A::Error>> {
        self.load(aggregate_id).await
    }

    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: PgContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        self.append(events, context, metadata).await
    }
}

/// Folds a stream from its first event, ignoring snapshots: the reference a snapshot must equal.
pub async fn fold_from_events<A: Aggregate>(
    store: &PgStore,
    id: &str,
) -> Result<(A, u64), AggregateError<A::Error>> {
    let rows = store
        .load_rows(A::TYPE, id, false)
        .await
        .map_err(map_sqlx)?;
    let mut aggregate = A::default();
    let mut version = 0;
    for (_, sequence, _, payload) in rows {
        aggregate.apply(
            serde_json::from_value(payload)
                .map_err(|e| AggregateError::DeserializationError(Box::new(e)))?,
        );
        version = u64::try_from(sequence).unwrap_or(version);
    }
    Ok((aggregate, version))
}

/// Whether a database error means the database could not be reached or is going away.
pub fn is_connection_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

fn map_sqlx<E: std::error::Error>(error: sqlx::Error) -> AggregateError<E> {
    if let sqlx::Error::Database(db) = &error
        && db.code().as_deref() == Some("23505")
    {
        return AggregateError::AggregateConflict;
    }
    if is_connection_error(&error) {
        return AggregateError::DatabaseConnectionError(Box::new(error));
    }
    AggregateError::UnexpectedError(Box::new(error))
}
