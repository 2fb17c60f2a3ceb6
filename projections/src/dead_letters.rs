//! Events a projection gave up on, parked so that every other aggregate flows on.
//!
//! Later events of a parked event's aggregate cannot be applied before it (order per
//! aggregate), so they end up parked behind it. `retry` applies the parked events again in
//! store order once the fault is fixed; `skip` gives one up for good and lets its aggregate
//! move on.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::event::StoredEvent;
use crate::runner::{self, Outcome, Projection, ProjectionError};

/// A parked event, as listed for operators.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, schemars::JsonSchema)]
pub struct DeadLetter {
    /// The projection that could not apply it.
    pub projection: String,
    /// The event.
    pub event_id: String,
    /// Its position in the store.
    pub position: i64,
    /// Its tenant.
    pub tenant_id: String,
    /// Its aggregate.
    pub aggregate_type: String,
    /// Its aggregate's id.
    pub aggregate_id: String,
    /// Its sequence in the aggregate's stream.
    pub sequence: i64,
    /// Its type.
    pub event_type: String,
    /// The last error.
    pub error: String,
    /// Deliveries tried.
    pub attempts: i32,
    /// When it was parked.
    pub parked_at: DateTime<Utc>,
}

/// What a retry did.
#[derive(Debug, Clone, Copy, Default, Serialize, schemars::JsonSchema)]
pub struct Retried {
    /// Applied now (or found applied) and removed from the list.
    pub applied: u64,
    /// Still failing, left parked.
    pub still_parked: u64,
}

/// Parks an event a projection could not apply.
pub async fn park(
    pool: &PgPool,
    projection: &str,
    event: &StoredEvent,
    error: &str,
    attempts: i32,
) -> Result<(), sqlx::Error> {
    let envelope = serde_json::to_value(event).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
    sqlx::query(
        "INSERT INTO dead_letters (projection, event_id, position, tenant_id, aggregate_type, aggregate_id, sequence, event_type, envelope, error, attempts)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         ON CONFLICT (projection, event_id) DO UPDATE SET error = EXCLUDED.error, attempts = dead_letters.attempts + EXCLUDED.attempts",
    )
    .bind(projection)
    .bind(&event.event_id)
    .bind(event.position)
    .bind(event.tenant_id())
    .bind(&event.aggregate_type)
    .bind(&event.aggregate_id)
    .bind(event.sequence)
    .bind(&event.event_type)
    .bind(envelope)
    .bind(error)
    .bind(attempts)
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether `consumer` has parked an earlier event of `event`'s aggregate: `event` can then
/// never be applied in order, and is parked behind it.
pub async fn parked_before(
    pool: &PgPool,
    consumer: &str,
    event: &StoredEvent,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM dead_letters WHERE projection = $1
                          AND aggregate_type = $2 AND aggregate_id = $3 AND sequence < $4)",
    )
    .bind(consumer)
    .bind(&event.aggregate_type)
    .bind(&event.aggregate_id)
    .bind(event.sequence)
    .fetch_one(pool)
    .await
}

/// The parked events, of one projection or all, in store order.
pub async fn list(pool: &PgPool, projection: Option<&str>) -> Result<Vec<DeadLetter>, sqlx::Error> {
    sqlx::query_as(
        "SELECT projection, event_id, position, tenant_id, aggregate_type, aggregate_id, sequence, event_type, error, attempts, parked_at
         FROM dead_letters WHERE $1::text IS NULL OR projection = $1 ORDER BY projection, position",
    )
    .bind(projection)
    .fetch_all(pool)
    .await
}

/// Applies a projection's parked events again, in store order.
pub async fn retry<P: Projection>(pool: &PgPool, projection: &P) -> Result<Retried, sqlx::Error> {
    let mut retried = Retried::default();
    for (event_id, event) in parked(pool, P::NAME).await? {
        let error = match runner::apply(pool, projection, &event).await {
            Ok(Outcome::Applied | Outcome::AlreadyApplied) => None,
            Ok(Outcome::TooEarly) => {
                Some("an earlier event of its aggregate is not applied".to_owned())
            }
            // Lost the database: stop. A statement the database refused is the fault itself.
            Err(ProjectionError::Database(e)) if e.as_database_error().is_none() => return Err(e),
            Err(e) => Some(e.to_string()),
        };
        record_retry(pool, P::NAME, &event_id, error, &mut retried).await?;
    }
    Ok(retried)
}

/// The events parked by `consumer` (a projection, or `saga:<name>`), in store order.
pub async fn parked(
    pool: &PgPool,
    consumer: &str,
) -> Result<Vec<(String, StoredEvent)>, sqlx::Error> {
    let parked: Vec<(String, sqlx::types::Json<StoredEvent>)> = sqlx::query_as(
        "SELECT event_id, envelope FROM dead_letters WHERE projection = $1 ORDER BY position",
    )
    .bind(consumer)
    .fetch_all(pool)
    .await?;
    Ok(parked.into_iter().map(|(id, e)| (id, e.0)).collect())
}

/// Records a retry of a parked event: gone from the list if it went through (`error` is
/// none), else kept with its new error.
pub async fn record_retry(
    pool: &PgPool,
    consumer: &str,
    event_id: &str,
    error: Option<String>,
    retried: &mut Retried,
) -> Result<(), sqlx::Error> {
    match error {
        None => {
            forget(pool, consumer, event_id).await?;
            retried.applied += 1;
        }
        Some(error) => {
            sqlx::query("UPDATE dead_letters SET error = $3, attempts = attempts + 1 WHERE projection = $1 AND event_id = $2")
                .bind(consumer)
                .bind(event_id)
                .bind(error)
                .execute(pool)
                .await?;
            retried.still_parked += 1;
        }
    }
    Ok(())
}

/// Gives a parked event up: its aggregate's offset moves past it, so the events after it can
/// be applied. Returns false when no such event is parked.
pub async fn skip(pool: &PgPool, projection: &str, event_id: &str) -> Result<bool, sqlx::Error> {
    let mut tx = crate::runner::begin_writing(pool, projection).await?;
    let parked: Option<(String, String, i64, i64)> = sqlx::query_as(
        "DELETE FROM dead_letters WHERE projection = $1 AND event_id = $2
         RETURNING aggregate_type, aggregate_id, sequence, position",
    )
    .bind(projection)
    .bind(event_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((aggregate_type, aggregate_id, sequence, position)) = parked else {
        return Ok(false);
    };
    sqlx::query(
        "INSERT INTO projection_offsets (projection, aggregate_type, aggregate_id, last_sequence, last_position)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (projection, aggregate_type, aggregate_id) DO UPDATE
         SET last_sequence = GREATEST(projection_offsets.last_sequence, EXCLUDED.last_sequence),
             last_position = GREATEST(projection_offsets.last_position, EXCLUDED.last_position)",
    )
    .bind(projection)
    .bind(aggregate_type)
    .bind(aggregate_id)
    .bind(sequence)
    .bind(position)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Drops a parked event from the list.
pub async fn forget(pool: &PgPool, projection: &str, event_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM dead_letters WHERE projection = $1 AND event_id = $2")
        .bind(projection)
        .bind(event_id)
        .execute(pool)
        .await?;
    Ok(())
}
