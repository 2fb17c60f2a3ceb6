//! The fault suite: NATS restarted, bookingd killed and Postgres restarted, each in the middle
//! of a mixed load of bookings (four requests for each slot, three staff: one finds it taken)
//! and cancellations, with Cal.com connected. Afterwards the event store, the stream, every
//! projection, the calendars and Cal.com agree: every event on the stream once, every event
//! applied, no two bookings overlapping, no Cal.com booking made or cancelled twice.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::app::{Salon, TEST_SECRET_KEY, berlin, database_url};
use crate::support::calcom::{EVENT_TYPE, StatefulCalcom};
use crate::support::pipeline::{
    assert_calcom_agrees, assert_no_overlaps_and_no_orphans,
    assert_store_stream_and_projections_agree, retry_waiting_calendar_syncs,
};
use crate::support::postgres::PrivatePostgres;
use crate::support::process::BookingdProcess;
use crate::support::{TestApp, poll_until};

/// How long the pipeline may take to settle after a fault.
const SETTLE: Duration = Duration::from_secs(90);

/// What the load saw: answers by status (0: no answer), the bookings made, requests done.
#[derive(Debug, Default)]
struct Tally {
    statuses: Mutex<BTreeMap<u16, usize>>,
    created: Mutex<Vec<String>>,
    done: AtomicUsize,
    /// Server errors other than 503, with their bodies.
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, status: Option<StatusCode>, body: &Value) {
        let code = status.map_or(0, |s| s.as_u16());
        *self.statuses.lock().unwrap().entry(code).or_default() += 1;
        if status.is_some_and(|s| s.is_server_error() && s != StatusCode::SERVICE_UNAVAILABLE) {
            self.failures
                .lock()
                .unwrap()
                .push(format!("{code}: {body}"));
        }
        if code == 503 {
            assert_eq!(
                body["error"]["type"], "SERVICE_UNAVAILABLE",
                "a 503 carries the envelope: {body}"
            );
        }
    }

    fn done(&self) -> usize {
        self.done.load(Ordering::Relaxed)
    }

    /// Waits until `more` requests beyond `from` are done.
    async fn wait_for(&self, more: usize, from: usize) {
        let reached = poll_until(Duration::from_secs(120), || async {
            self.done() >= from + more
        })
        .await;
        assert!(reached, "the load stalled at {} requests", self.done());
    }

    fn count(&self, status: u16) -> usize {
        self.statuses
            .lock()
            .unwrap()
            .get(&status)
            .copied()
            .unwrap_or(0)
    }
}

/// The start of the slot request `i` asks for: four requests per slot, eleven slots a day.
fn slot(i: usize) -> DateTime<Utc> {
    const HOURS: [u32; 11] = [8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19];
    let slot = i / 4;
    let day = i64::try_from(slot / HOURS.len()).expect("day");
    berlin(2 + day, HOURS[slot % HOURS.len()], 0)
}

/// One request; `None` when no answer came (bookingd gone).
async fn send(
    http: &reqwest::Client,
    url: String,
    key: &str,
    body: Value,
) -> (Option<StatusCode>, Value) {
    let Ok(response) = http.post(url).bearer_auth(key).json(&body).send().await else {
        return (None, Value::Null);
    };
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (Some(status), body)
}

/// `ops` booking requests, 16 at a time; every fifth booking made is cancelled right after.
fn mixed_load(
    app: &TestApp,
    salon: &Salon,
    ops: usize,
    tally: Arc<Tally>,
) -> tokio::task::JoinHandle<()> {
    let (http, address, salon) = (app.http.clone(), app.address.clone(), salon.clone());
    tokio::spawn(async move {
        futures::stream::iter(0..ops)
            .for_each_concurrent(16, |i| {
                let (http, address, salon, tally) =
                    (http.clone(), address.clone(), salon.clone(), tally.clone());
                async move {
                    let url = format!("{address}/api/v2/mcp/bookings");
                    let request = TestApp::booking(&salon, None, slot(i));
                    let (status, body) = send(&http, url, &salon.key, request).await;
                    tally.record(status, &body);
                    if status == Some(StatusCode::CREATED) {
                        let id = body["data"]["id"].as_str().expect("id").to_owned();
                        tally.created.lock().unwrap().push(id.clone());
                        if i % 5 == 0 {
                            let url = format!("{address}/api/v2/mcp/bookings/{id}/cancel");
                            let reason = json!({ "reason": "customer called" });
                            let (status, body) = send(&http, url, &salon.key, reason).await;
                            tally.record(status, &body);
                        }
                    }
                    tally.done.fetch_add(1, Ordering::Relaxed);
                }
            })
            .await;
    })
}

/// Connects the salon's Cal.com account.
async fn connect_calcom(app: &TestApp, salon: &Salon) {
    let (status, body) = app
        .put(
            &salon.key,
            "/api/v2/mcp/integrations/calcom",
            json!({ "api_key": "cal_test_fault", "event_types": [{ "service_id": salon.service_id, "event_type_id": EVENT_TYPE }] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Nothing half-written: every booking in the store holds its slot on a staff calendar, in
/// the store itself (the two aggregates commit in one transaction).
async fn assert_every_booking_holds_its_slot(pool: &PgPool) {
    let slotless: Vec<String> = sqlx::query_scalar(
        "SELECT b.aggregate_id FROM events b
          WHERE b.event_type = 'BookingCreated'
            AND NOT EXISTS (SELECT 1 FROM events s
                             WHERE s.aggregate_type = 'Staff'
                               AND s.event_type IN ('SlotHeld', 'SlotReserved')
                               AND s.payload -> s.event_type ->> 'booking_id' = b.aggregate_id)",
    )
    .fetch_all(pool)
    .await
    .expect("bookings");
    assert!(slotless.is_empty(), "bookings without a slot: {slotless:?}");
}

/// Every booking a client was told was made is in the store.
async fn assert_every_created_booking_stored(pool: &PgPool, tally: &Tally) {
    let created = tally.created.lock().unwrap().clone();
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT aggregate_id) FROM events
          WHERE aggregate_type = 'Booking' AND aggregate_id = ANY($1)",
    )
    .bind(&created)
    .fetch_one(pool)
    .await
    .expect("bookings");
    assert_eq!(
        usize::try_from(stored).unwrap(),
        created.len(),
        "a booking answered 201 is missing"
    );
}

/// After a fault: the whole pipeline agrees.
async fn assert_everything_agrees(
    pool: &PgPool,
    nats_url: &str,
    calcom: &StatefulCalcom,
    tally: &Tally,
) {
    let failures = tally.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "server errors: {failures:?}");
    assert_every_created_booking_stored(pool, tally).await;
    assert_every_booking_holds_its_slot(pool).await;
    retry_waiting_calendar_syncs(pool).await;
    assert_store_stream_and_projections_agree(pool, nats_url, SETTLE).await;
    assert_no_overlaps_and_no_orphans(pool).await;
    assert_calcom_agrees(pool, calcom, SETTLE).await;
}

/// The environment of a bookingd process talking to the Cal.com fake; short timeouts keep a
/// dead process's saga lease short.
fn calcom_env(calcom: &StatefulCalcom) -> [(&'static str, String); 4] {
    [
        ("CALCOM_API_URL", calcom.uri()),
        ("BOOKINGD_SECRET_KEY", TEST_SECRET_KEY.to_owned()),
        ("MCP_TIMEOUT", "2".to_owned()),
        ("MCP_MAX_RETRIES", "0".to_owned()),
    ]
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn nats_restarted_mid_load_loses_nothing_and_every_consumer_resumes(pool: PgPool) {
    let calcom = StatefulCalcom::start(Duration::ZERO).await;
    let uri = calcom.uri();
    let mut app = TestApp::spawn_with(pool.clone(), |c| c.integrations.calcom_api_url = uri).await;
    let salon = app.seed_salon("Salon", "enterprise").await;
    connect_calcom(&app, &salon).await;

    let tally = Arc::new(Tally::default());
    let load = mixed_load(&app, &salon, 400, tally.clone());
    tally.wait_for(80, 0).await;
    app.nats.stop();
    // Commands go on succeeding while NATS is away.
    let created = tally.count(201);
    tally.wait_for(80, tally.done()).await;
    assert!(
        tally.count(201) > created,
        "no booking was made while NATS was down"
    );
    app.nats.resume();
    load.await.unwrap();

    assert_eq!(tally.count(0), 0, "every request was answered");
    assert!(tally.count(409) > 0, "the load never contended for a slot");
    assert_everything_agrees(&pool, &app.nats.url(), &calcom, &tally).await;
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn bookingd_killed_mid_load_leaves_store_stream_read_models_and_calcom_agreeing(
    pool: PgPool,
) {
    let calcom = StatefulCalcom::start(Duration::ZERO).await;
    let env = calcom_env(&calcom);
    let mut app = TestApp::bare(pool.clone()).await;
    let url = database_url(&pool);
    let mut first = BookingdProcess::start_with(&url, &app.nats.url(), &env).await;
    app.address = first.address.clone();
    let salon = app.seed_salon("Salon", "enterprise").await;
    connect_calcom(&app, &salon).await;

    let tally = Arc::new(Tally::default());
    let load = mixed_load(&app, &salon, 400, tally.clone());
    tally.wait_for(120, 0).await;
    first.kill();
    load.await.unwrap();
    assert!(
        tally.count(0) > 0,
        "bookingd was killed after the load had finished"
    );

    let second = BookingdProcess::start_with(&url, &app.nats.url(), &env).await;
    app.address = second.address.clone();
    assert_everything_agrees(&pool, &app.nats.url(), &calcom, &tally).await;
}

#[tokio::test]
async fn postgres_restarted_mid_load_fails_fast_writes_nothing_partial_and_bookingd_recovers() {
    let postgres = PrivatePostgres::start();
    let pool = PgPool::connect(&postgres.url())
        .await
        .expect("private cluster");
    adapters::MIGRATOR.run(&pool).await.expect("migrations");
    pool.close().await;
    let calcom = StatefulCalcom::start(Duration::ZERO).await;
    let env = calcom_env(&calcom);
    let mut app = TestApp::bare(PgPool::connect_lazy(&postgres.url()).expect("pool")).await;
    let bookingd = BookingdProcess::start_with(&postgres.url(), &app.nats.url(), &env).await;
    app.address = bookingd.address.clone();
    let salon = app.seed_salon("Salon", "enterprise").await;
    connect_calcom(&app, &salon).await;

    let tally = Arc::new(Tally::default());
    let load = mixed_load(&app, &salon, 400, tally.clone());
    tally.wait_for(80, 0).await;
    postgres.stop();
    // While it is down, commands are refused at once with 503, not left hanging.
    let refused_at = Instant::now();
    let refused = poll_until(Duration::from_secs(30), || async { tally.count(503) >= 16 }).await;
    assert!(
        refused,
        "no 503 while Postgres was down: {:?}",
        tally.statuses
    );
    let refusing_for = refused_at.elapsed();
    postgres.resume();
    // bookingd recovers by itself: the rest of the load is served.
    load.await.unwrap();
    let fresh = PgPool::connect(&postgres.url())
        .await
        .expect("pool after restart");
    let (status, body) = app
        .post(
            &salon.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&salon, None, berlin(60, 10, 0)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "after the restart: {body}");

    eprintln!(
        "postgres restart: answers {:?}; sixteen 503s within {refusing_for:?}",
        tally.statuses.lock().unwrap()
    );
    assert_eq!(tally.count(0), 0, "every request was answered");
    assert_everything_agrees(&fresh, &app.nats.url(), &calcom, &tally).await;
}
