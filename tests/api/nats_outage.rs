use std::time::Duration;

use reqwest::StatusCode;
use sqlx::PgPool;

use crate::support::TestApp;
use crate::support::app::berlin;
use crate::support::stream::{assert_stream_matches_store, stream_len};

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
