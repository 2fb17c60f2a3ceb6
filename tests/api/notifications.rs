//! Customer notifications against a Twilio fake speaking its Messages API and an SMTP sink:
//! confirmations, reminders on the saga's clock, notices of moves and cancellations, the
//! fallback to e-mail, delivery reports, and at most one send per message.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use sagas::ShiftedClock;
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::TestApp;
use crate::support::app::{Salon, berlin, poll_until};
use crate::support::smtp::SmtpSink;

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-auth-token";
const PUBLIC: &str = "https://bookingd.example";
const MESSAGES: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";

/// A Twilio fake: every message accepted (201) with sids `SM1`, `SM2`, …, after `delay`.
async fn twilio_accepting(delay: Duration) -> MockServer {
    let server = MockServer::start().await;
    let sent = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(move |request: &Request| {
            let n = sent.fetch_add(1, Ordering::SeqCst) + 1;
            let form = form(request);
            ResponseTemplate::new(201)
                .set_body_json(json!({
                    "account_sid": ACCOUNT, "api_version": "2010-04-01", "body": form["Body"],
                    "date_created": "Thu, 28 Nov 2030 09:00:00 +0000", "date_sent": null, "date_updated": "Thu, 28 Nov 2030 09:00:00 +0000",
                    "direction": "outbound-api", "error_code": null, "error_message": null, "from": form["From"],
                    "messaging_service_sid": null, "num_media": "0", "num_segments": "1", "price": null, "price_unit": "EUR",
                    "sid": format!("SM{n}"), "status": "queued", "subresource_uris": {}, "to": form["To"],
                    "uri": format!("/2010-04-01/Accounts/{ACCOUNT}/Messages/SM{n}.json"),
                }))
                .set_delay(delay)
        })
        .mount(&server)
        .await;
    server
}

/// A request's form fields.
fn form(request: &Request) -> Value {
    let fields: serde_json::Map<String, Value> = form_urlencoded::parse(&request.body)
        .into_owned()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    Value::Object(fields)
}

/// The messages Twilio was asked to send, as form fields.
async fn texts(twilio: &MockServer, at_least: usize) -> Vec<Value> {
    let arrived = poll_until(Duration::from_secs(20), || async {
        twilio.received_requests().await.unwrap_or_default().len() >= at_least
    })
    .await;
    let received = twilio.received_requests().await.unwrap_or_default();
    assert!(arrived, "expected {at_least} texts, got {}", received.len());
    for request in &received {
        assert_eq!(request.method.as_str(), "POST");
        assert_eq!(request.url.path(), MESSAGES);
        let auth = request
            .headers
            .get("authorization")
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(
            auth,
            format!("Basic {}", base64_of(&format!("{ACCOUNT}:{TOKEN}")))
        );
        assert_eq!(
            request
                .headers
                .get("content-type")
                .unwrap()
                .to_str()
                .unwrap(),
            "application/x-www-form-urlencoded"
        );
    }
    received.iter().map(form).collect()
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// The e-mails the sink holds once there are `at_least`.
async fn mails(sink: &SmtpSink, at_least: usize) -> Vec<String> {
    let arrived = poll_until(Duration::from_secs(20), || async {
        sink.messages().len() >= at_least
    })
    .await;
    let messages = sink.messages();
    assert!(
        arrived,
        "expected {at_least} e-mails, got {}",
        messages.len()
    );
    messages
}

/// A salon that pays for SMS, on a server with Twilio and SMTP, whose saga clock the test
/// moves.
async fn notifying_salon(
    pool: PgPool,
    twilio: &MockServer,
    smtp: Option<&SmtpSink>,
) -> (TestApp, Salon, ShiftedClock) {
    let clock = ShiftedClock::default();
    let shared = clock.clone();
    let twilio_url = twilio.uri();
    let smtp_url = smtp.map(|s| s.url.clone());
    let app = TestApp::spawn_with(pool, |c| {
        let i = &mut c.integrations;
        i.twilio_api_url = twilio_url;
        i.twilio_account_sid = Some(ACCOUNT.to_owned());
        i.twilio_auth_token = Some(SecretString::from(TOKEN.to_owned()));
        i.twilio_from = Some("SalonMia".to_owned());
        i.smtp_url = smtp_url.map(SecretString::from);
        i.smtp_from = Some("termine@bookingd.example".to_owned());
        i.public_url = Some(PUBLIC.to_owned());
        c.clock = Arc::new(shared);
    })
    .await;
    let salon = app.seed_salon("Salon Mia", "professional").await;
    let (status, body) = app
        .put(
            &salon.key,
            "/api/v2/mcp/tenant/settings",
            json!({ "time_zone": "Europe/Berlin", "features": { "sms_notifications": true } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    (app, salon, clock)
}

async fn book(app: &TestApp, salon: &Salon, start: DateTime<Utc>) -> (String, String) {
    let created = app.book(salon, Some(0), start).await;
    (
        created["data"]["id"].as_str().unwrap().to_owned(),
        created["data"]["confirmation_number"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

/// The booking's pending notification jobs: name and due time.
async fn jobs(app: &TestApp, booking: &str) -> Vec<(String, DateTime<Utc>)> {
    sqlx::query_as(
        "SELECT name, due_at FROM saga_jobs WHERE saga = 'notifications' AND instance_id = $1 ORDER BY name",
    )
    .bind(booking)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

/// Waits until the booking's notification jobs are exactly `expected`.
async fn jobs_become(app: &TestApp, booking: &str, expected: &[(&str, DateTime<Utc>)]) {
    let expected: Vec<(String, DateTime<Utc>)> = expected
        .iter()
        .map(|(n, t)| ((*n).to_owned(), *t))
        .collect();
    let settled = poll_until(Duration::from_secs(20), || async {
        jobs(app, booking).await == expected
    })
    .await;
    assert!(
        settled,
        "jobs {:?}, expected {expected:?}",
        jobs(app, booking).await
    );
}

/// Moves the saga's clock to `at`.
fn move_clock_to(clock: &ShiftedClock, at: DateTime<Utc>) {
    clock.advance(at - clock_now(clock));
}

fn clock_now(clock: &ShiftedClock) -> DateTime<Utc> {
    use sagas::Clock;
    clock.now()
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn reminders_fire_at_their_instants_follow_a_reschedule_and_vanish_on_cancel(pool: PgPool) {
    let twilio = twilio_accepting(Duration::ZERO).await;
    let smtp = SmtpSink::start().await;
    let (app, salon, clock) = notifying_salon(pool, &twilio, Some(&smtp)).await;
    let start = berlin(3, 10, 0);
    let (booking, number) = book(&app, &salon, start).await;

    // Confirmed: a text and an e-mail with the invite; both reminders set at their instants.
    let sent = texts(&twilio, 1).await;
    assert_eq!(sent[0]["To"], "+491512345678");
    assert_eq!(sent[0]["From"], "SalonMia");
    assert_eq!(
        sent[0]["StatusCallback"],
        format!("{PUBLIC}/api/v2/webhooks/twilio/status")
    );
    let body = sent[0]["Body"].as_str().unwrap();
    assert!(
        body.starts_with("Salon Mia: Ihr Termin ist bestaetigt - Haircut am "),
        "{body}"
    );
    assert!(
        body.contains("um 10:00 Uhr, Mitte, Torstr. 1, Berlin"),
        "{body}"
    );
    assert!(body.ends_with(&format!("Buchungsnr. {number}")), "{body}");
    let mail = &mails(&smtp, 1).await[0];
    assert!(mail.contains("erika@example.com"), "{mail}");
    assert!(mail.contains("text/calendar"), "{mail}");
    jobs_become(
        &app,
        &booking,
        &[
            ("reminder-24h", start - chrono::Duration::hours(24)),
            ("reminder-2h", start - chrono::Duration::hours(2)),
        ],
    )
    .await;

    // Moved: a notice, and the reminders move with it.
    let moved_to = berlin(4, 15, 0);
    let (status, body) = app
        .post(
            &salon.key,
            &format!("/api/v2/mcp/bookings/{booking}/reschedule"),
            json!({ "start": moved_to.to_rfc3339() }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sent = texts(&twilio, 2).await;
    let body = sent[1]["Body"].as_str().unwrap();
    assert!(
        body.contains("wurde verlegt auf") && body.contains("um 15:00 Uhr"),
        "{body}"
    );
    mails(&smtp, 2).await;
    jobs_become(
        &app,
        &booking,
        &[
            ("reminder-24h", moved_to - chrono::Duration::hours(24)),
            ("reminder-2h", moved_to - chrono::Duration::hours(2)),
        ],
    )
    .await;
    assert_eq!(
        twilio.received_requests().await.unwrap().len(),
        2,
        "no reminder yet"
    );

    // A day before the new time the 24-hour reminder goes out, by text only.
    move_clock_to(&clock, moved_to - chrono::Duration::hours(24));
    let sent = texts(&twilio, 3).await;
    let body = sent[2]["Body"].as_str().unwrap();
    assert!(
        body.contains("Erinnerung") && body.contains("um 15:00 Uhr"),
        "{body}"
    );
    jobs_become(
        &app,
        &booking,
        &[("reminder-2h", moved_to - chrono::Duration::hours(2))],
    )
    .await;
    assert_eq!(smtp.messages().len(), 2);

    // Cancelled: a notice, and the 2-hour reminder is gone; past its instant nothing comes.
    let (status, body) = app
        .post(
            &salon.key,
            &format!("/api/v2/mcp/bookings/{booking}/cancel"),
            json!({ "reason": "krank" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sent = texts(&twilio, 4).await;
    assert!(
        sent[3]["Body"].as_str().unwrap().contains("storniert"),
        "{}",
        sent[3]
    );
    let cancelled = &mails(&smtp, 3).await[2];
    assert!(cancelled.contains("method=CANCEL"), "{cancelled}");
    jobs_become(&app, &booking, &[]).await;
    move_clock_to(&clock, moved_to - chrono::Duration::minutes(90));
    let sms: Vec<String> = sqlx::query_scalar(
        "SELECT key FROM notifications WHERE channel = 'sms' AND booking_id = $1 ORDER BY created_at",
    )
    .bind(&booking)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        sms,
        [
            "confirmation:0",
            "rescheduled:1",
            "reminder-24h:1",
            "cancelled:1"
        ]
        .map(|k| format!("{booking}:{k}"))
    );

    // Twilio's delivery reports: signed ones are recorded once, forged ones refused.
    let report = [
        ("MessageSid", "SM1"),
        ("MessageStatus", "delivered"),
        ("AccountSid", ACCOUNT),
        ("To", "+491512345678"),
    ];
    let params: Vec<(String, String)> = report
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let url = format!("{PUBLIC}/api/v2/webhooks/twilio/status");
    let signature = adapters::webhooks::twilio_signature(TOKEN, &url, &params);
    let post = |signature: String| {
        app.http
            .post(format!("{}/api/v2/webhooks/twilio/status", app.address))
            .header("x-twilio-signature", signature)
            .form(&report)
            .send()
    };
    let forged = post(adapters::webhooks::twilio_signature("guess", &url, &params))
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let delivered: Option<String> =
        sqlx::query_scalar("SELECT delivery_status FROM notifications WHERE provider_id = 'SM1'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(delivered, None);
    let first: Value = post(signature.clone()).await.unwrap().json().await.unwrap();
    assert_eq!(first["status"], "applied", "{first}");
    let again: Value = post(signature).await.unwrap().json().await.unwrap();
    assert_eq!(again["status"], "ignored", "{again}");
    let delivered: Option<String> =
        sqlx::query_scalar("SELECT delivery_status FROM notifications WHERE provider_id = 'SM1'")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(delivered.as_deref(), Some("delivered"));
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_failed_text_is_recorded_and_the_reminder_goes_by_email(pool: PgPool) {
    let twilio = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21211, "message": "The 'To' number +491512345678 is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400
        })))
        .mount(&twilio)
        .await;
    let smtp = SmtpSink::start().await;
    let (app, salon, clock) = notifying_salon(pool, &twilio, Some(&smtp)).await;
    let start = berlin(3, 11, 0);
    let (booking, _) = book(&app, &salon, start).await;
    mails(&smtp, 1).await;
    move_clock_to(&clock, start - chrono::Duration::hours(24));
    let reminder = &mails(&smtp, 2).await[1];
    assert!(reminder.contains("erika@example.com"), "{reminder}");
    assert!(
        !reminder.contains("text/calendar"),
        "a reminder has no invite: {reminder}"
    );
    let failed: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT key, channel, error FROM failed_notifications WHERE booking_id = $1 ORDER BY failed_at",
    )
    .bind(&booking)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed[1].0, format!("{booking}:reminder-24h:0"));
    assert_eq!(failed[1].1, "sms");
    assert!(failed[1].2.contains("21211"), "{failed:?}");
    let reminder_email: String =
        sqlx::query_scalar("SELECT status FROM notifications WHERE key = $1 AND channel = 'email'")
            .bind(format!("{booking}:reminder-24h:0"))
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(reminder_email, "sent");
    assert_eq!(twilio.received_requests().await.unwrap().len(), 2);
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_message_in_flight_when_bookingd_is_killed_is_not_sent_again(pool: PgPool) {
    let twilio = twilio_accepting(Duration::from_secs(3)).await;
    let smtp = SmtpSink::start().await;
    let mut app = TestApp::bare(pool.clone()).await;
    let url = crate::support::app::database_url(&pool);
    let env = [
        ("TWILIO_API_URL", twilio.uri()),
        ("TWILIO_ACCOUNT_SID", ACCOUNT.to_owned()),
        ("TWILIO_AUTH_TOKEN", TOKEN.to_owned()),
        ("TWILIO_FROM", "SalonMia".to_owned()),
        ("MCP_TIMEOUT", "1".to_owned()),
        ("SMTP_URL", smtp.url.clone()),
        ("SMTP_FROM", "termine@bookingd.example".to_owned()),
    ];
    let mut first =
        crate::support::process::BookingdProcess::start_with(&url, &app.nats.url(), &env).await;
    app.address = first.address.clone();
    let salon = app.seed_salon("Salon Mia", "professional").await;
    let (status, body) = app
        .put(
            &salon.key,
            "/api/v2/mcp/tenant/settings",
            json!({ "time_zone": "Europe/Berlin", "features": { "sms_notifications": true } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (booking, _) = book(&app, &salon, berlin(3, 10, 0)).await;
    // Killed while Twilio is still answering the confirmation.
    texts(&twilio, 1).await;
    first.kill();

    // The restarted process takes the job over once the claim lapses and finds the message
    // claimed: whether or not it went out, it is not sent again.
    let second =
        crate::support::process::BookingdProcess::start_with(&url, &app.nats.url(), &env).await;
    app.address = second.address.clone();
    let settled = poll_until(Duration::from_secs(30), || async {
        let confirmation: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM saga_jobs WHERE saga = 'notifications' AND instance_id = $1 AND name = 'confirmation'",
        )
        .bind(&booking)
        .fetch_one(&pool)
        .await
        .unwrap();
        confirmation == 0
    })
    .await;
    assert!(settled, "the confirmation job never ran again");
    assert_eq!(twilio.received_requests().await.unwrap().len(), 1);
    let status: String = sqlx::query_scalar(
        "SELECT status FROM notifications WHERE booking_id = $1 AND channel = 'sms'",
    )
    .bind(&booking)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        status, "sending",
        "its fate stays unknown, and it stays sent at most once"
    );
    // The e-mail, not begun before the kill, went out once after the restart.
    assert_eq!(mails(&smtp, 1).await.len(), 1);
}
