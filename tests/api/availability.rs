//! Availability over HTTP on the nights Berlin changes its clocks, with buffers, a break, a
//! booking and a block; who is free at a time; and refusals of bad questions.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc, Weekday};
use chrono_tz::Europe::Berlin;
use reqwest::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::support::TestApp;
use crate::support::app::{every_day, poll_until};

/// The last Sunday of `month` that is at least two days away.
fn next_last_sunday(month: u32) -> NaiveDate {
    let today = Utc::now().date_naive();
    (today.year()..=today.year() + 1)
        .map(|year| {
            let next_month =
                NaiveDate::from_ymd_opt(year + i32::from(month == 12), month % 12 + 1, 1).unwrap();
            let mut day = next_month - Duration::days(1);
            while day.weekday() != Weekday::Sun {
                day -= Duration::days(1);
            }
            day
        })
        .find(|d| *d > today + Duration::days(2))
        .unwrap()
}

/// `hour:minute` UTC on `date`, `days` days later (negative: earlier).
fn utc(date: NaiveDate, days: i64, hour: u32, minute: u32) -> DateTime<Utc> {
    (date + Duration::days(days))
        .and_hms_opt(hour, minute, 0)
        .unwrap()
        .and_utc()
}

struct Night {
    key: String,
    branch: String,
    service: String,
    night: String,
    day: String,
}

/// A Berlin branch open around the clock; a 45-minute service with 10 minutes' buffer either
/// side; "Nacht" works 01:00–05:00 with a 04:30–04:45 break, "Tag" 09:00–17:00.
async fn night_shift(app: &TestApp) -> Night {
    let (_, key) = app.register_tenant("Nachtsalon", "professional").await;
    let (s, b) = app
        .put(
            &key,
            "/api/v2/mcp/tenant/settings",
            json!({ "time_zone": "Europe/Berlin", "booking_rules": { "min_notice_minutes": 60, "max_advance_days": 365, "slot_interval_minutes": 15 } }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let always = every_day(&json!({ "ranges": [{ "start": "00:00", "end": "24:00" }] }));
    let (s, b) = app.post(&key, "/api/v2/mcp/tenant/branches", json!({ "name": "Mitte", "address": "Torstr. 1", "city": "Berlin", "coordinates": null, "time_zone": "Europe/Berlin", "business_hours": always })).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let branch = b["data"]["id"].as_str().unwrap().to_owned();
    let (s, b) = app.post(&key, "/api/v2/mcp/services", json!({ "name": "Nachtschnitt", "duration_minutes": 45, "price": { "amount_minor": 5000, "currency": "EUR" }, "buffer_before_minutes": 10, "buffer_after_minutes": 10, "branch_ids": [branch], "deposit": null })).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let service = b["data"]["id"].as_str().unwrap().to_owned();
    let mut staff = Vec::new();
    for (name, hours, level) in [
        (
            "Nacht",
            json!({ "ranges": [{ "start": "01:00", "end": "05:00" }], "breaks": [{ "start": "04:30", "end": "04:45" }] }),
            4,
        ),
        (
            "Tag",
            json!({ "ranges": [{ "start": "09:00", "end": "17:00" }] }),
            5,
        ),
    ] {
        let (s, b) = app
            .post(
                &key,
                "/api/v2/mcp/staff",
                json!({ "branch_id": branch, "name": name, "schedule": every_day(&hours) }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let id = b["data"]["id"].as_str().unwrap().to_owned();
        let (s, b) = app
            .put(
                &key,
                &format!("/api/v2/mcp/staff/{id}/services/{service}"),
                json!({ "level": level }),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        staff.push(id);
    }
    Night {
        key,
        branch,
        service,
        night: staff[0].clone(),
        day: staff[1].clone(),
    }
}

/// Nacht's slot starts on a Berlin date, with read-your-writes.
async fn starts(
    app: &TestApp,
    n: &Night,
    date: NaiveDate,
    min_position: i64,
) -> Vec<DateTime<Utc>> {
    let (status, body) = app
        .post(
            &n.key,
            "/api/v2/mcp/bookings/check-availability",
            json!({ "service_id": n.service, "date": date, "branch_ids": [n.branch], "preferred_staff_id": n.night, "min_position": min_position }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let slots = body["slots"].as_array().unwrap();
    assert_eq!(body["available"], !slots.is_empty());
    for slot in slots {
        assert_eq!(
            slot["staff_id"],
            n.night.as_str(),
            "only Nacht works at night"
        );
        assert_eq!(slot["branch_id"], n.branch.as_str());
    }
    slots
        .iter()
        .map(|s| s["start"].as_str().unwrap().parse().unwrap())
        .collect()
}

fn every_quarter(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut t = from;
    while t <= to {
        out.push(t);
        t += Duration::minutes(15);
    }
    out
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn availability_follows_berlin_wall_time_across_both_clock_changes(pool: PgPool) {
    let app = TestApp::spawn_with(pool, |c| c.booking_max_advance_days = 365).await;
    let n = night_shift(&app).await;
    // The last set-up command's position, for read-your-writes.
    let settled: i64 = sqlx::query_scalar("SELECT max(position) FROM events")
        .fetch_one(&app.pool)
        .await
        .unwrap();

    // Spring: 01:00 CET is 00:00 UTC, 05:00 CEST is 03:00 UTC; the 04:30 CEST break is 02:30 UTC.
    // 45 minutes must end by the break: starts 00:00–01:45 UTC, local 01:00–01:45 and 03:00–03:45.
    let spring = next_last_sunday(3);
    assert_eq!(
        starts(&app, &n, spring, settled).await,
        every_quarter(utc(spring, 0, 0, 0), utc(spring, 0, 1, 45))
    );
    let (status, plan) = app
        .get(
            &n.key,
            &format!(
                "/api/v2/mcp/staff/{}/availability?start_date={spring}&end_date={spring}",
                n.night
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{plan}");
    assert_eq!(plan["days"][0]["working_minutes"], 180 - 15, "{plan}");

    // Autumn: 01:00 CEST is 23:00 UTC the day before, 05:00 CET is 04:00 UTC; the break is
    // 03:30 UTC. Five hours of wall time: starts 23:00–02:45 UTC, local 02:00–02:45 twice.
    let autumn = next_last_sunday(10);
    let offered = starts(&app, &n, autumn, settled).await;
    assert_eq!(
        offered,
        every_quarter(utc(autumn, -1, 23, 0), utc(autumn, 0, 2, 45))
    );
    let twice = offered
        .iter()
        .filter(|t| t.with_timezone(&Berlin).format("%H:%M").to_string() == "02:15")
        .count();
    assert_eq!(twice, 2);
    let (_, plan) = app
        .get(
            &n.key,
            &format!(
                "/api/v2/mcp/staff/{}/availability?start_date={autumn}&end_date={autumn}",
                n.night
            ),
        )
        .await;
    assert_eq!(plan["days"][0]["working_minutes"], 300 - 15, "{plan}");

    // Book the second 02:15 (01:15 UTC): it occupies 01:05–02:10 UTC, and a new booking needs
    // its own 10 minutes either side, so 00:15–02:15 UTC go.
    let (status, booked) = app
        .post(
            &n.key,
            "/api/v2/mcp/bookings",
            json!({ "branch_id": n.branch, "service_id": n.service, "staff_id": n.night, "start": utc(autumn, 0, 1, 15), "customer": { "phone": "+4915100000009", "name": "Eule" } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{booked}");
    let position = booked["position"].as_i64().unwrap();
    let mut expected = every_quarter(utc(autumn, -1, 23, 0), utc(autumn, 0, 0, 0));
    expected.extend([utc(autumn, 0, 2, 30), utc(autumn, 0, 2, 45)]);
    assert_eq!(starts(&app, &n, autumn, position).await, expected);

    // A block from 23:00 to 23:30 UTC takes the slots whose buffered time touches it.
    let (status, blocked) = app
        .post(
            &n.key,
            &format!("/api/v2/mcp/staff/{}/blocks", n.night),
            json!({ "start": utc(autumn, -1, 23, 0), "end": utc(autumn, -1, 23, 30), "reason": "Arzt" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{blocked}");
    let position = blocked["position"].as_i64().unwrap();
    assert_eq!(
        starts(&app, &n, autumn, position).await,
        [
            utc(autumn, -1, 23, 45),
            utc(autumn, 0, 0, 0),
            utc(autumn, 0, 2, 30),
            utc(autumn, 0, 2, 45)
        ]
    );

    // Who is free: at 02:30 UTC only Nacht (Tag is not working); at the booked time nobody.
    for (at, expected) in [
        (utc(autumn, 0, 2, 30), vec![n.night.clone()]),
        (utc(autumn, 0, 1, 15), vec![]),
    ] {
        let (status, free) = app
            .get(
                &n.key,
                &format!(
                    "/api/v2/mcp/staff/available?service_id={}&branch_id={}&date_time={}",
                    n.service,
                    n.branch,
                    at.to_rfc3339().replace('+', "%2B")
                ),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{free}");
        let ids: Vec<String> = free["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["staff_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, expected, "{free}");
    }
    // In the day both work; Tag is the more skilled, so recommended first.
    let noon = utc(autumn, 0, 11, 0);
    let (_, free) = app
        .get(
            &n.key,
            &format!(
                "/api/v2/mcp/staff/available?service_id={}&branch_id={}&date_time={}",
                n.service,
                n.branch,
                noon.to_rfc3339().replace('+', "%2B")
            ),
        )
        .await;
    assert_eq!(free["data"][0]["staff_id"], n.day.as_str(), "{free}");
    assert_eq!(free["data"][0]["rank"], 1);

    // Past the advance limit nothing is offered, and nothing comes after it.
    let too_far = Utc::now().date_naive() + Duration::days(367);
    let (status, body) = app
        .post(
            &n.key,
            "/api/v2/mcp/bookings/check-availability",
            json!({ "service_id": n.service, "date": too_far }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        (
            body["available"].as_bool(),
            body["next_available"].is_null()
        ),
        (Some(false), true),
        "{body}"
    );
    // A closed stretch points to the next free slot.
    let (_, body) = app
        .post(
            &n.key,
            "/api/v2/mcp/bookings/check-availability",
            json!({ "service_id": n.service, "date": autumn, "preferred_staff_id": n.day }),
        )
        .await;
    assert!(body["available"].as_bool().unwrap(), "{body}");
    assert_eq!(body["next_available"], body["slots"][0]);
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn bad_availability_questions_are_refused_with_the_envelope(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let today = Utc::now().date_naive();
    for (body, status, field) in [
        (
            json!({ "service_id": salon.service_id }),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("date"),
        ),
        (
            json!({ "service_id": salon.service_id, "date": today, "start_date": today }),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("date"),
        ),
        (
            json!({ "service_id": salon.service_id, "start_date": today, "end_date": today - Duration::days(1) }),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("end_date"),
        ),
        (
            json!({ "service_id": salon.service_id, "start_date": today, "end_date": today + Duration::days(40) }),
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("end_date"),
        ),
        (
            json!({ "service_id": uuid::Uuid::new_v4(), "date": today }),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            json!({ "service_id": salon.service_id, "date": today, "branch_ids": [uuid::Uuid::new_v4()] }),
            StatusCode::NOT_FOUND,
            None,
        ),
        (
            json!({ "service_id": salon.service_id, "date": "tomorrow" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
        ),
    ] {
        let (got, answer) = app
            .post(
                &salon.key,
                "/api/v2/mcp/bookings/check-availability",
                body.clone(),
            )
            .await;
        assert_eq!(got, status, "{body} → {answer}");
        assert!(answer["error"]["type"].is_string(), "{answer}");
        if let Some(field) = field {
            assert_eq!(answer["error"]["details"]["field"], field, "{answer}");
        }
    }
    let (status, answer) = app
        .get(
            &salon.key,
            &format!(
                "/api/v2/mcp/staff/available?service_id={}&branch_id={}&date_time=2030-01-01T10:00:00Z&duration=5",
                salon.service_id, salon.branch_id
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    let (status, answer) = app
        .get(
            &salon.key,
            &format!(
                "/api/v2/mcp/staff/{}/availability?start_date=2030-01-10&end_date=2030-01-01",
                salon.staff_ids[0]
            ),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn the_first_slot_offered_keeps_the_minimum_notice(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let (_, key) = app.register_tenant("Kurzfristig", "professional").await;
    let (s, b) = app
        .put(
            &key,
            "/api/v2/mcp/tenant/settings",
            json!({ "time_zone": "Europe/Berlin", "booking_rules": { "min_notice_minutes": 90, "slot_interval_minutes": 15 } }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let always = every_day(&json!({ "ranges": [{ "start": "00:00", "end": "24:00" }] }));
    let (s, b) = app.post(&key, "/api/v2/mcp/tenant/branches", json!({ "name": "Mitte", "address": "Torstr. 1", "city": "Berlin", "coordinates": null, "time_zone": "Europe/Berlin", "business_hours": always })).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let branch = b["data"]["id"].as_str().unwrap().to_owned();
    let (s, b) = app.post(&key, "/api/v2/mcp/services", json!({ "name": "Pony", "duration_minutes": 30, "price": { "amount_minor": 1500, "currency": "EUR" }, "buffer_before_minutes": 0, "buffer_after_minutes": 0, "branch_ids": [branch], "deposit": null })).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let service = b["data"]["id"].as_str().unwrap().to_owned();
    let (s, b) = app
        .post(
            &key,
            "/api/v2/mcp/staff",
            json!({ "branch_id": branch, "name": "Immer", "schedule": always }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let staff = b["data"]["id"].as_str().unwrap().to_owned();
    let (s, b) = app
        .put(
            &key,
            &format!("/api/v2/mcp/staff/{staff}/services/{service}"),
            json!({ "level": 3 }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let position = b["position"].as_i64().unwrap();

    // Working around the clock, the first start is the first quarter hour at least 90 minutes
    // from now (whenever the test runs, today or, late at night, tomorrow).
    let today = Utc::now().with_timezone(&Berlin).date_naive();
    let before = Utc::now();
    let (status, body) = app
        .post(
            &key,
            "/api/v2/mcp/bookings/check-availability",
            json!({ "service_id": service, "start_date": today, "end_date": today + Duration::days(1), "min_position": position }),
        )
        .await;
    let after = Utc::now();
    assert_eq!(status, StatusCode::OK, "{body}");
    let first: DateTime<Utc> = body["slots"][0]["start"].as_str().unwrap().parse().unwrap();
    assert!(
        first >= before + Duration::minutes(90),
        "{first} is sooner than 90 minutes after {before}"
    );
    // A slot does not run past midnight (each day's hours end at 24:00): when the notice ends
    // within the last half hour of the day, the first start is the next midnight.
    let midnight = (after + Duration::minutes(90))
        .with_timezone(&Berlin)
        .date_naive()
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .and_then(|t| t.and_local_timezone(Berlin).earliest())
        .map(|t| t.with_timezone(&Utc))
        .unwrap();
    assert!(
        first <= after + Duration::minutes(105)
            || (first == midnight && midnight <= after + Duration::minutes(120)),
        "{first} leaves a gap after the notice ending {after} + 90 min"
    );
    assert_eq!(first.timestamp() % 900, 0, "{first} is on the quarter hour");
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_position_shows_the_changes_made_just_before_its_command_too(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Salon", "professional").await;
    // The tenants read model's writer waits for this lock (it takes it before any table).
    let mut holder = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtext('projection:tenants'))")
        .execute(&mut *holder)
        .await
        .unwrap();

    // A service the tenants read model cannot show yet, then staff assigned to it: the
    // position names the assignment.
    let (s, b) = app.post(&salon.key, "/api/v2/mcp/services", json!({ "name": "Pony", "duration_minutes": 30, "price": { "amount_minor": 1500, "currency": "EUR" }, "buffer_before_minutes": 0, "buffer_after_minutes": 0, "branch_ids": [salon.branch_id], "deposit": null })).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let service = b["data"]["id"].as_str().unwrap().to_owned();
    let path = format!(
        "/api/v2/mcp/staff/{}/services/{service}",
        salon.staff_ids[0]
    );
    let (s, b) = app.put(&salon.key, &path, json!({ "level": 3 })).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let position = b["position"].as_i64().unwrap();

    let day = (Utc::now() + Duration::days(2)).date_naive();
    let check = app.spawn_post_at(
        &app.address,
        &salon.key,
        "/api/v2/mcp/bookings/check-availability",
        json!({ "service_id": service, "date": day, "min_position": position }),
    );
    assert!(
        poll_until(std::time::Duration::from_secs(2), || async {
            app.requests_in_flight("api").await >= 1
        })
        .await,
        "availability answered before the tenants read model had the service"
    );
    sqlx::query("SELECT pg_advisory_unlock(hashtext('projection:tenants'))")
        .execute(&mut *holder)
        .await
        .unwrap();
    let (status, body) = check.await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        !body["slots"].as_array().unwrap().is_empty(),
        "no slot for the new service: {body}"
    );
}
