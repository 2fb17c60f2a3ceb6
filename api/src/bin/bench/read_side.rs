//! The read side's figures: projection lag (commit to visible in the bookings read model) at
//! a steady 500 bookings/s, and the rebuild rate of the bookings read model over at least
//! 200,000 events (`BENCH_REBUILD_EVENTS`); synthetic bookings, copies of a real one with new
//! ids, make up what the paced run did not write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use projections::Bookings;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use super::{Server, paced_bookings, say, seed, start_server, take};

/// Bookings per second in the lag run.
const RATE: u64 = 500;
const SECONDS: u64 = 10;

pub(super) async fn run(
    server: &str,
    nats_url: String,
    http: &reqwest::Client,
) -> anyhow::Result<()> {
    let Server {
        base,
        url,
        projection_lags,
        stop,
        ..
    } = start_server(server, nats_url, "bookingd_bench_read", true).await?;
    let salon = Arc::new(seed(http, &base, 40).await?);
    let pool = PgPool::connect(&url).await?;
    take(&projection_lags)?;
    let paced = paced_bookings(http, &base, &salon, 0, RATE, SECONDS).await?;
    let caught_up = projection_caught_up(&pool).await?;
    let lag = take(&projection_lags)?;
    let ms = |q| lag.value_at_quantile(q) as f64 / 1000.0;
    say(format_args!(
        "\nprojection lag, commit to visible in the bookings read model, at a steady {RATE} bookings/s ({} booked, {} failed): p50 {:.2} ms, p99 {:.2} ms over {} events{} (target p99 < 100 ms)",
        paced.ops,
        paced.failures,
        ms(0.5),
        ms(0.99),
        lag.len(),
        if caught_up {
            ""
        } else {
            "; not caught up after 60 s"
        }
    ));
    // The rebuild is measured alone.
    let _ = stop.send(());
    rebuild(&pool).await
}

/// Rebuilds the bookings read model over `BENCH_REBUILD_EVENTS` (200,000) booking events, the
/// bookings made so far and copies of one, twice.
async fn rebuild(pool: &PgPool) -> anyhow::Result<()> {
    let target: i64 = std::env::var("BENCH_REBUILD_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    fill_bookings(pool, target).await?;
    // When the first page and the last had been folded (and written): the rest is set-up before
    // and the indexes and the swap after.
    let (mut first_page, mut last_page) = (None, Duration::ZERO);
    let rebuilt = projections::rebuild::bookings(pool, |p| {
        first_page.get_or_insert(p.elapsed);
        last_page = p.elapsed;
    })
    .await?;
    say(format_args!(
        "rebuild of the bookings read model: {} events into {} rows in {:.2} s: {:.0} events/s (target >= 20,000)",
        rebuilt.events,
        rebuilt.rows,
        rebuilt.seconds,
        rebuilt.events as f64 / rebuilt.seconds.max(1e-6)
    ));
    say(format_args!(
        "    first page folded at {:.2} s, last at {:.2} s; indexes and swap {:.2} s, of which the worker held back {:.0} ms and the live table locked {:.0} ms",
        first_page.unwrap_or_default().as_secs_f64(),
        last_page.as_secs_f64(),
        rebuilt.seconds - last_page.as_secs_f64(),
        rebuilt.paused * 1e3,
        rebuilt.locked * 1e3
    ));
    // The copies above bypassed the worker, so that swap wrote nearly every offset; a second
    // rebuild finds them in line with its rows, as after a worker that kept up.
    let again = projections::rebuild::bookings(pool, |_| {}).await?;
    say(format_args!(
        "    again, its offsets in line: {:.2} s, the worker held back {:.0} ms, the live table locked {:.0} ms",
        again.seconds,
        again.paused * 1e3,
        again.locked * 1e3
    ));
    Ok(())
}

/// Waits until the bookings projection has applied every booking event; false after a minute.
async fn projection_caught_up(pool: &PgPool) -> anyhow::Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if projections::runner::status::<Bookings>(pool)
            .await?
            .pending_events
            == 0
        {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(false)
}

/// Synthetic events as the columns of one insert.
#[derive(Default)]
struct Columns {
    ids: Vec<String>,
    sequences: Vec<i64>,
    types: Vec<String>,
    versions: Vec<String>,
    payloads: Vec<Value>,
    metadatas: Vec<Value>,
}

/// Adds copies of the first booking's events (one for a booking confirmed as it was made),
/// under new ids, until the store holds `target` booking events.
async fn fill_bookings(pool: &PgPool, target: i64) -> anyhow::Result<()> {
    let have: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'Booking'")
            .fetch_one(pool)
            .await?;
    let template: Vec<(String, String, Value, Value)> = sqlx::query_as(
        "SELECT event_type, event_version, payload, metadata FROM events
         WHERE aggregate_type = 'Booking'
           AND aggregate_id = (SELECT aggregate_id FROM events WHERE aggregate_type = 'Booking' ORDER BY position LIMIT 1)
         ORDER BY sequence",
    )
    .fetch_all(pool)
    .await?;
    anyhow::ensure!(!template.is_empty(), "no booking to copy");
    let per_booking = i64::try_from(template.len())?;
    let missing = (target - have).max(0) / per_booking;
    for chunk in 0..(missing + 2499) / 2500 {
        let count = (missing - chunk * 2500).min(2500);
        let mut columns = Columns::default();
        for _ in 0..count {
            let id = Uuid::now_v7();
            for (sequence, (event_type, version, payload, metadata)) in (1..).zip(&template) {
                let mut payload = payload.clone();
                if let Some(created) = payload.get_mut("BookingCreated") {
                    created["booking_id"] = Value::String(id.to_string());
                }
                let mut metadata = metadata.clone();
                metadata["event_id"] = Value::String(Uuid::now_v7().to_string());
                columns.ids.push(id.to_string());
                columns.sequences.push(sequence);
                columns.types.push(event_type.clone());
                columns.versions.push(version.clone());
                columns.payloads.push(payload);
                columns.metadatas.push(metadata);
            }
        }
        sqlx::query(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             SELECT 'Booking', * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[])",
        )
        .bind(&columns.ids)
        .bind(&columns.sequences)
        .bind(&columns.types)
        .bind(&columns.versions)
        .bind(&columns.payloads)
        .bind(&columns.metadatas)
        .execute(pool)
        .await
        .context("insert synthetic bookings")?;
    }
    Ok(())
}
