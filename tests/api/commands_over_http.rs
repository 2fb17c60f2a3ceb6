use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::app::{berlin, every_day, zone_near_noon};
use crate::support::{TestApp, poll_until};

/// Reads the events appended since the last call.
struct EventLog {
    pool: PgPool,
    position: i64,
}

impl EventLog {
    async fn new(pool: &PgPool) -> Self {
        let position = sqlx::query_scalar("SELECT COALESCE(max(position), 0) FROM events")
            .fetch_one(pool)
            .await
            .unwrap();
        Self {
            pool: pool.clone(),
            position,
        }
    }

    /// `aggregate_type:event_type` of each new event, in order.
    async fn new_events(&mut self) -> Vec<String> {
        let rows: Vec<(i64, String, String)> =
            sqlx::query_as("SELECT position, aggregate_type, event_type FROM events WHERE position > $1 ORDER BY position")
                .bind(self.position)
                .fetch_all(&self.pool)
                .await
                .unwrap();
        if let Some((p, _, _)) = rows.last() {
            self.position = *p;
        }
        rows.into_iter()
            .map(|(_, a, e)| format!("{a}:{e}"))
            .collect()
    }

    async fn expect(&mut self, what: &str, expected: &[&str]) {
        assert_eq!(self.new_events().await, expected, "events of {what}");
    }
}

fn id(body: &Value) -> String {
    body["data"]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {body}"))
        .to_owned()
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn every_tenant_branch_and_service_command_stores_its_events(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let mut log = EventLog::new(&pool).await;
    let (tenant_id, key) = app.register_tenant("Salon Eins", "professional").await;
    log.expect("registration", &["Tenant:TenantRegistered"])
        .await;

    let (status, body) = app
        .put(
            &key,
            "/api/v2/mcp/tenant",
            json!({ "name": "Salon Zwei", "contact_email": "a@b.de" }),
        )
        .await;
    assert_eq!(
        (status, body["data"]["name"].as_str()),
        (StatusCode::OK, Some("Salon Zwei"))
    );
    log.expect("update tenant", &["Tenant:TenantUpdated"]).await;

    let (status, body) = app
        .put(
            &key,
            "/api/v2/mcp/tenant/plan",
            json!({ "plan": "enterprise" }),
        )
        .await;
    assert_eq!(
        (status, body["data"]["limits"]["branches"].clone()),
        (StatusCode::OK, Value::Null)
    );
    log.expect("change plan", &["Tenant:PlanChanged"]).await;

    let (status, _) = app.put(&key, "/api/v2/mcp/tenant/settings", json!({ "time_zone": "Europe/Berlin", "locale": "en", "booking_rules": { "min_notice_minutes": 30 } })).await;
    assert_eq!(status, StatusCode::OK);
    log.expect("settings", &["Tenant:TenantSettingsUpdated"])
        .await;

    let hours = json!({ "monday": { "ranges": [{ "start": "09:00", "end": "18:00" }] } });
    let (status, body) = app.post(&key, "/api/v2/mcp/tenant/branches", json!({ "name": "Mitte", "address": "Torstr. 1", "city": "Berlin", "coordinates": null, "time_zone": null, "business_hours": hours })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["data"]["time_zone"], "Europe/Berlin",
        "the tenant's zone is the default"
    );
    let branch = id(&body);
    log.expect("create branch", &["Tenant:BranchCreated"]).await;

    let (status, _) = app.put(&key, &format!("/api/v2/mcp/tenant/branches/{branch}"), json!({ "name": "Berlin Mitte", "address": "Torstr. 2", "city": "Berlin", "coordinates": { "lat": 52.5, "lng": 13.4 }, "time_zone": "Europe/Berlin", "business_hours": hours })).await;
    assert_eq!(status, StatusCode::OK);
    log.expect("update branch", &["Tenant:BranchUpdated"]).await;

    for (action, event) in [
        ("deactivate", "Tenant:BranchDeactivated"),
        ("activate", "Tenant:BranchActivated"),
    ] {
        let (status, _) = app
            .post(
                &key,
                &format!("/api/v2/mcp/tenant/branches/{branch}/{action}"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{action}");
        log.expect(action, &[event]).await;
    }

    let (status, body) = app
        .post(
            &key,
            &format!("/api/v2/mcp/tenant/branches/{branch}/phone-numbers"),
            json!({ "phone_number": "030 1234567" }),
        )
        .await;
    assert_eq!(
        (status, body["data"]["phone_numbers"][0].as_str()),
        (StatusCode::OK, Some("+49301234567"))
    );
    log.expect("assign phone", &["Tenant:PhoneNumberAssigned"])
        .await;
    let (status, _) = app
        .call(
            Method::DELETE,
            &key,
            "/api/v2/mcp/tenant/phone-numbers/+49301234567",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    log.expect("release phone", &["Tenant:PhoneNumberReleased"])
        .await;

    let service = json!({ "name": "Cut", "duration_minutes": 30, "price": { "amount_minor": 2900, "currency": "EUR" }, "buffer_before_minutes": 0, "buffer_after_minutes": 5, "branch_ids": [branch], "deposit": null });
    let (status, body) = app
        .post(&key, "/api/v2/mcp/services", service.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let service_id = id(&body);
    log.expect("define service", &["Tenant:ServiceDefined"])
        .await;
    let mut changed = service;
    changed["duration_minutes"] = json!(45);
    let (status, body) = app
        .put(&key, &format!("/api/v2/mcp/services/{service_id}"), changed)
        .await;
    assert_eq!(
        (status, body["data"]["duration_minutes"].as_u64()),
        (StatusCode::OK, Some(45))
    );
    log.expect("update service", &["Tenant:ServiceUpdated"])
        .await;
    let (status, _) = app
        .post(
            &key,
            &format!("/api/v2/mcp/services/{service_id}/retire"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    log.expect("retire service", &["Tenant:ServiceRetired"])
        .await;

    // Every event carries the metadata of DESIGN §4; the correlation id comes from the request.
    let correlation = uuid::Uuid::now_v7();
    let response = app
        .http
        .put(format!("{}/api/v2/mcp/tenant", app.address))
        .bearer_auth(&key)
        .header("X-Correlation-Id", correlation.to_string())
        .json(&json!({ "name": "Salon Drei" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (payload, metadata): (Value, Value) =
        sqlx::query_as("SELECT payload, metadata FROM events ORDER BY position DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(payload["TenantUpdated"]["name"], "Salon Drei");
    assert_eq!(metadata["tenant_id"], tenant_id.as_str());
    assert_eq!(metadata["correlation_id"], correlation.to_string().as_str());
    assert_eq!(metadata["source"], "api");
    assert!(metadata["actor"].as_str().unwrap().starts_with("api_key:"));
    let event_id = uuid::Uuid::parse_str(metadata["event_id"].as_str().unwrap()).unwrap();
    assert_eq!(event_id.get_version_num(), 7);
    assert!(uuid::Uuid::parse_str(metadata["causation_id"].as_str().unwrap()).is_ok());
    assert!(
        chrono::DateTime::parse_from_rfc3339(metadata["occurred_at"].as_str().unwrap()).is_ok()
    );
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn every_staff_command_stores_its_events(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let mut log = EventLog::new(&pool).await;
    let key = &salon.key;
    let schedule =
        json!({ "tuesday": { "ranges": [{ "start": "10:00", "end": "16:00" }], "breaks": [] } });
    let (status, body) = app.post(key, "/api/v2/mcp/staff", json!({ "branch_id": salon.branch_id, "name": "Dana", "email": "dana@example.com", "phone": "0170 1234567", "schedule": schedule })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["data"]["phone"], "+491701234567");
    let staff = id(&body);
    log.expect("hire", &["Staff:StaffHired"]).await;
    let base = format!("/api/v2/mcp/staff/{staff}");

    let (status, _) = app.put(key, &base, json!({ "name": "Dana K." })).await;
    assert_eq!(status, StatusCode::OK);
    log.expect("profile", &["Staff:StaffProfileUpdated"]).await;
    let (status, _) = app
        .put(
            key,
            &format!("{base}/schedule"),
            json!({ "schedule": schedule }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    log.expect("schedule", &["Staff:StaffScheduleUpdated"])
        .await;
    let (status, body) = app
        .put(
            key,
            &format!("{base}/overrides/2031-01-02"),
            json!({ "hours": { "ranges": [] } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    log.expect("override", &["Staff:ScheduleOverrideSet"]).await;
    let (status, _) = app
        .put(
            key,
            &format!("{base}/services/{}", salon.service_id),
            json!({ "level": 4 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    log.expect("assign", &["Staff:StaffAssignedToService"])
        .await;
    let (status, _) = app
        .call(
            Method::DELETE,
            key,
            &format!("{base}/services/{}", salon.service_id),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    log.expect("unassign", &["Staff:StaffUnassignedFromService"])
        .await;
    let (status, body) = app.post(key, &format!("{base}/blocks"), json!({ "start": "2031-02-01T00:00:00Z", "end": "2031-02-08T00:00:00Z", "reason": "vacation" })).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let block = body["data"]["blocks"][0]["id"].as_str().unwrap().to_owned();
    log.expect("block", &["Staff:StaffTimeBlocked"]).await;
    let (status, _) = app
        .call(Method::DELETE, key, &format!("{base}/blocks/{block}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    log.expect("unblock", &["Staff:StaffTimeUnblocked"]).await;
    let (status, body) = app
        .post(key, &format!("{base}/deactivate"), json!({}))
        .await;
    assert_eq!(
        (status, body["data"]["active"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    log.expect("deactivate", &["Staff:StaffDeactivated"]).await;
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn the_booking_flow_stores_holds_bookings_and_reservations(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let mut log = EventLog::new(&pool).await;
    let key = &salon.key;

    let (status, body) = app
        .post(
            key,
            "/api/v2/mcp/bookings",
            TestApp::booking(&salon, Some(0), berlin(2, 10, 0)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (body["data"]["status"].as_str(), body["version"].as_u64()),
        (Some("confirmed"), Some(1))
    );
    assert!(body["position"].as_i64().is_some());
    assert_eq!(body["data"]["customer"]["phone"], "+491512345678");
    let booking = id(&body);
    // Confirmed as it is made: one event on each stream.
    log.expect("create", &["Booking:BookingCreated", "Staff:SlotReserved"])
        .await;
    let (version, payload): (String, Value) = sqlx::query_as(
        "SELECT event_version, payload FROM events WHERE aggregate_id = $1 AND sequence = 1",
    )
    .bind(&booking)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(version, "2");
    assert_eq!(
        payload["BookingCreated"]["confirmed_at"],
        payload["BookingCreated"]["created_at"]
    );
    let (status, body) = app
        .get(key, &format!("/api/v2/mcp/bookings/{booking}"))
        .await;
    assert_eq!(
        (status, body["data"]["id"].as_str()),
        (StatusCode::OK, Some(booking.as_str()))
    );

    let (status, body) = app
        .put(
            key,
            &format!("/api/v2/mcp/bookings/{booking}"),
            json!({ "notes": "window seat" }),
        )
        .await;
    assert_eq!(
        (status, body["data"]["notes"].as_str()),
        (StatusCode::OK, Some("window seat"))
    );
    log.expect("details", &["Booking:BookingDetailsUpdated"])
        .await;

    // Same staff: the new slot is held, then the old one released as the new one is reserved.
    let (status, body) = app
        .post(
            key,
            &format!("/api/v2/mcp/bookings/{booking}/reschedule"),
            json!({ "start": berlin(2, 11, 0).to_rfc3339() }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    log.expect(
        "reschedule",
        &[
            "Staff:SlotHeld",
            "Booking:BookingRescheduled",
            "Staff:SlotReleased",
            "Staff:ReservationConfirmed",
        ],
    )
    .await;

    // Another staff member: reserved there, released at the first.
    let (status, body) = app
        .post(
            key,
            &format!("/api/v2/mcp/bookings/{booking}/reschedule"),
            json!({ "start": berlin(2, 14, 0).to_rfc3339(), "staff_id": salon.staff_ids[1] }),
        )
        .await;
    assert_eq!(
        (status, body["data"]["staff_id"].as_str()),
        (StatusCode::OK, Some(salon.staff_ids[1].as_str())),
        "{body}"
    );
    log.expect(
        "reschedule to other staff",
        &[
            "Staff:SlotHeld",
            "Booking:BookingRescheduled",
            "Staff:ReservationConfirmed",
            "Staff:SlotReleased",
        ],
    )
    .await;

    let (status, body) = app
        .post(
            key,
            &format!("/api/v2/mcp/bookings/{booking}/cancel"),
            json!({ "reason": "ill" }),
        )
        .await;
    assert_eq!(
        (status, body["data"]["status"].as_str()),
        (StatusCode::OK, Some("cancelled"))
    );
    log.expect(
        "cancel",
        &["Booking:BookingCancelled", "Staff:SlotReleased"],
    )
    .await;

    let mut held = TestApp::booking(&salon, None, berlin(3, 9, 0));
    held["hold_only"] = json!(true);
    let (status, body) = app.post(key, "/api/v2/mcp/bookings", held).await;
    assert_eq!(
        (status, body["data"]["status"].as_str()),
        (StatusCode::CREATED, Some("held"))
    );
    let held_id = id(&body);
    log.expect("hold only", &["Booking:BookingCreated", "Staff:SlotHeld"])
        .await;
    let (status, body) = app
        .post(
            key,
            &format!("/api/v2/mcp/bookings/{held_id}/confirm"),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["data"]["status"].as_str()),
        (StatusCode::OK, Some("confirmed"))
    );
    log.expect(
        "confirm",
        &["Booking:BookingConfirmed", "Staff:ReservationConfirmed"],
    )
    .await;
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_started_booking_is_completed_or_marked_no_show(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let (_, key) = app.register_tenant("Late Night", "professional").await;
    let zone = zone_near_noon();
    let week = every_day(&json!({ "ranges": [{ "start": "00:00", "end": "24:00" }] }));
    let (status, _) = app
        .put(
            &key,
            "/api/v2/mcp/tenant/settings",
            json!({ "time_zone": zone, "booking_rules": { "min_notice_minutes": 0 } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = app.post(&key, "/api/v2/mcp/tenant/branches", json!({ "name": "B", "address": "A", "city": "C", "coordinates": null, "time_zone": zone, "business_hours": week })).await;
    let branch = id(&body);
    let (_, body) = app.post(&key, "/api/v2/mcp/services", json!({ "name": "S", "duration_minutes": 15, "price": { "amount_minor": 100, "currency": "EUR" }, "buffer_before_minutes": 0, "buffer_after_minutes": 0, "branch_ids": [branch], "deposit": null })).await;
    let service = id(&body);
    let mut staff = Vec::new();
    for name in ["N", "M"] {
        let (_, body) = app
            .post(
                &key,
                "/api/v2/mcp/staff",
                json!({ "branch_id": branch, "name": name, "schedule": week }),
            )
            .await;
        let staff_id = id(&body);
        app.put(
            &key,
            &format!("/api/v2/mcp/staff/{staff_id}/services/{service}"),
            json!({ "level": 1 }),
        )
        .await;
        staff.push(staff_id);
    }
    let book = |staff_id: &str, start: chrono::DateTime<Utc>| json!({ "branch_id": branch, "service_id": service, "staff_id": staff_id, "start": start.to_rfc3339(), "customer": { "phone": "+4915112345678", "name": "X" } });
    let start = Utc::now() + chrono::Duration::seconds(2);
    let mut ids = Vec::new();
    for (staff_id, at) in [
        (&staff[0], start),
        (&staff[1], start),
        (&staff[0], start + chrono::Duration::minutes(20)),
    ] {
        let (status, body) = app
            .post(&key, "/api/v2/mcp/bookings", book(staff_id, at))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        ids.push(id(&body));
    }
    assert!(
        poll_until(std::time::Duration::from_secs(5), || async {
            Utc::now() > start
        })
        .await
    );
    let (status, body) = app
        .post(
            &key,
            &format!("/api/v2/mcp/bookings/{}/complete", ids[0]),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["data"]["status"].as_str()),
        (StatusCode::OK, Some("completed")),
        "{body}"
    );
    let (status, body) = app
        .post(
            &key,
            &format!("/api/v2/mcp/bookings/{}/no-show", ids[1]),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["data"]["status"].as_str()),
        (StatusCode::OK, Some("no_show")),
        "{body}"
    );
    let (status, body) = app
        .post(
            &key,
            &format!("/api/v2/mcp/bookings/{}/no-show", ids[0]),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::CONFLICT, Some("INVALID_STATE_TRANSITION")),
        "a completed booking"
    );
    let (status, body) = app
        .post(
            &key,
            &format!("/api/v2/mcp/bookings/{}/complete", ids[2]),
            json!({}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["details"]["reason"].as_str()),
        (StatusCode::CONFLICT, Some("NotStartedYet"))
    );
    assert_eq!(
        app.event_types("Booking", &ids[0]).await,
        ["BookingCreated", "BookingCompleted"]
    );
    assert_eq!(
        app.event_types("Booking", &ids[1]).await,
        ["BookingCreated", "BookingMarkedNoShow"]
    );
}
