use std::process::Command;
use std::time::Duration;

use reqwest::StatusCode;
use sqlx::PgPool;

use crate::support::TestApp;
use crate::support::app::{berlin, database_url};
use crate::support::stream::{assert_stream_matches_store, stream_len};

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn relay_republish_refills_a_wiped_stream(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Salon", "professional").await;
    for hour in [9, 10, 11] {
        let (status, _) = app
            .post(
                &salon.key,
                "/api/v2/mcp/bookings",
                TestApp::booking(&salon, None, berlin(2, hour, 0)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    assert!(app.wait_until_relayed(Duration::from_secs(30)).await);

    // Lose the stream, as after a NATS disaster; the relay's checkpoint still says all is sent.
    let js = async_nats::jetstream::new(async_nats::connect(app.nats.url()).await.unwrap());
    js.delete_stream("EVENTS").await.unwrap();
    assert_eq!(stream_len(&app.nats.url()).await, 0);

    let output = Command::new(env!("CARGO_BIN_EXE_bookingd-system"))
        .args(["relay", "republish", "--from", "0"])
        .env("DATABASE_URL", database_url(&pool))
        .env("NATS_URL", app.nats.url())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stored = app.event_count().await;
    assert!(
        String::from_utf8_lossy(&output.stdout).contains(&format!("republished {stored} events"))
    );
    assert_stream_matches_store(&pool, &app.nats.url()).await;
}
