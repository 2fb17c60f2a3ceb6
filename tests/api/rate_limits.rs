//! Rate limits per plan and API key, shared by every instance serving the tenant.

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use api::config::ServeConfig;

use crate::support::TestApp;
use crate::support::app::call_at;

/// A window long enough that no test run crosses its boundary.
const LONG_WINDOW: u32 = 1_000_000_000;

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_basic_key_gets_100_requests_per_window_across_two_instances(pool: PgPool) {
    let long_window = |c: &mut ServeConfig| c.rate_limits.rate_limit_window = LONG_WINDOW;
    let mut app = TestApp::spawn_with(pool, long_window).await;
    let second = app.another_instance_with(long_window).await;
    let (_, admin) = app.register_tenant("Klein", "basic").await;
    let (status, body) = app
        .post(
            &admin,
            "/api/v2/mcp/api-keys",
            json!({ "role": "agent", "name": "voice" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let key = body["key"].as_str().unwrap().to_owned();

    let instances = [app.address.clone(), second];
    for i in 0..150 {
        let address = &instances[i % 2];
        let response = app
            .http
            .get(format!("{address}/api/v2/mcp/tenant"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or_else(|| panic!("request {i}: no {name}"))
        };
        assert_eq!(header("x-ratelimit-limit"), 100, "request {i}");
        let remaining = header("x-ratelimit-remaining");
        let reset = header("x-ratelimit-reset");
        assert!(
            reset > chrono::Utc::now().timestamp(),
            "request {i}: reset {reset}"
        );
        if i < 100 {
            assert_eq!(status, StatusCode::OK, "request {i}");
            assert_eq!(remaining, 99 - i as i64, "request {i}");
        } else {
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "request {i}");
            assert_eq!(remaining, 0);
            let retry_after = header("retry-after");
            let body: serde_json::Value = response.json().await.unwrap();
            assert_eq!(body["error"]["type"], "RATE_LIMIT_EXCEEDED", "{body}");
            assert_eq!(body["error"]["code"], 1004);
            assert_eq!(
                body["error"]["details"]["retry_after"], retry_after,
                "{body}"
            );
        }
    }
    // Another key of the same tenant counts on its own; a refused request wrote nothing.
    let (status, _) = call_at(
        &app.http,
        &app.address,
        Method::GET,
        &admin,
        "/api/v2/mcp/tenant",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (events,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM events WHERE aggregate_type = 'Booking'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(events, 0);
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn the_limit_follows_the_plan_and_covers_the_mcp_endpoint(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |c| {
        c.rate_limits.rate_limit_window = LONG_WINDOW;
        c.rate_limits.rate_limit_basic = 3;
        c.rate_limits.rate_limit_pro = 5;
    })
    .await;
    let (_, key) = app.register_tenant("Mittel", "professional").await;
    // Registration made no request with this key; five are allowed.
    for i in 0..5 {
        let (status, _) = app.get(&key, "/api/v2/mcp/tenant").await;
        assert_eq!(status, StatusCode::OK, "request {i}");
    }
    let (status, body) = app.get(&key, "/api/v2/mcp/services").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let response = app
        .http
        .post(format!("{}/mcp", app.address))
        .bearer_auth(&key)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/list" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["x-ratelimit-limit"], "5");
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn concurrent_requests_are_each_counted_once(pool: PgPool) {
    let mut app = TestApp::spawn_with(pool, |c| {
        c.rate_limits.rate_limit_window = LONG_WINDOW;
        c.rate_limits.rate_limit_pro = 40;
    })
    .await;
    let second = app
        .another_instance_with(|c| {
            c.rate_limits.rate_limit_window = LONG_WINDOW;
            c.rate_limits.rate_limit_pro = 40;
        })
        .await;
    let (_, key) = app.register_tenant("Gleichzeitig", "professional").await;
    let instances = [app.address.clone(), second];
    let requests = (0..100).map(|i| {
        let (http, key) = (app.http.clone(), key.clone());
        let address = instances[i % 2].clone();
        tokio::spawn(async move {
            let response = http
                .get(format!("{address}/api/v2/mcp/tenant"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            let remaining: i64 = response.headers()["x-ratelimit-remaining"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            (response.status(), remaining)
        })
    });
    let answers: Vec<(StatusCode, i64)> = futures::future::join_all(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut granted: Vec<i64> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .map(|(_, remaining)| *remaining)
        .collect();
    granted.sort_unstable();
    // Exactly the limit got through, each told a place of its own in the window.
    assert_eq!(granted, (0..40).collect::<Vec<_>>(), "{answers:?}");
    assert!(
        answers
            .iter()
            .all(|(s, r)| *s == StatusCode::OK || (*s == StatusCode::TOO_MANY_REQUESTS && *r == 0)),
        "{answers:?}"
    );
    let (counted,): (i64,) = sqlx::query_as("SELECT sum(requests)::bigint FROM rate_limit_windows")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(counted, 100);
}
