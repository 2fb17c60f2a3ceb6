//! Calendar sync against a Cal.com fake speaking API v2: a booking is created, moved and
//! cancelled there, each call checked for its method, path, headers and body, and the booking
//! records the outcome.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use sagas::ShiftedClock;
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::TestApp;
use crate::support::app::{Salon, TEST_SECRET_KEY, berlin, database_url, poll_until};
use crate::support::calcom::{EVENT_TYPE, StatefulCalcom, cal_booking};
use crate::support::process::BookingdProcess;

const API_KEY: &str = "cal_test_0123456789abcdef";
/// Cal.com creating every booking asked for, as `uid`, at the start asked for.
async fn mount_creating(server: &MockServer, uid: &'static str) {
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(move |request: &Request| {
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let start = body["start"].as_str().unwrap_or_default();
            ResponseTemplate::new(201).set_body_json(cal_booking(
                uid,
                start,
                "accepted",
                &body["metadata"],
            ))
        })
        .mount(server)
        .await;
}

/// Cal.com listing no bookings.
async fn mount_nothing_listed(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path("/v2/bookings"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "status": "success", "data": [], "pagination": {} })),
        )
        .mount(server)
        .await;
}

/// The fake: create answers uid `cal-1`, reschedule `cal-2`, cancel echoes a cancelled booking.
async fn fake_calcom() -> MockServer {
    let server = MockServer::start().await;
    mount_creating(&server, "cal-1").await;
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

/// The booking's calendar sync state, once it has recorded `uid`.
async fn synced_uid(app: &TestApp, salon: &Salon, booking: &str, uid: &str) -> Value {
    sync_state(app, salon, booking, |b| b["calendar_sync"]["uid"] == uid).await["calendar_sync"]
        .clone()
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn create_reschedule_and_cancel_reach_calcom_and_the_booking_records_them(pool: PgPool) {
    let calcom = fake_calcom().await;
    let uri = calcom.uri();
    let app = TestApp::spawn_with(pool, |c| c.integrations.calcom_api_url = uri).await;
    let salon = app.seed_salon("Salon", "professional").await;
    connect(&app, &salon).await;

    let start = berlin(2, 10, 0);
    // A trace id given by the caller follows the booking to Cal.com.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = app
        .http
        .post(format!("{}/api/v2/mcp/bookings", app.address))
        .bearer_auth(&salon.key)
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&TestApp::booking(&salon, Some(0), start))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let correlation = "4bf92f35-77b3-4da6-a3ce-929d0e0e4736";
    assert_eq!(response.headers()["x-correlation-id"], correlation);
    let created: Value = response.json().await.unwrap();
    let booking = created["data"]["id"].as_str().unwrap().to_owned();
    let sync = synced_uid(&app, &salon, &booking, "cal-1").await;
    assert_eq!(sync["state"], "synced", "{sync}");
    let received = requests(&calcom, 1).await;
    let traceparent = received[0].headers["traceparent"].to_str().unwrap();
    assert!(
        traceparent.starts_with(&format!("00-{trace}-")),
        "{traceparent}"
    );
    let (event_id, stored): (String, String) = sqlx::query_as(
        "SELECT metadata->>'event_id', metadata->>'correlation_id' FROM events
          WHERE aggregate_id = $1 AND event_type = 'BookingCreated'",
    )
    .bind(&booking)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(stored, correlation);
    let published = crate::support::stream::read_stream(&app.nats.url()).await;
    let message = published
        .iter()
        .find(|m| m.msg_id == event_id)
        .expect("on the stream");
    assert_eq!(message.correlation_id.as_deref(), Some(correlation));
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
            settled == Some(1)
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

/// A salon connected to a Cal.com fake, on a server whose clock the test moves.
async fn connected_salon(
    pool: PgPool,
    calcom: &MockServer,
    change: impl FnOnce(&mut api::config::ServeConfig),
) -> (TestApp, Salon, ShiftedClock) {
    let clock = ShiftedClock::default();
    let uri = calcom.uri();
    let shared = clock.clone();
    let app = TestApp::spawn_with(pool, |c| {
        c.integrations.calcom_api_url = uri;
        c.clock = Arc::new(shared);
        change(c);
    })
    .await;
    let salon = app.seed_salon("Salon", "professional").await;
    connect(&app, &salon).await;
    (app, salon, clock)
}

async fn book(app: &TestApp, salon: &Salon, days: i64, hour: u32) -> String {
    let created = app.book(salon, Some(0), berlin(days, hour, 0)).await;
    created["data"]["id"].as_str().unwrap().to_owned()
}

/// The booking's calendar sync state once `done` holds for it.
async fn sync_state(
    app: &TestApp,
    salon: &Salon,
    booking: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    app.booking_when(&salon.key, booking, done).await
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_slow_calcom_never_holds_up_bookings(pool: PgPool) {
    let calcom = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(5)))
        .mount(&calcom)
        .await;
    let (app, salon, _clock) = connected_salon(pool, &calcom, |c| {
        c.integrations.timeout = 2.0;
        c.integrations.max_retries = 0;
    })
    .await;
    let booking = book(&app, &salon, 2, 10).await;
    // While its slow call is in flight, more bookings are made: none waits for Cal.com.
    let _ = requests(&calcom, 1).await;
    let mut meanwhile = Vec::new();
    for hour in [11, 13, 14] {
        meanwhile.push(book(&app, &salon, 2, hour).await);
    }
    let _ = sync_state(&app, &salon, &booking, |b| {
        b["calendar_sync"]["attempts"] == 1
    })
    .await;
    let (answered_before,): (bool,) = sqlx::query_as(
        "SELECT max(recorded_at) FILTER (WHERE aggregate_id = ANY($2) AND event_type = 'BookingCreated')
              < max(recorded_at) FILTER (WHERE aggregate_id = $1 AND event_type = 'CalendarSyncFailed')
           FROM events",
    )
    .bind(&booking)
    .bind(&meanwhile)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(
        answered_before,
        "the other bookings waited for the slow Cal.com call"
    );
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_slow_calcom_is_cut_at_the_timeout_and_the_sync_is_retried_later(pool: PgPool) {
    let calcom = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(ResponseTemplate::new(201).set_delay(Duration::from_secs(5)))
        .mount(&calcom)
        .await;
    let (app, salon, clock) = connected_salon(pool, &calcom, |c| {
        c.integrations.timeout = 2.0;
        c.integrations.max_retries = 0;
    })
    .await;
    let booking = book(&app, &salon, 2, 10).await;

    let failed = sync_state(&app, &salon, &booking, |b| {
        b["calendar_sync"]["attempts"] == 1
    })
    .await;
    assert_eq!(failed["status"], "confirmed", "the booking stays confirmed");
    assert_eq!(
        failed["calendar_sync"]["state"], "pending",
        "sync pending: {failed}"
    );
    assert!(
        failed["calendar_sync"]["last_error"]
            .as_str()
            .unwrap()
            .contains("did not answer within 2 s"),
        "{failed}"
    );
    // Cut at the timeout: the failure is recorded well before the fake's 5 s would be up.
    let took: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM max(recorded_at) FILTER (WHERE event_type = 'CalendarSyncFailed')
                                 - max(recorded_at) FILTER (WHERE event_type IN ('BookingCreated', 'BookingConfirmed')))::float8
         FROM events WHERE aggregate_id = $1",
    )
    .bind(&booking)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!((1.9..4.5).contains(&took), "the call took {took} s");
    // The retry waits five minutes on the saga's clock.
    let due: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM due_at - now())::float8 FROM saga_jobs WHERE instance_id = $1",
    )
    .bind(&booking)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(due > 240.0, "the retry is due in {due} s");

    // Cal.com answers again; five minutes later the retry looks for the booking first (the
    // timed-out call may have made it), finds none, and creates it.
    calcom.reset().await;
    mount_nothing_listed(&calcom).await;
    mount_creating(&calcom, "cal-1").await;
    clock.advance(chrono::Duration::minutes(5));
    let synced = sync_state(&app, &salon, &booking, |b| {
        b["calendar_sync"]["uid"] == "cal-1"
    })
    .await;
    assert_eq!(synced["calendar_sync"]["state"], "synced");
    let received = requests(&calcom, 2).await;
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(received[0].method.as_str(), "GET");
    let query: Vec<(String, String)> = received[0].url.query_pairs().into_owned().collect();
    assert!(
        query.contains(&("eventTypeId".to_owned(), EVENT_TYPE.to_string())),
        "{query:?}"
    );
    assert_eq!(received[1].method.as_str(), "POST");
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn the_circuit_opens_after_five_failures_and_one_probe_closes_it(pool: PgPool) {
    let calcom = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(ResponseTemplate::new(503).set_body_json(json!({ "status": "error", "error": { "code": "ServiceUnavailableException", "message": "down" } })))
        .mount(&calcom)
        .await;
    let (app, salon, clock) = connected_salon(pool, &calcom, |c| {
        c.integrations.max_retries = 0;
        c.integrations.circuit_failure_threshold = 5;
        c.integrations.circuit_recovery_timeout = 60;
    })
    .await;
    let health = || async {
        let (status, body) = app.get(&salon.key, "/api/v2/mcp/integrations/health").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    };
    for hour in [9, 10, 11, 13, 14] {
        let booking = book(&app, &salon, 2, hour).await;
        sync_state(&app, &salon, &booking, |b| {
            b["calendar_sync"]["attempts"] == 1
        })
        .await;
    }
    assert_eq!(requests(&calcom, 5).await.len(), 5);
    // A failure's retry is the saga's own write, made apart from the booking's event.
    poll_until(Duration::from_secs(10), || async {
        health().await["integrations"][0]["pending_retries"] == 5
    })
    .await;
    let open = health().await;
    assert_eq!(open["overall"], "unhealthy", "{open}");
    assert_eq!(open["integrations"][0]["state"], "open", "{open}");
    assert_eq!(open["integrations"][0]["failure_count"], 5, "{open}");
    assert_eq!(open["integrations"][0]["pending_retries"], 5, "{open}");
    let (_, liveness) = app.get(&salon.key, "/api/v2/mcp/health").await;
    assert_eq!(liveness["status"], "degraded", "{liveness}");
    assert_eq!(liveness["integrations"][0]["state"], "open", "{liveness}");

    // The sixth is not attempted.
    let sixth = book(&app, &salon, 2, 15).await;
    let refused = sync_state(&app, &salon, &sixth, |b| {
        b["calendar_sync"]["attempts"] == 1
    })
    .await;
    assert!(
        refused["calendar_sync"]["last_error"]
            .as_str()
            .unwrap()
            .contains("circuit open"),
        "{refused}"
    );
    assert_eq!(calcom.received_requests().await.unwrap().len(), 5);

    // After the recovery timeout one probe goes through; it succeeds and closes the circuit.
    calcom.reset().await;
    mount_creating(&calcom, "cal-probe").await;
    clock.advance(chrono::Duration::seconds(61));
    let probe = book(&app, &salon, 2, 16).await;
    sync_state(&app, &salon, &probe, |b| {
        b["calendar_sync"]["uid"] == "cal-probe"
    })
    .await;
    assert_eq!(requests(&calcom, 1).await.len(), 1);
    let closed = health().await;
    assert_eq!(closed["overall"], "healthy", "{closed}");
    assert_eq!(closed["integrations"][0]["state"], "closed", "{closed}");
    assert!(
        closed["integrations"][0]["last_success"].is_string(),
        "{closed}"
    );
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_saga_killed_mid_call_resumes_without_booking_calcom_twice(pool: PgPool) {
    let fake = StatefulCalcom::start(Duration::from_secs(3)).await;
    let (calcom, made) = (&fake.server, fake.made.clone());
    let mut app = TestApp::bare(pool.clone()).await;
    let url = database_url(&pool);
    let env = [
        ("CALCOM_API_URL", calcom.uri()),
        ("BOOKINGD_SECRET_KEY", TEST_SECRET_KEY.to_owned()),
        ("MCP_TIMEOUT", "1".to_owned()),
        ("MCP_MAX_RETRIES", "0".to_owned()),
    ];
    let mut first = BookingdProcess::start_with(&url, &app.nats.url(), &env).await;
    app.address = first.address.clone();
    let salon = app.seed_salon("Salon", "professional").await;
    connect(&app, &salon).await;
    let booking = book(&app, &salon, 2, 10).await;
    // Killed while Cal.com is still answering the create.
    requests(calcom, 1).await;
    first.kill();
    assert_eq!(made.lock().unwrap().len(), 1);

    // The restarted process takes the job over once the dead one's claim lapses, finds the
    // booking the killed call made, and records it instead of making another.
    let second = BookingdProcess::start_with(&url, &app.nats.url(), &env).await;
    app.address = second.address.clone();
    let synced = sync_state(&app, &salon, &booking, |b| {
        b["calendar_sync"]["uid"] == "cal-1"
    })
    .await;
    assert_eq!(synced["calendar_sync"]["state"], "synced", "{synced}");
    let posts = calcom
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 1, "Cal.com was asked to create the booking once");
    assert_eq!(made.lock().unwrap().len(), 1);
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_slot_taken_in_calcom_cancels_the_booking_frees_the_slot_and_alerts(pool: PgPool) {
    let calcom = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "status": "error", "timestamp": "2030-01-01T00:00:00.000Z", "path": "/v2/bookings",
            "error": { "code": "BadRequestException", "message": "User either already has booking at this time or is not available",
                       "details": { "message": "User either already has booking at this time or is not available", "error": "Bad Request", "statusCode": 400 } }
        })))
        .up_to_n_times(1)
        .mount(&calcom)
        .await;
    // Only the first booking is refused: the one made again in the freed slot goes through,
    // so it raises no alert of its own.
    mount_creating(&calcom, "cal-1").await;
    // Texts to customers go to a Twilio fake.
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/2010-04-01/Accounts/AC1/Messages.json$"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(json!({ "sid": "SM1", "status": "queued" })),
        )
        .mount(&twilio)
        .await;
    let twilio_url = twilio.uri();
    let (app, salon, _) = connected_salon(pool, &calcom, |c| {
        let i = &mut c.integrations;
        i.twilio_api_url = twilio_url;
        i.twilio_account_sid = Some("AC1".to_owned());
        i.twilio_auth_token = Some(secrecy::SecretString::from("token".to_owned()));
        i.twilio_from = Some("Salon".to_owned());
    })
    .await;
    let (status, body) = app
        .put(
            &salon.key,
            "/api/v2/mcp/tenant/settings",
            json!({ "time_zone": "Europe/Berlin", "features": { "sms_notifications": true } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let start = berlin(2, 10, 0);
    let booking = book(&app, &salon, 2, 10).await;

    let cancelled = sync_state(&app, &salon, &booking, |b| b["status"] == "cancelled").await;
    assert_eq!(
        cancelled["calendar_sync"]["state"], "failed",
        "refused for good: {cancelled}"
    );
    assert_eq!(cancelled["cancellation"]["actor"], "saga:calendar-sync");
    // The saga settles with nothing left to do: one call, a refusal is not retried.
    assert!(
        poll_until(Duration::from_secs(20), || async {
            let (jobs, taken): (i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM saga_jobs WHERE saga = 'calendar-sync' AND instance_id = $1),
                        (SELECT last_sequence FROM saga_instances WHERE saga = 'calendar-sync' AND instance_id = $1)",
            )
            .bind(&booking)
            .fetch_one(&app.pool)
            .await
            .unwrap();
            jobs == 0 && taken == 3
        })
        .await
    );
    assert_eq!(calcom.received_requests().await.unwrap().len(), 1);
    // The slot is free again.
    let (status, again) = app
        .post(
            &salon.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&salon, Some(0), start),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    let again = again["data"]["id"].as_str().unwrap();
    let synced = sync_state(&app, &salon, again, |b| {
        b["calendar_sync"]["state"] == "synced" || b["calendar_sync"]["state"] == "failed"
    })
    .await;
    assert_eq!(synced["calendar_sync"]["state"], "synced", "{synced}");
    let alerts: Vec<String> = sqlx::query_scalar(
        "SELECT message FROM operator_alerts WHERE source = 'calendar-sync' AND subject = $1",
    )
    .bind(format!("booking {booking}"))
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].contains("slot is taken"), "{alerts:?}");
    // Operators see it, and can mark it resolved.
    let operator = crate::support::app::OPERATOR_TOKEN;
    let open_alerts = format!("/api/v2/admin/alerts?tenant_id={}", salon.tenant_id);
    let (status, listed) = app.get(operator, &open_alerts).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    let alert = listed["data"][0]["id"].as_str().unwrap();
    let (status, resolved) = app
        .post(
            operator,
            &format!("/api/v2/admin/alerts/{alert}/resolve"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{resolved}");
    assert!(resolved["resolved_at"].is_string(), "{resolved}");
    let (_, listed) = app.get(operator, &open_alerts).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 0, "{listed}");

    // The customer is told, with the next free times (from the same availability the API
    // offers, without the refused one).
    let told = poll_until(Duration::from_secs(20), || async {
        twilio
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .any(|r| String::from_utf8_lossy(&r.body).contains("storniert"))
    })
    .await;
    assert!(told, "no cancellation text");
    let text = twilio
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            form_urlencoded::parse(&r.body)
                .into_owned()
                .find(|(k, _)| k == "Body")
                .unwrap()
                .1
        })
        .find(|b| b.contains("storniert"))
        .unwrap();
    let (_, offered) = app
        .post(
            &salon.key,
            "/api/v2/mcp/bookings/check-availability",
            json!({ "service_id": salon.service_id, "start_date": chrono::Utc::now().date_naive(), "end_date": chrono::Utc::now().date_naive() + chrono::Duration::days(14) }),
        )
        .await;
    let weekdays = [
        "Montag",
        "Dienstag",
        "Mittwoch",
        "Donnerstag",
        "Freitag",
        "Samstag",
        "Sonntag",
    ];
    let spoken: Vec<String> = offered["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|slot| {
            let at = slot["start"]
                .as_str()
                .unwrap()
                .parse::<chrono::DateTime<chrono::Utc>>()
                .unwrap()
                .with_timezone(&chrono_tz::Europe::Berlin);
            format!(
                "{}, {} um {} Uhr",
                weekdays[chrono::Datelike::weekday(&at).num_days_from_monday() as usize],
                at.format("%d.%m.%Y"),
                at.format("%H:%M")
            )
        })
        .collect();
    let (_, alternatives) = text.split_once("Freie Termine: ").expect(&text);
    let alternatives: Vec<&str> = alternatives.split("; ").collect();
    assert_eq!(alternatives.len(), 3, "{text}");
    for alternative in alternatives {
        assert!(
            spoken.iter().any(|s| s == alternative),
            "{alternative} is not free: {text}"
        );
    }
}

/// Posts a Cal.com delivery, signed with `secret` (or with the given header).
async fn deliver(
    app: &TestApp,
    tenant: &str,
    body: &Value,
    signature: Option<String>,
) -> (StatusCode, Value) {
    let raw = serde_json::to_vec(body).unwrap();
    let mut request = app
        .http
        .post(format!("{}/api/v2/webhooks/calcom/{tenant}", app.address))
        .header("content-type", "application/json")
        .header("x-cal-webhook-version", "2021-10-20")
        .body(raw);
    if let Some(signature) = signature {
        request = request.header("x-cal-signature-256", signature);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn cal_delivery(trigger: &str, uid: &str, start: &str, end: &str, extra: &Value) -> Value {
    let mut payload = json!({
        "type": "haircut", "title": "Haircut between Salon and Max", "description": "",
        "startTime": start, "endTime": end, "uid": uid, "bookingId": 91, "eventTypeId": EVENT_TYPE,
        "organizer": { "id": 101, "name": "Anna", "email": "anna@salon.example", "timeZone": "Europe/Berlin", "language": { "locale": "de" } },
        "attendees": [{ "name": "Max", "email": "max@example.com", "timeZone": "Europe/Berlin", "language": { "locale": "de" } }],
        "metadata": {}, "status": if trigger == "BOOKING_CANCELLED" { "CANCELLED" } else { "ACCEPTED" },
    });
    if let (Some(p), Some(e)) = (payload.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    json!({ "triggerEvent": trigger, "createdAt": "2030-01-01T09:30:00.538Z", "payload": payload })
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn bookings_made_in_calcom_block_their_hosts_time_once_and_only_when_signed(pool: PgPool) {
    let calcom = fake_calcom().await;
    let uri = calcom.uri();
    let app = TestApp::spawn_with(pool, |c| c.integrations.calcom_api_url = uri).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let secret = "whsec_0123456789";
    let (status, body) = app
        .put(
            &salon.key,
            "/api/v2/mcp/integrations/calcom",
            json!({ "api_key": API_KEY, "webhook_secret": secret,
                    "event_types": [{ "service_id": salon.service_id, "event_type_id": EVENT_TYPE }],
                    "hosts": [{ "staff_id": salon.staff_ids[0], "host_id": 101 }] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let start = berlin(2, 15, 0);
    let (from, to) = (
        start.to_rfc3339(),
        (start + chrono::Duration::minutes(45)).to_rfc3339(),
    );
    let created = cal_delivery("BOOKING_CREATED", "ext-1", &from, &to, &json!({}));
    let sign = |body: &Value| {
        Some(adapters::webhooks::calcom_signature(
            secret.as_bytes(),
            &serde_json::to_vec(body).unwrap(),
        ))
    };
    let events = app.event_count().await;

    // Unsigned, forged or signed with another secret: refused, nothing recorded.
    for signature in [
        None,
        Some("no-secret-provided".to_owned()),
        Some(adapters::webhooks::calcom_signature(
            b"another secret",
            &serde_json::to_vec(&created).unwrap(),
        )),
    ] {
        let (status, body) = deliver(&app, &salon.tenant_id, &created, signature).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"]["type"], "PERMISSION_DENIED", "{body}");
    }
    // A valid signature over a different body does not pass either.
    let mut tampered = created.clone();
    tampered["payload"]["endTime"] = json!(start + chrono::Duration::hours(5));
    let (status, _) = deliver(&app, &salon.tenant_id, &tampered, sign(&created)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.event_count().await, events);
    let receipts: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_receipts")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(receipts, 0);

    // Signed: the host's time is blocked, so that slot cannot be booked here.
    let (status, body) = deliver(&app, &salon.tenant_id, &created, sign(&created)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("applied")),
        "{body}"
    );
    let (status, body) = app
        .post(
            &salon.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&salon, Some(0), start),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // A replay changes nothing.
    let events = app.event_count().await;
    let (status, body) = deliver(&app, &salon.tenant_id, &created, sign(&created)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("duplicate")),
        "{body}"
    );
    assert_eq!(app.event_count().await, events);
    // Our own bookings, mirrored back, are not blocked twice.
    let ours = cal_delivery(
        "BOOKING_CREATED",
        "cal-9",
        &berlin(3, 9, 0).to_rfc3339(),
        &berlin(3, 9, 30).to_rfc3339(),
        &json!({ "metadata": { "bookingd_booking_id": uuid::Uuid::new_v4() } }),
    );
    let (_, body) = deliver(&app, &salon.tenant_id, &ours, sign(&ours)).await;
    assert_eq!(body["status"], "ignored", "{body}");

    // Cancelled in Cal.com: the time is free again.
    let cancelled = cal_delivery(
        "BOOKING_CANCELLED",
        "ext-1",
        &from,
        &to,
        &json!({ "cancellationReason": "krank" }),
    );
    let (status, body) = deliver(&app, &salon.tenant_id, &cancelled, sign(&cancelled)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("applied")),
        "{body}"
    );
    let (status, body) = app
        .post(
            &salon.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&salon, Some(0), start),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_poison_event_is_parked_by_the_saga_and_retry_takes_it(pool: PgPool) {
    let calcom = fake_calcom().await;
    let (app, salon, _) = connected_salon(pool.clone(), &calcom, |_| {}).await;
    // A fault in the saga's table for one customer's bookings.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.state -> 'wanted' -> 'customer' ->> 'phone' = '+4915199999999' THEN
                 RAISE EXCEPTION 'disk on fire';
             END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON saga_instances
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Held, then confirmed: two events, the second parked behind the first.
    let mut request = TestApp::booking(&salon, Some(0), berlin(2, 9, 0));
    request["customer"]["phone"] = json!("+4915199999999");
    let poisoned = app.hold_then_confirm(&salon.key, request).await;
    let healthy = book(&app, &salon, 2, 10).await;

    // The healthy booking syncs while the poisoned one's events are retried, then parked.
    sync_state(&app, &salon, &healthy, |b| {
        b["calendar_sync"]["uid"] == "cal-1"
    })
    .await;
    let parked = poll_until(Duration::from_secs(30), || async {
        projections::dead_letters::list(&pool, Some("saga:calendar-sync"))
            .await
            .unwrap()
            .len()
            == 2
    })
    .await;
    assert!(parked, "the poisoned booking's events were not parked");

    sqlx::raw_sql("DROP TRIGGER refuse_poison ON saga_instances")
        .execute(&pool)
        .await
        .unwrap();
    let (status, retried) = app
        .post(
            crate::support::app::OPERATOR_TOKEN,
            "/api/v2/admin/deadletters/saga:calendar-sync/retry",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(retried["applied"], 2, "{retried}");
    sync_state(&app, &salon, &poisoned, |b| {
        b["calendar_sync"]["state"] == "synced"
    })
    .await;
    assert_eq!(requests(&calcom, 2).await.len(), 2);
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_rate_limited_call_waits_for_the_reset_and_looks_before_trying_again(pool: PgPool) {
    let calcom = MockServer::start().await;
    // The first create is throttled; Cal.com says the window resets in one second.
    Mock::given(method("POST"))
        .and(path("/v2/bookings"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("X-RateLimit-Limit-Default", "120")
                .insert_header("X-RateLimit-Remaining-Default", "0")
                .insert_header("X-RateLimit-Reset-Default", "1")
                .set_body_json(json!({ "status": "error", "error": { "code": "ThrottlerException", "message": "CustomThrottlerGuard - Too many requests. Please try again later." } })),
        )
        .up_to_n_times(1)
        .mount(&calcom)
        .await;
    mount_nothing_listed(&calcom).await;
    mount_creating(&calcom, "cal-1").await;
    let (app, salon, _) = connected_salon(pool, &calcom, |c| c.integrations.max_retries = 1).await;
    let started = std::time::Instant::now();
    let booking = book(&app, &salon, 2, 10).await;
    sync_state(&app, &salon, &booking, |b| {
        b["calendar_sync"]["uid"] == "cal-1"
    })
    .await;
    // The retry waited for the reset (a backoff alone is at most 200 ms), and looked first.
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    let received = calcom.received_requests().await.unwrap();
    let calls: Vec<&str> = received.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(calls, ["POST", "GET", "POST"]);
}
