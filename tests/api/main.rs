//! System tests: bookingd over HTTP against a real Postgres (a database per test) and a real
//! nats-server (one per test).
// Tests and their helpers fail by panicking.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::too_many_lines)]

#[path = "../support/mod.rs"]
mod support;

mod audit;
mod availability;
mod calendar_sync;
mod commands_over_http;
mod concurrent_appends;
mod double_booking;
mod faults;
mod gap;
mod idempotency_and_isolation;
mod live_updates;
mod metrics;
mod nats_outage;
mod notifications;
mod payments;
mod rate_limits;
mod read_models;
mod readiness;
mod refusals;
mod relay_crash;
mod republish;
mod saga_jobs;
mod scripted_day;
mod snapshots;
mod span_export;
mod stuck_shutdown;
mod voice;
