use std::time::Duration;

use reqwest::StatusCode;
use sqlx::PgPool;

use crate::support::TestApp;
use crate::support::app::{berlin, database_url, poll_until, serve_config};
use crate::support::proxy::LossyProxy;
use crate::support::stream::{
    assert_stream_matches_store, insert_probe_events, relay_took_the_lead, spawn_relay, stream_len,
};

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn commands_succeed_while_nats_is_down_and_every_event_arrives_when_it_returns(pool: PgPool) {
    let mut app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Salon", "professional").await;
    assert!(app.wait_until_relayed(Duration::from_secs(30)).await);

    app.nats.stop();
    for i in 0..30u32 {
        let start = berlin(
            2 + i64::from(i / 10),
            [8, 9, 10, 11, 13, 14, 15, 16, 17, 18][i as usize % 10],
            0,
        );
        let (status, body) = app
            .post(
                &salon.key,
                "/api/v2/mcp/bookings",
                TestApp::booking(&salon, None, start),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "booking {i} while NATS is down: {body}"
        );
    }
    assert_eq!(
        stream_len(&app.nats.url()).await,
        0,
        "NATS should be unreachable"
    );

    app.nats.resume();
    assert!(
        app.wait_until_relayed(Duration::from_secs(60)).await,
        "events did not arrive after NATS returned"
    );
    assert_stream_matches_store(&pool, &app.nats.url()).await;
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_relay_elected_while_nats_is_gone_stops_when_asked(pool: PgPool) {
    let mut app = TestApp::bare(pool.clone()).await;
    let nats = async_nats::connect(app.nats.url()).await.unwrap();
    app.nats.stop();
    let (stop, running) = spawn_relay(&pool, &nats);
    // Nothing else holds the leader's lock: it is elected at once and then waits for NATS.
    assert!(
        poll_until(Duration::from_secs(10), || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_locks l JOIN pg_database d ON d.oid = l.database
                 WHERE l.locktype = 'advisory' AND l.granted AND d.datname = current_database())",
            )
            .fetch_one(&pool)
            .await
            .unwrap_or(false)
        })
        .await,
        "the relay never took the lead"
    );

    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the relay went on waiting for NATS after it was asked to stop")
        .unwrap();
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn an_instance_started_while_nats_is_gone_stops_when_asked(pool: PgPool) {
    let mut bare = TestApp::bare(pool.clone()).await;
    bare.nats.stop();
    let app = api::Application::build(serve_config(&database_url(&pool), &bare.nats.url()))
        .await
        .expect("bookingd starts without NATS");
    let health = format!("http://127.0.0.1:{}/api/v2/mcp/health", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    // Serving, with its relay, projection workers and sagas waiting for NATS.
    assert!(
        poll_until(Duration::from_secs(10), || async {
            reqwest::get(&health)
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK)
        })
        .await,
        "bookingd did not serve"
    );

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("bookingd went on waiting for NATS after it was asked to stop")
        .unwrap()
        .unwrap();
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_leader_caught_publishing_by_a_nats_outage_stops_when_asked(pool: PgPool) {
    let mut app = TestApp::bare(pool.clone()).await;
    let nats = async_nats::connect(app.nats.url()).await.unwrap();
    let (stop, running) = spawn_relay(&pool, &nats);
    assert!(
        relay_took_the_lead(&nats).await,
        "the relay never took the lead"
    );
    app.nats.stop();
    // A backlog larger than the client buffers while it reconnects.
    insert_probe_events(&pool, 5000, 1).await;
    let committed: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(&pool)
        .await
        .unwrap();
    // The relay has read since (the backlog) and is publishing to a server that is gone.
    assert!(
        poll_until(Duration::from_secs(10), || async {
            sqlx::query_scalar::<_, bool>(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                 WHERE datname = current_database() AND state = 'idle' AND query_start > $1
                   AND query LIKE 'SELECT tx_id::text AS tx_id%')",
            )
            .bind(committed)
            .fetch_one(&pool)
            .await
            .unwrap_or(false)
        })
        .await,
        "the relay never read the backlog"
    );

    // Its publishes time out (5 s) or it is stopped where it is (10 s after shutdown).
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("the relay went on publishing to an unreachable NATS after it was asked to stop")
        .unwrap();
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_message_lost_on_its_way_is_published_again_before_the_ones_after_it(pool: PgPool) {
    // Ten events of one aggregate, committed together: one round, published pipelined, each
    // message naming the one before it.
    first_of_a_round_lost_on_its_way(pool, 10).await;
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_batch_missing_a_message_is_published_again_whole(pool: PgPool) {
    // Thirty: an atomic batch where the server takes them (2.12 and later).
    first_of_a_round_lost_on_its_way(pool, 30).await;
}

/// Commits `count` events of one aggregate while a proxy between the relay and NATS loses the
/// first of them on its way; the rest reach the server. Expects the stream to end up with every
/// event once and in sequence order.
async fn first_of_a_round_lost_on_its_way(pool: PgPool, count: i32) {
    let app = TestApp::bare(pool.clone()).await;
    let proxy = LossyProxy::start(app.nats.port()).await;
    let nats = async_nats::connect(proxy.url()).await.unwrap();
    let (stop, running) = spawn_relay(&pool, &nats);
    assert!(
        relay_took_the_lead(&nats).await,
        "the relay never took the lead"
    );
    proxy.lose_next(".Probe.probe-1");
    insert_probe_events(&pool, 1, count).await;

    // The lost message's ack never comes (or the server refuses the batch) and the round goes
    // again.
    assert!(
        poll_until(Duration::from_secs(30), || async {
            stream_len(&app.nats.url()).await >= u64::try_from(count).unwrap()
        })
        .await,
        "the events never all reached the stream"
    );
    assert!(proxy.has_lost(), "the proxy never saw the first event");
    assert_stream_matches_store(&pool, &app.nats.url()).await;
    stop.send(true).unwrap();
    running.await.unwrap();
}
