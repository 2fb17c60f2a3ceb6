//! Server-Sent Events: a branch's channel and the audit tail, read by a real HTTP client.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::TestApp;
use crate::support::app::berlin;

/// One SSE message.
#[derive(Debug, Clone)]
struct Message {
    id: Option<i64>,
    event: String,
    data: Value,
}

/// An open SSE response, parsed message by message.
struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    async fn open(app: &TestApp, key: &str, path: &str, last_event_id: Option<i64>) -> Self {
        let mut request = app
            .http
            .get(format!("{}/api/v2/mcp{path}", app.address))
            .bearer_auth(key);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next message, or None if none arrives within `within`.
    async fn next(&mut self, within: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut message = Message {
                    id: None,
                    event: "message".to_owned(),
                    data: Value::Null,
                };
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        message.id = v.trim().parse().ok();
                    } else if let Some(v) = line.strip_prefix("event:") {
                        v.trim().clone_into(&mut message.event);
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                message.data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some(message);
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Messages until one named `event` arrives (included), with a deadline.
    async fn until(&mut self, event: &str) -> Vec<Message> {
        let mut seen = Vec::new();
        while let Some(message) = self.next(Duration::from_secs(10)).await {
            let done = message.event == event;
            seen.push(message);
            if done {
                return seen;
            }
        }
        panic!("no {event} message within 10 s; saw {seen:?}");
    }
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_branch_channel_sends_a_booking_made_moved_and_cancelled_after_it_connected(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let other = app.seed_salon("Other", "professional").await;
    let mut channel = Sse::open(
        &app,
        &salon.key,
        &format!("/branches/{}/events", salon.branch_id),
        None,
    )
    .await;

    // Another tenant's booking never shows up on this channel.
    let (status, _) = app
        .post(
            &other.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&other, Some(0), berlin(2, 9, 0)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, made) = app
        .post(
            &salon.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&salon, Some(1), berlin(2, 10, 0)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let booking = made["data"]["id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .post(
            &salon.key,
            &format!("/api/v2/mcp/bookings/{booking}/reschedule"),
            json!({ "start": berlin(2, 11, 0) }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app
        .post(
            &salon.key,
            &format!("/api/v2/mcp/bookings/{booking}/cancel"),
            json!({ "reason": "ill" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // The set-up's last staff events may still be settling when the client connects (the
    // stream starts after the newest settled event), so they can come first: they belong to
    // this branch too. The booking's own messages follow in order.
    let seen: Vec<Message> = channel
        .until("booking.cancelled")
        .await
        .into_iter()
        .filter(|m| m.event.starts_with("booking."))
        .collect();
    let kinds: Vec<&str> = seen.iter().map(|m| m.event.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"booking.created"), "{kinds:?}");
    assert!(kinds.contains(&"booking.moved"), "{kinds:?}");
    assert!(
        seen.iter()
            .all(|m| m.data["aggregate_id"] == booking.as_str()),
        "only this booking's events: {seen:?}"
    );
    let positions: Vec<i64> = seen.iter().map(|m| m.id.unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");

    // A client reconnecting with the last id it saw resumes after it.
    let before_last = positions[positions.len() - 2];
    let mut resumed = Sse::open(
        &app,
        &salon.key,
        &format!("/branches/{}/events", salon.branch_id),
        Some(before_last),
    )
    .await;
    let again = resumed.until("booking.cancelled").await;
    assert_eq!(again.len(), 1, "{again:?}");

    // Someone else's branch is not found.
    let (status, _) = app
        .get(
            &salon.key,
            &format!("/api/v2/mcp/branches/{}/events", other.branch_id),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn the_audit_stream_tails_the_tenant_s_events_from_a_position(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let other = app.seed_salon("Other", "professional").await;
    let mut tail = Sse::open(&app, &salon.key, "/audit/stream?from_position=0", None).await;
    // Everything so far: the salon's set-up, none of the other tenant's.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE tenant_id = $1::uuid")
        .bind(&salon.tenant_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut setup = Vec::new();
    for _ in 0..stored {
        setup.push(
            tail.next(Duration::from_secs(10))
                .await
                .expect("a set-up event"),
        );
    }
    assert_eq!(setup[0].event, "TenantRegistered");
    assert!(
        setup
            .iter()
            .all(|m| m.data["metadata"]["tenant_id"] == salon.tenant_id.as_str()),
        "{setup:?}"
    );
    // Then what happens after, live.
    let (status, _) = app
        .post(
            &other.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&other, Some(0), berlin(2, 9, 0)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, made) = app
        .post(
            &salon.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&salon, Some(0), berlin(2, 9, 0)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let live = tail.until("SlotReserved").await;
    let types: Vec<&str> = live.iter().map(|m| m.event.as_str()).collect();
    assert!(types.contains(&"BookingCreated"), "{types:?}");
    assert!(
        live.iter()
            .all(|m| m.data["metadata"]["tenant_id"] == salon.tenant_id.as_str()),
        "{live:?}"
    );
    let last_setup = setup.last().unwrap().id.unwrap();
    assert!(live.iter().all(|m| m.id.unwrap() > last_setup));
}
