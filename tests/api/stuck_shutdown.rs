//! Stopping while something holds on: a projection worker or the relay's leader waiting for a
//! lock in Postgres does not keep `bookingd` from ending.

use std::time::Duration;

use sqlx::PgPool;

use crate::support::TestApp;
use crate::support::app::{database_url, lock_table, poll_until, serve_config};
use crate::support::stream::{insert_probe_events, relay_took_the_lead, spawn_relay};

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn an_instance_whose_workers_are_stuck_stops_when_asked(pool: PgPool) {
    let mut bare = TestApp::bare(pool.clone()).await;
    let app = api::Application::build(serve_config(&database_url(&pool), &bare.nats.url()))
        .await
        .unwrap();
    bare.address = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    // While this transaction holds the projections' offsets, a worker with an event to project
    // waits for it.
    let blocker = lock_table(&pool, "projection_offsets IN EXCLUSIVE MODE").await;
    bare.register_tenant("Salon", "professional").await;
    assert!(
        someone_waits_for_a_lock(&pool, "%projection_offsets%").await,
        "no projection worker waited for the lock"
    );

    // The workers are cut off after 10 s; the relay then drains and stops.
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(25), running)
        .await
        .expect("bookingd went on waiting for a stuck worker after it was asked to stop")
        .unwrap()
        .unwrap();
    blocker.rollback().await.unwrap();
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_leader_stuck_in_a_round_is_stopped_where_it_is(pool: PgPool) {
    let app = TestApp::bare(pool.clone()).await;
    let nats = async_nats::connect(app.nats.url()).await.unwrap();
    let (stop, running) = spawn_relay(&pool, &nats);
    assert!(
        relay_took_the_lead(&nats).await,
        "the relay never took the lead"
    );
    // The stream exists before the leader has read its cursor; locking the table earlier would
    // stop it there, short of the round this test is about.
    assert!(
        poll_until(Duration::from_secs(10), || async {
            sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM relay_checkpoint)")
                .fetch_one(&pool)
                .await
                .unwrap_or(false)
        })
        .await,
        "the leader never wrote its cursor"
    );
    // While this transaction holds the checkpoint, the relay publishes the event below and then
    // waits to write its checkpoint.
    let blocker = lock_table(&pool, "relay_checkpoint IN EXCLUSIVE MODE").await;
    insert_probe_events(&pool, 1, 1).await;
    assert!(
        someone_waits_for_a_lock(&pool, "UPDATE relay_checkpoint%").await,
        "the relay never waited for the lock"
    );

    // Neither draining (5 s) nor the grace after it (5 s) ends the round; the leader is
    // stopped where it is.
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("a leader stuck in its round went on after it was asked to stop")
        .unwrap();
    blocker.rollback().await.unwrap();
}

/// Whether, within ten seconds, a statement of this database whose text is `LIKE pattern`
/// waits for a lock.
async fn someone_waits_for_a_lock(pool: &PgPool, pattern: &str) -> bool {
    poll_until(Duration::from_secs(10), || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1)",
        )
        .bind(pattern)
        .fetch_one(pool)
        .await
        .unwrap_or(false)
    })
    .await
}
