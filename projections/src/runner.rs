//! Applying delivered events to a read model: once each, in order per aggregate.
//!
//! The read model's rows and the projection's offset for the event's aggregate commit in one
//! transaction, so a redelivered event is recognised and skipped. An event whose predecessor
//! is not in yet (two workers share a consumer, or a redelivery overtook it) is handed back to
//! be delivered again; the bus decides when.

use std::collections::HashMap;
use std::future::Future;

use sqlx::{PgConnection, PgPool};

use crate::event::StoredEvent;

/// Why an event could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// Postgres failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The event's payload is not what the projection reads.
    #[error("event unreadable: {0}")]
    Unreadable(String),
    /// The transaction the event was applied in failed as a whole.
    #[error("its batch failed: {0}")]
    Batch(String),
    /// Another worker applied an event of the same aggregate at the same moment.
    #[error("another worker moved this aggregate on; deliver again")]
    Raced,
    /// A rebuild of the same read model is under way (in this process or another).
    #[error("a rebuild of {0} is already running; wait for it to finish")]
    RebuildRunning(&'static str),
}

/// A read model fed by events of some aggregate types.
pub trait Projection: Send + Sync + 'static {
    /// Stable name: its consumer, offsets and dead letters are keyed on it.
    const NAME: &'static str;

    /// The aggregate types it reads, every event of each (so that order can be checked).
    const AGGREGATE_TYPES: &'static [&'static str];

    /// Writes the event's effect inside the caller's transaction.
    fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send;

    /// Writes several events' effects, in order, inside the caller's transaction. The default
    /// applies them one by one; a projection may do it in fewer statements.
    fn apply_all(
        &self,
        conn: &mut PgConnection,
        events: &[&StoredEvent],
    ) -> impl Future<Output = Result<(), ProjectionError>> + Send {
        async move {
            for event in events {
                self.apply(conn, event).await?;
            }
            Ok(())
        }
    }
}

/// What became of a delivered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its effect is written.
    Applied,
    /// It was applied before: nothing to do.
    AlreadyApplied,
    /// An earlier event of its aggregate is not applied yet; deliver it again later.
    TooEarly,
}

/// Starts a transaction that writes `projection`'s read model. It holds the projection's
/// advisory lock in shared mode, so writers never wait for each other, while a rebuild's swap
/// (which takes it exclusively, before touching any table) waits for the writers in flight
/// and holds new ones back until the swapped tables are in place. Without it a writer holding
/// offset rows and waiting for a table the swap has locked, while the swap waits for those
/// rows, would deadlock.
pub(crate) async fn begin_writing(
    pool: &PgPool,
    projection: &str,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock_shared(hashtext('projection:' || $1))")
        .bind(projection)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Starts a rebuild's swap: waits for `projection`'s writers in flight, holds new ones back.
pub(crate) async fn begin_swapping(
    pool: &PgPool,
    projection: &str,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('projection:' || $1))")
        .bind(projection)
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Applies one event exactly once, or says why not.
pub async fn apply<P: Projection>(
    pool: &PgPool,
    projection: &P,
    event: &StoredEvent,
) -> Result<Outcome, ProjectionError> {
    let mut tx = begin_writing(pool, P::NAME).await?;
    let outcome = apply_in(&mut tx, projection, event).await?;
    if outcome == Outcome::Applied {
        tx.commit().await?;
    }
    Ok(outcome)
}

/// Applies a batch of events in one transaction (one disk flush for the batch). The fast way
/// reads the batch's offsets at once and writes them at once; if any event fails or another
/// worker raced it, the batch is applied again the careful way, each event behind its own
/// savepoint, so that a failing event is rolled back alone and reported while the others
/// commit. An error here means the whole batch failed.
#[tracing::instrument(skip_all, fields(projection = P::NAME, events = events.len()))]
pub async fn apply_batch<P: Projection>(
    pool: &PgPool,
    projection: &P,
    events: &[StoredEvent],
) -> Result<Vec<Result<Outcome, ProjectionError>>, sqlx::Error> {
    match apply_together(pool, projection, events).await {
        Ok(Some(outcomes)) => return Ok(outcomes.into_iter().map(Ok).collect()),
        Ok(None) => {}
        Err(e) if e.as_database_error().is_none() => return Err(e),
        Err(e) => tracing::debug!(error = %e, "batch refused; applying it event by event"),
    }
    apply_one_by_one(pool, projection, events).await
}

type Key = (String, String);

/// The fast way: `None` when an event failed or a race was lost (nothing is written then).
async fn apply_together<P: Projection>(
    pool: &PgPool,
    projection: &P,
    events: &[StoredEvent],
) -> Result<Option<Vec<Outcome>>, sqlx::Error> {
    let mut tx = begin_writing(pool, P::NAME).await?;
    let (types, ids): (Vec<&str>, Vec<&str>) = events
        .iter()
        .map(|e| (e.aggregate_type.as_str(), e.aggregate_id.as_str()))
        .unzip();
    let known: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, last_sequence FROM projection_offsets
         WHERE projection = $1
           AND (aggregate_type, aggregate_id) IN (SELECT * FROM UNNEST($2::text[], $3::text[]))
         FOR UPDATE",
    )
    .bind(P::NAME)
    .bind(&types)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let known: HashMap<Key, i64> = known.into_iter().map(|(t, i, s)| ((t, i), s)).collect();
    let mut moved: HashMap<Key, (i64, i64)> = HashMap::new();
    let mut outcomes = Vec::with_capacity(events.len());
    let mut due = Vec::with_capacity(events.len());
    for event in events {
        let key = (event.aggregate_type.clone(), event.aggregate_id.clone());
        let last = moved
            .get(&key)
            .map(|(sequence, _)| *sequence)
            .or_else(|| known.get(&key).copied())
            .unwrap_or(0);
        let outcome = if event.sequence <= last {
            Outcome::AlreadyApplied
        } else if event.sequence > last + 1 {
            Outcome::TooEarly
        } else {
            moved.insert(key, (event.sequence, event.position));
            due.push(event);
            Outcome::Applied
        };
        outcomes.push(outcome);
    }
    if projection.apply_all(&mut tx, &due).await.is_err() {
        return Ok(None);
    }
    // Known rows are locked above; a new row inserted meanwhile by another worker is a race.
    let (existing, new): (Vec<_>, Vec<_>) =
        moved.into_iter().partition(|(k, _)| known.contains_key(k));
    write_offsets(&mut tx, P::NAME, &existing, "UPDATE").await?;
    if write_offsets(&mut tx, P::NAME, &new, "INSERT").await? != new.len() as u64 {
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(outcomes))
}

/// Moves the offsets of rows that exist (`UPDATE`) or are new (`INSERT`); returns how many.
async fn write_offsets(
    conn: &mut PgConnection,
    projection: &str,
    moved: &[(Key, (i64, i64))],
    how: &str,
) -> Result<u64, sqlx::Error> {
    if moved.is_empty() {
        return Ok(0);
    }
    let sql = if how == "UPDATE" {
        "UPDATE projection_offsets o SET last_sequence = u.s, last_position = u.p
         FROM UNNEST($2::text[], $3::text[], $4::bigint[], $5::bigint[]) AS u(t, i, s, p)
         WHERE o.projection = $1 AND o.aggregate_type = u.t AND o.aggregate_id = u.i"
    } else {
        "INSERT INTO projection_offsets (projection, aggregate_type, aggregate_id, last_sequence, last_position)
         SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::bigint[], $5::bigint[])
         ON CONFLICT DO NOTHING"
    };
    let done = sqlx::query(sql)
        .bind(projection)
        .bind(
            moved
                .iter()
                .map(|((t, _), _)| t.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(
            moved
                .iter()
                .map(|((_, i), _)| i.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(moved.iter().map(|(_, (s, _))| *s).collect::<Vec<_>>())
        .bind(moved.iter().map(|(_, (_, p))| *p).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// The careful way: each event behind its own savepoint.
async fn apply_one_by_one<P: Projection>(
    pool: &PgPool,
    projection: &P,
    events: &[StoredEvent],
) -> Result<Vec<Result<Outcome, ProjectionError>>, sqlx::Error> {
    let mut tx = begin_writing(pool, P::NAME).await?;
    let mut outcomes = Vec::with_capacity(events.len());
    for event in events {
        let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
        let outcome = apply_in(&mut savepoint, projection, event).await;
        if matches!(outcome, Ok(Outcome::Applied)) {
            savepoint.commit().await?;
        } else {
            savepoint.rollback().await?;
        }
        outcomes.push(outcome);
    }
    tx.commit().await?;
    Ok(outcomes)
}

/// The offset check, the projection's write and the offset's move, on `conn` (inside a
/// transaction the caller commits only for [`Outcome::Applied`]).
async fn apply_in<P: Projection>(
    conn: &mut PgConnection,
    projection: &P,
    event: &StoredEvent,
) -> Result<Outcome, ProjectionError> {
    let last: i64 = sqlx::query_scalar(
        "SELECT last_sequence FROM projection_offsets
         WHERE projection = $1 AND aggregate_type = $2 AND aggregate_id = $3 FOR UPDATE",
    )
    .bind(P::NAME)
    .bind(&event.aggregate_type)
    .bind(&event.aggregate_id)
    .fetch_optional(&mut *conn)
    .await?
    .unwrap_or(0);
    if event.sequence <= last {
        return Ok(Outcome::AlreadyApplied);
    }
    if event.sequence > last + 1 {
        return Ok(Outcome::TooEarly);
    }
    projection.apply(conn, event).await?;
    // Conditional on the offset read above: a worker that applied the same aggregate in the
    // meantime makes this a no-op, and the write is rolled back.
    let moved = sqlx::query(
        "INSERT INTO projection_offsets (projection, aggregate_type, aggregate_id, last_sequence, last_position)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (projection, aggregate_type, aggregate_id) DO UPDATE
         SET last_sequence = EXCLUDED.last_sequence, last_position = EXCLUDED.last_position
         WHERE projection_offsets.last_sequence = $6",
    )
    .bind(P::NAME)
    .bind(&event.aggregate_type)
    .bind(&event.aggregate_id)
    .bind(event.sequence)
    .bind(event.position)
    .bind(last)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if moved != 1 {
        return Err(ProjectionError::Raced);
    }
    Ok(Outcome::Applied)
}

/// The highest event position a projection has applied (0 before any).
pub async fn applied_position(pool: &PgPool, projection: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE(max(last_position), 0) FROM projection_offsets WHERE projection = $1",
    )
    .bind(projection)
    .fetch_one(pool)
    .await
}

/// How many of its tenant's events before the command behind a position [`has_applied`] also
/// checks: a client names the position of its last command, and expects to see the ones it made
/// just before as well (a service defined, then staff assigned to it). Aggregates with parked
/// events are left out: those wait for an operator, not for the projection.
const EARLIER_EVENTS_CHECKED: i64 = 200;

/// Whether a projection has applied every event it reads that the command behind `position`
/// wrote up to that position (all events of one request share its correlation id), and those
/// among the tenant's [`EARLIER_EVENTS_CHECKED`] events before it: once true, a query sees that
/// command's effect and its predecessors'.
pub async fn has_applied<P: Projection>(pool: &PgPool, position: i64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT NOT EXISTS (
             SELECT 1 FROM events target
             JOIN events e ON (e.metadata ->> 'correlation_id') = (target.metadata ->> 'correlation_id')
                 AND e.position <= target.position
             LEFT JOIN projection_offsets o ON o.projection = $2
                 AND o.aggregate_type = e.aggregate_type AND o.aggregate_id = e.aggregate_id
             WHERE target.position = $1 AND e.aggregate_type = ANY($3)
               AND COALESCE(o.last_sequence, 0) < e.sequence)
         AND NOT EXISTS (
             SELECT 1 FROM events target
             CROSS JOIN LATERAL (
                 SELECT e.aggregate_type, e.aggregate_id, e.sequence FROM events e
                  WHERE e.tenant_id = target.tenant_id AND e.position < target.position
                  ORDER BY e.tenant_id DESC, e.position DESC LIMIT $4) earlier
             LEFT JOIN projection_offsets o ON o.projection = $2
                 AND o.aggregate_type = earlier.aggregate_type AND o.aggregate_id = earlier.aggregate_id
             WHERE target.position = $1 AND earlier.aggregate_type = ANY($3)
               AND COALESCE(o.last_sequence, 0) < earlier.sequence
               AND NOT EXISTS (SELECT 1 FROM dead_letters d
                                WHERE d.projection = $2 AND d.aggregate_type = earlier.aggregate_type
                                  AND d.aggregate_id = earlier.aggregate_id))",
    )
    .bind(position)
    .bind(P::NAME)
    .bind(P::AGGREGATE_TYPES)
    .bind(EARLIER_EVENTS_CHECKED)
    .fetch_one(pool)
    .await
}

/// Where a projection stands, for operators and health checks.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Status {
    /// The projection.
    pub name: &'static str,
    /// The event store's last position.
    pub head_position: i64,
    /// The highest position it has applied.
    pub applied_position: i64,
    /// Events of its aggregate types after that position: how far behind it is.
    pub pending_events: i64,
    /// Events it parked.
    pub parked_events: i64,
}

/// A projection's status.
pub async fn status<P: Projection>(pool: &PgPool) -> Result<Status, sqlx::Error> {
    let applied_position = applied_position(pool, P::NAME).await?;
    let (head_position, pending_events, parked_events): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COALESCE(max(position), 0) FROM events),
                (SELECT count(*) FROM events WHERE position > $1 AND aggregate_type = ANY($2)),
                (SELECT count(*) FROM dead_letters WHERE projection = $3)",
    )
    .bind(applied_position)
    .bind(P::AGGREGATE_TYPES)
    .bind(P::NAME)
    .fetch_one(pool)
    .await?;
    Ok(Status {
        name: P::NAME,
        head_position,
        applied_position,
        pending_events,
        parked_events,
    })
}
