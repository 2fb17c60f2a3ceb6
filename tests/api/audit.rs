use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::TestApp;
use crate::support::app::{berlin, poll_until};

/// The events a tenant's audit export holds, in the order given.
async fn export(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let response = app
        .http
        .get(format!("{}/api/v2/mcp/audit/export{query}", app.address))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "application/x-ndjson"
    );
    response
        .text()
        .await
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_tenants_audit_holds_exactly_its_own_events_in_order(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let a = app.seed_salon("Salon A", "professional").await;
    let b = app.seed_salon("Salon B", "professional").await;
    let (status, booked) = app
        .post(
            &a.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&a, Some(0), berlin(2, 9, 0)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{booked}");
    let booking = booked["data"]["id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .post(
            &b.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&b, Some(0), berlin(2, 9, 0)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app
        .post(
            &a.key,
            &format!("/api/v2/mcp/bookings/{booking}/cancel"),
            json!({ "reason": "ill" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // The export holds exactly tenant A's events, as stored, in store order, once every
    // transaction older than the last command's has ended (the export reads only below that
    // horizon, so that paging never skips an event still being written).
    let stored: Vec<(i64, String)> = sqlx::query_as(
        "SELECT position, event_id::text FROM events WHERE metadata ->> 'tenant_id' = $1 ORDER BY position",
    )
    .bind(&a.tenant_id)
    .fetch_all(&pool)
    .await
    .unwrap();
    let listed = |exported: &[Value]| -> Vec<(i64, String)> {
        exported
            .iter()
            .map(|e| {
                (
                    e["position"].as_i64().unwrap(),
                    e["event_id"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let settled = poll_until(Duration::from_secs(10), || async {
        listed(&export(&app, &a.key, "").await) == stored
    })
    .await;
    let exported = export(&app, &a.key, "").await;
    assert!(
        settled,
        "export {:?} differs from the store {stored:?}",
        listed(&exported)
    );
    assert!(
        exported
            .iter()
            .all(|e| e["metadata"]["tenant_id"] == a.tenant_id.as_str())
    );

    // Paged, filtered listing agrees with the export.
    let mut paged = Vec::new();
    let mut path = "/api/v2/mcp/audit/events?limit=3".to_owned();
    loop {
        let (status, page) = app.get(&a.key, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        paged.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["position"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v2/mcp/audit/events?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(paged, stored.iter().map(|(p, _)| *p).collect::<Vec<_>>());
    let (_, cancelled) = app
        .get(
            &a.key,
            "/api/v2/mcp/audit/events?event_type=BookingCancelled",
        )
        .await;
    assert_eq!(cancelled["data"].as_array().unwrap().len(), 1);
    assert_eq!(cancelled["data"][0]["aggregate_id"], booking.as_str());
    assert_eq!(
        cancelled["data"][0]["metadata"]["actor"]
            .as_str()
            .map(str::is_empty),
        Some(false)
    );

    // A booking's history, and none for another tenant.
    let (status, history) = app
        .get(&a.key, &format!("/api/v2/mcp/bookings/{booking}/history"))
        .await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let types: Vec<&str> = history["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["BookingCreated", "BookingCancelled"]);
    let (status, _) = app
        .get(&b.key, &format!("/api/v2/mcp/bookings/{booking}/history"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let filtered = export(&app, &b.key, &format!("?aggregate_id={booking}")).await;
    assert!(filtered.is_empty());

    let (status, body) = app.get(&a.key, "/api/v2/mcp/audit/events?cursor=abc").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}
