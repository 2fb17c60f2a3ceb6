use futures::future::join_all;
use reqwest::{Method, StatusCode};
use sqlx::PgPool;

use crate::support::app::{berlin, call_at};
use crate::support::{Salon, TestApp};

/// Fires 50 bookings for one staff member at overlapping times, spread over `addresses`, all
/// at once; returns the statuses.
async fn race(app: &TestApp, salon: &Salon, addresses: &[String]) -> Vec<StatusCode> {
    let requests = (0..50).map(|i| {
        // Starts from 10:00 to 10:24: every pair overlaps (30 minutes each).
        let body = TestApp::booking(salon, Some(0), berlin(3, 10, i % 25));
        let address = &addresses[i as usize % addresses.len()];
        app.spawn_post_at(address, &salon.key, "/api/v2/mcp/bookings", body)
    });
    join_all(requests)
        .await
        .into_iter()
        .map(|r| r.expect("task").0)
        .collect()
}

async fn assert_one_winner(app: &TestApp, salon: &Salon, statuses: &[StatusCode]) {
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((created, conflicts), (1, 49), "statuses: {statuses:?}");
    let reservations: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'Staff' AND aggregate_id = $1 AND event_type IN ('SlotReserved', 'ReservationConfirmed')",
    )
    .bind(&salon.staff_ids[0])
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(reservations, 1);
    let bookings: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'BookingCreated'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(bookings, 1, "a refused request left a booking behind");
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn fifty_concurrent_bookings_of_one_slot_make_exactly_one(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let statuses = race(&app, &salon, std::slice::from_ref(&app.address)).await;
    assert_one_winner(&app, &salon, &statuses).await;
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn fifty_concurrent_bookings_over_two_instances_make_exactly_one(pool: PgPool) {
    let mut app = TestApp::spawn(pool).await;
    let second = app.another_instance().await;
    let salon = app.seed_salon("Salon", "professional").await;
    let statuses = race(&app, &salon, &[app.address.clone(), second]).await;
    assert_one_winner(&app, &salon, &statuses).await;
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_slot_freed_on_another_instance_can_be_booked_at_once_on_the_first(pool: PgPool) {
    let mut app = TestApp::spawn(pool).await;
    let second = app.another_instance().await;
    let salon = app.seed_salon("Salon", "professional").await;
    let slot = TestApp::booking(&salon, Some(0), berlin(3, 10, 0));
    let (status, body) = app
        .post(&salon.key, "/api/v2/mcp/bookings", slot.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let booking = body["data"]["id"].as_str().unwrap().to_owned();

    // The first instance last wrote this calendar; the second frees the slot.
    let path = format!("/api/v2/mcp/bookings/{booking}/cancel");
    let (status, _) = call_at(
        &app.http,
        &second,
        Method::POST,
        &salon.key,
        &path,
        Some(serde_json::json!({ "reason": "r" })),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = app.post(&salon.key, "/api/v2/mcp/bookings", slot).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the first instance decided on a stale calendar: {body}"
    );
}

/// Two instances and a salon, after a booking on the first: the first holds the tenant as
/// it was then. Returns the first, the second's address and the salon.
async fn two_instances_after_a_booking(pool: PgPool) -> (TestApp, String, Salon) {
    let mut app = TestApp::spawn(pool).await;
    let second = app.another_instance().await;
    let salon = app.seed_salon("Salon", "professional").await;
    let (status, body) = app
        .post(
            &salon.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&salon, Some(0), berlin(3, 10, 0)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    (app, second, salon)
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_service_retired_on_another_instance_is_refused_at_once_on_the_first(pool: PgPool) {
    let (app, second, salon) = two_instances_after_a_booking(pool).await;

    let path = format!("/api/v2/mcp/services/{}/retire", salon.service_id);
    let (status, body) = call_at(
        &app.http,
        &second,
        Method::POST,
        &salon.key,
        &path,
        Some(serde_json::json!({})),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = app
        .post(
            &salon.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&salon, Some(0), berlin(3, 11, 0)),
        )
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::NOT_FOUND, Some("RESOURCE_NOT_FOUND")),
        "the first instance booked a retired service: {body}"
    );
    let (bookings,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM events WHERE event_type = 'BookingCreated'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(bookings, 1);
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_service_defined_on_another_instance_can_be_booked_at_once_on_the_first(pool: PgPool) {
    let (app, second, salon) = two_instances_after_a_booking(pool).await;

    // The second instance defines a service and qualifies the staff member for it.
    let (status, body) = call_at(
        &app.http,
        &second,
        Method::POST,
        &salon.key,
        "/api/v2/mcp/services",
        Some(serde_json::json!({ "name": "Colour", "duration_minutes": 60, "price": { "amount_minor": 6900, "currency": "EUR" }, "buffer_before_minutes": 0, "buffer_after_minutes": 0, "branch_ids": [salon.branch_id], "deposit": null })),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let service = body["data"]["id"].as_str().unwrap().to_owned();
    let (status, body) = call_at(
        &app.http,
        &second,
        Method::PUT,
        &salon.key,
        &format!(
            "/api/v2/mcp/staff/{}/services/{service}",
            salon.staff_ids[0]
        ),
        Some(serde_json::json!({ "level": 2 })),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let mut colour = TestApp::booking(&salon, Some(0), berlin(3, 14, 0));
    colour["service_id"] = serde_json::json!(service);
    let (status, body) = app.post(&salon.key, "/api/v2/mcp/bookings", colour).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "the first instance decided on the tenant as it was before the service: {body}"
    );
}
