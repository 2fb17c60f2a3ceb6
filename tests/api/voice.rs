//! The voice agent's front door: call routing, Retell's signed webhooks and functions, holds
//! tied to calls, and the MCP endpoint's authentication, all over HTTP.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::app::{Salon, TestApp, berlin, every_day, lock_table, poll_until};

const RETELL_KEY: &str = "key_retell_test_0123456789";

/// Open around the clock, every day.
fn always_open() -> Value {
    every_day(&json!({ "ranges": [{ "start": "00:00", "end": "24:00" }] }))
}

/// Opens a branch; returns its id.
async fn branch(app: &TestApp, key: &str, name: &str, at: (f64, f64), hours: Value) -> String {
    let (status, body) = app
        .post(
            key,
            "/api/v2/mcp/tenant/branches",
            json!({ "name": name, "address": "Hauptstr. 1", "city": "Berlin",
                    "coordinates": { "lat": at.0, "lng": at.1 },
                    "time_zone": "Europe/Berlin", "business_hours": hours }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["data"]["id"].as_str().unwrap().to_owned()
}

async fn assign_number(app: &TestApp, key: &str, branch_id: &str, number: &str) -> i64 {
    let (status, body) = app
        .post(
            key,
            &format!("/api/v2/mcp/tenant/branches/{branch_id}/phone-numbers"),
            json!({ "phone_number": number }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["position"].as_i64().unwrap_or_default()
}

async fn connect_retell(app: &TestApp, key: &str) {
    let (status, body) = app
        .put(
            key,
            "/api/v2/mcp/integrations/retell",
            json!({ "api_key": RETELL_KEY }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["connected"], true, "{body}");
}

/// POSTs `body` to a Retell route, signed with `key` at `now` shifted by `skew_ms`.
async fn retell(
    app: &TestApp,
    path: &str,
    body: &Value,
    key: Option<&str>,
    skew_ms: i64,
) -> (StatusCode, Value) {
    let raw = serde_json::to_vec(body).unwrap();
    let mut request = app
        .http
        .post(format!("{}/api/v2/webhooks/retell/{path}", app.address))
        .header("content-type", "application/json")
        .body(raw.clone());
    if let Some(key) = key {
        let at = chrono::Utc::now().timestamp_millis() + skew_ms;
        request = request.header(
            "x-retell-signature",
            adapters::webhooks::retell_signature(key, at, &raw),
        );
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn call_object(call_id: &str, to: &str, branch_id: Option<&str>) -> Value {
    let mut call = json!({
        "call_id": call_id, "agent_id": "agent_de", "agent_version": 1,
        "call_status": "ongoing", "call_type": "phone_call", "direction": "inbound",
        "from_number": "+4915112345678", "to_number": to,
        "start_timestamp": chrono::Utc::now().timestamp_millis() - 60_000,
    });
    if let Some(branch_id) = branch_id {
        call["metadata"] = json!({ "branch_id": branch_id });
    }
    call
}

async fn function(
    app: &TestApp,
    salon: &Salon,
    name: &str,
    call: &Value,
    args: Value,
) -> (StatusCode, Value) {
    retell(
        app,
        &format!("{}/functions/{name}", salon.tenant_id),
        &json!({ "name": name, "call": call, "args": args }),
        Some(RETELL_KEY),
        0,
    )
    .await
}

/// A booking's status as its events say now (folded from the store, not the read model).
async fn booking_status(app: &TestApp, salon: &Salon, id: &str) -> String {
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).format("%Y-%m-%dT%H:%M:%SZ");
    let (status, body) = app
        .get(
            &salon.key,
            &format!("/api/v2/mcp/bookings/{id}?as_of={later}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["data"]["status"].as_str().unwrap().to_owned()
}

/// Whether the named staff member is offered at `start`.
async fn offered(app: &TestApp, salon: &Salon, start: &str, staff: &str) -> bool {
    let date = &start[..10];
    let (status, body) = app
        .post(
            &salon.key,
            "/api/v2/mcp/bookings/check-availability",
            json!({ "service_id": salon.service_id, "start_date": date,
                    "end_date": berlin(2, 12, 0).date_naive().to_string() }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["slots"].as_array().unwrap().iter().any(|s| {
        s["staff_id"] == staff
            && s["start"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                == chrono::DateTime::parse_from_rfc3339(start).ok()
    })
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn calls_go_to_the_open_branch_nearest_the_caller_by_the_tenants_rules(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, key) = app.register_tenant("Kette", "enterprise").await;
    let closed = json!({});
    let mitte = branch(&app, &key, "Mitte", (52.5300, 13.4000), closed).await;
    let kreuzberg = branch(&app, &key, "Kreuzberg", (52.4900, 13.4200), always_open()).await;
    let potsdam = branch(&app, &key, "Potsdam", (52.3900, 13.0600), always_open()).await;
    let hamburg = branch(&app, &key, "Hamburg", (53.5500, 9.9900), always_open()).await;
    assign_number(&app, &key, &mitte, "030 1111111").await;
    let position = assign_number(&app, &key, &kreuzberg, "+49 30 2222222").await;
    let read = format!("/api/v2/mcp/tenant?min_position={position}");
    assert_eq!(app.get(&key, &read).await.0, StatusCode::OK);

    let route = |body: Value| {
        let app = &app;
        let key = key.clone();
        async move {
            app.post(&key, "/api/v2/mcp/routing/incoming-call", body)
                .await
        }
    };
    // The called branch is closed: the nearest open one (about 4.6 km) takes the call.
    let (status, decision) = route(json!({ "phone_number": "+49301111111",
        "caller_number": "0151 2345678", "language": "de-DE" }))
    .await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert_eq!(decision["reason"], "nearest_open_branch", "{decision}");
    assert_eq!(decision["branch_id"], kreuzberg.as_str());
    assert_eq!(decision["called_branch_id"], mitte.as_str());
    assert_eq!(decision["open_now"], true);
    let km = decision["distance_km"].as_f64().unwrap();
    assert!((4.0..5.5).contains(&km), "{decision}");
    assert_eq!(decision["caller_number"], "+491512345678");
    assert_eq!(decision["language"], "de");
    assert_eq!(decision["time_zone"], "Europe/Berlin");
    // A caller standing in Potsdam is sent there.
    let (_, decision) = route(json!({ "phone_number": "+49301111111",
        "caller_number": "+491512345678", "caller_location": { "lat": 52.40, "lng": 13.05 },
        "language": "de" }))
    .await;
    assert_eq!(decision["branch_id"], potsdam.as_str(), "{decision}");
    // An open called branch keeps its call.
    let (_, decision) = route(json!({ "phone_number": "+49302222222",
        "caller_number": "+491512345678", "language": "de" }))
    .await;
    assert_eq!(decision["reason"], "called_branch_open", "{decision}");
    assert_eq!(decision["branch_id"], kreuzberg.as_str());

    // Rules: agents by language, no redirect beyond 1 km, then the fallback branch.
    let (status, rules) = app
        .put(
            &key,
            "/api/v2/mcp/routing/rules",
            json!({ "agents": { "de": "agent_de", "en": "agent_en" }, "default_agent": "agent_any",
                    "max_redirect_km": 1.0 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rules}");
    let (_, decision) = route(json!({ "phone_number": "+49301111111",
        "caller_number": "+491512345678", "language": "en-GB" }))
    .await;
    assert_eq!(decision["reason"], "all_closed", "{decision}");
    assert_eq!(decision["branch_id"], mitte.as_str());
    assert_eq!(decision["open_now"], false);
    assert_eq!(decision["agent_id"], "agent_en");
    let (status, _) = app
        .put(
            &key,
            "/api/v2/mcp/routing/rules",
            json!({ "agents": { "de": "agent_de" }, "default_agent": "agent_any",
                    "max_redirect_km": 1.0, "fallback_branch_id": hamburg }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, decision) = route(json!({ "phone_number": "+49301111111",
        "caller_number": "+491512345678", "language": "fr" }))
    .await;
    assert_eq!(decision["reason"], "fallback_branch", "{decision}");
    assert_eq!(decision["branch_id"], hamburg.as_str());
    assert_eq!(decision["agent_id"], "agent_any");
    let (_, stored) = app.get(&key, "/api/v2/mcp/routing/rules").await;
    assert_eq!(stored["fallback_branch_id"], hamburg.as_str(), "{stored}");

    // Refusals: an unknown number, a bad language, bad rules.
    let (status, body) = route(json!({ "phone_number": "+49309999999",
        "caller_number": "+491512345678", "language": "de" }))
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["type"], "RESOURCE_NOT_FOUND");
    let (status, body) = route(json!({ "phone_number": "+49301111111",
        "caller_number": "+491512345678", "language": "Deutsch!" }))
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = app
        .put(
            &key,
            "/api/v2/mcp/routing/rules",
            json!({ "agents": { "German": "a" } }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    // Nearest branches: sorted, within the distance, open or not.
    let (status, near) = app
        .get(
            &key,
            "/api/v2/mcp/routing/nearest-branch?lat=52.52&lng=13.40&max_distance=40",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{near}");
    let names: Vec<&str> = near["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Mitte", "Kreuzberg", "Potsdam"], "{near}");
    assert_eq!(near["data"][0]["available_now"], false);
    assert_eq!(near["data"][1]["available_now"], true);
    let (status, _) = app
        .get(&key, "/api/v2/mcp/routing/nearest-branch?lat=91&lng=13.40")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn retell_requests_are_refused_unless_signed_with_the_tenants_key(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let tenant = salon.tenant_id.clone();
    let inbound = json!({ "event": "call_inbound", "call_inbound": {
        "agent_id": "agent_de", "agent_version": 1,
        "from_number": "+4915112345678", "to_number": "+493012345678" } });
    // No key stored yet: nothing signs for this tenant.
    let (status, body) = retell(
        &app,
        &format!("{tenant}/inbound"),
        &inbound,
        Some(RETELL_KEY),
        0,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    connect_retell(&app, &salon.key).await;
    let (status, body) = app.get(&salon.key, "/api/v2/mcp/integrations/retell").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !body.to_string().contains(RETELL_KEY),
        "the key is never shown: {body}"
    );

    for (key, skew, why) in [
        (None, 0, "unsigned"),
        (Some("another_key"), 0, "forged"),
        (Some(RETELL_KEY), -301_000, "stale"),
        (Some(RETELL_KEY), 301_000, "from the future"),
    ] {
        for path in [
            format!("{tenant}/inbound"),
            tenant.clone(),
            format!("{tenant}/functions/check_availability"),
        ] {
            let (status, body) = retell(&app, &path, &inbound, key, skew).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{why} {path}: {body}");
            assert_eq!(body["error"]["type"], "PERMISSION_DENIED", "{body}");
        }
    }
    // Signed for another tenant: refused too.
    let other = app.seed_salon("Other", "professional").await;
    let (status, _) = retell(
        &app,
        &format!("{}/inbound", other.tenant_id),
        &inbound,
        Some(RETELL_KEY),
        0,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A body that was signed but altered after signing.
    let raw = serde_json::to_vec(&inbound).unwrap();
    let at = chrono::Utc::now().timestamp_millis();
    let signature = adapters::webhooks::retell_signature(RETELL_KEY, at, &raw);
    let altered = serde_json::to_vec(&json!({ "event": "call_inbound", "call_inbound": {
        "from_number": "+4915112345678", "to_number": "+493099999999" } }))
    .unwrap();
    let response = app
        .http
        .post(format!(
            "{}/api/v2/webhooks/retell/{tenant}/inbound",
            app.address
        ))
        .header("x-retell-signature", signature)
        .body(altered)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Signed and for a number the tenant owns: routed, with the variables the agent needs.
    let position = assign_number(&app, &salon.key, &salon.branch_id, "+493012345678").await;
    let (status, _) = app
        .get(
            &salon.key,
            &format!("/api/v2/mcp/tenant?min_position={position}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = retell(
        &app,
        &format!("{tenant}/inbound"),
        &inbound,
        Some(RETELL_KEY),
        0,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = &body["call_inbound"];
    assert_eq!(
        answer["metadata"]["branch_id"],
        salon.branch_id.as_str(),
        "{body}"
    );
    assert_eq!(answer["metadata"]["tenant_id"], tenant.as_str());
    let variables = &answer["dynamic_variables"];
    assert_eq!(variables["tenant_name"], "Salon");
    assert_eq!(variables["branch_name"], "Mitte");
    assert!(
        variables["services"]
            .as_str()
            .unwrap()
            .contains("Haircut (30 min, 29,00 EUR)"),
        "{body}"
    );
    assert!(
        variables["opening_hours"]
            .as_str()
            .unwrap()
            .contains("Mo 08:00-20:00"),
        "{body}"
    );
    for (_, value) in variables.as_object().unwrap() {
        assert!(value.is_string(), "dynamic variables are strings: {body}");
    }
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn mid_call_functions_hold_confirm_and_answer_retries_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let salon = app.seed_salon("Salon", "professional").await;
    connect_retell(&app, &salon.key).await;
    let call = call_object("call_fn_1", "+493012345678", Some(&salon.branch_id));
    let date = berlin(1, 9, 0).date_naive().to_string();

    let (status, slots) = function(
        &app,
        &salon,
        "check_availability",
        &call,
        json!({ "service": "haircut", "date": date }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{slots}");
    assert_eq!(slots["ok"], true, "{slots}");
    assert!(
        slots["result"].as_str().unwrap().starts_with("Frei: "),
        "{slots}"
    );
    let first = slots["slots"][0].clone();
    let start = first["start"].as_str().unwrap().to_owned();
    let staff = first["staff_id"].as_str().unwrap().to_owned();

    let hold_args = json!({ "service": "Haircut", "start": start, "staff_id": staff,
                            "customer_name": "Erika Mustermann" });
    let (status, held) = function(&app, &salon, "hold_slot", &call, hold_args.clone()).await;
    assert_eq!(status, StatusCode::OK, "{held}");
    assert_eq!(held["ok"], true, "{held}");
    assert_eq!(held["status"], "held");
    let hold_id = held["hold_id"].as_str().unwrap().to_owned();
    // Retell retries: the same call, function and arguments answer the same, nothing more.
    let (_, again) = function(&app, &salon, "hold_slot", &call, hold_args.clone()).await;
    assert_eq!(again, held);
    // The held slot is not offered to anyone else; holding it from another call fails aloud.
    assert!(
        poll_until(Duration::from_secs(10), || async {
            !offered(&app, &salon, &start, &staff).await
        })
        .await,
        "the held slot is not offered"
    );
    let other_call = call_object("call_fn_2", "+493012345678", Some(&salon.branch_id));
    let (status, taken) = function(&app, &salon, "hold_slot", &other_call, hold_args).await;
    assert_eq!(status, StatusCode::OK, "{taken}");
    assert_eq!(taken["ok"], false, "{taken}");
    assert_eq!(taken["error"]["type"], "SLOT_UNAVAILABLE", "{taken}");

    let (status, confirmed) = function(
        &app,
        &salon,
        "confirm_hold",
        &call,
        json!({ "hold_id": hold_id }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{confirmed}");
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    let number = confirmed["confirmation_number"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(confirmed["result"].as_str().unwrap().contains(&number));
    let (_, booking) = app
        .get(&salon.key, &format!("/api/v2/mcp/bookings/{hold_id}"))
        .await;
    assert_eq!(booking["data"]["source"], "phone", "{booking}");
    assert_eq!(booking["data"]["call_id"], "call_fn_1");
    assert_eq!(booking["data"]["customer"]["phone"], "+4915112345678");

    // The call ends: a confirmed booking stays.
    let ended = json!({ "event": "call_ended", "call": call });
    let path = salon.tenant_id.clone();
    let (status, body) = retell(&app, &path, &ended, Some(RETELL_KEY), 0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(booking_status(&app, &salon, &hold_id).await, "confirmed");

    // Moving and cancelling by the confirmation number the caller reads out.
    let later = berlin(1, 15, 0).to_rfc3339();
    let (_, moved) = function(
        &app,
        &salon,
        "reschedule_booking",
        &call,
        json!({ "confirmation_number": number.to_lowercase(), "new_start": later }),
    )
    .await;
    assert_eq!(moved["ok"], true, "{moved}");
    let (_, cancelled) = function(
        &app,
        &salon,
        "cancel_booking",
        &call,
        json!({ "booking_id": hold_id, "reason": "ill" }),
    )
    .await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let (_, next) = function(
        &app,
        &salon,
        "next_available",
        &call,
        json!({ "service": "Haircut" }),
    )
    .await;
    assert_eq!(next["available"], true, "{next}");

    // Bad input: a clear refusal the agent can say, or an error for an unknown function.
    let (_, bad) = function(
        &app,
        &salon,
        "check_availability",
        &call,
        json!({ "service": "Massage", "date": date }),
    )
    .await;
    assert_eq!(bad["ok"], false, "{bad}");
    assert!(bad["result"].as_str().unwrap().contains("Haircut"), "{bad}");
    let (status, body) = function(&app, &salon, "launch_rocket", &call, json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = retell(
        &app,
        &format!("{}/functions/hold_slot", salon.tenant_id),
        &json!({ "args": {} }),
        Some(RETELL_KEY),
        0,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_call_ending_unconfirmed_frees_its_hold_at_once(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let salon = app.seed_salon("Salon", "professional").await;
    connect_retell(&app, &salon.key).await;
    let call = call_object("call_hang_up", "+493012345678", Some(&salon.branch_id));
    let start = berlin(1, 10, 0).to_rfc3339();
    let staff = salon.staff_ids[0].clone();
    let (_, held) = function(
        &app,
        &salon,
        "hold_slot",
        &call,
        json!({ "service": salon.service_id, "start": start, "staff_id": staff,
                "customer_name": "Max" }),
    )
    .await;
    assert_eq!(held["ok"], true, "{held}");
    let hold_id = held["hold_id"].as_str().unwrap().to_owned();
    assert!(
        poll_until(Duration::from_secs(10), || async {
            !offered(&app, &salon, &start, &staff).await
        })
        .await,
        "the held slot is not offered"
    );

    let path = salon.tenant_id.clone();
    let started = json!({ "event": "call_started", "call": call });
    assert_eq!(
        retell(&app, &path, &started, Some(RETELL_KEY), 0).await.0,
        StatusCode::OK
    );
    let mut ended_call = call.clone();
    ended_call["call_status"] = json!("ended");
    ended_call["end_timestamp"] = json!(chrono::Utc::now().timestamp_millis());
    ended_call["duration_ms"] = json!(60_000);
    ended_call["disconnection_reason"] = json!("user_hangup");
    let ended = json!({ "event": "call_ended", "call": ended_call });
    let (status, body) = retell(&app, &path, &ended, Some(RETELL_KEY), 0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["reason"], "1 unconfirmed hold(s) released", "{body}");
    // Retell delivers again: nothing more happens.
    let (_, body) = retell(&app, &path, &ended, Some(RETELL_KEY), 0).await;
    assert_eq!(body["status"], "duplicate", "{body}");

    assert_eq!(booking_status(&app, &salon, &hold_id).await, "cancelled");
    assert!(
        poll_until(Duration::from_secs(10), || offered(
            &app, &salon, &start, &staff
        ))
        .await,
        "the slot is free again"
    );
    let (_, late) = function(
        &app,
        &salon,
        "confirm_hold",
        &call,
        json!({ "hold_id": hold_id }),
    )
    .await;
    assert_eq!(late["ok"], false, "{late}");
    let row: (String, Option<i64>, Option<String>) = sqlx::query_as(
        "SELECT status, duration_ms, disconnection_reason FROM calls WHERE call_id = 'call_hang_up'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            "ended".to_owned(),
            Some(60_000),
            Some("user_hangup".to_owned())
        )
    );
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_hold_not_confirmed_lapses_after_the_lock_timeout(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |c| c.booking_lock_timeout = 2).await;
    let salon = app.seed_salon("Salon", "professional").await;
    connect_retell(&app, &salon.key).await;
    let call = call_object("call_slow", "+493012345678", Some(&salon.branch_id));
    let start = berlin(1, 11, 0).to_rfc3339();
    let staff = salon.staff_ids[1].clone();
    let (_, held) = function(
        &app,
        &salon,
        "hold_slot",
        &call,
        json!({ "service": "Haircut", "start": start, "staff_id": staff, "customer_name": "Max" }),
    )
    .await;
    assert_eq!(held["ok"], true, "{held}");
    assert!(
        poll_until(Duration::from_secs(10), || async {
            !offered(&app, &salon, &start, &staff).await
        })
        .await,
        "the held slot is not offered"
    );
    // Nothing releases it: it stops blocking by itself once it expires.
    assert!(
        poll_until(Duration::from_secs(15), || offered(
            &app, &salon, &start, &staff
        ))
        .await,
        "the lapsed hold's slot is offered again"
    );
    let (_, late) = function(
        &app,
        &salon,
        "confirm_hold",
        &call,
        json!({ "hold_id": held["hold_id"] }),
    )
    .await;
    assert_eq!(late["ok"], false, "{late}");
    assert!(
        late["result"].as_str().unwrap().contains("expired"),
        "{late}"
    );
    // Someone else may now book it.
    let (status, body) = app
        .post(
            &salon.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(
                &salon,
                Some(1),
                chrono::DateTime::parse_from_rfc3339(&start).unwrap().into(),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn an_analysed_call_becomes_a_phone_booking_or_a_callback_task(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let salon = app.seed_salon("Salon", "professional").await;
    connect_retell(&app, &salon.key).await;
    let path = salon.tenant_id.clone();
    let analysed = |call_id: &str, data: Value| {
        let mut call = call_object(call_id, "+493012345678", Some(&salon.branch_id));
        call["call_status"] = json!("ended");
        call["call_analysis"] = json!({ "call_summary": "Termin gewünscht", "user_sentiment": "Positive",
            "call_successful": true, "in_voicemail": false, "custom_analysis_data": data });
        json!({ "event": "call_analyzed", "call": call })
    };
    let start = berlin(2, 14, 0);
    let complete = analysed(
        "call_ok",
        json!({ "service": "Haircut",
        "date": start.with_timezone(&chrono_tz::Europe::Berlin).date_naive().to_string(),
        "time": "14:00", "customer_name": "Erika Mustermann" }),
    );
    let (status, body) = retell(&app, &path, &complete, Some(RETELL_KEY), 0).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reason = body["reason"].as_str().unwrap().to_owned();
    let booking_id = reason.strip_prefix("booked: ").expect(&reason).to_owned();
    let (_, booking) = app
        .get(&salon.key, &format!("/api/v2/mcp/bookings/{booking_id}"))
        .await;
    assert_eq!(booking["data"]["status"], "confirmed", "{booking}");
    assert_eq!(booking["data"]["source"], "phone");
    assert_eq!(booking["data"]["call_id"], "call_ok");
    assert_eq!(booking["data"]["customer"]["phone"], "+4915112345678");
    let booked_start =
        chrono::DateTime::parse_from_rfc3339(booking["data"]["start"].as_str().unwrap()).unwrap();
    assert_eq!(booked_start, start);
    // Retell delivers again: still one booking.
    let (_, again) = retell(&app, &path, &complete, Some(RETELL_KEY), 0).await;
    assert_eq!(again["status"], "duplicate", "{again}");
    let (count,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM events WHERE aggregate_type = 'Booking' AND event_type = 'BookingCreated'",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(count, 1);

    // Incomplete details, and a slot another call took in the meantime: callback tasks.
    let missing = analysed(
        "call_vague",
        json!({ "service": "Haircut", "customer_name": "Max" }),
    );
    let (_, body) = retell(&app, &path, &missing, Some(RETELL_KEY), 0).await;
    assert_eq!(
        body["reason"], "callback task: incomplete details: start",
        "{body}"
    );
    let mut busy = Vec::new();
    for staff in 0..3 {
        let (status, body) = app
            .post(
                &salon.key,
                "/api/v2/mcp/bookings",
                TestApp::booking(&salon, Some(staff), berlin(2, 16, 0)),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        busy.push(body);
    }
    let gone = analysed(
        "call_late",
        json!({ "service": "Haircut", "start": berlin(2, 16, 0).to_rfc3339(),
        "customer_name": "Max", "customer_phone": "0170 1234567" }),
    );
    let (_, body) = retell(&app, &path, &gone, Some(RETELL_KEY), 0).await;
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("callback task: could not book"),
        "{body}"
    );
    let nothing = analysed("call_chat", json!({ "callback_requested": false }));
    let (_, body) = retell(&app, &path, &nothing, Some(RETELL_KEY), 0).await;
    assert_eq!(body["reason"], "no appointment requested", "{body}");

    // Managers see the callbacks and mark them done.
    let (status, open) = app.get(&salon.key, "/api/v2/mcp/callbacks").await;
    assert_eq!(status, StatusCode::OK, "{open}");
    let tasks = open["data"].as_array().unwrap();
    let mut calls: Vec<&str> = tasks
        .iter()
        .map(|t| t["call_id"].as_str().unwrap())
        .collect();
    calls.sort_unstable();
    assert_eq!(calls, ["call_late", "call_vague"], "{open}");
    let late = tasks.iter().find(|t| t["call_id"] == "call_late").unwrap();
    assert_eq!(late["phone"], "0170 1234567");
    assert_eq!(late["details"]["customer_name"], "Max");
    let resolve = format!(
        "/api/v2/mcp/callbacks/{}/resolve",
        late["id"].as_str().unwrap()
    );
    let (status, done) = app.post(&salon.key, &resolve, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    assert_eq!(done["status"], "resolved");
    let (_, open) = app.get(&salon.key, "/api/v2/mcp/callbacks").await;
    assert_eq!(open["data"].as_array().unwrap().len(), 1, "{open}");
    let stranger = app.seed_salon("Other", "professional").await;
    let (_, theirs) = app
        .get(&stranger.key, "/api/v2/mcp/callbacks?status=resolved")
        .await;
    assert_eq!(
        theirs["data"],
        json!([]),
        "another tenant sees none: {theirs}"
    );
    assert_eq!(
        app.post(&stranger.key, &resolve, json!({})).await.0,
        StatusCode::NOT_FOUND
    );

    let (status, log) = app.get(&salon.key, "/api/v2/mcp/calls").await;
    assert_eq!(status, StatusCode::OK, "{log}");
    let mut outcomes: Vec<(&str, &str)> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["call_id"].as_str().unwrap(),
                c["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    outcomes.sort_unstable();
    assert_eq!(
        outcomes,
        [
            ("call_chat", "no_booking"),
            ("call_late", "callback"),
            ("call_ok", "booked"),
            ("call_vague", "callback")
        ]
    );

    // The call log feeds the distribution and the wait.
    let (status, spread) = app
        .get(&salon.key, "/api/v2/mcp/routing/call-distribution")
        .await;
    assert_eq!(status, StatusCode::OK, "{spread}");
    assert_eq!(spread["totals"][&salon.branch_id], 4, "{spread}");
    let booked: i64 = spread["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["booked"].as_i64().unwrap())
        .sum();
    assert_eq!(booked, 1, "{spread}");
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn ongoing_calls_beyond_the_agents_make_callers_wait(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let salon = app.seed_salon("Salon", "professional").await;
    connect_retell(&app, &salon.key).await;
    let position = assign_number(&app, &salon.key, &salon.branch_id, "+493012345678").await;
    assert_eq!(
        app.get(
            &salon.key,
            &format!("/api/v2/mcp/tenant?min_position={position}")
        )
        .await
        .0,
        StatusCode::OK
    );
    let (status, _) = app
        .put(
            &salon.key,
            "/api/v2/mcp/routing/rules",
            json!({ "concurrent_calls_per_branch": 1 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let incoming = json!({ "phone_number": "+493012345678", "caller_number": "+4915112345678",
                           "language": "de" });
    let wait = || {
        let (app, key, incoming) = (&app, salon.key.clone(), incoming.clone());
        async move {
            let (_, d) = app
                .post(&key, "/api/v2/mcp/routing/incoming-call", incoming)
                .await;
            d["estimated_wait_seconds"].as_u64().unwrap()
        }
    };
    assert_eq!(wait().await, 0);
    for id in ["c1", "c2"] {
        let started =
            json!({ "event": "call_started", "call": call_object(id, "+493012345678", None) });
        assert_eq!(
            retell(&app, &salon.tenant_id, &started, Some(RETELL_KEY), 0)
                .await
                .0,
            StatusCode::OK
        );
    }
    // Two calls on the line, one agent: the next caller waits for two average calls (none
    // finished yet, so three minutes each).
    assert_eq!(wait().await, 360);
}

/// A JSON-RPC request in the 2026-07-28 era.
fn modern(
    id: u32,
    method: &str,
    name: Option<&str>,
    params: Value,
) -> (Vec<(&'static str, String)>, Value) {
    let mut params = params;
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": { "name": "system-test", "version": "1" },
    });
    let mut headers = vec![
        ("accept", "application/json, text/event-stream".to_owned()),
        ("mcp-protocol-version", "2026-07-28".to_owned()),
        ("mcp-method", method.to_owned()),
    ];
    if let Some(name) = name {
        headers.push(("mcp-name", name.to_owned()));
    }
    (
        headers,
        json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }),
    )
}

/// A `tools/call` of tool `name` with `arguments`, in the 2026-07-28 era.
fn tool_call(id: u32, name: &str, arguments: Value) -> (Vec<(&'static str, String)>, Value) {
    modern(
        id,
        "tools/call",
        Some(name),
        json!({ "name": name, "arguments": arguments }),
    )
}

async fn mcp(
    app: &TestApp,
    key: Option<&str>,
    host: Option<&str>,
    request: (Vec<(&'static str, String)>, Value),
) -> (StatusCode, Value) {
    mcp_at(&app.http, &app.address, key, host, request).await
}

/// [`mcp`] without a `TestApp`, for a task of its own.
async fn mcp_at(
    http: &reqwest::Client,
    address: &str,
    key: Option<&str>,
    host: Option<&str>,
    request: (Vec<(&'static str, String)>, Value),
) -> (StatusCode, Value) {
    let (headers, body) = request;
    let mut r = http.post(format!("{address}/mcp")).json(&body);
    for (name, value) in headers {
        r = r.header(name, value);
    }
    if let Some(key) = key {
        r = r.bearer_auth(key);
    }
    if let Some(host) = host {
        r = r.header("host", host);
    }
    let response = r.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn the_mcp_endpoint_takes_tenant_and_role_from_the_api_key(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let other = app.seed_salon("Other", "professional").await;
    let (status, body) = app
        .post(
            &salon.key,
            "/api/v2/mcp/api-keys",
            json!({ "role": "readonly" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let readonly = body["key"].as_str().unwrap().to_owned();
    let list = || modern(1, "tools/list", None, json!({}));

    let (status, body) = mcp(&app, None, None, list()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["type"], "PERMISSION_DENIED");
    let (status, body) = mcp(&app, Some(&readonly), None, list()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = mcp(&app, Some(&salon.key), Some("evil.example"), list()).await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a Host not allowed is refused"
    );

    let (status, body) = mcp(&app, Some(&salon.key), None, list()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["result"]["tools"].as_array().unwrap().len(),
        12,
        "{body}"
    );

    // Book through the tools, then try to read it with the other tenant's key.
    let start = berlin(1, 13, 0).to_rfc3339();
    let args = json!({ "branch_id": salon.branch_id, "service_id": salon.service_id,
        "start": start, "customer": { "phone": "0151 2345678", "name": "Erika" },
        "idempotency_key": "k-1" });
    let book = || tool_call(2, "create_booking", args.clone());
    let (status, body) = mcp(&app, Some(&salon.key), None, book()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["result"]["isError"], false, "{body}");
    let booking = body["result"]["structuredContent"].clone();
    assert_eq!(booking["status"], "confirmed", "{body}");
    assert_eq!(booking["source"], "mcp");
    // The same key and arguments: the first answer, no second booking.
    let (_, again) = mcp(&app, Some(&salon.key), None, book()).await;
    assert_eq!(again["result"]["structuredContent"], booking);
    // The same key with other arguments: a tool error the model can read.
    let mut changed = args.clone();
    changed["start"] = json!(berlin(1, 14, 0).to_rfc3339());
    let (_, body) = mcp(
        &app,
        Some(&salon.key),
        None,
        tool_call(3, "create_booking", changed),
    )
    .await;
    assert_eq!(body["result"]["isError"], true, "{body}");
    assert!(
        body["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("idempotency key"),
        "{body}"
    );

    let get = json!({ "booking_id": booking["id"] });
    let (_, mine) = mcp(
        &app,
        Some(&salon.key),
        None,
        tool_call(4, "get_booking", get.clone()),
    )
    .await;
    assert_eq!(
        mine["result"]["structuredContent"]["id"], booking["id"],
        "{mine}"
    );
    let (_, theirs) = mcp(
        &app,
        Some(&other.key),
        None,
        tool_call(5, "get_booking", get),
    )
    .await;
    assert_eq!(theirs["result"]["isError"], true, "{theirs}");
    assert!(
        theirs["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("RESOURCE_NOT_FOUND"),
        "{theirs}"
    );
    // A slot in the past: a tool error with the rule broken, not a protocol error.
    let mut past = args.clone();
    past["start"] = json!("2020-01-01T10:00:00Z");
    past["idempotency_key"] = json!("k-2");
    let (_, body) = mcp(
        &app,
        Some(&salon.key),
        None,
        tool_call(6, "create_booking", past),
    )
    .await;
    assert_eq!(body["result"]["isError"], true, "{body}");
}

/// Books tomorrow 15:00 for Erika through the `create_booking` tool; the booking, confirmed.
async fn book_over_mcp(app: &TestApp, salon: &Salon) -> Value {
    let (_, body) = mcp(
        app,
        Some(&salon.key),
        None,
        tool_call(
            1,
            "create_booking",
            json!({ "branch_id": salon.branch_id, "service_id": salon.service_id,
                "start": berlin(1, 15, 0).to_rfc3339(),
                "customer": { "phone": "0151 2345678", "name": "Erika" },
                "idempotency_key": "book-1" }),
        ),
    )
    .await;
    let booking = body["result"]["structuredContent"].clone();
    assert_eq!(booking["status"], "confirmed", "{body}");
    booking
}

/// The status the bookings read model holds for `booking`.
async fn viewed_status(app: &TestApp, booking: &Value) -> Option<String> {
    let id = uuid::Uuid::parse_str(booking["id"].as_str().unwrap()).unwrap();
    sqlx::query_scalar("SELECT status FROM bookings_view WHERE booking_id = $1")
        .bind(id)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn get_booking_over_mcp_shows_the_agents_own_change_before_the_read_model_has_it(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let booking = book_over_mcp(&app, &salon).await;
    assert!(
        poll_until(Duration::from_secs(10), || async {
            viewed_status(&app, &booking).await.as_deref() == Some("confirmed")
        })
        .await,
        "the read model never showed the booking"
    );

    // Hold the read model's row: the projection cannot apply the cancellation until released.
    let mut blocker = app.pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM bookings_view WHERE booking_id = $1 FOR UPDATE")
        .bind(uuid::Uuid::parse_str(booking["id"].as_str().unwrap()).unwrap())
        .execute(&mut *blocker)
        .await
        .unwrap();
    let (_, body) = mcp(
        &app,
        Some(&salon.key),
        None,
        tool_call(
            2,
            "cancel_booking",
            json!({ "booking_id": booking["id"], "reason": "customer ill",
                "idempotency_key": "cancel-1" }),
        ),
    )
    .await;
    assert_eq!(
        body["result"]["structuredContent"]["status"], "cancelled",
        "{body}"
    );
    let (_, seen) = mcp(
        &app,
        Some(&salon.key),
        None,
        tool_call(3, "get_booking", json!({ "booking_id": booking["id"] })),
    )
    .await;
    assert_eq!(
        viewed_status(&app, &booking).await.as_deref(),
        Some("confirmed"),
        "the read model was meant to be behind here"
    );
    assert_eq!(
        seen["result"]["structuredContent"]["status"], "cancelled",
        "{seen}"
    );

    blocker.rollback().await.unwrap();
    assert!(
        poll_until(Duration::from_secs(10), || async {
            viewed_status(&app, &booking).await.as_deref() == Some("cancelled")
        })
        .await,
        "the read model never caught up once released"
    );
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn an_agent_looking_up_the_customer_it_just_booked_finds_the_booking(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let salon = app.seed_salon("Salon", "professional").await;
    // The read models cannot apply anything while this transaction holds their offsets.
    let blocker = lock_table(&app.pool, "projection_offsets IN EXCLUSIVE MODE").await;
    let booking = book_over_mcp(&app, &salon).await;

    // The same key asks for the customer's bookings: the answer waits for the read model.
    let lookup = {
        let (http, address, key) = (app.http.clone(), app.address.clone(), salon.key.clone());
        tokio::spawn(async move {
            let call = tool_call(
                2,
                "find_customer_bookings",
                json!({ "phone": "+491512345678" }),
            );
            mcp_at(&http, &address, Some(&key), None, call).await
        })
    };
    assert!(
        poll_until(Duration::from_secs(2), || async {
            app.requests_in_flight("mcp").await >= 1
        })
        .await,
        "the lookup answered before the read model had the booking"
    );
    blocker.rollback().await.unwrap();
    let (status, found) = lookup.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{found}");
    let bookings = found["result"]["structuredContent"]["bookings"]
        .as_array()
        .unwrap_or_else(|| panic!("{found}"));
    assert!(bookings.iter().any(|b| b["id"] == booking["id"]), "{found}");
}
