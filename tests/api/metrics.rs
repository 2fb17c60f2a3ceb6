//! `/metrics`: request counts and timings, and the pipeline's state, in Prometheus's format.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::support::TestApp;
use crate::support::app::{berlin, poll_until};

async fn scrape(app: &TestApp) -> String {
    let response = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    response.text().await.unwrap()
}

/// The value of the sample whose name and labels start with `prefix`.
fn value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Whether every projection has applied every event.
fn projections_idle(text: &str) -> bool {
    text.lines()
        .filter(|l| l.starts_with("bookingd_projection_pending_events{"))
        .all(|l| l.ends_with(" 0"))
}

/// Whether every JetStream consumer (there is at least one) has received every message.
fn consumers_idle(text: &str) -> bool {
    let pending: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("bookingd_consumer_pending_messages{"))
        .collect();
    !pending.is_empty() && pending.iter().all(|l| l.ends_with(" 0"))
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn metrics_show_requests_and_the_pipeline_live(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let mut hold = TestApp::booking(&salon, Some(1), berlin(2, 11, 0));
    hold["hold_only"] = json!(true);
    let (status, _) = app.post(&salon.key, "/api/v2/mcp/bookings", hold).await;
    assert_eq!(status, StatusCode::CREATED);
    for i in 0..3 {
        let (status, body) = app
            .post(
                &salon.key,
                "/api/v2/mcp/bookings",
                TestApp::booking(&salon, Some(0), berlin(2, 9, 0)),
            )
            .await;
        assert_eq!(
            status,
            if i == 0 {
                StatusCode::CREATED
            } else {
                StatusCode::CONFLICT
            },
            "{body}"
        );
    }
    let (status, _) = app.get(&salon.key, "/api/v2/mcp/nowhere").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The holds figure comes from the calendars' read model: read once it has caught up.
    let idle = poll_until(Duration::from_secs(20), || async {
        projections_idle(&scrape(&app).await)
    })
    .await;
    assert!(idle, "the projections did not catch up");
    let text = scrape(&app).await;
    let booked =
        r#"mcp_requests_total{service="api",operation="POST /api/v2/mcp/bookings",status="201"}"#;
    assert_eq!(value(&text, booked), Some(2.0), "{text}");
    let refused =
        r#"mcp_requests_total{service="api",operation="POST /api/v2/mcp/bookings",status="409"}"#;
    assert_eq!(value(&text, refused), Some(2.0), "{text}");
    let count = r#"mcp_request_duration_seconds_count{service="api",operation="POST /api/v2/mcp/bookings"}"#;
    assert_eq!(value(&text, count), Some(4.0), "{text}");
    let inf = r#"mcp_request_duration_seconds_bucket{service="api",operation="POST /api/v2/mcp/bookings",le="+Inf"}"#;
    assert_eq!(value(&text, inf), Some(4.0));
    assert!(text.contains(r#"mcp_request_duration_seconds_bucket{service="api",operation="POST /api/v2/mcp/bookings",le="0.005"}"#));
    // The scrape itself is in flight while it is counted.
    assert_eq!(
        value(&text, r#"mcp_active_connections{service="api"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        value(&text, r#"mcp_active_connections{service="mcp"}"#),
        Some(0.0)
    );
    for name in ["calendar", "sms", "email", "payments"] {
        let line = format!(r#"mcp_circuit_breaker_state{{service="{name}"}}"#);
        if text.contains(&line) {
            assert_eq!(value(&text, &line), Some(0.0));
        }
    }
    assert!(text.contains("mcp_circuit_breaker_state{"), "{text}");
    assert_eq!(
        value(&text, "bookingd_holds_outstanding"),
        Some(1.0),
        "{text}"
    );
    assert!(value(&text, "bookingd_event_store_head_position").unwrap() > 0.0);
    assert!(value(&text, "bookingd_command_conflicts_total").is_some());
    assert_eq!(value(&text, "bookingd_metrics_database_up"), Some(1.0));
    assert_eq!(value(&text, "bookingd_dead_letters"), Some(0.0));
    // Once the pipeline is idle, nothing is left behind anywhere.
    let idle = poll_until(Duration::from_secs(20), || async {
        let text = scrape(&app).await;
        value(&text, "bookingd_relay_unpublished_events") == Some(0.0)
            && value(
                &text,
                r#"bookingd_projection_pending_events{projection="bookings"}"#,
            ) == Some(0.0)
            && consumers_idle(&text)
    })
    .await;
    assert!(idle, "{}", scrape(&app).await);
    let text = scrape(&app).await;
    assert_eq!(
        value(&text, "bookingd_metrics_nats_up"),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains("bookingd_saga_due_jobs{saga="), "{text}");
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn metrics_can_be_switched_off(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |c| c.metrics_enabled = false).await;
    let response = app
        .http
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
