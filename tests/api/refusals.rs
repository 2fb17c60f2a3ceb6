use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::app::berlin;
use crate::support::{Salon, TestApp};

/// Sends a request that must be refused: checks status, envelope type and code, the rule named
/// in `details.reason` (when given), and that nothing was written.
/// What a refusal must look like: status, envelope type, and the rule in `details.reason`.
struct Want(StatusCode, &'static str, Option<&'static str>);

async fn refused(
    app: &TestApp,
    key: &str,
    method: Method,
    path: &str,
    body: Value,
    Want(status, kind, reason): Want,
) -> Value {
    let before = app.event_count().await;
    let (got, answer) = app.call(method, key, path, Some(body)).await;
    assert_eq!(got, status, "{path}: {answer}");
    let error = &answer["error"];
    assert_eq!(error["type"], kind, "{answer}");
    let code = match kind {
        "VALIDATION_FAILED" => 1001,
        "RESOURCE_NOT_FOUND" => 1002,
        "PERMISSION_DENIED" => 1003,
        "TENANT_QUOTA_EXCEEDED" => 1006,
        "SLOT_UNAVAILABLE" => 1009,
        "INVALID_STATE_TRANSITION" => 1011,
        other => panic!("unexpected type {other}"),
    };
    assert_eq!(error["code"], code);
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(chrono::DateTime::parse_from_rfc3339(error["timestamp"].as_str().unwrap()).is_ok());
    if let Some(reason) = reason {
        assert_eq!(error["details"]["reason"], reason, "{answer}");
    }
    assert_eq!(
        app.event_count().await,
        before,
        "{path} wrote events although refused"
    );
    answer
}

async fn refused_booking(app: &TestApp, salon: &Salon, body: Value, want: Want) -> Value {
    refused(
        app,
        &salon.key,
        Method::POST,
        "/api/v2/mcp/bookings",
        body,
        want,
    )
    .await
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn bad_bookings_are_refused_with_the_envelope_and_write_nothing(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;

    let mut bad_phone = TestApp::booking(&salon, None, berlin(2, 10, 0));
    bad_phone["customer"]["phone"] = json!("call me maybe");
    let answer = refused_booking(
        &app,
        &salon,
        bad_phone,
        Want(unprocessable, "VALIDATION_FAILED", None),
    )
    .await;
    assert_eq!(answer["error"]["details"]["field"], "customer.phone");

    let soon = Utc::now() + Duration::minutes(10);
    refused_booking(
        &app,
        &salon,
        TestApp::booking(&salon, None, soon),
        Want(unprocessable, "VALIDATION_FAILED", Some("TooShortNotice")),
    )
    .await;
    let far = berlin(100, 10, 0);
    refused_booking(
        &app,
        &salon,
        TestApp::booking(&salon, None, far),
        Want(unprocessable, "VALIDATION_FAILED", Some("TooFarInAdvance")),
    )
    .await;
    refused_booking(
        &app,
        &salon,
        TestApp::booking(&salon, Some(0), berlin(2, 6, 0)),
        Want(
            unprocessable,
            "VALIDATION_FAILED",
            Some("OutsideBusinessHours"),
        ),
    )
    .await;
    // The branch is open at 12:00, but the staff member is on a break.
    refused_booking(
        &app,
        &salon,
        TestApp::booking(&salon, Some(0), berlin(2, 12, 0)),
        Want(unprocessable, "VALIDATION_FAILED", Some("OutsideSchedule")),
    )
    .await;

    let (_, body) = app
        .post(
            &salon.key,
            "/api/v2/mcp/staff",
            json!({ "branch_id": salon.branch_id, "name": "Trainee", "schedule": {} }),
        )
        .await;
    let trainee = body["data"]["id"].as_str().unwrap().to_owned();
    let mut unqualified = TestApp::booking(&salon, None, berlin(2, 10, 0));
    unqualified["staff_id"] = json!(trainee);
    refused_booking(
        &app,
        &salon,
        unqualified,
        Want(unprocessable, "VALIDATION_FAILED", Some("NotQualified")),
    )
    .await;

    for minutes in [10, 481] {
        let service = json!({ "name": "Odd", "duration_minutes": minutes, "price": { "amount_minor": 100, "currency": "EUR" }, "buffer_before_minutes": 0, "buffer_after_minutes": 0, "branch_ids": [salon.branch_id], "deposit": null });
        refused(
            &app,
            &salon.key,
            Method::POST,
            "/api/v2/mcp/services",
            service,
            Want(unprocessable, "VALIDATION_FAILED", Some("InvalidDuration")),
        )
        .await;
    }

    let (status, _) = app
        .post(
            &salon.key,
            &format!("/api/v2/mcp/tenant/branches/{}/deactivate", salon.branch_id),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    refused_booking(
        &app,
        &salon,
        TestApp::booking(&salon, None, berlin(2, 10, 0)),
        Want(unprocessable, "VALIDATION_FAILED", Some("BranchInactive")),
    )
    .await;
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn illegal_status_changes_are_refused(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let (status, body) = app
        .post(
            &salon.key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&salon, None, berlin(2, 10, 0)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let booking = body["data"]["id"].as_str().unwrap().to_owned();
    let (status, _) = app
        .post(
            &salon.key,
            &format!("/api/v2/mcp/bookings/{booking}/cancel"),
            json!({ "reason": "moved away" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for action in ["confirm", "complete", "no-show"] {
        refused(
            &app,
            &salon.key,
            Method::POST,
            &format!("/api/v2/mcp/bookings/{booking}/{action}"),
            json!({}),
            Want(
                StatusCode::CONFLICT,
                "INVALID_STATE_TRANSITION",
                Some("IllegalTransition"),
            ),
        )
        .await;
    }
    refused(
        &app,
        &salon.key,
        Method::POST,
        &format!("/api/v2/mcp/bookings/{booking}/cancel"),
        json!({ "reason": "again" }),
        Want(
            StatusCode::CONFLICT,
            "INVALID_STATE_TRANSITION",
            Some("IllegalTransition"),
        ),
    )
    .await;
    refused(
        &app,
        &salon.key,
        Method::POST,
        &format!("/api/v2/mcp/bookings/{booking}/reschedule"),
        json!({ "start": berlin(3, 10, 0) }),
        Want(
            StatusCode::CONFLICT,
            "INVALID_STATE_TRANSITION",
            Some("IllegalTransition"),
        ),
    )
    .await;
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn plan_limits_answer_tenant_quota_exceeded(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Small", "basic").await;
    let hours = json!({ "monday": { "ranges": [{ "start": "09:00", "end": "17:00" }] } });
    let branch = json!({ "name": "Second", "address": "A", "city": "B", "coordinates": null, "time_zone": null, "business_hours": hours });
    refused(
        &app,
        &salon.key,
        Method::POST,
        "/api/v2/mcp/tenant/branches",
        branch,
        Want(
            StatusCode::FORBIDDEN,
            "TENANT_QUOTA_EXCEEDED",
            Some("BranchLimitReached"),
        ),
    )
    .await;

    for name in ["D", "E"] {
        let (status, _) = app
            .post(
                &salon.key,
                "/api/v2/mcp/staff",
                json!({ "branch_id": salon.branch_id, "name": name }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let sixth = json!({ "branch_id": salon.branch_id, "name": "F" });
    refused(
        &app,
        &salon.key,
        Method::POST,
        "/api/v2/mcp/staff",
        sixth,
        Want(
            StatusCode::FORBIDDEN,
            "TENANT_QUOTA_EXCEEDED",
            Some("StaffLimitReached"),
        ),
    )
    .await;

    // 500 bookings already made this month (written as the store would have).
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'Booking', gen_random_uuid()::text, 1, 'BookingCreated', '1', '{}'::jsonb,
                jsonb_build_object('tenant_id', $1::text, 'event_id', gen_random_uuid()::text)
         FROM generate_series(1, 500)",
    )
    .bind(&salon.tenant_id)
    .execute(&pool)
    .await
    .unwrap();
    refused_booking(
        &app,
        &salon,
        TestApp::booking(&salon, None, berlin(2, 10, 0)),
        Want(
            StatusCode::FORBIDDEN,
            "TENANT_QUOTA_EXCEEDED",
            Some("MonthlyLimitReached"),
        ),
    )
    .await;
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn malformed_requests_and_missing_rights_use_the_envelope(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let before = app.event_count().await;
    let url = format!("{}/api/v2/mcp/bookings", app.address);
    let send = |body: &'static str, key: &str| {
        app.http
            .post(&url)
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let syntax = send("{\"branch_id\": ", &salon.key).await.unwrap();
    assert_eq!(syntax.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        syntax.json::<Value>().await.unwrap()["error"]["type"],
        "VALIDATION_FAILED"
    );
    let unknown_field = send("{\"surprise\": 1}", &salon.key).await.unwrap();
    assert_eq!(unknown_field.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        unknown_field.json::<Value>().await.unwrap()["error"]["code"],
        1001
    );
    let no_key = app.http.post(&url).json(&json!({})).send().await.unwrap();
    assert_eq!(no_key.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        no_key.json::<Value>().await.unwrap()["error"]["type"],
        "PERMISSION_DENIED"
    );
    let bad_key = send("{}", "bk_nope").await.unwrap();
    assert_eq!(bad_key.status(), StatusCode::UNAUTHORIZED);
    let not_json = app
        .http
        .post(&url)
        .bearer_auth(&salon.key)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        not_json.json::<Value>().await.unwrap()["error"]["code"],
        1001
    );
    let bad_path = app.get(&salon.key, "/api/v2/mcp/bookings/not-a-uuid").await;
    assert_eq!(
        (bad_path.0, bad_path.1["error"]["code"].as_u64()),
        (StatusCode::BAD_REQUEST, Some(1001))
    );
    let no_route = app.get(&salon.key, "/api/v2/mcp/nowhere").await;
    assert_eq!(
        (no_route.0, no_route.1["error"]["code"].as_u64()),
        (StatusCode::NOT_FOUND, Some(1002))
    );
    let wrong_method = app
        .call(Method::PATCH, &salon.key, "/api/v2/mcp/bookings", None)
        .await;
    assert_eq!(
        (wrong_method.0, wrong_method.1["error"]["code"].as_u64()),
        (StatusCode::METHOD_NOT_ALLOWED, Some(1001))
    );

    let (status, body) = app
        .post(
            &salon.key,
            "/api/v2/mcp/api-keys",
            json!({ "role": "readonly" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let readonly = body["key"].as_str().unwrap().to_owned();
    let answer = refused(
        &app,
        &readonly,
        Method::POST,
        "/api/v2/mcp/bookings",
        TestApp::booking(&salon, None, berlin(2, 10, 0)),
        Want(StatusCode::FORBIDDEN, "PERMISSION_DENIED", None),
    )
    .await;
    assert_eq!(answer["error"]["details"]["permission"], "create-bookings");
    let (status, _) = app.get(&readonly, "/api/v2/mcp/tenant").await;
    assert_eq!(status, StatusCode::OK, "reading needs no permission");
    assert_eq!(app.event_count().await, before);
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn nul_characters_are_refused_not_a_server_error(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let salon = app.seed_salon("Salon", "professional").await;
    // A refusal that echoes the NUL is still answered, and remembered for its key.
    let body = serde_json::json!({ "name": "Anna", "branch_id": salon.branch_id,
        "schedule": { "mon\u{0}day": { "ranges": [] } } });
    for _ in 0..2 {
        let (status, answer) = crate::support::app::call_at(
            &app.http,
            &app.address,
            Method::POST,
            &salon.key,
            "/api/v2/mcp/staff",
            Some(body.clone()),
            Some("nul-key"),
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    }
    // Text with a NUL is refused by the rules, never reaching the event store.
    let (status, answer) = app
        .post(
            &salon.key,
            "/api/v2/mcp/staff",
            serde_json::json!({ "name": "An\u{0}na", "branch_id": salon.branch_id,
                "schedule": {} }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
}
