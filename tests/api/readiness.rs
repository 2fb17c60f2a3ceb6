//! Readiness: an instance says when it should not take traffic, and why.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;

use crate::support::TestApp;
use crate::support::app::poll_until;

async fn ready(app: &TestApp) -> (StatusCode, Value) {
    let response = app
        .http
        .get(format!("{}/api/v2/mcp/health/ready", app.address))
        .send()
        .await
        .unwrap();
    (response.status(), response.json().await.unwrap())
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn an_instance_without_nats_is_not_ready_and_says_why(pool: PgPool) {
    let mut app = TestApp::spawn(pool).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let (status, body) = ready(&app).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in [
        "database",
        "nats",
        "relay",
        "projection:bookings",
        "projection:tenants",
        "projection:staff",
    ] {
        assert!(names.contains(&name), "{name} missing: {body}");
    }

    app.nats.stop();
    let down = poll_until(Duration::from_secs(15), || async {
        ready(&app).await.0 == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    assert!(down, "still ready without NATS");
    let (_, body) = ready(&app).await;
    assert_eq!(body["error"]["type"], "SERVICE_UNAVAILABLE", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("nats"),
        "{body}"
    );
    // Commands still work: events wait in Postgres for the relay.
    app.book(&salon, Some(0), crate::support::app::berlin(2, 10, 0))
        .await;

    app.nats.resume();
    let back = poll_until(Duration::from_secs(30), || async {
        ready(&app).await.0 == StatusCode::OK
    })
    .await;
    assert!(
        back,
        "not ready again after NATS returned: {}",
        ready(&app).await.1
    );
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_transaction_left_open_is_named_when_it_holds_the_relay_back(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Salon", "professional").await;
    assert!(app.wait_until_relayed(Duration::from_secs(30)).await);

    // A writer left open (it has a transaction id), and a booking committed after it began.
    let mut open = pool.begin().await.unwrap();
    let xid: String =
        sqlx::query_scalar("SELECT (pg_current_xact_id()::text::numeric % 4294967296)::text")
            .fetch_one(&mut *open)
            .await
            .unwrap();
    app.book(&salon, Some(0), crate::support::app::berlin(2, 10, 0))
        .await;
    // Other tests' transactions may be older for a moment; the horizon then moves on to ours.
    let wanted = format!("wait for transaction {xid} to end (pid ");
    let named = poll_until(Duration::from_secs(10), || async {
        relay_detail(&app).await.contains(&wanted)
    })
    .await;
    let detail = relay_detail(&app).await;
    assert!(
        named,
        "the relay check did not name the open transaction: {detail}"
    );
    assert!(detail.contains("idle in transaction"), "{detail}");

    open.rollback().await.unwrap();
    assert!(
        app.wait_until_relayed(Duration::from_secs(30)).await,
        "the relay did not go on after the transaction ended"
    );
    let detail = relay_detail(&app).await;
    assert!(!detail.contains("wait for transaction"), "{detail}");
}

/// The readiness check `relay`'s detail, whether the instance is ready or not.
async fn relay_detail(app: &TestApp) -> String {
    let (_, body) = ready(app).await;
    let checks = body["checks"]
        .as_array()
        .or_else(|| body["error"]["details"]["checks"].as_array())
        .cloned()
        .unwrap_or_default();
    checks
        .iter()
        .find(|c| c["name"] == "relay")
        .and_then(|c| c["detail"].as_str())
        .unwrap_or_default()
        .to_owned()
}
