use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::support::app::{Salon, berlin, database_url};
use crate::support::process::BookingdProcess;
use crate::support::stream::{
    assert_stream_matches_store, relay_took_the_lead, spawn_relay, stream_len,
};
use crate::support::{TestApp, poll_until};

/// A test app talking to `bookingd serve` in a process of its own, with a seeded salon.
async fn salon_on_a_process(pool: &PgPool) -> (TestApp, BookingdProcess, Salon) {
    let mut app = TestApp::bare(pool.clone()).await;
    let bookingd = BookingdProcess::start(&database_url(pool), &app.nats.url()).await;
    app.address = bookingd.address.clone();
    let salon = app.seed_salon("Salon", "enterprise").await;
    (app, bookingd, salon)
}

/// Starts `bookingd serve` again and checks that its relay brings the stream level with the
/// store: every event on it once, in per-aggregate order.
async fn restart_and_assert_relayed(app: &mut TestApp, pool: &PgPool, stalled: &str) {
    let again = BookingdProcess::start(&database_url(pool), &app.nats.url()).await;
    app.address = again.address.clone();
    assert!(
        app.wait_until_relayed(Duration::from_secs(60)).await,
        "{stalled}"
    );
    assert_stream_matches_store(pool, &app.nats.url()).await;
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn every_event_reaches_the_stream_once_after_bookingd_is_killed_mid_load(pool: PgPool) {
    let (mut app, mut first, salon) = salon_on_a_process(&pool).await;
    let mut bookings = Vec::new();
    for i in 0..20 {
        let (status, body) = app
            .post(
                &salon.key,
                "/api/v2/mcp/bookings",
                TestApp::booking(
                    &salon,
                    None,
                    berlin(
                        2 + i / 10,
                        [8, 9, 10, 11, 13, 14, 15, 16, 17, 18][i as usize % 10],
                        0,
                    ),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        bookings.push(body["data"]["id"].as_str().unwrap().to_owned());
    }

    // 2,000 commands, 64 at a time; bookingd is killed while they run.
    let done = Arc::new(AtomicUsize::new(0));
    let load = {
        let (http, address, key, done) = (
            app.http.clone(),
            app.address.clone(),
            salon.key.clone(),
            done.clone(),
        );
        tokio::spawn(async move {
            futures::stream::iter(0..2000)
                .map(|i| {
                    let (http, address, key, done) =
                        (http.clone(), address.clone(), key.clone(), done.clone());
                    let path = format!("/api/v2/mcp/bookings/{}", bookings[i % bookings.len()]);
                    async move {
                        let request = http
                            .request(Method::PUT, format!("{address}{path}"))
                            .bearer_auth(&key)
                            .json(&json!({ "notes": format!("note {i}") }));
                        if request
                            .send()
                            .await
                            .is_ok_and(|r| r.status() == StatusCode::OK)
                        {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .buffer_unordered(64)
                .collect::<Vec<()>>()
                .await
        })
    };
    assert!(
        poll_until(Duration::from_secs(60), || async {
            done.load(Ordering::Relaxed) >= 300
        })
        .await,
        "load did not start"
    );
    first.kill();
    load.await.unwrap();
    let succeeded = done.load(Ordering::Relaxed);
    assert!(
        succeeded < 2000,
        "bookingd was killed after the load had finished"
    );

    restart_and_assert_relayed(&mut app, &pool, "the restarted relay did not catch up").await;
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn sigterm_mid_load_finishes_the_requests_in_flight_and_publishes_them(pool: PgPool) {
    let (app, mut bookingd, salon) = salon_on_a_process(&pool).await;
    let (status, body) = app
        .post(
            &salon.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&salon, None, berlin(2, 10, 0)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let booking = body["data"]["id"].as_str().unwrap().to_owned();

    // Changes to one booking, 32 at a time, until bookingd stops answering.
    let done = Arc::new(AtomicUsize::new(0));
    let path = format!("/api/v2/mcp/bookings/{booking}");
    let load = {
        let (http, address, key, done) = (
            app.http.clone(),
            app.address.clone(),
            salon.key.clone(),
            done.clone(),
        );
        tokio::spawn(async move {
            futures::stream::iter(0..3000)
                .map(|i| {
                    let (http, address, key, done, path) = (
                        http.clone(),
                        address.clone(),
                        key.clone(),
                        done.clone(),
                        path.clone(),
                    );
                    async move {
                        let answered = http
                            .request(Method::PUT, format!("{address}{path}"))
                            .bearer_auth(&key)
                            .json(&json!({ "notes": format!("note {i}") }))
                            .send()
                            .await;
                        if answered.is_ok_and(|r| r.status() == StatusCode::OK) {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
                .buffer_unordered(32)
                .collect::<Vec<()>>()
                .await
        })
    };
    assert!(
        poll_until(Duration::from_secs(60), || async {
            done.load(Ordering::Relaxed) >= 200
        })
        .await,
        "load did not start"
    );
    let exit = bookingd.terminate().await;
    assert!(
        exit.is_some_and(|s| s.success()),
        "bookingd did not exit cleanly: {exit:?}"
    );
    load.await.unwrap();
    let answered = done.load(Ordering::Relaxed);
    assert!(
        answered < 3000,
        "bookingd stopped after the load had finished"
    );

    // Every change answered 200 is in the store, and no other: nothing half-done.
    let (changes,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM events WHERE aggregate_id = $1 AND event_type = 'BookingDetailsUpdated'",
    )
    .bind(&booking)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(usize::try_from(changes).unwrap(), answered);
    // Before it exited, the relay published everything committed: no restart needed.
    assert_stream_matches_store(&pool, &app.nats.url()).await;
}

/// Books one appointment at each of `hours` on day `day`, each answered 201.
async fn book_hours(app: &TestApp, salon: &Salon, day: i64, hours: &[u32]) {
    for &hour in hours {
        app.book(salon, None, berlin(day, hour, 0)).await;
    }
}

/// A relay whose checkpoint fell behind what it had published (a crash between the PubAcks and
/// the checkpoint) finds a backlog partly on the stream already. The backlog is large enough to
/// go as an atomic batch, which JetStream refuses whole for its repeats; every event still ends
/// up on the stream once, in per-aggregate order.
#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_backlog_partly_on_the_stream_already_is_published_once_in_order(pool: PgPool) {
    let (mut app, mut first, salon) = salon_on_a_process(&pool).await;
    let url = database_url(&pool);
    book_hours(&app, &salon, 2, &[9, 10, 11, 13, 14, 15]).await;
    assert!(app.wait_until_relayed(Duration::from_secs(30)).await);
    let on_stream = app.event_count().await;
    assert!(first.terminate().await.is_some_and(|s| s.success()));

    // More bookings while no relay runs, then the checkpoint back at the start.
    let mut quiet = BookingdProcess::start_with(
        &url,
        &app.nats.url(),
        &[("BOOKINGD_RELAY", "false".to_owned())],
    )
    .await;
    app.address = quiet.address.clone();
    // Twelve bookings, two events each: the 24 of an atomic batch.
    book_hours(&app, &salon, 3, &[9, 10, 11, 13, 14, 15]).await;
    book_hours(&app, &salon, 4, &[9, 10, 11, 13, 14, 15]).await;
    assert!(quiet.terminate().await.is_some_and(|s| s.success()));
    assert_eq!(
        stream_len(&app.nats.url()).await,
        u64::try_from(on_stream).unwrap()
    );
    sqlx::query("UPDATE relay_checkpoint SET last_tx_id = '0', last_position = 0")
        .execute(&pool)
        .await
        .unwrap();
    assert!(app.event_count().await >= on_stream + 24);

    restart_and_assert_relayed(&mut app, &pool, "the relay did not get past the repeats").await;
}

/// The relay runs on a thread of its own; should the task holding its shutdown sender be
/// dropped without a word (its runtime gone), it stops instead of electing itself again and
/// again, both as leader and as standby.
#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_relay_whose_shutdown_sender_is_gone_stops(pool: PgPool) {
    let app = TestApp::bare(pool.clone()).await;
    let nats = async_nats::connect(app.nats.url()).await.unwrap();
    let (leader_stop, leader) = spawn_relay(&pool, &nats);
    assert!(
        relay_took_the_lead(&nats).await,
        "the relay never took the lead"
    );
    let (standby_stop, standby) = spawn_relay(&pool, &nats);

    drop(standby_stop);
    tokio::time::timeout(Duration::from_secs(10), standby)
        .await
        .expect("the standby relay went on without its sender")
        .unwrap();
    drop(leader_stop);
    tokio::time::timeout(Duration::from_secs(10), leader)
        .await
        .expect("the leading relay went on without its sender")
        .unwrap();
}
