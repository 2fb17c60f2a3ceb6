//! The relay: publishes every committed event to JetStream, in order per aggregate, at least
//! once, and exactly once as JetStream sees it (`Nats-Msg-Id` = event id).
//!
//! Why a tail of the events table and not publish-after-commit: a process killed between its
//! commit and its publish would lose the event. Here the table is the outbox.
//!
//! Why `(tx_id, position)` below `pg_snapshot_xmin`: positions are assigned at insert, not at
//! commit, so a transaction can take position 10, commit after the one with 11, and a reader
//! that already moved past 11 would skip 10 for ever. Every transaction older than the oldest
//! one still running has finished, so rows below that horizon can no longer appear behind the
//! cursor; ordering by transaction id first keeps the cursor monotonic.
//!
//! Why an advisory lock: one relay publishes at a time (the others stand by), so publishes and
//! checkpoints never interleave. The checkpoint is written on the connection that holds the
//! lock, so a relay that lost its connection (and with it the lock) cannot advance it.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::{self, stream};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::postgres::{PgListener, PgPool};
use sqlx::{Connection, PgConnection, Row as _};
use tokio::sync::watch;

use crate::appends::{Appends, NOTIFY_CHANNEL};

/// How long a stopping relay keeps publishing what is committed.
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// How long the cursor may run ahead of the stored checkpoint. Writing it after every round
/// cost the leader a statement per round; one a tenth of a second bounds what a crash
/// publishes again (and JetStream drops by `Nats-Msg-Id`) to that much.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// How long an elected relay waits for NATS to answer before it gives up the term.
const NATS_TIMEOUT: Duration = Duration::from_secs(10);

/// How long past [`DRAIN_LIMIT`] a stopping leader may take (a publish to an unreachable NATS
/// waits for its acknowledgement's timeout) before it is stopped where it is.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How long closing the leader's connection may take. A leader stopped where it is may have left
/// a statement the server has not answered (one waiting for a lock); over TLS a graceful close
/// then waits for it. Dropping the connection closes its socket all the same.
const CLOSE_LIMIT: Duration = Duration::from_secs(1);

/// The longest a relay takes to end once asked to stop: draining, the grace after it, and
/// closing the leader's connection.
pub const STOP_LIMIT: Duration = DRAIN_LIMIT
    .saturating_add(STOP_GRACE)
    .saturating_add(CLOSE_LIMIT);

/// The advisory lock key that elects the relay leader ("bkrelay!" as an integer).
const LEADER_LOCK: i64 = 0x626b_7265_6c61_7921;

/// How the relay publishes.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The JetStream stream, `EVENTS`.
    pub stream: String,
    /// Events read and published per round.
    pub batch: i64,
    /// How often to look for events when no notification arrives.
    pub poll_interval: Duration,
    /// JetStream drops a repeated `Nats-Msg-Id` within this window.
    pub duplicate_window: Duration,
    /// Pause after a failed round before the next one.
    pub retry_backoff: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            stream: "EVENTS".to_owned(),
            batch: 1000,
            poll_interval: Duration::from_millis(500),
            duplicate_window: Duration::from_secs(15 * 60),
            retry_backoff: Duration::from_millis(500),
        }
    }
}

/// One event's way to JetStream, from the start of the statement that appended it
/// (`recorded_at`; its commit follows within a statement's time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    /// Until the round that read it began: the round before it still publishing, or an older
    /// transaction still open below it (the horizon).
    pub to_read: Duration,
    /// From that round's read to the event's PubAck: its own message's, or its atomic batch's.
    pub to_ack: Duration,
}

impl Lag {
    /// From the append to the PubAck.
    pub fn total(self) -> Duration {
        self.to_read + self.to_ack
    }
}

/// Called with each published event's [`Lag`], for metrics and benchmarks.
pub type LagObserver = Arc<dyn Fn(Lag) + Send + Sync>;

/// Whom to tell about a round's events, and when the round read them.
#[derive(Clone, Copy)]
struct Observe<'a> {
    observer: &'a LagObserver,
    read_at: DateTime<Utc>,
}

/// Why a relay round failed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Postgres failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// JetStream refused or did not acknowledge a publish.
    #[error("jetstream publish: {0}")]
    Publish(String),
    /// The stream could not be created or updated.
    #[error("jetstream stream: {0}")]
    Stream(String),
}

/// The stream configuration the relay keeps in place.
pub fn stream_config(config: &RelayConfig, atomic: bool) -> stream::Config {
    stream::Config {
        name: config.stream.clone(),
        description: Some(
            "Every event of the bookingd event store, subject per tenant and aggregate".to_owned(),
        ),
        subjects: vec!["events.>".to_owned()],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: config.duplicate_window,
        allow_atomic_publish: atomic,
        ..Default::default()
    }
}

/// Creates the stream, or brings an existing one to our configuration; returns whether it
/// takes atomic batches.
pub async fn ensure_stream(
    js: &jetstream::Context,
    config: &RelayConfig,
) -> Result<bool, RelayError> {
    // The server's version is known once the connection is up (it may still be connecting).
    // A flush waits for as long as the client reconnects, which is for ever while the server
    // is gone: bounded, the relay retries instead.
    tokio::time::timeout(NATS_TIMEOUT, js.client().flush())
        .await
        .map_err(|_| RelayError::Stream(format!("NATS did not answer within {NATS_TIMEOUT:?}")))?
        .map_err(|e| RelayError::Stream(e.to_string()))?;
    let atomic = supports_atomic_batches(js);
    js.create_or_update_stream(stream_config(config, atomic))
        .await
        .map_err(|e| RelayError::Stream(e.to_string()))?;
    Ok(atomic)
}

/// The subject of an event: `events.<tenant_id>.<aggregate_type>.<aggregate_id>`.
pub fn subject(tenant_id: &str, aggregate_type: &str, aggregate_id: &str) -> String {
    format!("events.{tenant_id}.{aggregate_type}.{aggregate_id}")
}

/// One event as published: the stored row, payload and metadata verbatim.
#[derive(Debug, Serialize)]
struct Envelope<'a> {
    event_id: &'a str,
    position: i64,
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    sequence: i64,
    event_type: &'a str,
    event_version: &'a str,
    recorded_at: DateTime<Utc>,
    payload: &'a RawValue,
    metadata: &'a RawValue,
}

/// An event read from the table.
#[derive(Debug)]
struct StoredEvent {
    tx_id: String,
    position: i64,
    recorded_at: DateTime<Utc>,
    aggregate_type: String,
    aggregate_id: String,
    sequence: i64,
    event_type: String,
    event_version: String,
    tenant_id: String,
    event_id: String,
    correlation_id: String,
    payload: Box<RawValue>,
    metadata: Box<RawValue>,
}

const COLUMNS: &str = "tx_id::text AS tx_id, position, recorded_at, aggregate_type, aggregate_id, sequence,
    event_type, event_version, COALESCE(metadata ->> 'tenant_id', '_') AS tenant_id,
    COALESCE(metadata ->> 'event_id', aggregate_type || ':' || aggregate_id || ':' || sequence) AS event_id,
    COALESCE(metadata ->> 'correlation_id', '') AS correlation_id, payload::text AS payload, metadata::text AS metadata";

fn decode(row: &sqlx::postgres::PgRow) -> Result<StoredEvent, sqlx::Error> {
    let raw = |name: &str| -> Result<Box<RawValue>, sqlx::Error> {
        let text: String = row.try_get(name)?;
        RawValue::from_string(text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    };
    Ok(StoredEvent {
        tx_id: row.try_get("tx_id")?,
        position: row.try_get("position")?,
        recorded_at: row.try_get("recorded_at")?,
        aggregate_type: row.try_get("aggregate_type")?,
        aggregate_id: row.try_get("aggregate_id")?,
        sequence: row.try_get("sequence")?,
        event_type: row.try_get("event_type")?,
        event_version: row.try_get("event_version")?,
        tenant_id: row.try_get("tenant_id")?,
        event_id: row.try_get("event_id")?,
        correlation_id: row.try_get("correlation_id")?,
        payload: raw("payload")?,
        metadata: raw("metadata")?,
    })
}

/// The subject, headers and body of one event's message.
fn message(row: &StoredEvent) -> Result<(String, HeaderMap, bytes::Bytes), RelayError> {
    let envelope = Envelope {
        event_id: &row.event_id,
        position: row.position,
        aggregate_type: &row.aggregate_type,
        aggregate_id: &row.aggregate_id,
        sequence: row.sequence,
        event_type: &row.event_type,
        event_version: &row.event_version,
        recorded_at: row.recorded_at,
        payload: &row.payload,
        metadata: &row.metadata,
    };
    let body = serde_json::to_vec(&envelope).map_err(|e| RelayError::Publish(e.to_string()))?;
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", row.event_id.as_str());
    headers.insert("Bookingd-Event-Type", row.event_type.as_str());
    headers.insert("Bookingd-Position", row.position.to_string().as_str());
    headers.insert("Bookingd-Tenant-Id", row.tenant_id.as_str());
    if !row.correlation_id.is_empty() {
        headers.insert("Bookingd-Correlation-Id", row.correlation_id.as_str());
    }
    Ok((
        subject(&row.tenant_id, &row.aggregate_type, &row.aggregate_id),
        headers,
        body.into(),
    ))
}

/// Tells the observer each row's lag, every row acknowledged at `acked_at`: the rows of one
/// atomic batch, whose commit acknowledges them all at once.
fn observe_all(rows: &[StoredEvent], observe: Option<Observe<'_>>, acked_at: DateTime<Utc>) {
    for row in rows {
        observe_one(row, observe, acked_at);
    }
}

/// Tells the observer one row's lag, its PubAck having arrived at `acked_at`.
fn observe_one(row: &StoredEvent, observe: Option<Observe<'_>>, acked_at: DateTime<Utc>) {
    if let Some(Observe { observer, read_at }) = observe {
        observer(Lag {
            to_read: (read_at - row.recorded_at).to_std().unwrap_or_default(),
            to_ack: (acked_at - read_at).to_std().unwrap_or_default(),
        });
    }
}

fn publish_error(error: &PublishError) -> RelayError {
    RelayError::Publish(error.to_string())
}

/// Publishes rows one message each, pipelined (all sent, then all acks awaited); JetStream
/// drops repeats by `Nats-Msg-Id`. Order on the wire is the order of `rows`.
///
/// Each message after the first names the one before it as the stream's last
/// (`Nats-Expected-Last-Msg-Id`). Should the connection drop after a message went out and was
/// lost, a later one sent after the reconnect is refused instead of stored ahead of it, and the
/// round's retry keeps the order. Where the stream's last message is not the one before for a
/// reason that a retry does not change (a repeat, which JetStream drops, followed by a new
/// event; another publisher in between, as `relay republish` beside a running relay), the rows
/// go again one at a time, each acknowledged before the next is sent.
async fn publish_each(
    js: &jetstream::Context,
    rows: &[StoredEvent],
    observe: Option<Observe<'_>>,
) -> Result<(), RelayError> {
    let messages = rows.iter().map(message).collect::<Result<Vec<_>, _>>()?;
    match publish_chained(js, rows, messages).await {
        Ok(acked_at) => {
            for (row, acked_at) in rows.iter().zip(acked_at) {
                observe_one(row, observe, acked_at);
            }
        }
        Err(e) if e.kind() == PublishErrorKind::WrongLastMessageId => {
            for row in rows {
                let (subject, headers, body) = message(row)?;
                js.publish_with_headers(subject, headers, body)
                    .await
                    .map_err(|e| publish_error(&e))?
                    .await
                    .map_err(|e| publish_error(&e))?;
                observe_one(row, observe, Utc::now());
            }
        }
        Err(e) => return Err(publish_error(&e)),
    }
    Ok(())
}

/// Every message sent, each after the first naming its predecessor's event id, then every
/// ack awaited; returns when each ack arrived. The server stores a connection's messages in
/// the order sent and acknowledges them in that order, so awaiting them in turn reads each
/// one's time as it comes.
async fn publish_chained(
    js: &jetstream::Context,
    rows: &[StoredEvent],
    messages: Vec<(String, HeaderMap, bytes::Bytes)>,
) -> Result<Vec<DateTime<Utc>>, PublishError> {
    let mut pending = Vec::with_capacity(messages.len());
    let mut previous: Option<&str> = None;
    for (row, (subject, mut headers, body)) in rows.iter().zip(messages) {
        if let Some(previous) = previous {
            headers.insert("Nats-Expected-Last-Msg-Id", previous);
        }
        previous = Some(&row.event_id);
        pending.push(js.publish_with_headers(subject, headers, body).await?);
    }
    let mut acked_at = Vec::with_capacity(pending.len());
    for ack in pending {
        ack.await?;
        acked_at.push(Utc::now());
    }
    Ok(acked_at)
}

/// Messages per atomic batch (the server allows up to 1,000).
const ATOMIC_BATCH: usize = 500;

/// Fewer messages than this go one by one even where atomic batches are taken: on
/// nats-server 2.15 a batch costs 3 to 5 ms of its own whatever its size (with or without
/// fsync; measured on two-core machines of differing speed), a single message 0.2 to 0.3 ms
/// with `sync_interval: always`; batches pay off only for a backlog.
const ATOMIC_FROM: usize = 24;

/// Whether JetStream refused a batch because one of its `Nats-Msg-Id`s is already stored.
fn is_duplicate_in_batch(error: &PublishError) -> bool {
    let code = std::error::Error::source(error)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
        .map(|e| e.error_code().0);
    code == Some(10201) || error.to_string().contains("duplicate message id")
}

/// Publishes rows as atomic batches (nats-server 2.12 and later), a short run one by one: with
/// `sync_interval: always` the server syncs a batch once instead of once per message. A batch
/// holding an event that is already on the stream (published before a crash, above the
/// checkpoint) is refused whole; it then goes one message at a time, where the repeats are
/// dropped.
async fn publish_batched(
    js: &jetstream::Context,
    rows: &[StoredEvent],
    observe: Option<Observe<'_>>,
) -> Result<(), RelayError> {
    let client = js.client();
    for chunk in rows.chunks(ATOMIC_BATCH) {
        if chunk.len() < ATOMIC_FROM {
            publish_each(js, chunk, observe).await?;
            continue;
        }
        let batch = uuid::Uuid::new_v4().simple().to_string();
        let mut commit = None;
        for (n, row) in (1..).zip(chunk) {
            let (subject, mut headers, body) = message(row)?;
            headers.insert("Nats-Batch-Id", batch.as_str());
            headers.insert("Nats-Batch-Sequence", n.to_string().as_str());
            if n == chunk.len() {
                headers.insert("Nats-Batch-Commit", "1");
                commit = Some(
                    js.publish_with_headers(subject, headers, body)
                        .await
                        .map_err(|e| RelayError::Publish(e.to_string()))?,
                );
            } else {
                client
                    .publish_with_headers(subject, headers, body)
                    .await
                    .map_err(|e| RelayError::Publish(e.to_string()))?;
            }
        }
        let Some(commit) = commit else {
            continue;
        };
        match commit.await {
            Ok(_) => observe_all(chunk, observe, Utc::now()),
            Err(e) if is_duplicate_in_batch(&e) => publish_each(js, chunk, observe).await?,
            Err(e) => return Err(RelayError::Publish(e.to_string())),
        }
    }
    Ok(())
}

async fn publish_all(
    js: &jetstream::Context,
    atomic: bool,
    rows: &[StoredEvent],
    observe: Option<Observe<'_>>,
) -> Result<(), RelayError> {
    if atomic {
        publish_batched(js, rows, observe).await
    } else {
        publish_each(js, rows, observe).await
    }
}

/// Whether the server takes atomic batches (nats-server 2.12 and later).
fn supports_atomic_batches(js: &jetstream::Context) -> bool {
    let version = js.client().server_info().version;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    matches!((parts.next(), parts.next()), (Some(major), Some(minor)) if major > 2 || (major == 2 && minor >= 12))
}

/// The relay process.
#[derive(Clone)]
pub struct Relay {
    pool: PgPool,
    js: jetstream::Context,
    config: RelayConfig,
    observer: Option<LagObserver>,
    local: Option<Appends>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay from `pool` to `js`.
    pub fn new(pool: PgPool, js: jetstream::Context, config: RelayConfig) -> Self {
        Self {
            pool,
            js,
            config,
            observer: None,
            local: None,
        }
    }

    /// Wakes on this process's own appends directly, without waiting for their NOTIFY.
    pub fn with_local_appends(mut self, appends: &Appends) -> Self {
        self.local = Some(appends.clone());
        self
    }

    /// Reports each published event's [`Lag`] to `observer`.
    pub fn with_lag_observer(mut self, observer: LagObserver) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Runs until `shutdown` turns true, or its sender is gone: stands by until elected, then
    /// publishes. Errors end the current term (the lock is released with its connection) and
    /// it tries again.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // The relay runs on a thread of its own: should the task owning the sender be dropped
        // without a word, it must not go on (and `changed` would no longer wait).
        while !*shutdown.borrow() && shutdown.has_changed().is_ok() {
            match self.term(&mut shutdown).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "relay round failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(self.config.retry_backoff) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            }
        }
    }

    /// One term: wait for leadership, then publish until shutdown or an error.
    async fn term(&self, shutdown: &mut watch::Receiver<bool>) -> Result<(), RelayError> {
        // A connection of its own, never returned to the pool: it holds the lock and runs with
        // asynchronous commit for checkpoints (see `Lease`).
        let mut conn = self.pool.acquire().await?.detach();
        loop {
            let elected: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(LEADER_LOCK)
                .fetch_one(&mut conn)
                .await?;
            if elected {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.changed() => return Ok(()),
            }
        }
        let atomic = tokio::select! {
            atomic = ensure_stream(&self.js, &self.config) => atomic?,
            _ = shutdown.changed() => return Ok(()),
        };
        tracing::info!(atomic_batches = atomic, "relay elected leader");
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        let mut lease = Lease::take(conn, atomic).await?;
        if let Some(local) = &self.local {
            local.set_leading_here(true);
        }
        let overdue = overdue(shutdown.clone());
        let result = tokio::select! {
            result = self.lead(&mut lease, &mut listener, shutdown) => result,
            () = overdue => {
                tracing::warn!("relay still publishing after shutdown; stopping it where it is");
                Ok(())
            }
        };
        if let Some(local) = &self.local {
            local.set_leading_here(false);
        }
        // Closing the connection releases the lock at once for a standby (or, where its backend
        // is still busy with a statement, once that ends).
        let _ = tokio::time::timeout(CLOSE_LIMIT, lease.conn.close()).await;
        result
    }

    async fn lead(
        &self,
        lease: &mut Lease,
        listener: &mut PgListener,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), RelayError> {
        let mut local = self.local.as_ref().map(Appends::subscribe);
        loop {
            if let Some(local) = local.as_mut() {
                local.mark_unchanged();
            }
            // A full round means a backlog: keep going. A partial one has caught up with the
            // horizon; what committed since has signalled and is picked up after the wait.
            while self.round(lease).await? >= self.batch_len() {}
            if *shutdown.borrow() {
                return self.drain(lease).await;
            }
            let appended_here = async {
                match local.as_mut() {
                    Some(local) => {
                        if local.changed().await.is_err() {
                            std::future::pending::<()>().await;
                        }
                    }
                    None => std::future::pending().await,
                }
            };
            let save_due = lease.save_due();
            let checkpoint_due = async {
                match save_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = appended_here => {}
                notification = listener.recv() => { notification?; }
                () = checkpoint_due => lease.save().await?,
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.changed() => return self.drain(lease).await,
            }
        }
    }

    /// Publishes what is committed before stopping: rounds until no committed event is left
    /// after the cursor. A transaction anywhere in the cluster can hold the horizon back for a
    /// moment, so an empty round alone does not mean done; after `DRAIN_LIMIT` the rest is left
    /// to the next leader.
    async fn drain(&self, lease: &mut Lease) -> Result<(), RelayError> {
        let deadline = std::time::Instant::now() + DRAIN_LIMIT;
        loop {
            if self.round(lease).await? > 0 {
                continue;
            }
            let left: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM events WHERE (tx_id, position) > ($1::xid8, $2))",
            )
            .bind(&lease.tx_id)
            .bind(lease.position)
            .fetch_one(&mut lease.conn)
            .await?;
            if !left {
                return lease.save().await;
            }
            if std::time::Instant::now() > deadline {
                tracing::warn!(
                    "stopping with committed events unpublished; the next leader publishes them"
                );
                return lease.save().await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn batch_len(&self) -> usize {
        usize::try_from(self.config.batch).unwrap_or(usize::MAX)
    }

    /// Publishes the next batch after the cursor and advances it; returns how many.
    async fn round(&self, lease: &mut Lease) -> Result<usize, RelayError> {
        // Ordered by the columns, qualified: a bare `tx_id` would name the text the select
        // list makes of it, and "1000" sorts before "999".
        let sql = format!(
            "SELECT {COLUMNS} FROM events
             WHERE (tx_id, position) > ($1::xid8, $2) AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY events.tx_id, events.position LIMIT $3"
        );
        let started = std::time::Instant::now();
        let read_at = Utc::now();
        let rows = sqlx::query(&sql)
            .bind(&lease.tx_id)
            .bind(lease.position)
            .bind(self.config.batch)
            .fetch_all(&mut lease.conn)
            .await?;
        let read = started.elapsed();
        let rows = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        let Some(last) = rows.last() else {
            return Ok(0);
        };
        let observe = self
            .observer
            .as_ref()
            .map(|observer| Observe { observer, read_at });
        publish_all(&self.js, lease.atomic, &rows, observe).await?;
        let published = started.elapsed();
        lease.advance(last, rows.len());
        lease.save_if_due().await?;
        tracing::debug!(
            count = rows.len(),
            position = last.position,
            read_us = read.as_micros(),
            publish_us = (published - read).as_micros(),
            checkpoint_us = (started.elapsed() - published).as_micros(),
            "published"
        );
        Ok(rows.len())
    }
}

/// Completes [`DRAIN_LIMIT`] and [`STOP_GRACE`] after `shutdown` turned true or its sender
/// went away.
async fn overdue(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
    tokio::time::sleep(DRAIN_LIMIT + STOP_GRACE).await;
}

/// The leader's term: the connection holding the lock, and the cursor, kept in memory (only the
/// leader moves it) and written to `relay_checkpoint` at most [`CHECKPOINT_EVERY`] after an
/// acknowledged round, and when the term ends.
struct Lease {
    conn: PgConnection,
    atomic: bool,
    tx_id: String,
    position: i64,
    /// Events acknowledged since the checkpoint was last written.
    unsaved: i64,
    saved_at: tokio::time::Instant,
}

impl Lease {
    async fn take(mut conn: PgConnection, atomic: bool) -> Result<Self, RelayError> {
        // A checkpoint lost in a crash only means publishing some events again, which JetStream
        // drops by Nats-Msg-Id: it need not wait for its own fsync.
        sqlx::query("SET synchronous_commit = off")
            .execute(&mut conn)
            .await?;
        sqlx::query("INSERT INTO relay_checkpoint (name, last_tx_id, last_position) VALUES ('relay', '0', 0) ON CONFLICT DO NOTHING")
            .execute(&mut conn)
            .await?;
        let (tx_id, position): (String, i64) = sqlx::query_as(
            "SELECT last_tx_id::text, last_position FROM relay_checkpoint WHERE name = 'relay'",
        )
        .fetch_one(&mut conn)
        .await?;
        Ok(Self {
            conn,
            atomic,
            tx_id,
            position,
            unsaved: 0,
            saved_at: tokio::time::Instant::now(),
        })
    }

    /// Moves the cursor past `last`, the end of an acknowledged round of `count` events.
    fn advance(&mut self, last: &StoredEvent, count: usize) {
        self.tx_id.clone_from(&last.tx_id);
        self.position = last.position;
        self.unsaved += i64::try_from(count).unwrap_or(i64::MAX);
    }

    /// When the checkpoint should be written, if the cursor has moved since.
    fn save_due(&self) -> Option<tokio::time::Instant> {
        (self.unsaved > 0).then(|| self.saved_at + CHECKPOINT_EVERY)
    }

    /// Writes the cursor if it has waited long enough.
    async fn save_if_due(&mut self) -> Result<(), RelayError> {
        match self.save_due() {
            Some(due) if due <= tokio::time::Instant::now() => self.save().await,
            _ => Ok(()),
        }
    }

    /// Writes the cursor to `relay_checkpoint`.
    async fn save(&mut self) -> Result<(), RelayError> {
        if self.unsaved == 0 {
            return Ok(());
        }
        sqlx::query(
            "UPDATE relay_checkpoint SET last_tx_id = $1::xid8, last_position = $2, published = published + $3, updated_at = now()
             WHERE name = 'relay'",
        )
        .bind(&self.tx_id)
        .bind(self.position)
        .bind(self.unsaved)
        .execute(&mut self.conn)
        .await?;
        self.unsaved = 0;
        self.saved_at = tokio::time::Instant::now();
        Ok(())
    }
}

/// Publishes every committed event from `from` on, in position order, without touching the
/// relay's checkpoint: refills a wiped or new stream. Repeats within the duplicate window are
/// dropped by JetStream. Returns how many were sent.
pub async fn republish(
    pool: &PgPool,
    js: &jetstream::Context,
    config: &RelayConfig,
    from: i64,
) -> Result<u64, RelayError> {
    let atomic = ensure_stream(js, config).await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM events
         WHERE position >= $1 AND tx_id < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY position LIMIT $2"
    );
    let mut next = from;
    let mut sent = 0u64;
    loop {
        let rows = sqlx::query(&sql)
            .bind(next)
            .bind(config.batch)
            .fetch_all(pool)
            .await?;
        let rows = rows.iter().map(decode).collect::<Result<Vec<_>, _>>()?;
        let Some(last) = rows.last() else {
            return Ok(sent);
        };
        next = last.position + 1;
        publish_all(js, atomic, &rows, None).await?;
        sent += rows.len() as u64;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn event(recorded_at: DateTime<Utc>) -> StoredEvent {
        let raw = || RawValue::from_string("{}".to_owned()).expect("valid JSON");
        StoredEvent {
            tx_id: "1".to_owned(),
            position: 1,
            recorded_at,
            aggregate_type: "Booking".to_owned(),
            aggregate_id: "b-1".to_owned(),
            sequence: 1,
            event_type: "BookingCreated".to_owned(),
            event_version: "2".to_owned(),
            tenant_id: "t-1".to_owned(),
            event_id: "e-1".to_owned(),
            correlation_id: String::new(),
            payload: raw(),
            metadata: raw(),
        }
    }

    #[test]
    fn each_event_is_told_its_wait_for_the_round_and_the_time_to_its_ack() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let observer: LagObserver = {
            let seen = seen.clone();
            Arc::new(move |lag| seen.lock().expect("not poisoned").push(lag))
        };
        let read_at = Utc::now() - chrono::Duration::milliseconds(40);
        let rows = [
            event(read_at - chrono::Duration::milliseconds(25)),
            event(read_at - chrono::Duration::milliseconds(5)),
        ];
        let observe = Some(Observe {
            observer: &observer,
            read_at,
        });

        let after = |ms| read_at + chrono::Duration::milliseconds(ms);

        // One batch: both acknowledged by its commit.
        observe_all(&rows, observe, after(9));
        // One message at a time: each by its own ack.
        observe_one(&rows[0], observe, after(2));
        observe_one(&rows[1], observe, after(3));

        let seen = seen.lock().expect("not poisoned");
        let ms = Duration::from_millis;
        let parts: Vec<_> = seen.iter().map(|lag| (lag.to_read, lag.to_ack)).collect();
        assert_eq!(
            parts,
            [
                (ms(25), ms(9)),
                (ms(5), ms(9)),
                (ms(25), ms(2)),
                (ms(5), ms(3))
            ]
        );
        assert_eq!(seen[0].total(), ms(34));
    }
}
