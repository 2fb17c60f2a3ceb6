//! What the system tests share: a real nats-server per test, the app in-process or as its own
//! process, typed HTTP helpers, and readers for the event store and the stream.

pub(crate) mod app;
pub(crate) mod calcom;
pub(crate) mod nats;
pub(crate) mod pipeline;
pub(crate) mod postgres;
pub(crate) mod process;
pub(crate) mod proxy;
pub(crate) mod smtp;
pub(crate) mod stream;

pub(crate) use app::{Salon, TestApp, poll_until};
pub(crate) use nats::NatsServer;

/// Every row of a table as JSON, in a stable order: for comparing a table before and after.
pub(crate) async fn table_rows(pool: &sqlx::PgPool, table: &str) -> Vec<serde_json::Value> {
    sqlx::query_scalar(&format!(
        "SELECT to_jsonb(t) FROM {table} t ORDER BY to_jsonb(t)::text"
    ))
    .fetch_all(pool)
    .await
    .unwrap()
}
