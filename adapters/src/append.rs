//! The one statement every append runs: a command's events on one or two streams, the
//! snapshots that fell due, and optionally a guard (a stream the command was decided on
//! without appending to it, at the version it saw). All of it is written, or, when the guard's
//! stream has moved on, none of it; a conflict on a stream's sequence fails the statement.

use std::collections::HashMap;

use serde_json::Value;
use sqlx::PgPool;

/// Rows are inserted in the order given (each stream in sequence order), so the positions
/// they take rise with their sequences.
const APPEND: &str = "
WITH guard AS (
    SELECT bool_and(COALESCE((SELECT max(e.sequence) FROM events e
                              WHERE e.aggregate_type = g.aggregate_type AND e.aggregate_id = g.aggregate_id), 0)
                    = g.sequence) AS holds
    FROM UNNEST($12::text[], $13::text[], $14::bigint[]) AS g(aggregate_type, aggregate_id, sequence)
), appended AS (
    INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
    SELECT u.aggregate_type, u.aggregate_id, u.sequence, u.event_type, u.event_version, u.payload, u.metadata
    FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
        WITH ORDINALITY AS u(aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, n)
    WHERE (SELECT holds FROM guard) IS NOT FALSE
    ORDER BY u.n
    RETURNING aggregate_type, aggregate_id, sequence, position
), due AS (
    SELECT * FROM UNNEST($8::text[], $9::text[], $10::bigint[], $11::jsonb[])
        AS d(aggregate_type, aggregate_id, last_sequence, payload)
    WHERE (SELECT holds FROM guard) IS NOT FALSE
), dropped AS (
    DELETE FROM snapshots s USING due
    WHERE s.aggregate_type = due.aggregate_type AND s.aggregate_id = due.aggregate_id
), snapshot AS (
    INSERT INTO snapshots (aggregate_type, aggregate_id, last_sequence, current_snapshot, payload)
    SELECT aggregate_type, aggregate_id, last_sequence, last_sequence, payload FROM due
)
SELECT aggregate_type, aggregate_id, sequence, position FROM appended";

/// One event row of a command's append.
#[derive(Debug)]
pub(crate) struct Row {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: Value,
    pub metadata: Value,
}

/// A snapshot written with a command's events.
#[derive(Debug)]
pub(crate) struct DueSnapshot {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    pub last_sequence: i64,
    pub payload: Value,
}

/// A stream a command decided on without appending to it, at the version it saw.
#[derive(Debug)]
pub(crate) struct Guard {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    pub version: i64,
}

/// Everything one command appends: all or nothing.
#[derive(Debug)]
pub(crate) struct Write {
    pub rows: Vec<Row>,
    pub snapshots: Vec<DueSnapshot>,
    pub guard: Option<Guard>,
}

/// The position each row got, by (aggregate type, aggregate id, sequence).
pub(crate) type Positions = HashMap<(String, String, i64), i64>;

/// What became of a command's append.
#[derive(Debug)]
pub(crate) enum Written {
    /// Every row was inserted.
    Appended(Positions),
    /// The guarded stream had moved on; nothing was written.
    GuardMoved,
}

/// Runs [`APPEND`] for one command's write.
pub(crate) async fn append(pool: &PgPool, write: &Write) -> Result<Written, sqlx::Error> {
    let (rows, snapshots, guard) = (&write.rows, &write.snapshots, write.guard.as_slice());
    let inserted = sqlx::query_as::<_, (String, String, i64, i64)>(APPEND)
        .bind(column(rows, |r| r.aggregate_type))
        .bind(column(rows, |r| r.aggregate_id.as_str()))
        .bind(column(rows, |r| r.sequence))
        .bind(column(rows, |r| r.event_type.as_str()))
        .bind(column(rows, |r| r.event_version.as_str()))
        .bind(column(rows, |r| &r.payload))
        .bind(column(rows, |r| &r.metadata))
        .bind(column(snapshots, |s| s.aggregate_type))
        .bind(column(snapshots, |s| s.aggregate_id.as_str()))
        .bind(column(snapshots, |s| s.last_sequence))
        .bind(column(snapshots, |s| &s.payload))
        .bind(column(guard, |g| g.aggregate_type))
        .bind(column(guard, |g| g.aggregate_id.as_str()))
        .bind(column(guard, |g| g.version))
        .fetch_all(pool)
        .await?;
    if inserted.len() < rows.len() {
        return Ok(Written::GuardMoved);
    }
    Ok(Written::Appended(
        inserted
            .into_iter()
            .map(|(t, i, sequence, position)| ((t, i, sequence), position))
            .collect(),
    ))
}

/// One field of every item, as a statement's array parameter.
fn column<'a, T, U>(items: &'a [T], field: impl Fn(&'a T) -> U) -> Vec<U> {
    items.iter().map(field).collect()
}
