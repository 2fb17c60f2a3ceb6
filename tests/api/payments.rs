//! Deposits against a Stripe fake speaking PaymentIntents: a booking of a service with a
//! deposit stays held until paid, then is confirmed; a failed payment or an unpaid one past
//! its due time cancels it and frees the slot; a cancellation within the policy refunds.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use sagas::{Clock, ShiftedClock};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::support::TestApp;
use crate::support::app::{Salon, berlin, poll_until};

const SECRET_KEY: &str = "sk_test_51bookingd";
const WEBHOOK_SECRET: &str = "whsec_test_bookingd";

/// A Stripe fake: every intent is `pi_1`, its cancel and refund succeed.
async fn stripe() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(|request: &Request| {
            let form = form(request);
            ResponseTemplate::new(200).set_body_json(json!({
                "id": "pi_1", "object": "payment_intent", "amount": form["amount"].as_str().and_then(|a| a.parse::<i64>().ok()),
                "amount_received": 0, "automatic_payment_methods": { "enabled": true }, "canceled_at": null,
                "capture_method": "automatic", "client_secret": "pi_1_secret_abc", "confirmation_method": "automatic",
                "created": 1_680_800_504, "currency": form["currency"], "customer": null, "description": form["description"],
                "last_payment_error": null, "livemode": false,
                "metadata": { "booking_id": form["metadata[booking_id]"], "tenant_id": form["metadata[tenant_id]"] },
                "payment_method": null, "payment_method_types": ["card"], "status": "requires_payment_method",
            }))
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents/pi_1/cancel"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "id": "pi_1", "object": "payment_intent", "status": "canceled", "cancellation_reason": "abandoned" }),
        ))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({ "id": "re_1", "object": "refund", "amount": 1000, "currency": "eur", "payment_intent": "pi_1", "status": "succeeded" }),
        ))
        .mount(&server)
        .await;
    server
}

fn form(request: &Request) -> Value {
    Value::Object(
        form_urlencoded::parse(&request.body)
            .into_owned()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    )
}

/// The calls Stripe received, once there are `count`; each checked for its key and headers.
async fn calls(stripe: &MockServer, count: usize) -> Vec<(String, String, Value)> {
    let arrived = poll_until(Duration::from_secs(20), || async {
        stripe.received_requests().await.unwrap_or_default().len() >= count
    })
    .await;
    let received = stripe.received_requests().await.unwrap_or_default();
    assert!(
        arrived,
        "expected {count} Stripe calls, got {}",
        received.len()
    );
    received
        .iter()
        .map(|r| {
            let header = |name: &str| r.headers.get(name).unwrap().to_str().unwrap().to_owned();
            assert_eq!(r.method.as_str(), "POST");
            assert_eq!(header("authorization"), format!("Bearer {SECRET_KEY}"));
            assert_eq!(header("stripe-version"), "2025-10-29.clover");
            assert_eq!(header("content-type"), "application/x-www-form-urlencoded");
            (r.url.path().to_owned(), header("idempotency-key"), form(r))
        })
        .collect()
}

struct Deposits {
    app: TestApp,
    salon: Salon,
    clock: ShiftedClock,
    service: String,
}

/// A salon whose "Färben" (60 min, 80 EUR) asks for a 10 EUR deposit, on a server with Stripe.
async fn deposits(pool: PgPool, stripe: &MockServer) -> Deposits {
    let clock = ShiftedClock::default();
    let shared = clock.clone();
    let url = stripe.uri();
    let app = TestApp::spawn_with(pool, |c| {
        c.integrations.stripe_api_url = url;
        c.integrations.stripe_secret_key = Some(SecretString::from(SECRET_KEY.to_owned()));
        c.integrations.stripe_webhook_secret = Some(SecretString::from(WEBHOOK_SECRET.to_owned()));
        c.clock = Arc::new(shared);
    })
    .await;
    let salon = app.seed_salon("Salon", "professional").await;
    let (s, b) = app.post(&salon.key, "/api/v2/mcp/services", json!({ "name": "Färben", "duration_minutes": 60, "price": { "amount_minor": 8000, "currency": "EUR" }, "buffer_before_minutes": 0, "buffer_after_minutes": 0, "branch_ids": [salon.branch_id], "deposit": { "amount_minor": 1000, "currency": "EUR" } })).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let service = b["data"]["id"].as_str().unwrap().to_owned();
    let (s, b) = app
        .put(
            &salon.key,
            &format!(
                "/api/v2/mcp/staff/{}/services/{service}",
                salon.staff_ids[0]
            ),
            json!({ "level": 3 }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    Deposits {
        app,
        salon,
        clock,
        service,
    }
}

impl Deposits {
    async fn book(&self, start: DateTime<Utc>) -> (StatusCode, Value) {
        let mut body = TestApp::booking(&self.salon, Some(0), start);
        body["service_id"] = json!(self.service);
        self.app
            .post(&self.salon.key, "/api/v2/mcp/bookings", body)
            .await
    }

    async fn booking_once(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        self.app.booking_when(&self.salon.key, id, done).await
    }

    /// Posts a Stripe event about `pi_1` of `booking`, signed at `signed_at` with `secret`.
    async fn event(
        &self,
        id: &str,
        kind: &str,
        booking: &str,
        (secret, signed_at): (&str, DateTime<Utc>),
    ) -> (StatusCode, Value) {
        let body = serde_json::to_vec(&json!({
            "id": id, "object": "event", "api_version": "2025-10-29.clover", "created": signed_at.timestamp(),
            "type": kind, "livemode": false, "pending_webhooks": 1, "request": { "id": "req_1", "idempotency_key": null },
            "data": { "object": {
                "id": "pi_1", "object": "payment_intent", "amount": 1000, "currency": "eur",
                "status": if kind.ends_with("succeeded") { "succeeded" } else { "requires_payment_method" },
                "last_payment_error": if kind.ends_with("failed") { json!({ "code": "card_declined", "message": "Your card was declined." }) } else { Value::Null },
                "metadata": { "booking_id": booking, "tenant_id": self.salon.tenant_id },
            } },
        }))
        .unwrap();
        let signature = adapters::webhooks::stripe_signature(secret, signed_at.timestamp(), &body);
        let response = self
            .app
            .http
            .post(format!("{}/api/v2/webhooks/stripe", self.app.address))
            .header("content-type", "application/json")
            .header("stripe-signature", signature)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

/// A booking held for its deposit, with the payment opened at Stripe.
async fn held(d: &Deposits, stripe: &MockServer, start: DateTime<Utc>) -> String {
    let (status, created) = d.book(start).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["data"]["status"], "held", "{created}");
    assert_eq!(created["data"]["deposit"]["amount"]["amount_minor"], 1000);
    let id = created["data"]["id"].as_str().unwrap().to_owned();
    let requested = d
        .booking_once(&id, |b| b["deposit"]["status"] == "requested")
        .await;
    assert_eq!(requested["deposit"]["payment_intent"], "pi_1");
    assert_eq!(requested["deposit"]["client_secret"], "pi_1_secret_abc");
    let (path, key, form) = &calls(stripe, 1).await[0];
    assert_eq!(path, "/v1/payment_intents");
    assert_eq!(key, &format!("deposit:{id}"));
    assert_eq!(
        form,
        &json!({
            "amount": "1000", "currency": "eur", "automatic_payment_methods[enabled]": "true",
            "description": format!("Deposit, booking {}", created["data"]["confirmation_number"].as_str().unwrap()),
            "metadata[booking_id]": id, "metadata[tenant_id]": d.salon.tenant_id,
            "receipt_email": "erika@example.com",
        })
    );
    id
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_paid_deposit_confirms_the_booking_and_only_signed_fresh_events_count(pool: PgPool) {
    let stripe = stripe().await;
    let d = deposits(pool, &stripe).await;
    let id = held(&d, &stripe, berlin(3, 10, 0)).await;
    let now = d.clock.now();

    for (secret, at) in [
        ("whsec_forged", now),
        (WEBHOOK_SECRET, now - chrono::Duration::seconds(301)),
    ] {
        let (status, body) = d
            .event("evt_1", "payment_intent.succeeded", &id, (secret, at))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"]["type"], "PERMISSION_DENIED", "{body}");
    }
    let (_, still) = d
        .app
        .get(&d.salon.key, &format!("/api/v2/mcp/bookings/{id}"))
        .await;
    assert_eq!(still["data"]["status"], "held", "{still}");

    let (status, body) = d
        .event(
            "evt_1",
            "payment_intent.succeeded",
            &id,
            (WEBHOOK_SECRET, now),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("applied")),
        "{body}"
    );
    let confirmed = d.booking_once(&id, |b| b["status"] == "confirmed").await;
    assert_eq!(confirmed["deposit"]["status"], "paid", "{confirmed}");
    let (_, again) = d
        .event(
            "evt_1",
            "payment_intent.succeeded",
            &id,
            (WEBHOOK_SECRET, now),
        )
        .await;
    assert_eq!(again["status"], "duplicate", "{again}");
    // The lapse is off: nothing is pending for the booking.
    assert!(
        poll_until(Duration::from_secs(20), || async {
            let jobs: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM saga_jobs WHERE saga = 'payments' AND instance_id = $1",
            )
            .bind(&id)
            .fetch_one(&d.app.pool)
            .await
            .unwrap();
            jobs == 0
        })
        .await
    );
    // Within the policy (three days ahead, 24 h cut-off) a cancellation refunds the deposit.
    let (status, body) = d
        .app
        .post(
            &d.salon.key,
            &format!("/api/v2/mcp/bookings/{id}/cancel"),
            json!({ "reason": "verreist" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let refunded = d
        .booking_once(&id, |b| b["deposit"]["status"] == "refunded")
        .await;
    assert_eq!(refunded["deposit"]["refund"], "re_1");
    let (path, key, form) = &calls(&stripe, 2).await[1];
    assert_eq!(
        (path.as_str(), key.as_str()),
        ("/v1/refunds", format!("refund:{id}").as_str())
    );
    assert_eq!(
        form,
        &json!({ "payment_intent": "pi_1", "metadata[booking_id]": id })
    );
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_failed_payment_cancels_the_booking_and_frees_the_slot(pool: PgPool) {
    let stripe = stripe().await;
    let d = deposits(pool, &stripe).await;
    let start = berlin(3, 14, 0);
    let id = held(&d, &stripe, start).await;
    let (status, body) = d
        .event(
            "evt_2",
            "payment_intent.payment_failed",
            &id,
            (WEBHOOK_SECRET, d.clock.now()),
        )
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::OK, Some("applied")),
        "{body}"
    );
    let cancelled = d.booking_once(&id, |b| b["status"] == "cancelled").await;
    assert_eq!(cancelled["deposit"]["status"], "failed", "{cancelled}");
    // The open payment is closed, and the slot can be booked again.
    let (path, key, _) = &calls(&stripe, 2).await[1];
    assert_eq!(
        (path.as_str(), key.as_str()),
        (
            "/v1/payment_intents/pi_1/cancel",
            format!("close:{id}").as_str()
        )
    );
    let (status, again) = d.book(start).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn an_unpaid_deposit_lets_the_booking_lapse_when_its_hold_expires(pool: PgPool) {
    let stripe = stripe().await;
    let d = deposits(pool, &stripe).await;
    let start = berlin(3, 16, 0);
    let id = held(&d, &stripe, start).await;
    let due: DateTime<Utc> = d
        .booking_once(&id, |b| b["deposit"]["due"].is_string())
        .await["deposit"]["due"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(due > d.clock.now(), "due {due}");
    assert_eq!(
        stripe.received_requests().await.unwrap().len(),
        1,
        "nothing before it is due"
    );
    d.clock
        .advance(due - d.clock.now() + chrono::Duration::seconds(1));
    let lapsed = d.booking_once(&id, |b| b["status"] == "cancelled").await;
    assert_eq!(lapsed["cancellation"]["actor"], "saga:payments", "{lapsed}");
    let (path, _, form) = &calls(&stripe, 2).await[1];
    assert_eq!(path, "/v1/payment_intents/pi_1/cancel");
    assert_eq!(form, &json!({ "cancellation_reason": "abandoned" }));
    let (status, again) = d.book(start).await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
}
