//! Rebuilding a read model from the event store, with no downtime and no side effects.
//!
//! The events are folded in memory, aggregate by aggregate, into a fresh table written in bulk
//! (by two writers, while the next pages are read and folded), which gets the live table's
//! indexes only once it is filled (building an index at the end costs a fraction of keeping it
//! up row by row); readers keep using the live table meanwhile. What committed during the scan
//! is then applied to it (found per aggregate by sequence among the transactions from the
//! scan's start horizon on, so nothing committed late is missed) while the live table still
//! serves. The swap holds the worker back, applies the little that arrived since (only
//! transactions above the catch-up's snapshot horizon are read), brings the offsets in line
//! with the fresh rows, writing only those that differ, and then, holding the live table's lock
//! for a moment (its readers wait), renames the fresh table and its indexes into place. Nothing
//! is published: no saga hears of it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::{Aggregate, Booking, BookingEvent};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Mutex, mpsc};
use tokio::task::{JoinError, JoinSet};
use uuid::Uuid;

use crate::Bookings;
use crate::bookings::{self, LIVE, Row};
use crate::event::StoredEvent;
use crate::runner::{Projection, ProjectionError};

/// Events read per round trip.
const PAGE: i64 = 5000;

/// Rows written per statement.
const FLUSH: usize = 1000;

/// How far a rebuild has come.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Events folded so far.
    pub done: u64,
    /// Events to fold (as counted at the start).
    pub total: u64,
    /// Time since the start.
    pub elapsed: Duration,
}

impl Progress {
    /// Events per second so far.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-6)
    }

    /// The time left at the rate so far.
    pub fn eta(&self) -> Duration {
        let left = self.total.saturating_sub(self.done) as f64;
        Duration::from_secs_f64(left / self.rate().max(1e-6))
    }
}

/// What a rebuild did.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rebuilt {
    /// Events folded by the scan, and applied at the swap.
    pub events: u64,
    /// Rows in the new table.
    pub rows: u64,
    /// Wall time.
    pub seconds: f64,
    /// How long of it the live tables were locked (their readers held back), at the swap.
    pub locked: f64,
    /// How long of it the live worker was held back, at the swap (the lock included).
    pub paused: f64,
}

/// The fresh table.
const FRESH: &str = "bookings_view_rebuild";

/// Held for the whole of a rebuild, so that a second one of the same read model (which would
/// drop and refill the same fresh tables) is refused instead of interleaving with it: a
/// session-level advisory lock on a connection of its own, released when it closes.
struct Running(sqlx::PgConnection);

impl Running {
    async fn claim(pool: &PgPool, projection: &'static str) -> Result<Self, ProjectionError> {
        let mut conn = pool.acquire().await?.detach();
        let claimed: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('rebuild:' || $1))")
                .bind(projection)
                .fetch_one(&mut conn)
                .await?;
        if claimed {
            Ok(Self(conn))
        } else {
            Err(ProjectionError::RebuildRunning(projection))
        }
    }

    async fn release(self) {
        use sqlx::Connection;
        let _ = self.0.close().await;
    }
}

/// Rebuilds the bookings read model from the event store; `progress` is told after every page.
pub async fn bookings(
    pool: &PgPool,
    mut progress: impl FnMut(Progress),
) -> Result<Rebuilt, ProjectionError> {
    let running = Running::claim(pool, Bookings::NAME).await?;
    let started = Instant::now();
    let (indexes, total, before) = prepare(pool).await?;
    let scanned = scan(pool, |done| {
        progress(Progress {
            done,
            total,
            elapsed: started.elapsed(),
        });
    })
    .await?;
    build_indexes(pool, &indexes).await?;
    let (horizon, caught_up) = catch_up(pool, before).await?;
    let (late, locked, paused) = swap(pool, &indexes, horizon).await?;
    running.release().await;
    let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {LIVE}"))
        .fetch_one(pool)
        .await?;
    Ok(Rebuilt {
        events: scanned + caught_up + late,
        rows: u64::try_from(rows).unwrap_or(0),
        seconds: started.elapsed().as_secs_f64(),
        locked: locked.as_secs_f64(),
        paused: paused.as_secs_f64(),
    })
}

/// Reads the booking events in aggregate order, folds each booking in memory and hands its row
/// to the writers; returns how many events it folded, once every row is written.
async fn scan(pool: &PgPool, mut progress: impl FnMut(u64)) -> Result<u64, ProjectionError> {
    let mut writers = Writers::start(pool);
    let mut reading = reader(pool).await?;
    let mut fold = Fold::default();
    let mut after = (String::new(), 0i64);
    loop {
        let page: Vec<Event> = sqlx::query_as(
            "SELECT aggregate_id, sequence, position, payload::text FROM events
             WHERE aggregate_type = 'Booking' AND (aggregate_id, sequence) > ($1, $2)
             ORDER BY aggregate_id, sequence LIMIT $3",
        )
        .bind(&after.0)
        .bind(after.1)
        .bind(PAGE)
        .fetch_all(&mut reading)
        .await?;
        let Some((id, sequence, _, _)) = page.last() else {
            break;
        };
        after = (id.clone(), *sequence);
        for event in page {
            fold.fold(event)?;
            if fold.rows.len() >= FLUSH {
                writers.write(std::mem::take(&mut fold.rows)).await?;
            }
        }
        progress(fold.events);
    }
    fold.finish_current()?;
    writers.write(fold.rows).await?;
    writers.finish().await?;
    Ok(fold.events)
}

/// Connections writing the fresh table's rows side by side, each batch on one of them.
const WRITERS: usize = 2;

/// Tasks writing the fold's rows into the fresh table, each on a connection of its own: storing
/// a batch (Postgres parsing each row's JSON is most of the rebuild's work) goes on beside the
/// reading and folding of the next pages, and on both cores. Dropped, they are stopped.
struct Writers {
    rows: mpsc::Sender<Vec<Row>>,
    tasks: JoinSet<Result<(), ProjectionError>>,
}

impl Writers {
    fn start(pool: &PgPool) -> Self {
        let (rows, queue) = mpsc::channel::<Vec<Row>>(2 * WRITERS);
        let queue = Arc::new(Mutex::new(queue));
        let mut tasks = JoinSet::new();
        for _ in 0..WRITERS {
            let (pool, queue) = (pool.clone(), queue.clone());
            tasks.spawn(async move {
                let mut conn = pool.acquire().await?;
                loop {
                    let batch = queue.lock().await.recv().await;
                    let Some(batch) = batch else {
                        return Ok(());
                    };
                    bookings::insert_new_rows(&mut conn, FRESH, &batch).await?;
                }
            });
        }
        Self { rows, tasks }
    }

    /// Queues `rows`, waiting while the writers are behind; fails with a writer's failure.
    async fn write(&mut self, rows: Vec<Row>) -> Result<(), ProjectionError> {
        // A writer ends before the queue closes only on a failure.
        while let Some(ended) = self.tasks.try_join_next() {
            outcome(ended)?;
        }
        if !rows.is_empty() && self.rows.send(rows).await.is_err() {
            // The queue closes early only when every writer has failed.
            while let Some(ended) = self.tasks.join_next().await {
                outcome(ended)?;
            }
            return Err(ProjectionError::Batch(
                "the rebuild's writers stopped".to_owned(),
            ));
        }
        Ok(())
    }

    /// Waits until every queued row is written.
    async fn finish(self) -> Result<(), ProjectionError> {
        let Self { rows, mut tasks } = self;
        drop(rows);
        while let Some(ended) = tasks.join_next().await {
            outcome(ended)?;
        }
        Ok(())
    }
}

/// What a writer came to.
fn outcome(ended: Result<Result<(), ProjectionError>, JoinError>) -> Result<(), ProjectionError> {
    ended.map_err(|e| ProjectionError::Batch(format!("a rebuild writer failed: {e}")))?
}

/// Builds the live table's indexes on the filled fresh table, two at a time (each on a
/// connection of its own), then its statistics.
async fn build_indexes(pool: &PgPool, indexes: &[Index]) -> Result<(), ProjectionError> {
    let lane = |first: usize| async move {
        for index in indexes.iter().skip(first).step_by(2) {
            sqlx::raw_sql(&index.build()).execute(pool).await?;
        }
        Ok::<_, sqlx::Error>(())
    };
    tokio::try_join!(lane(0), lane(1))?;
    sqlx::query(&format!("ANALYZE {FRESH}"))
        .execute(pool)
        .await?;
    Ok(())
}

/// A booking event as the scan reads it: aggregate id, sequence, position, payload (JSON).
type Event = (String, i64, i64, String);

/// The scan's connection, of its own (closed when dropped, its settings never reach the pool):
/// each page is read in the primary key's order whatever the statistics say. A planner that
/// underestimated the booking events (a store grown since it was last analyzed) would sort every
/// remaining event for each page instead, and analyzing the store first takes seconds.
async fn reader(pool: &PgPool) -> Result<PgConnection, ProjectionError> {
    let mut conn = pool.acquire().await?.detach();
    sqlx::raw_sql("SET enable_seqscan = off; SET enable_bitmapscan = off; SET enable_sort = off")
        .execute(&mut conn)
        .await?;
    Ok(conn)
}

/// Creates the fresh table, without indexes; returns the live table's indexes, to be built on
/// it once it is filled, the number of booking events to fold, and the horizon of a snapshot
/// taken before the scan: every event the scan does not see was written by a transaction at or
/// above it (those below it had ended, so every page sees them).
async fn prepare(pool: &PgPool) -> Result<(Vec<Index>, u64, u64), ProjectionError> {
    let mut conn = pool.acquire().await?;
    sqlx::raw_sql(&format!(
        "DROP TABLE IF EXISTS {FRESH};
         CREATE TABLE {FRESH} (LIKE {LIVE} INCLUDING ALL EXCLUDING INDEXES);"
    ))
    .execute(&mut *conn)
    .await?;
    let indexes = Index::of_live(&mut conn).await?;
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Booking'")
            .fetch_one(&mut *conn)
            .await?;
    let before = horizon(&mut conn).await?;
    Ok((indexes, u64::try_from(total).unwrap_or(0), before))
}

/// The horizon of the connection's current snapshot: the oldest transaction still running
/// (every one below it has ended).
async fn horizon(conn: &mut PgConnection) -> Result<u64, ProjectionError> {
    let horizon: String =
        sqlx::query_scalar("SELECT pg_snapshot_xmin(pg_current_snapshot())::text")
            .fetch_one(&mut *conn)
            .await?;
    horizon
        .parse()
        .map_err(|_| ProjectionError::Unreadable(format!("snapshot horizon {horizon:?}")))
}

/// The fold in progress: the booking being folded and the finished rows not yet written.
#[derive(Default)]
struct Fold {
    current: Option<(Uuid, Booking, i64, i64)>,
    rows: Vec<Row>,
    events: u64,
}

impl Fold {
    fn fold(&mut self, (id, sequence, position, payload): Event) -> Result<(), ProjectionError> {
        let id = Uuid::parse_str(&id)
            .map_err(|e| ProjectionError::Unreadable(format!("booking id: {e}")))?;
        let event = decode(&id, sequence, &payload)?;
        if self
            .current
            .as_ref()
            .is_some_and(|(current, ..)| *current != id)
        {
            self.finish_current()?;
        }
        let (_, booking, last, at) = self
            .current
            .get_or_insert_with(|| (id, Booking::default(), 0, 0));
        booking.apply(event);
        (*last, *at) = (sequence, position);
        self.events += 1;
        Ok(())
    }

    fn finish_current(&mut self) -> Result<(), ProjectionError> {
        if let Some((id, booking, version, position)) = self.current.take() {
            self.rows.push(Row::of(id, &booking, version, position)?);
        }
        Ok(())
    }
}

/// An index as the catalog describes it, its table aside.
struct IndexDef {
    name: String,
    unique: bool,
    primary: bool,
    /// The access method and key, as Postgres prints them: `btree (booking_id)`.
    method: String,
}

impl IndexDef {
    /// The indexes of `table`, by name.
    async fn of(conn: &mut PgConnection, table: &str) -> Result<Vec<Self>, ProjectionError> {
        let rows: Vec<(String, bool, bool, String)> = sqlx::query_as(
            "SELECT c.relname::text, i.indisunique, i.indisprimary, pg_get_indexdef(i.indexrelid)
             FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = $1::regclass ORDER BY c.relname",
        )
        .bind(table)
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter()
            .map(|(name, unique, primary, definition)| {
                let method = definition
                    .split_once(" USING ")
                    .map(|(_, method)| method.to_owned())
                    .ok_or_else(|| {
                        ProjectionError::Unreadable(format!("index {name}: {definition}"))
                    })?;
                Ok(Self {
                    name,
                    unique,
                    primary,
                    method,
                })
            })
            .collect()
    }

    /// Whether the two index the same key the same way (on tables of the same columns).
    fn same_as(&self, other: &Self) -> bool {
        (self.unique, self.primary, &self.method) == (other.unique, other.primary, &other.method)
    }
}

/// The statements that give the fresh table's indexes the names their live counterparts
/// (same definition) had, to run once the live table is gone. `LIKE … INCLUDING ALL` names
/// copied indexes after the fresh table; without this each rebuild would change them, and a
/// migration naming one would fail. An index without a counterpart keeps its name.
fn live_names(live: &[IndexDef], fresh: &[IndexDef]) -> String {
    let mut taken = vec![false; live.len()];
    let mut sql = String::new();
    for index in fresh {
        let counterpart = live
            .iter()
            .zip(taken.iter_mut())
            .find(|(l, taken)| !**taken && l.same_as(index));
        if let Some((l, taken)) = counterpart {
            *taken = true;
            if l.name != index.name {
                sql.push_str(&rename_index(&index.name, &l.name));
            }
        }
    }
    sql
}

/// Renames an index (a primary key's or unique constraint's along with it).
fn rename_index(from: &str, to: &str) -> String {
    format!("ALTER INDEX {} RENAME TO {};", quoted(from), quoted(to))
}

/// An index of the live table, built on the fresh one under a name of its own and given the
/// live name at the swap.
struct Index {
    live: IndexDef,
    fresh: String,
}

impl Index {
    /// The live table's indexes, as the catalog has them (migrations may add more).
    async fn of_live(conn: &mut PgConnection) -> Result<Vec<Self>, ProjectionError> {
        Ok(IndexDef::of(conn, LIVE)
            .await?
            .into_iter()
            .enumerate()
            .map(|(n, live)| Self {
                live,
                fresh: format!("{FRESH}_{n}"),
            })
            .collect())
    }

    /// The statements that build it on the fresh table.
    fn build(&self) -> String {
        let (fresh, method) = (quoted(&self.fresh), &self.live.method);
        let unique = if self.live.unique { "UNIQUE " } else { "" };
        let mut sql = format!("CREATE {unique}INDEX {fresh} ON {FRESH} USING {method};");
        if self.live.primary {
            sql.push_str(&format!(
                "ALTER TABLE {FRESH} ADD CONSTRAINT {fresh} PRIMARY KEY USING INDEX {fresh};"
            ));
        }
        sql
    }

    /// The statement that gives it the live name, once the table it replaces is gone.
    fn rename(&self) -> String {
        rename_index(&self.fresh, &self.live.name)
    }
}

/// An identifier, quoted for SQL.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A booking event's payload, read.
fn decode(
    id: &impl std::fmt::Display,
    sequence: i64,
    payload: &str,
) -> Result<BookingEvent, ProjectionError> {
    serde_json::from_str(payload)
        .map_err(|e| ProjectionError::Unreadable(format!("booking {id} #{sequence}: {e}")))
}

/// The booking events after the fresh table's row for their booking, in order, of those
/// written by transactions from `horizon` on.
async fn late_events(conn: &mut PgConnection, horizon: u64) -> Result<Vec<Event>, ProjectionError> {
    // The horizon goes in as a literal, so that the plan is made for it: only the events
    // above it are read (by `events_tail`), not every booking event.
    Ok(sqlx::query_as(&format!(
        "SELECT e.aggregate_id, e.sequence, e.position, e.payload::text FROM events e
         LEFT JOIN {FRESH} f ON f.booking_id::text = e.aggregate_id
         WHERE e.aggregate_type = 'Booking' AND e.tx_id >= '{horizon}'::xid8
           AND e.sequence > COALESCE(f.version, 0)
         ORDER BY e.aggregate_id, e.sequence"
    ))
    .fetch_all(&mut *conn)
    .await?)
}

/// Folds `events` into the fresh table.
async fn apply_late(conn: &mut PgConnection, events: &[Event]) -> Result<(), ProjectionError> {
    for (id, sequence, position, payload) in events {
        let change = decode(id, *sequence, payload)?;
        bookings::apply_to(conn, FRESH, id, *sequence, *position, change).await?;
    }
    Ok(())
}

/// Applies what committed while the scan ran (of the transactions from `before`, the horizon
/// taken before it, on), without locking the live table, so that the swap has only the last
/// moments' events left to apply. Returns the horizon of the snapshot it read (every event it
/// did not see was written by a transaction at or above it) and how many events it applied.
async fn catch_up(pool: &PgPool, before: u64) -> Result<(u64, u64), ProjectionError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        .execute(&mut *tx)
        .await?;
    let horizon = horizon(&mut tx).await?;
    let late = late_events(&mut tx, before).await?;
    apply_late(&mut tx, &late).await?;
    tx.commit().await?;
    // The swap joins the offsets with the fresh rows; planned on a count from before the
    // offsets were written (a new database, a first rebuild), that join can take minutes.
    sqlx::query("ANALYZE projection_offsets")
        .execute(pool)
        .await?;
    Ok((horizon, late.len() as u64))
}

/// Applies what arrived since [`catch_up`], then puts the fresh table and its indexes in place
/// of the live ones and its rows' offsets in place of theirs, in one transaction. The worker is
/// held back from the start; the live table's readers only for the renames at the end (until
/// then they read it and its offsets as committed). Returns how many events it applied, how
/// long it held the live table's lock and how long it held the worker back.
async fn swap(
    pool: &PgPool,
    indexes: &[Index],
    horizon: u64,
) -> Result<(u64, Duration, Duration), ProjectionError> {
    let mut tx = crate::runner::begin_swapping(pool, Bookings::NAME).await?;
    let paused = Instant::now();
    // Each fresh row holds its booking's last folded sequence (`version`).
    let late = late_events(&mut tx, horizon).await?;
    apply_late(&mut tx, &late).await?;
    // Where the live worker was caught up, its offsets are already the fresh rows': only the
    // differences are written (one join of the two, instead of rewriting every offset).
    sqlx::raw_sql(&format!(
        "DELETE FROM projection_offsets WHERE projection = '{live}' AND aggregate_type <> 'Booking';
         WITH fresh AS (
             SELECT booking_id::text AS aggregate_id, version, position FROM {FRESH}
         ), offsets AS (
             SELECT aggregate_id, last_sequence, last_position FROM projection_offsets
             WHERE projection = '{live}' AND aggregate_type = 'Booking'
         ), diff AS (
             SELECT COALESCE(f.aggregate_id, o.aggregate_id) AS aggregate_id, f.version,
                    f.position, o.aggregate_id IS NOT NULL AS had
             FROM fresh f FULL JOIN offsets o ON o.aggregate_id = f.aggregate_id
             WHERE (o.last_sequence, o.last_position) IS DISTINCT FROM (f.version, f.position)
         ), dropped AS (
             DELETE FROM projection_offsets o USING diff d
             WHERE o.projection = '{live}' AND o.aggregate_type = 'Booking'
               AND o.aggregate_id = d.aggregate_id AND d.version IS NULL
         ), changed AS (
             UPDATE projection_offsets o SET last_sequence = d.version, last_position = d.position
             FROM diff d
             WHERE o.projection = '{live}' AND o.aggregate_type = 'Booking'
               AND o.aggregate_id = d.aggregate_id AND d.had AND d.version IS NOT NULL
         )
         INSERT INTO projection_offsets (projection, aggregate_type, aggregate_id, last_sequence, last_position)
         SELECT '{live}', 'Booking', aggregate_id, version, position FROM diff WHERE NOT had;
         DELETE FROM dead_letters WHERE projection = '{live}';",
        live = Bookings::NAME
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!("LOCK TABLE {LIVE} IN ACCESS EXCLUSIVE MODE"))
        .execute(&mut *tx)
        .await?;
    let locked = Instant::now();
    let mut renames = format!(
        "ALTER TABLE {LIVE} RENAME TO bookings_view_replaced;
         ALTER TABLE {FRESH} RENAME TO {LIVE};
         DROP TABLE bookings_view_replaced;"
    );
    for index in indexes {
        renames.push_str(&index.rename());
    }
    sqlx::raw_sql(&renames).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok((late.len() as u64, locked.elapsed(), paused.elapsed()))
}

/// A read model that can be rebuilt event by event into fresh tables: every table it writes
/// is named `<table><suffix>`, the live ones with an empty suffix.
pub trait Rebuild: Projection {
    /// Its tables, as live.
    const TABLES: &'static [&'static str];

    /// Applies one event to the tables with `suffix`, inside the caller's transaction.
    fn apply_in(
        &self,
        conn: &mut PgConnection,
        suffix: &str,
        event: &StoredEvent,
    ) -> impl std::future::Future<Output = Result<(), ProjectionError>> + Send;
}

/// The fresh tables' suffix.
const REBUILDING: &str = "_rebuild";

/// Rebuilds `projection` by replaying its aggregates' events in store order into fresh tables,
/// then swaps them in as `bookings` does, their indexes under the live tables' names. For read
/// models with few rows per event; bookings have their own bulk fold.
pub async fn replay<P: Rebuild>(
    pool: &PgPool,
    projection: &P,
    mut progress: impl FnMut(Progress),
) -> Result<Rebuilt, ProjectionError> {
    let running = Running::claim(pool, P::NAME).await?;
    let started = Instant::now();
    let offsets = format!("{}#rebuild", P::NAME);
    let mut setup = format!("DELETE FROM projection_offsets WHERE projection = '{offsets}';");
    for table in P::TABLES {
        setup.push_str(&format!(
            "DROP TABLE IF EXISTS {table}{REBUILDING};
             CREATE TABLE {table}{REBUILDING} (LIKE {table} INCLUDING ALL);"
        ));
    }
    sqlx::raw_sql(&setup).execute(pool).await?;
    let types: Vec<String> = P::AGGREGATE_TYPES.iter().map(|t| (*t).to_owned()).collect();
    let total: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = ANY($1)")
            .bind(&types)
            .fetch_one(pool)
            .await?;
    let total = u64::try_from(total).unwrap_or(0);
    let (mut done, mut after) = (0u64, 0i64);
    loop {
        let page: Vec<StoredEvent> = sqlx::query_as(
            "SELECT position, COALESCE(event_id::text, '') AS event_id, aggregate_type, aggregate_id,
                    sequence, event_type, event_version, recorded_at, payload, metadata
             FROM events WHERE aggregate_type = ANY($1) AND position > $2
             ORDER BY position LIMIT $3",
        )
        .bind(&types)
        .bind(after)
        .bind(PAGE)
        .fetch_all(pool)
        .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.position;
        let mut tx = pool.begin().await?;
        apply_recorded(&mut tx, projection, &offsets, &page).await?;
        tx.commit().await?;
        done += page.len() as u64;
        progress(Progress {
            done,
            total,
            elapsed: started.elapsed(),
        });
    }
    let (caught_up, locked) = swap_tables(pool, projection, &offsets).await?;
    running.release().await;
    let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {}", P::TABLES[0]))
        .fetch_one(pool)
        .await?;
    Ok(Rebuilt {
        events: done + caught_up,
        rows: u64::try_from(rows).unwrap_or(0),
        seconds: started.elapsed().as_secs_f64(),
        locked: locked.as_secs_f64(),
        // Its tables are locked as soon as the worker is held back.
        paused: locked.as_secs_f64(),
    })
}

/// Applies events to the fresh tables and records each one's offset.
async fn apply_recorded<P: Rebuild>(
    conn: &mut PgConnection,
    projection: &P,
    offsets: &str,
    events: &[StoredEvent],
) -> Result<(), ProjectionError> {
    for event in events {
        projection.apply_in(conn, REBUILDING, event).await?;
        sqlx::query(
            "INSERT INTO projection_offsets (projection, aggregate_type, aggregate_id, last_sequence, last_position)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (projection, aggregate_type, aggregate_id) DO UPDATE
             SET last_sequence = EXCLUDED.last_sequence, last_position = EXCLUDED.last_position",
        )
        .bind(offsets)
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .bind(event.sequence)
        .bind(event.position)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Locks the live tables, applies what committed since the scan (per aggregate, by
/// sequence), and renames the fresh tables and offsets into place, in one transaction.
/// Returns how many events it applied and how long it held the locks.
async fn swap_tables<P: Rebuild>(
    pool: &PgPool,
    projection: &P,
    offsets: &str,
) -> Result<(u64, Duration), ProjectionError> {
    let mut tx = crate::runner::begin_swapping(pool, P::NAME).await?;
    sqlx::query(&format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        P::TABLES.join(", ")
    ))
    .execute(&mut *tx)
    .await?;
    let locked = Instant::now();
    let types: Vec<String> = P::AGGREGATE_TYPES.iter().map(|t| (*t).to_owned()).collect();
    let late: Vec<StoredEvent> = sqlx::query_as(
        "SELECT e.position, COALESCE(e.event_id::text, '') AS event_id, e.aggregate_type,
                e.aggregate_id, e.sequence, e.event_type, e.event_version, e.recorded_at,
                e.payload, e.metadata
         FROM events e
         LEFT JOIN projection_offsets o ON o.projection = $1
             AND o.aggregate_type = e.aggregate_type AND o.aggregate_id = e.aggregate_id
         WHERE e.aggregate_type = ANY($2) AND e.sequence > COALESCE(o.last_sequence, 0)
         ORDER BY e.aggregate_id, e.sequence",
    )
    .bind(offsets)
    .bind(&types)
    .fetch_all(&mut *tx)
    .await?;
    apply_recorded(&mut tx, projection, offsets, &late).await?;
    let mut renames = String::new();
    for table in P::TABLES {
        let live = IndexDef::of(&mut tx, table).await?;
        let fresh = IndexDef::of(&mut tx, &format!("{table}{REBUILDING}")).await?;
        renames.push_str(&format!(
            "ALTER TABLE {table} RENAME TO {table}_replaced;
             ALTER TABLE {table}{REBUILDING} RENAME TO {table};
             DROP TABLE {table}_replaced;"
        ));
        renames.push_str(&live_names(&live, &fresh));
    }
    renames.push_str(&format!(
        "DELETE FROM projection_offsets WHERE projection = '{live}';
         UPDATE projection_offsets SET projection = '{live}' WHERE projection = '{offsets}';
         DELETE FROM dead_letters WHERE projection = '{live}';",
        live = P::NAME
    ));
    sqlx::raw_sql(&renames).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok((late.len() as u64, locked.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(name: &str, unique: bool, method: &str) -> IndexDef {
        IndexDef {
            name: name.to_owned(),
            unique,
            primary: false,
            method: method.to_owned(),
        }
    }

    #[test]
    fn fresh_indexes_take_the_names_of_the_live_ones_defined_alike() {
        let live = [
            IndexDef {
                primary: true,
                ..index("staff_view_pkey", true, "btree (staff_id)")
            },
            index("by_branch", false, "btree (branch_id)"),
            index("by_branch_again", false, "btree (branch_id)"),
            index("by_name", false, "btree (name)"),
        ];
        let fresh = [
            index(
                "staff_view_rebuild_branch_id_idx",
                false,
                "btree (branch_id)",
            ),
            index(
                "staff_view_rebuild_branch_id_idx1",
                false,
                "btree (branch_id)",
            ),
            IndexDef {
                primary: true,
                ..index("staff_view_rebuild_pkey", true, "btree (staff_id)")
            },
            // Unique where the live one is not: no counterpart, so its name stays.
            index("staff_view_rebuild_name_idx", true, "btree (name)"),
            // Already named as its counterpart: nothing to do.
            index("by_name", false, "btree (name)"),
        ];
        assert_eq!(
            live_names(&live, &fresh),
            "ALTER INDEX \"staff_view_rebuild_branch_id_idx\" RENAME TO \"by_branch\";\
             ALTER INDEX \"staff_view_rebuild_branch_id_idx1\" RENAME TO \"by_branch_again\";\
             ALTER INDEX \"staff_view_rebuild_pkey\" RENAME TO \"staff_view_pkey\";"
        );
    }
}
