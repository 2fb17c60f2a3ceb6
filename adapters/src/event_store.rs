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
//! * Aggregates stay in memory between commands. A load of a cached stream reads only the
//!   events appended since; right after this process appended to a stream, or for a stream
//!   declared new, the cached state is trusted without any read. That is safe because an
//!   append from a stale state conflicts on the stream's sequence (the command is then decided
//!   again), and the executor re-checks refusals and no-ops decided on trusted state. A
//!   stream a command only reads (the tenant, for a booking) may be taken from the cache as
//!   last seen, under a guard: the append happens only if that stream is still at the version
//!   the command saw (see `append.rs`).

use std::any::Any;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::append::{DueSnapshot, Guard, Positions, Row, Write, Written, append};
use crate::appends::Appends;
use commands::{AppendTogether, CommandError, CommandMeta, Trust, Versioned};
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

    /// Staff calendars and tenants grow without end; bookings stay short. A staff snapshot
    /// holds the whole calendar (hundreds of entries), so it is taken rarely: aggregates stay
    /// cached between commands, and a cold load reads at most 200 events after it.
    pub fn standard() -> Self {
        Self::default().with("Staff", 200).with("Tenant", 50)
    }

    /// Whether streams of this type get snapshots at all.
    fn covers(&self, aggregate_type: &str) -> bool {
        self.every.contains_key(aggregate_type)
    }

    /// After how many events this stream gets its next snapshot: the type's interval, less up
    /// to a quarter of it, the same for the stream every time. Streams that grow in step (a
    /// salon's staff booked in turn) would otherwise all write their snapshots, the largest
    /// rows of the store, within a few commands of each other, and hold up every command
    /// around them.
    fn interval(&self, aggregate_type: &str, aggregate_id: &str) -> Option<u64> {
        let every = *self.every.get(aggregate_type)?;
        Some(every - stable_hash(aggregate_id) % (every / 4 + 1))
    }
}

/// FNV-1a: the same value in every process, so every instance snapshots a stream at the same
/// points.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The Postgres event store.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    snapshots: SnapshotPolicy,
    cache: Arc<AggregateCache>,
    appends: Appends,
}

/// An aggregate as last seen by this process.
struct CacheEntry<A> {
    aggregate: Arc<A>,
    sequence: u64,
    snapshot_sequence: u64,
}

/// A cached aggregate of any type, and whether the next load may use it without a read.
struct Slot {
    /// Set by our own append or by `assume_new`; good for one load.
    trusted: bool,
    entry: Box<dyn Any + Send + Sync>,
}

type CacheKey = (&'static str, String);

/// Aggregates by stream, bounded: when full it starts over (every entry can be re-read).
#[derive(Default)]
struct AggregateCache {
    slots: Mutex<HashMap<CacheKey, Slot>>,
}

impl std::fmt::Debug for AggregateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AggregateCache").finish_non_exhaustive()
    }
}

const CACHE_CAPACITY: usize = 20_000;

impl AggregateCache {
    /// The cached state and whether it may be trusted; trust is used up by this call.
    fn take<A: Aggregate + 'static>(&self, id: &str) -> Option<(CacheEntry<A>, bool)> {
        let mut slots = self.slots.lock().ok()?;
        let slot = slots.get_mut(&(A::TYPE, id.to_owned()))?;
        let trusted = std::mem::replace(&mut slot.trusted, false);
        let entry = slot.entry.downcast_ref::<CacheEntry<A>>()?;
        Some((
            CacheEntry {
                aggregate: entry.aggregate.clone(),
                sequence: entry.sequence,
                snapshot_sequence: entry.snapshot_sequence,
            },
            trusted,
        ))
    }

    fn put<A: Aggregate + Send + Sync + 'static>(
        &self,
        id: &str,
        entry: CacheEntry<A>,
        trusted: bool,
    ) {
        if let Ok(mut slots) = self.slots.lock() {
            if slots.len() >= CACHE_CAPACITY {
                slots.clear();
            }
            slots.insert(
                (A::TYPE, id.to_owned()),
                Slot {
                    trusted,
                    entry: Box::new(entry),
                },
            );
        }
    }

    /// The cached state and its sequence, leaving its trust as it is.
    fn peek<A: Aggregate + Clone + 'static>(&self, id: &str) -> Option<(A, u64)> {
        let (aggregate, sequence) = {
            let slots = self.slots.lock().ok()?;
            let entry = slots
                .get(&(A::TYPE, id.to_owned()))?
                .entry
                .downcast_ref::<CacheEntry<A>>()?;
            (entry.aggregate.clone(), entry.sequence)
        };
        Some((A::clone(&aggregate), sequence))
    }

    fn distrust(&self, aggregate_type: &'static str, id: &str) {
        if let Ok(mut slots) = self.slots.lock()
            && let Some(slot) = slots.get_mut(&(aggregate_type, id.to_owned()))
        {
            slot.trusted = false;
        }
    }

    fn forget(&self, aggregate_type: &'static str, id: &str) {
        if let Ok(mut slots) = self.slots.lock() {
            slots.remove(&(aggregate_type, id.to_owned()));
        }
    }
}

/// An aggregate as loaded, with the stream position it was loaded at.
#[derive(Debug)]
pub struct PgContext<A> {
    aggregate_id: String,
    aggregate: A,
    sequence: u64,
    snapshot_sequence: u64,
    verified: bool,
}

impl<A: Aggregate> AggregateContext<A> for PgContext<A> {
    fn aggregate(&mut self) -> &mut A {
        &mut self.aggregate
    }
}

impl<A> PgContext<A> {
    /// Records an append that ended at `last`, with or without a snapshot there.
    fn advance_to(&mut self, last: u64, snapshotted: bool) {
        self.sequence = last;
        if snapshotted {
            self.snapshot_sequence = last;
        }
    }
}

impl<A> Versioned for PgContext<A> {
    fn version(&self) -> u64 {
        self.sequence
    }

    fn is_verified(&self) -> bool {
        self.verified
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

/// A command's events as rows to insert, and as envelopes.
struct Columns<A: Aggregate> {
    rows: Vec<Row>,
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
            rows: Vec::with_capacity(events.len()),
            envelopes: Vec::with_capacity(events.len()),
        };
        for (offset, event) in (0u64..).zip(events) {
            let sequence = first + offset;
            let mut meta = metadata.clone();
            meta.insert("event_id".to_owned(), Uuid::now_v7().to_string());
            columns.rows.push(Row {
                aggregate_type: A::TYPE,
                aggregate_id: aggregate_id.to_owned(),
                sequence: i64::try_from(sequence).unwrap_or(i64::MAX),
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload: serde_json::to_value(&event).map_err(unexpected)?,
                metadata: serde_json::to_value(&meta).map_err(unexpected)?,
            });
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
        Self {
            pool,
            snapshots,
            cache: Arc::default(),
            appends: Appends::default(),
        }
    }

    /// What it signals after each committed append (to wake the relay).
    pub fn appends(&self) -> &Appends {
        &self.appends
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

    /// A cached aggregate as trusted, or brought up to date with the events since; else a
    /// full load.
    async fn load<A: Aggregate + Clone + 'static>(
        &self,
        id: &str,
    ) -> Result<PgContext<A>, AggregateError<A::Error>> {
        let Some((cached, trusted)) = self.cache.take::<A>(id) else {
            let context = self.load_from_snapshot::<A>(id).await?;
            self.remember(&context, false);
            return Ok(context);
        };
        let mut context = PgContext {
            aggregate_id: id.to_owned(),
            aggregate: A::clone(&cached.aggregate),
            sequence: cached.sequence,
            snapshot_sequence: cached.snapshot_sequence,
            verified: !trusted,
        };
        if trusted {
            return Ok(context);
        }
        let rows = sqlx::query_as::<_, (i64, Value)>(
            "SELECT sequence, payload FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence > $3 ORDER BY sequence",
        )
        .bind(A::TYPE)
        .bind(id)
        .bind(i64::try_from(cached.sequence).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(map_sqlx)?;
        if !rows.is_empty() {
            fold(&mut context.aggregate, &mut context.sequence, rows)?;
            self.remember(&context, false);
        }
        Ok(context)
    }

    fn remember<A: Aggregate + Clone + 'static>(&self, context: &PgContext<A>, trusted: bool) {
        let entry = CacheEntry {
            aggregate: Arc::new(context.aggregate.clone()),
            sequence: context.sequence,
            snapshot_sequence: context.snapshot_sequence,
        };
        self.cache.put(&context.aggregate_id, entry, trusted);
    }

    async fn load_from_snapshot<A: Aggregate>(
        &self,
        id: &str,
    ) -> Result<PgContext<A>, AggregateError<A::Error>> {
        let use_snapshot = self.snapshots.covers(A::TYPE);
        let mut rows = self
            .load_rows(A::TYPE, id, use_snapshot)
            .await
            .map_err(map_sqlx)?;
        let mut context = PgContext {
            aggregate_id: id.to_owned(),
            aggregate: A::default(),
            sequence: 0,
            snapshot_sequence: 0,
            verified: true,
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
        let events = rows
            .into_iter()
            .map(|(_, sequence, _, payload)| (sequence, payload));
        fold(&mut context.aggregate, &mut context.sequence, events)?;
        Ok(context)
    }

    /// Whether the append that ends at `last` should also write a snapshot.
    fn snapshot_due<A: Aggregate>(&self, context: &PgContext<A>, last: u64) -> bool {
        self.snapshots
            .interval(A::TYPE, &context.aggregate_id)
            .is_some_and(|every| last - context.snapshot_sequence >= every)
    }

    /// The snapshot row an append ending at `last` writes, if one is due; the sink applied the
    /// events during `handle`, so the aggregate is the post-command state.
    fn due_snapshot<A: Aggregate>(
        &self,
        context: &PgContext<A>,
        last: u64,
    ) -> Result<Option<DueSnapshot>, serde_json::Error> {
        if !self.snapshot_due(context, last) {
            return Ok(None);
        }
        let payload = serde_json::to_value(&context.aggregate)?;
        Ok(Some(DueSnapshot {
            aggregate_type: A::TYPE,
            aggregate_id: context.aggregate_id.clone(),
            last_sequence: i64::try_from(last).unwrap_or(i64::MAX),
            payload,
        }))
    }

    async fn append<A: Aggregate + Clone + 'static>(
        &self,
        events: Vec<A::Event>,
        mut context: PgContext<A>,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<EventEnvelope<A>>, AggregateError<A::Error>> {
        if events.is_empty() {
            return Ok(vec![]);
        }
        let first = context.sequence + 1;
        let Columns {
            rows,
            mut envelopes,
        } = Columns::of(&context.aggregate_id, first, events, &metadata)?;
        let last = first + envelopes.len() as u64 - 1;
        let snapshot = self
            .due_snapshot(&context, last)
            .map_err(|e| AggregateError::UnexpectedError(Box::new(e)))?;
        let snapshotted = snapshot.is_some();
        let write = Write {
            rows,
            snapshots: snapshot.into_iter().collect(),
            guard: None,
        };
        let positions = match append(&self.pool, &write).await.map_err(map_sqlx) {
            Ok(Written::Appended(positions)) => positions,
            Ok(Written::GuardMoved) => return Err(AggregateError::AggregateConflict),
            Err(e) => {
                // Whatever we held is stale or unknown now: read it afresh next time.
                self.cache.forget(A::TYPE, &context.aggregate_id);
                return Err(e);
            }
        };
        stamp(&mut envelopes, &positions);
        context.advance_to(last, snapshotted);
        self.appends.committed();
        // Our append proves this is the stream's state: the next command may skip the read.
        self.keep(context, true);
        Ok(envelopes)
    }

    /// Caches an aggregate after its append, without copying it.
    fn keep<A: Aggregate + 'static>(&self, context: PgContext<A>, trusted: bool) {
        let entry = CacheEntry {
            aggregate: Arc::new(context.aggregate),
            sequence: context.sequence,
            snapshot_sequence: context.snapshot_sequence,
        };
        self.cache.put(&context.aggregate_id, entry, trusted);
    }
}

/// A failed append as the use cases see it.
fn command_error(error: sqlx::Error) -> CommandError {
    match map_sqlx::<CommandError>(error) {
        AggregateError::AggregateConflict => CommandError::Conflict,
        AggregateError::DatabaseConnectionError(e) => CommandError::Unavailable(e.to_string()),
        other => CommandError::Internal(other.to_string()),
    }
}

/// Stamps each envelope with the position its row was given.
fn stamp<A: Aggregate>(envelopes: &mut [EventEnvelope<A>], positions: &Positions) {
    for envelope in envelopes {
        let key = (
            A::TYPE.to_owned(),
            envelope.aggregate_id.clone(),
            i64::try_from(envelope.sequence).unwrap_or(i64::MAX),
        );
        if let Some(position) = positions.get(&key) {
            envelope
                .metadata
                .insert("position".to_owned(), position.to_string());
        }
    }
}

impl<A, B> AppendTogether<A, B> for PgStore
where
    A: Aggregate + Clone + 'static,
    B: Aggregate + Clone + 'static,
{
    async fn append_together(
        &self,
        (mut context_a, events_a): (PgContext<A>, Vec<A::Event>),
        (mut context_b, events_b): (PgContext<B>, Vec<B::Event>),
        guard: Option<&commands::Guard>,
        metadata: &CommandMeta,
    ) -> Result<(Vec<EventEnvelope<A>>, Vec<EventEnvelope<B>>), CommandError> {
        let meta = metadata.to_map();
        let internal = |e: AggregateError<CommandError>| CommandError::Internal(e.to_string());
        let a = Columns::<A>::of::<CommandError>(
            &context_a.aggregate_id,
            context_a.sequence + 1,
            events_a,
            &meta,
        )
        .map_err(internal)?;
        let b = Columns::<B>::of::<CommandError>(
            &context_b.aggregate_id,
            context_b.sequence + 1,
            events_b,
            &meta,
        )
        .map_err(internal)?;
        let last_a = context_a.sequence + a.rows.len() as u64;
        let last_b = context_b.sequence + b.rows.len() as u64;
        let unreadable = |e: serde_json::Error| CommandError::Internal(format!("snapshot: {e}"));
        let (snapshot_a, snapshot_b) = (
            self.due_snapshot(&context_a, last_a).map_err(unreadable)?,
            self.due_snapshot(&context_b, last_b).map_err(unreadable)?,
        );
        let (snapshotted_a, snapshotted_b) = (snapshot_a.is_some(), snapshot_b.is_some());
        let write = Write {
            rows: a.rows.into_iter().chain(b.rows).collect(),
            snapshots: snapshot_a.into_iter().chain(snapshot_b).collect(),
            guard: guard.map(|g| Guard {
                aggregate_type: g.aggregate_type,
                aggregate_id: g.aggregate_id.clone(),
                version: i64::try_from(g.version).unwrap_or(i64::MAX),
            }),
        };
        let positions = match append(&self.pool, &write).await {
            Ok(Written::Appended(positions)) => positions,
            Ok(Written::GuardMoved) => {
                if let Some(g) = guard {
                    self.cache.forget(g.aggregate_type, &g.aggregate_id);
                }
                return Err(CommandError::Outdated);
            }
            Err(e) => {
                self.cache.forget(A::TYPE, &context_a.aggregate_id);
                self.cache.forget(B::TYPE, &context_b.aggregate_id);
                return Err(command_error(e));
            }
        };
        self.appends.committed();
        let (mut envelopes_a, mut envelopes_b) = (a.envelopes, b.envelopes);
        stamp(&mut envelopes_a, &positions);
        stamp(&mut envelopes_b, &positions);
        context_a.advance_to(last_a, snapshotted_a);
        context_b.advance_to(last_b, snapshotted_b);
        self.keep(context_a, true);
        self.keep(context_b, true);
        Ok((envelopes_a, envelopes_b))
    }
}

impl Trust for PgStore {
    fn distrust(&self, aggregate_type: &'static str, id: &str) {
        self.cache.distrust(aggregate_type, id);
    }

    fn assume_new<A: Aggregate + Clone + Send + Sync + 'static>(&self, id: &str) {
        let entry = CacheEntry {
            aggregate: Arc::new(A::default()),
            sequence: 0,
            snapshot_sequence: 0,
        };
        self.cache.put(id, entry, true);
    }

    fn last_seen<A: Aggregate + Clone + Send + Sync + 'static>(
        &self,
        id: &str,
    ) -> Option<(A, u64)> {
        self.cache.peek::<A>(id)
    }
}

impl<A> EventStore<A> for PgStore
where
    A: Aggregate + Clone + Send + Sync + 'static,
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
    let events = rows
        .into_iter()
        .map(|(_, sequence, _, payload)| (sequence, payload));
    fold(&mut aggregate, &mut version, events)?;
    Ok((aggregate, version))
}

/// Applies stored events in order, advancing `sequence` to the last one applied.
fn fold<A: Aggregate>(
    aggregate: &mut A,
    sequence: &mut u64,
    events: impl IntoIterator<Item = (i64, Value)>,
) -> Result<(), AggregateError<A::Error>> {
    for (number, payload) in events {
        let event: A::Event = serde_json::from_value(payload)
            .map_err(|e| AggregateError::DeserializationError(Box::new(e)))?;
        aggregate.apply(event);
        *sequence = u64::try_from(number).unwrap_or(*sequence);
    }
    Ok(())
}

/// Whether a database error means the database could not be reached or is going away.
pub fn is_connection_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        // A session cut mid-message (a server stopped at once) reads as a protocol error.
        | sqlx::Error::Protocol(_)
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn streams_of_one_type_get_their_snapshots_at_points_of_their_own() {
        let policy = SnapshotPolicy::standard();
        // Forty staff members hired one after another: ids that differ only at the end.
        let ids: Vec<String> = (0..40u32)
            .map(|n| format!("01a226df-4e68-7682-a6aa-5257{n:08x}"))
            .collect();
        let intervals: Vec<u64> = ids
            .iter()
            .map(|id| policy.interval("Staff", id).expect("staff are snapshotted"))
            .collect();
        assert!(
            intervals.iter().all(|i| (150..=200).contains(i)),
            "{intervals:?}"
        );
        let distinct: BTreeSet<_> = intervals.iter().collect();
        assert!(distinct.len() >= 20, "{intervals:?}");
        assert!(
            intervals.iter().max().unwrap() - intervals.iter().min().unwrap() >= 40,
            "{intervals:?}"
        );

        // A stream keeps its points; a type without snapshots has none; the shortest stays 1.
        assert_eq!(policy.interval("Staff", &ids[0]), Some(intervals[0]));
        assert_eq!(policy.interval("Booking", &ids[0]), None);
        assert!(!policy.covers("Booking"));
        let every_event = SnapshotPolicy::default().with("Staff", 1);
        assert_eq!(every_event.interval("Staff", &ids[0]), Some(1));
    }
}
