use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::support::TestApp;
use crate::support::app::{berlin, call_at};

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_repeated_idempotency_key_returns_the_first_answer_and_writes_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let body = TestApp::booking(&salon, None, berlin(2, 10, 0));
    let post = |body| {
        call_at(
            &app.http,
            &app.address,
            Method::POST,
            &salon.key,
            "/api/v2/mcp/bookings",
            Some(body),
            Some("booking-42"),
        )
    };

    let (status, first) = post(body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let events = app.event_count().await;
    let (status, repeat) = post(body.clone()).await;
    assert_eq!((status, &repeat), (StatusCode::CREATED, &first));
    assert_eq!(app.event_count().await, events, "the repeat wrote events");

    let mut other = body;
    other["start"] = json!(berlin(2, 15, 0));
    let (status, answer) = post(other).await;
    assert_eq!(
        (status, answer["error"]["details"]["reason"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("KeyReused"))
    );
    assert_eq!(app.event_count().await, events);

    // A refusal is an answer too: repeated, it is replayed, not decided again.
    let refused = TestApp::booking(&salon, Some(0), berlin(2, 10, 0));
    let first_refusal = call_at(
        &app.http,
        &app.address,
        Method::POST,
        &salon.key,
        "/api/v2/mcp/bookings",
        Some(refused.clone()),
        Some("taken"),
    )
    .await;
    let again = call_at(
        &app.http,
        &app.address,
        Method::POST,
        &salon.key,
        "/api/v2/mcp/bookings",
        Some(refused),
        Some("taken"),
    )
    .await;
    assert_eq!(first_refusal.0, StatusCode::CONFLICT);
    assert_eq!(first_refusal, again);
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_tenant_can_neither_read_nor_change_another_tenant_s_resources(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let a = app.seed_salon("A", "professional").await;
    let b = app.seed_salon("B", "professional").await;
    let (status, body) = app
        .post(
            &b.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&b, None, berlin(2, 10, 0)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let b_booking = body["data"]["id"].as_str().unwrap().to_owned();
    let b_position = body["position"].as_i64().unwrap();
    let before = app.event_count().await;

    let attempts = [
        (
            Method::GET,
            format!("/api/v2/mcp/bookings/{b_booking}"),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v2/mcp/bookings/{b_booking}"),
            Some(json!({ "notes": "mine now" })),
        ),
        (
            Method::POST,
            format!("/api/v2/mcp/bookings/{b_booking}/cancel"),
            Some(json!({ "reason": "x" })),
        ),
        (
            Method::POST,
            format!("/api/v2/mcp/bookings/{b_booking}/reschedule"),
            Some(json!({ "start": berlin(2, 11, 0) })),
        ),
        (
            Method::GET,
            format!("/api/v2/mcp/staff/{}", b.staff_ids[0]),
            None,
        ),
        (
            Method::PUT,
            format!("/api/v2/mcp/staff/{}", b.staff_ids[0]),
            Some(json!({ "name": "Mallory" })),
        ),
        (
            Method::POST,
            format!("/api/v2/mcp/staff/{}/deactivate", b.staff_ids[0]),
            Some(json!({})),
        ),
        (
            Method::PUT,
            format!("/api/v2/mcp/tenant/branches/{}", b.branch_id),
            Some(
                json!({ "name": "X", "address": "Y", "city": "Z", "coordinates": null, "time_zone": null, "business_hours": {} }),
            ),
        ),
        (
            Method::POST,
            format!("/api/v2/mcp/services/{}/retire", b.service_id),
            Some(json!({})),
        ),
        (
            Method::POST,
            "/api/v2/mcp/bookings".to_owned(),
            Some(TestApp::booking(&b, None, berlin(2, 14, 0))),
        ),
        (
            Method::GET,
            format!("/api/v2/mcp/staff/{}/availability", b.staff_ids[1]),
            None,
        ),
        (
            Method::GET,
            format!("/api/v2/mcp/staff/{}/calendar", b.staff_ids[1]),
            None,
        ),
        (
            Method::GET,
            format!("/api/v2/mcp/staff/{}/workload", b.staff_ids[1]),
            None,
        ),
        (
            Method::GET,
            format!("/api/v2/mcp/tenant/branches/{}", b.branch_id),
            None,
        ),
        (
            Method::GET,
            format!("/api/v2/mcp/services/{}", b.service_id),
            None,
        ),
        (
            Method::POST,
            "/api/v2/mcp/bookings/check-availability".to_owned(),
            Some(json!({ "service_id": b.service_id, "date": berlin(2, 9, 0).date_naive() })),
        ),
    ];
    for (method, path, body) in attempts {
        let (status, answer) = app.call(method.clone(), &a.key, &path, body).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{method} {path} with A's key: {answer}"
        );
        assert_eq!(answer["error"]["type"], "RESOURCE_NOT_FOUND");
    }
    assert_eq!(app.event_count().await, before, "A's key changed B's data");
    let (_, body) = app
        .get(&b.key, &format!("/api/v2/mcp/bookings/{b_booking}"))
        .await;
    assert_eq!(body["data"]["status"], "confirmed");
    let (_, tenant) = app.get(&a.key, "/api/v2/mcp/tenant").await;
    assert_eq!(tenant["data"]["tenant"]["id"], a.tenant_id.as_str());
    // A's derived views hold none of B's rows, even once B's booking is in the read models.
    let (_, b_list) = app
        .get(
            &b.key,
            &format!("/api/v2/mcp/bookings?min_position={b_position}"),
        )
        .await;
    assert_eq!(b_list["data"][0]["id"], b_booking.as_str(), "{b_list}");
    for path in [
        "/api/v2/mcp/bookings",
        "/api/v2/mcp/customers",
        "/api/v2/mcp/staff",
    ] {
        let (status, page) = app.get(&a.key, path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let ids: Vec<&str> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|row| row["id"].as_str().or(row["phone"].as_str()))
            .collect();
        for b_id in b
            .staff_ids
            .iter()
            .map(String::as_str)
            .chain([b_booking.as_str()])
        {
            assert!(!ids.contains(&b_id), "{path} with A's key lists B's {b_id}");
        }
        if path != "/api/v2/mcp/staff" {
            assert_eq!(ids, Vec::<&str>::new(), "{path} with A's key: {page}");
        }
    }
    let (_, summary) = app.get(&a.key, "/api/v2/mcp/dashboard/summary").await;
    assert_eq!(summary["bookings"], 0, "{summary}");
}
