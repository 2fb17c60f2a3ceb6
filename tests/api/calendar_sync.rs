//! Calendar sync against a Cal.com fake speaking API v2: a booking is created, moved and
//! cancelled there, each call checked for its method, path, headers and body, and the booking
//! records the outcome.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::TestApp;
use crate::support::app::{Salon, berlin, poll_until};

const API_KEY: &str = "cal_test_0123456789abcdef";
const EVENT_TYPE: i64 = 4711;

/// A Cal.com booking as API v2 returns it, at the start the request asked for.
fn cal_booking(uid: &str, start: &str, status: &str, metadata: &Value) -> Value {
    json!({
        "status": "success",
        "data": {
            "id": 1, "uid": uid, "title": "Haircut", "status": status,
            "start": start, "end": start, "duration": 30,
            "eventTypeId": EVENT_TYPE, "eventType": { "id": EVENT_TYPE, "slug": "haircut" },
            "metadata": metadata, "attendees": [], "guests": [],
            "rescheduledFromUid": null, "rescheduledToUid": null,
        }
    })
}

/// The fake: create answers uid `cal-1`, reschedule `cal-2`, cancel echoes a cancelled booking.
async fn fake_calcom() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let start = body["start"].as_str().unwrap_or_default();
            ResponseTemplate::new(201).set_body_json(cal_booking(
                "cal-1",
                start,
                "accepted",
                &body["metadata"],
            ))
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/v2/bookings/[^/]+/reschedule$"))
        .respond_with(|request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let start = body["start"].as_str().unwrap_or_default();
            ResponseTemplate::new(201).set_body_json(cal_booking(
                "cal-2",
                start,
                "accepted",
                &json!({}),
            ))
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/v2/bookings/[^/]+/cancel$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(cal_booking(
            "cal-2",
            "2030-01-01T00:00:00.000Z",
            "cancelled",
            &json!({}),
        )))
        .mount(&server)
        .await;
    server
}

/// Connects the salon's Cal.com account: every booking of its service to one event type.
async fn connect(app: &TestApp, salon: &Salon) {
    let (status, body) = app
        .put(
            &salon.key,
            "/api/v2/mcp/integrations/calcom",
            json!({ "api_key": API_KEY, "event_types": [{ "service_id": salon.service_id, "event_type_id": EVENT_TYPE }] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.get("api_key").is_none(),
        "the key is never shown: {body}"
    );
}

/// Waits until the fake has received `count` requests, and returns them.
async fn requests(server: &MockServer, count: usize) -> Vec<Request> {
    let arrived = poll_until(Duration::from_secs(20), || async {
        server.received_requests().await.unwrap_or_default().len() >= count
    })
    .await;
    let received = server.received_requests().await.unwrap_or_default();
    assert!(arrived, "expected {count} Cal.com calls, got {received:?}");
    received
}

/// Checks a call's method, path, headers and JSON body exactly.
fn assert_call(request: &Request, verb: &str, route: &str, body: &Value) {
    assert_eq!(request.method.as_str(), verb);
    assert_eq!(request.url.path(), route);
    let header = |name: &str| {
        request
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(header("authorization"), Some(format!("Bearer {API_KEY}")));
    assert_eq!(header("cal-api-version").as_deref(), Some("2024-08-13"));
    assert_eq!(header("content-type").as_deref(), Some("application/json"));
    let sent: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(&sent, body, "{verb} {route}");
}

/// The booking's calendar sync state, once it has a uid or failed.
async fn synced_uid(app: &TestApp, salon: &Salon, booking: &str, uid: &str) -> Value {
    let path = format!("/api/v2/mcp/bookings/{booking}");
    let sync = || async {
        let (_, body) = app.get(&salon.key, &path).await;
        body["data"]["calendar_sync"].clone()
    };
    let seen = poll_until(Duration::from_secs(20), || async {
        sync().await["uid"] == uid
    })
    .await;
    let last = sync().await;
    assert!(seen, "the booking never recorded uid {uid}: {last}");
    last
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn create_reschedule_and_cancel_reach_calcom_and_the_booking_records_them(pool: PgPool) {
    let calcom = fake_calcom().await;
    let uri = calcom.uri();
    let app = TestApp::spawn_with(pool, |c| c.integrations.calcom_api_url = uri).await;
    let salon = app.seed_salon("Salon", "professional").await;
    connect(&app, &salon).await;

    let start = berlin(2, 10, 0);
    let (status, created) = app
        .post(
            &salon.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&salon, Some(0), start),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let booking = created["data"]["id"].as_str().unwrap().to_owned();
    let sync = synced_uid(&app, &salon, &booking, "cal-1").await;
    assert_eq!(sync["state"], "synced", "{sync}");
    let received = requests(&calcom, 1).await;
    assert_call(
        &received[0],
        "POST",
        "/v2/bookings",
        &json!({
            "start": start.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "eventTypeId": EVENT_TYPE,
            "attendee": {
                "name": "Erika Mustermann",
                "email": "erika@example.com",
                "timeZone": "Europe/Berlin",
                "phoneNumber": "+491512345678",
                "language": "de",
            },
            "metadata": {
                "bookingd_booking_id": booking,
                "bookingd_tenant_id": salon.tenant_id,
            },
        }),
    );

    let moved_to = berlin(3, 14, 30);
    let (status, body) = app
        .post(
            &salon.key,
            &format!("/api/v2/mcp/bookings/{booking}/reschedule"),
            json!({ "start": moved_to.to_rfc3339() }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    synced_uid(&app, &salon, &booking, "cal-2").await;
    let received = requests(&calcom, 2).await;
    assert_call(
        &received[1],
        "POST",
        "/v2/bookings/cal-1/reschedule",
        &json!({ "start": moved_to.format("%Y-%m-%dT%H:%M:%SZ").to_string() }),
    );

    let (status, body) = app
        .post(
            &salon.key,
            &format!("/api/v2/mcp/bookings/{booking}/cancel"),
            json!({ "reason": "Kundin krank" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let received = requests(&calcom, 3).await;
    assert_call(
        &received[2],
        "POST",
        "/v2/bookings/cal-2/cancel",
        &json!({ "cancellationReason": "Kundin krank" }),
    );

    // The booking's own stream holds each outcome once, recorded by the saga.
    let recorded: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT event_type, payload -> event_type ->> 'uid', metadata ->> 'actor' FROM events
         WHERE aggregate_type = 'Booking' AND aggregate_id = $1 AND event_type LIKE 'Calendar%'
         ORDER BY sequence",
    )
    .bind(&booking)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let saga = "saga:calendar-sync".to_owned();
    assert_eq!(
        recorded,
        [
            (
                "CalendarSynced".to_owned(),
                "cal-1".to_owned(),
                saga.clone()
            ),
            ("CalendarSynced".to_owned(), "cal-2".to_owned(), saga),
        ]
    );
    // Nothing more is called once the saga has settled.
    assert!(
        poll_until(Duration::from_secs(10), || async {
            let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM saga_jobs")
                .fetch_one(&app.pool)
                .await
                .unwrap();
            pending == 0
        })
        .await
    );
    assert_eq!(calcom.received_requests().await.unwrap().len(), 3);
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_tenant_without_calcom_is_not_synced_and_credentials_are_sealed(pool: PgPool) {
    let calcom = fake_calcom().await;
    let uri = calcom.uri();
    let app = TestApp::spawn_with(pool, |c| c.integrations.calcom_api_url = uri).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let (status, body) = app.get(&salon.key, "/api/v2/mcp/integrations/calcom").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, created) = app
        .post(
            &salon.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&salon, Some(0), berlin(2, 11, 0)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let booking = created["data"]["id"].as_str().unwrap().to_owned();
    // The saga has seen the booking and dropped its step: nothing was called.
    assert!(
        poll_until(Duration::from_secs(20), || async {
            let settled: Option<i64> = sqlx::query_scalar(
                "SELECT i.last_sequence FROM saga_instances i
                 WHERE i.saga = 'calendar-sync' AND i.instance_id = $1
                   AND NOT EXISTS (SELECT 1 FROM saga_jobs j WHERE j.saga = i.saga AND j.instance_id = i.instance_id)",
            )
            .bind(&booking)
            .fetch_optional(&app.pool)
            .await
            .unwrap();
            settled == Some(2)
        })
        .await
    );
    assert!(calcom.received_requests().await.unwrap().is_empty());

    // Bad mappings are refused; a good one is stored with the key sealed.
    let (status, body) = app
        .put(
            &salon.key,
            "/api/v2/mcp/integrations/calcom",
            json!({ "api_key": API_KEY, "event_types": [{ "service_id": uuid::Uuid::new_v4(), "event_type_id": 1 }] }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["details"]["field"], "event_types[0]");
    connect(&app, &salon).await;
    let sealed: Vec<u8> = sqlx::query_scalar(
        "SELECT sealed FROM integration_credentials WHERE integration = 'calcom'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        !sealed
            .windows(API_KEY.len())
            .any(|w| w == API_KEY.as_bytes()),
        "the key is not stored in the clear"
    );
    let (status, body) = app.get(&salon.key, "/api/v2/mcp/integrations/calcom").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["event_types"][0]["event_type_id"], EVENT_TYPE);
    let (status, body) = app.get(&salon.key, "/api/v2/mcp/integrations/health").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["overall"], "healthy", "{body}");
    assert_eq!(body["integrations"][0]["name"], "calcom");
    assert_eq!(body["integrations"][0]["connected"], true);
}
