use std::process::Command;
use std::time::Duration;

use sqlx::PgPool;

use crate::support::app::{Salon, berlin, database_url, poll_until};
use crate::support::stream::{
    assert_stream_matches_store, read_stream, stored_event_ids, stream_len,
};
use crate::support::{NatsServer, TestApp};

/// `bookingd relay republish --from <from>`; what it printed.
fn republish(pool: &PgPool, nats_url: &str, from: i64) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_bookingd-system"))
        .args(["relay", "republish", "--from", &from.to_string()])
        .env("DATABASE_URL", database_url(pool))
        .env("NATS_URL", nats_url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn book(app: &TestApp, salon: &Salon, hour: u32) {
    app.book(salon, None, berlin(2, hour, 0)).await;
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn relay_republish_refills_a_wiped_stream(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Salon", "professional").await;
    for hour in [9, 10, 11] {
        book(&app, &salon, hour).await;
    }
    assert!(app.wait_until_relayed(Duration::from_secs(30)).await);

    // Lose the stream, as after a NATS disaster; the relay's checkpoint still says all is sent.
    let js = async_nats::jetstream::new(async_nats::connect(app.nats.url()).await.unwrap());
    js.delete_stream("EVENTS").await.unwrap();
    assert_eq!(stream_len(&app.nats.url()).await, 0);

    let printed = republish(&pool, &app.nats.url(), 0);
    let stored = app.event_count().await;
    assert!(
        printed.contains(&format!("republished {stored} events")),
        "{printed}"
    );
    assert_stream_matches_store(&pool, &app.nats.url()).await;
}

/// The stream's last message is not the one before the next to publish: here the newest event
/// went first, so when the rest follow it is dropped as a repeat and the event after it names a
/// predecessor the stream does not end with. The publisher goes one message at a time then,
/// and every event still arrives once.
#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn republish_goes_on_when_the_stream_ends_with_another_event(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Salon", "professional").await;
    for hour in [9, 10] {
        book(&app, &salon, hour).await;
    }
    // A second nats-server, fed only by republishing: first the newest event alone.
    let other = NatsServer::start();
    let newest: i64 = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(&pool)
        .await
        .unwrap();
    // Republishing stops at the oldest transaction still running (the app's workers write
    // too), so it is repeated until it has sent all it was asked for; repeats are dropped.
    let sent_all = |from: i64, count: usize| {
        let (pool, url) = (pool.clone(), other.url());
        poll_until(Duration::from_secs(30), move || {
            let printed = republish(&pool, &url, from);
            async move { printed.contains(&format!("republished {count} events")) }
        })
    };
    assert!(sent_all(newest, 1).await, "the newest event was not sent");
    book(&app, &salon, 11).await;

    let stored = stored_event_ids(&pool).await;
    assert!(sent_all(0, stored.len()).await, "not every event was sent");
    let mut published: Vec<String> = read_stream(&other.url())
        .await
        .into_iter()
        .map(|p| p.msg_id)
        .collect();
    published.sort();
    let mut expected = stored;
    expected.sort();
    assert_eq!(published, expected, "every event on the stream once");
}
