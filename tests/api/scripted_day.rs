//! A salon's day of commands, over two bookingd instances, and every read model afterwards:
//! tenant profile, branches, services, staff directory and calendars, bookings, customers,
//! workload, performance, the dashboard, availability; then a rebuild of each model.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::app::{every_day, zone_near_noon};
use crate::support::pipeline::wait_until_projected;
use crate::support::{TestApp, poll_until, table_rows};

fn id(body: &Value) -> String {
    body["data"]["id"].as_str().expect("id").to_owned()
}

/// GET that must answer 200.
async fn read(app: &TestApp, key: &str, path: &str) -> Value {
    let (status, body) = app.get(key, &format!("/api/v2/mcp{path}")).await;
    assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
    body
}

struct Day {
    key: String,
    zone: chrono_tz::Tz,
    branch: String,
    closed_branch: String,
    cut: String,
    colour: String,
    staff: [String; 3],
    bookings: Vec<String>,
    start: DateTime<Utc>,
}

/// The commands of the day, sent alternately to both instances.
async fn script(app: &TestApp, second: &str) -> Day {
    let (_, key) = app.register_tenant("Day Salon", "professional").await;
    let zone = zone_near_noon();
    let open_all_day = every_day(&json!({ "ranges": [{ "start": "00:00", "end": "24:00" }] }));
    let ok = |status: StatusCode, body: &Value| {
        assert!(status.is_success(), "{status}: {body}");
    };
    let (s, b) = app
        .put(
            &key,
            "/api/v2/mcp/tenant/settings",
            json!({ "time_zone": zone, "booking_rules": { "min_notice_minutes": 0 } }),
        )
        .await;
    ok(s, &b);
    let (s, b) = app.post(&key, "/api/v2/mcp/tenant/branches", json!({ "name": "Mitte", "address": "Torstr. 1", "city": "Berlin", "coordinates": null, "time_zone": zone, "business_hours": open_all_day })).await;
    ok(s, &b);
    let branch = id(&b);
    let (s, b) = app.post(&key, "/api/v2/mcp/tenant/branches", json!({ "name": "Hafen", "address": "Kai 2", "city": "Hamburg", "coordinates": null, "time_zone": zone, "business_hours": open_all_day })).await;
    ok(s, &b);
    let closed_branch = id(&b);
    let (s, b) = app
        .post(
            &key,
            &format!("/api/v2/mcp/tenant/branches/{closed_branch}/deactivate"),
            json!({}),
        )
        .await;
    ok(s, &b);
    let mut services = Vec::new();
    for (name, minutes, price) in [("Cut", 15, 1000), ("Colour", 30, 2500), ("Perm", 60, 9000)] {
        let (s, b) = app.post(&key, "/api/v2/mcp/services", json!({ "name": name, "duration_minutes": minutes, "price": { "amount_minor": price, "currency": "EUR" }, "buffer_before_minutes": 0, "buffer_after_minutes": 0, "branch_ids": [branch], "deposit": null })).await;
        ok(s, &b);
        services.push(id(&b));
    }
    let (s, b) = app
        .post(
            &key,
            &format!("/api/v2/mcp/services/{}/retire", services[2]),
            json!({}),
        )
        .await;
    ok(s, &b);
    let mut staff = Vec::new();
    for name in ["Mia", "Noah", "Olga"] {
        let (s, b) = app
            .post(
                &key,
                "/api/v2/mcp/staff",
                json!({ "branch_id": branch, "name": name, "schedule": open_all_day }),
            )
            .await;
        ok(s, &b);
        staff.push(id(&b));
    }
    for (who, service, level) in [(0, 0, 2), (1, 0, 2), (1, 1, 5), (0, 1, 3)] {
        let (s, b) = app
            .put(
                &key,
                &format!(
                    "/api/v2/mcp/staff/{}/services/{}",
                    staff[who], services[service]
                ),
                json!({ "level": level }),
            )
            .await;
        ok(s, &b);
    }
    let (s, b) = app
        .post(
            &key,
            &format!("/api/v2/mcp/staff/{}/deactivate", staff[2]),
            json!({}),
        )
        .await;
    ok(s, &b);

    // Two bookings starting in a moment (to be completed and missed), four later today.
    let start = Utc::now() + chrono::Duration::seconds(2);
    let hours = |h: i64| start + chrono::Duration::hours(h);
    let plan = [
        (0, 0, start, "+4915100000001", "api", false),
        (1, 0, start, "+4915100000002", "api", false),
        (0, 1, hours(2), "+4915100000001", "phone", false),
        (1, 1, hours(3), "+4915100000003", "mcp", false),
        (0, 0, hours(4), "+4915100000002", "api", true),
        (1, 0, hours(5), "+4915100000001", "api", false),
    ];
    let mut bookings = Vec::new();
    for (i, (who, service, at, phone, source, hold_only)) in plan.into_iter().enumerate() {
        let body = json!({ "branch_id": branch, "service_id": services[service], "staff_id": staff[who], "start": at.to_rfc3339(), "customer": { "phone": phone, "name": format!("Kunde {phone}"), "email": format!("k{i}@example.com") }, "source": source, "hold_only": hold_only });
        let address = if i % 2 == 0 {
            app.address.as_str()
        } else {
            second
        };
        let (s, b) = crate::support::app::call_at(
            &app.http,
            address,
            reqwest::Method::POST,
            &key,
            "/api/v2/mcp/bookings",
            Some(body),
            None,
        )
        .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        bookings.push(id(&b));
    }
    assert!(
        poll_until(Duration::from_secs(5), || async { Utc::now() > start }).await,
        "the first bookings never started"
    );
    for (booking, action, body) in [
        (0, "complete", json!({})),
        (1, "no-show", json!({})),
        (3, "cancel", json!({ "reason": "ill" })),
        (5, "reschedule", json!({ "start": hours(6).to_rfc3339() })),
    ] {
        let (s, b) = app
            .post(
                &key,
                &format!("/api/v2/mcp/bookings/{}/{action}", bookings[booking]),
                body,
            )
            .await;
        ok(s, &b);
    }
    Day {
        key,
        zone: zone.parse().unwrap(),
        branch,
        closed_branch,
        cut: services[0].clone(),
        colour: services[1].clone(),
        staff: [staff[0].clone(), staff[1].clone(), staff[2].clone()],
        bookings,
        start,
    }
}

fn names(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v[field].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_scripted_day_leaves_every_read_model_with_its_expected_rows(pool: PgPool) {
    let mut app = TestApp::spawn(pool.clone()).await;
    let second = app.another_instance().await;
    let day = script(&app, &second).await;
    wait_until_projected(&pool, Duration::from_secs(10)).await;
    let key = day.key.as_str();

    // Tenant profile: tenant, features, limits.
    let profile = read(&app, key, "/tenant").await;
    assert_eq!(profile["data"]["tenant"]["name"], "Day Salon");
    assert_eq!(profile["data"]["tenant"]["plan"], "professional");
    assert_eq!(profile["data"]["tenant"]["branches"], 2);
    assert_eq!(profile["data"]["tenant"]["services"], 2);
    assert!(profile["data"]["features"].is_object());
    assert!(profile["data"]["limits"].is_object());

    // Branches with their services and staff.
    let all = read(&app, key, "/tenant/branches").await;
    assert_eq!(names(&all["data"], "name"), ["Hafen", "Mitte"]);
    let open = read(&app, key, "/tenant/branches?active=true").await;
    assert_eq!(names(&open["data"], "name"), ["Mitte"]);
    assert_eq!(
        names(&open["data"][0]["services"], "name"),
        ["Colour", "Cut"]
    );
    assert_eq!(
        names(&open["data"][0]["staff"], "name"),
        ["Mia", "Noah", "Olga"]
    );
    let hamburg = read(&app, key, "/tenant/branches?city=HAMBURG").await;
    assert_eq!(
        names(&hamburg["data"], "id"),
        std::slice::from_ref(&day.closed_branch)
    );
    let mitte = read(&app, key, &format!("/tenant/branches/{}", day.branch)).await;
    assert_eq!(mitte["active"], true);

    // Catalog.
    let catalog = read(&app, key, "/services").await;
    assert_eq!(names(&catalog["data"], "name"), ["Colour", "Cut"]);
    let everything = read(&app, key, "/services?include_retired=true").await;
    assert_eq!(
        names(&everything["data"], "name"),
        ["Colour", "Cut", "Perm"]
    );

    // Staff directory.
    let directory = read(&app, key, &format!("/staff?branch_id={}", day.branch)).await;
    assert_eq!(names(&directory["data"], "name"), ["Mia", "Noah", "Olga"]);
    let active: Vec<bool> = directory["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["active"].as_bool().unwrap())
        .collect();
    assert_eq!(active, [true, true, false]);
    assert_eq!(directory["data"][1]["skills"][&day.colour], 5);

    // Bookings.
    let bookings = read(&app, key, "/bookings?limit=200").await;
    let statuses: Vec<(String, String)> = bookings["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["id"].as_str().unwrap().to_owned(),
                b["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = day
        .bookings
        .iter()
        .zip([
            "completed",
            "no_show",
            "confirmed",
            "cancelled",
            "held",
            "confirmed",
        ])
        .map(|(id, s)| (id.clone(), s.to_owned()))
        .collect();
    let mut sorted = statuses.clone();
    sorted.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(sorted, expected_sorted);
    let one = read(&app, key, &format!("/bookings/{}", day.bookings[5])).await;
    let moved_to = day.start + chrono::Duration::hours(6);
    let shown: DateTime<Utc> = one["data"]["start"].as_str().unwrap().parse().unwrap();
    assert!((shown - moved_to).num_milliseconds().abs() < 1, "{one}");
    assert!(one["version"].as_u64().unwrap() >= 2, "{one}");

    // Customers, derived from bookings.
    let customers = read(&app, key, "/customers").await;
    let rows: Vec<(String, i64, i64, i64, i64)> = customers["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["phone"].as_str().unwrap().to_owned(),
                c["bookings"].as_i64().unwrap(),
                c["visits"].as_i64().unwrap(),
                c["cancellations"].as_i64().unwrap(),
                c["no_shows"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("+4915100000001".to_owned(), 3, 1, 0, 0),
            ("+4915100000002".to_owned(), 2, 0, 0, 1),
            ("+4915100000003".to_owned(), 1, 0, 1, 0),
        ]
    );
    let first = read(&app, key, "/customers/+4915100000001").await;
    assert!(first["last_visit"].is_string(), "{first}");
    assert!(first["next_visit"].is_string(), "{first}");
    assert_eq!(first["email"], "k5@example.com");
    let (status, _) = app.get(key, "/api/v2/mcp/customers/+4915199999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Dashboard.
    let summary = read(
        &app,
        key,
        &format!("/dashboard/summary?branch_id={}", day.branch),
    )
    .await;
    let counts: Vec<i64> = [
        "bookings",
        "held",
        "confirmed",
        "completed",
        "cancellations",
        "no_shows",
        "revenue_minor",
        "booked_value_minor",
    ]
    .iter()
    .map(|f| summary[*f].as_i64().unwrap_or(-1))
    .collect();
    assert_eq!(
        counts,
        [6, 1, 2, 1, 1, 1, 1000, 1000 + 2500 + 1000],
        "{summary}"
    );
    assert_eq!(summary["revenue"]["amount_minor"], 1000);
    assert_eq!(summary["revenue"]["currency"], "EUR");
    assert_eq!(
        summary["source_mix"],
        json!({ "phone": 1, "api": 4, "mcp": 1, "calcom": 0 })
    );
    let busiest: i64 = summary["busiest_hours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["bookings"].as_i64().unwrap())
        .sum();
    assert_eq!(busiest, 5, "cancelled bookings are not counted: {summary}");
    // Two active staff members working around the clock for 30 days: utilization is small
    // but not zero (Olga, off the rota, adds no working time).
    // Booked: Mia 15 + 30 + 15, Noah 15 + 15 minutes, of 2 x 30 x 1440 working minutes.
    assert_eq!(summary["utilization"], json!(0.001), "{summary}");
    let series = read(&app, key, "/dashboard/timeseries?interval=day").await;
    assert_eq!(series["points"].as_array().unwrap().len(), 1, "{series}");
    assert_eq!(series["points"][0]["bookings"], 6);
    assert_eq!(series["points"][0]["revenue_minor"], 1000);
    let (status, bad) = app
        .get(key, "/api/v2/mcp/dashboard/timeseries?interval=fortnight")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");

    // Workload and performance: Mia holds the completed cut, the colour and the held cut;
    // Noah the missed cut and the moved one (the cancelled colour was released).
    let mia = read(&app, key, &format!("/staff/{}/workload", day.staff[0])).await;
    assert_eq!(mia["appointments"], 3, "{mia}");
    assert_eq!(mia["days"][0]["booked_minutes"], 15 + 30 + 15);
    let noah = read(&app, key, &format!("/staff/{}/workload", day.staff[1])).await;
    assert_eq!(noah["appointments"], 2, "{noah}");
    let performance = read(&app, key, &format!("/staff/{}/performance", day.staff[1])).await;
    assert_eq!(
        (
            performance["bookings"].as_i64(),
            performance["no_shows"].as_i64(),
            performance["cancellations"].as_i64(),
            performance["no_show_rate"].as_f64()
        ),
        (Some(3), Some(1), Some(1), Some(1.0)),
        "{performance}"
    );

    // Calendars: Noah's shows the missed cut and the moved booking at its new time.
    let calendar = read(&app, key, &format!("/staff/{}/calendar", day.staff[1])).await;
    let booked: Vec<String> = calendar["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["booking_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(booked, [day.bookings[1].clone(), day.bookings[5].clone()]);
    let at_hire = read(
        &app,
        key,
        &format!("/staff/{}/calendar?as_of=1", day.staff[1]),
    )
    .await;
    assert_eq!(at_hire["version"], 1);
    assert_eq!(at_hire["entries"], json!([]), "{at_hire}");
    let before_the_move = read(&app, key, &format!("/bookings/{}?as_of=1", day.bookings[5])).await;
    assert_eq!(before_the_move["version"], 1);
    assert_ne!(before_the_move["data"]["start"], one["data"]["start"]);

    // Availability: Noah's 15-minute cut slots skip the moved booking's time.
    let availability = app
        .post(
            key,
            "/api/v2/mcp/bookings/check-availability",
            json!({ "service_id": day.cut, "date": (day.start + chrono::Duration::hours(6)).with_timezone(&day.zone).date_naive(), "preferred_staff_id": day.staff[1] }),
        )
        .await;
    assert_eq!(availability.0, StatusCode::OK, "{}", availability.1);
    assert!(availability.1["available"].as_bool().unwrap());
    for slot in availability.1["slots"].as_array().unwrap() {
        let start: DateTime<Utc> = slot["start"].as_str().unwrap().parse().unwrap();
        let end: DateTime<Utc> = slot["end"].as_str().unwrap().parse().unwrap();
        assert!(
            end <= moved_to || start >= moved_to + chrono::Duration::minutes(15),
            "slot {start} overlaps the moved booking"
        );
        assert_eq!(slot["staff_id"], day.staff[1].as_str());
    }

    // Each model rebuilt from the store equals the live one.
    for table in ["tenants_view", "staff_view", "calendar_entries"] {
        let before = table_rows(&pool, table).await;
        let rebuilt = match table {
            "tenants_view" => {
                projections::rebuild::replay(&pool, &projections::Tenants, |_| {}).await
            }
            _ => projections::rebuild::replay(&pool, &projections::StaffCalendars, |_| {}).await,
        }
        .unwrap();
        assert!(rebuilt.events > 0);
        assert_eq!(
            table_rows(&pool, table).await,
            before,
            "{table} after a rebuild"
        );
    }
}
