use std::time::Duration;

use projections::Bookings;
use projections::dead_letters;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::support::app::{OPERATOR_TOKEN, berlin, poll_until};
use crate::support::{TestApp, table_rows};

/// Books for the salon's staff member `staff` at `hour` tomorrow + `day`; returns (id, position).
async fn book(
    app: &TestApp,
    salon: &crate::support::app::Salon,
    staff: usize,
    day: i64,
    hour: u32,
    phone: &str,
) -> (String, i64) {
    let mut body = TestApp::booking(salon, Some(staff), berlin(day, hour, 0));
    body["customer"]["phone"] = json!(phone);
    let answer = app.book_with(&salon.key, body).await;
    (
        answer["data"]["id"].as_str().unwrap().to_owned(),
        answer["position"].as_i64().unwrap(),
    )
}

/// `GET /bookings<query>`, which must answer 200.
async fn list(app: &TestApp, key: &str, query: &str) -> Value {
    let (status, page) = app.get(key, &format!("/api/v2/mcp/bookings{query}")).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page
}

fn ids(page: &Value) -> Vec<String> {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect()
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn the_bookings_read_model_follows_every_command_and_filters_by_tenant(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let (first, _) = book(&app, &salon, 0, 2, 9, "+4915100000001").await;
    let (second, _) = book(&app, &salon, 1, 2, 10, "+4915100000002").await;
    let (third, _) = book(&app, &salon, 0, 3, 9, "+4915100000001").await;
    let (status, cancelled) = app
        .post(
            &salon.key,
            &format!("/api/v2/mcp/bookings/{second}/cancel"),
            json!({ "reason": "ill" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cancelled}");
    let position = cancelled["position"].as_i64().unwrap();

    // Read-your-writes: with the cancellation's position the list already shows it.
    let page = list(&app, &salon.key, &format!("?min_position={position}")).await;
    assert_eq!(ids(&page), [first.clone(), second.clone(), third.clone()]);
    assert_eq!(page["data"][1]["status"], "cancelled");
    assert_eq!(page["data"][0]["status"], "confirmed");

    let (_, page) = app
        .get(&salon.key, "/api/v2/mcp/bookings?status=cancelled")
        .await;
    assert_eq!(ids(&page), std::slice::from_ref(&second));
    let staff = &salon.staff_ids[0];
    let (_, page) = app
        .get(
            &salon.key,
            &format!("/api/v2/mcp/bookings?staff_id={staff}"),
        )
        .await;
    assert_eq!(ids(&page), [first.clone(), third.clone()]);
    // A national number is read with the tenant's country code.
    let (_, page) = app
        .get(
            &salon.key,
            "/api/v2/mcp/bookings?customer_phone=015100000001",
        )
        .await;
    assert_eq!(ids(&page), [first.clone(), third.clone()]);
    let to = berlin(3, 0, 0).to_rfc3339().replace('+', "%2B");
    let (_, page) = app
        .get(&salon.key, &format!("/api/v2/mcp/bookings?to={to}"))
        .await;
    assert_eq!(ids(&page), [first.clone(), second.clone()]);

    // Pages of one, followed by their cursors, visit every booking once.
    let mut seen = Vec::new();
    let mut path = "/api/v2/mcp/bookings?limit=1".to_owned();
    loop {
        let (status, page) = app.get(&salon.key, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v2/mcp/bookings?limit=1&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, [first, second, third]);

    let (status, page) = app.get(&salon.key, "/api/v2/mcp/bookings?limit=0").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{page}");
    let (status, page) = app.get(&salon.key, "/api/v2/mcp/bookings?colour=red").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{page}");
    assert!(page["error"]["code"].is_number(), "{page}");

    // Another tenant sees none of them.
    let other = app.seed_salon("Other", "professional").await;
    let (status, page) = app.get(&other.key, "/api/v2/mcp/bookings").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&page), Vec::<String>::new());
}

/// A booking whose read-model row is behind its events is answered from the events: a reader
/// never sees it go back to an older state.
#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_booking_read_while_its_row_lags_is_its_latest_state(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let (booking, position) = book(&app, &salon, 0, 2, 9, "+4915100000001").await;
    let path = format!("/api/v2/mcp/bookings/{booking}");
    let (status, shown) = app
        .get(&salon.key, &format!("{path}?min_position={position}"))
        .await;
    assert_eq!(
        (status, shown["version"].as_u64()),
        (StatusCode::OK, Some(1))
    );
    // From here on the read model cannot apply anything to this row.
    sqlx::raw_sql(
        "CREATE FUNCTION hold_rows() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'row held back'; END $$;
         CREATE TRIGGER hold_rows BEFORE UPDATE ON bookings_view
             FOR EACH ROW EXECUTE FUNCTION hold_rows();",
    )
    .execute(&pool)
    .await
    .unwrap();
    let (status, updated) = app
        .put(&salon.key, &path, json!({ "notes": "window seat" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let row_version: i64 =
        sqlx::query_scalar("SELECT version FROM bookings_view WHERE booking_id = $1::uuid")
            .bind(&booking)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(row_version, 1, "the row was to stay behind");
    for _ in 0..3 {
        let (status, shown) = app.get(&salon.key, &path).await;
        assert_eq!(status, StatusCode::OK, "{shown}");
        assert_eq!(
            (shown["version"].as_u64(), shown["data"]["notes"].as_str()),
            (Some(2), Some("window seat")),
            "{shown}"
        );
    }
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_poison_event_is_parked_the_others_flow_on_and_retry_applies_it(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Salon", "professional").await;
    // A fault in the read model's table for one customer's rows.
    sqlx::raw_sql(
        "CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             IF NEW.customer_phone = '+4915199999999' THEN RAISE EXCEPTION 'disk on fire'; END IF;
             RETURN NEW;
         END $$;
         CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON bookings_view
             FOR EACH ROW EXECUTE FUNCTION refuse_poison();",
    )
    .execute(&pool)
    .await
    .unwrap();
    // Held, then confirmed: two events, the second parked behind the first.
    let mut request = TestApp::booking(&salon, Some(0), berlin(2, 9, 0));
    request["customer"]["phone"] = json!("+4915199999999");
    let poisoned = app.hold_then_confirm(&salon.key, request).await;
    let (healthy, position) = book(&app, &salon, 1, 2, 9, "+4915100000002").await;

    // A read at the healthy booking's position also waits for the tenant's earlier events: it
    // shows the healthy booking alone once the poisoned one is parked, and answers 503 (retry
    // shortly) if its wait ends first. Read as a client would: again on a 503.
    let query = format!("?min_position={position}");
    let path = format!("/api/v2/mcp/bookings{query}");
    let shown = poll_until(Duration::from_secs(30), || async {
        app.get(&salon.key, &path).await.0 == StatusCode::OK
    })
    .await;
    assert!(shown, "the healthy booking's position was never reached");
    let page = list(&app, &salon.key, &query).await;
    assert_eq!(ids(&page), std::slice::from_ref(&healthy));

    // Both of its events (created held, confirmed) end up parked: the second waits for the first.
    let parked = poll_until(Duration::from_secs(30), || async {
        dead_letters::list(&pool, Some("bookings"))
            .await
            .unwrap()
            .len()
            == 2
    })
    .await;
    assert!(parked, "the poisoned booking's events were not parked");
    let letters = dead_letters::list(&pool, Some("bookings")).await.unwrap();
    assert!(
        letters.iter().all(|l| l.aggregate_id == poisoned),
        "{letters:?}"
    );
    assert!(letters[0].error.contains("disk on fire"), "{letters:?}");

    // While the fault lasts, a retry leaves them parked.
    let retried = dead_letters::retry(&pool, &Bookings).await.unwrap();
    assert_eq!((retried.applied, retried.still_parked), (0, 2));

    // Operators see them, and the projection's standing.
    let (status, listed) = app
        .get(
            OPERATOR_TOKEN,
            "/api/v2/admin/deadletters?projection=bookings",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    let (_, standing) = app.get(OPERATOR_TOKEN, "/api/v2/admin/projections").await;
    assert_eq!(standing[0]["name"], "bookings");
    assert_eq!(standing[0]["parked_events"], 2, "{standing}");

    sqlx::raw_sql("DROP TRIGGER refuse_poison ON bookings_view")
        .execute(&pool)
        .await
        .unwrap();
    let (status, retried) = app
        .post(
            OPERATOR_TOKEN,
            "/api/v2/admin/deadletters/bookings/retry",
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{retried}");
    assert_eq!(
        (
            retried["applied"].as_u64(),
            retried["still_parked"].as_u64()
        ),
        (Some(2), Some(0))
    );
    assert!(dead_letters::list(&pool, None).await.unwrap().is_empty());
    let (_, page) = app.get(&salon.key, "/api/v2/mcp/bookings").await;
    assert_eq!(ids(&page), [poisoned, healthy]);
    assert_eq!(page["data"][0]["status"], "confirmed");
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn two_worker_instances_build_the_same_read_model_as_the_event_store(pool: PgPool) {
    let mut app = TestApp::spawn(pool.clone()).await;
    let second = app.another_instance().await;
    let salon = app.seed_salon("Salon", "professional").await;
    let addresses = [app.address.clone(), second];
    // 24 bookings made through both instances at once, then changed through both.
    let made = futures::future::join_all((0..24).map(|k| {
        let (http, address, salon) = (&app.http, &addresses[k % 2], &salon);
        async move {
            let day = i64::try_from(1 + k / 9).unwrap();
            // Working hours 08:00-20:00 with a break at 12:00.
            let hour = [8, 9, 10, 11, 13, 14, 15, 16, 17][k % 9];
            let body = TestApp::booking(salon, Some(k % 3), berlin(day, hour, 0));
            let (status, answer) = crate::support::app::call_at(
                http,
                address,
                reqwest::Method::POST,
                &salon.key,
                "/api/v2/mcp/bookings",
                Some(body),
                None,
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{answer}");
            answer["data"]["id"].as_str().unwrap().to_owned()
        }
    }))
    .await;
    for (k, id) in made.iter().enumerate() {
        let address = &addresses[(k + 1) % 2];
        let (method, path, body) = if k % 3 == 0 {
            (
                reqwest::Method::POST,
                format!("/api/v2/mcp/bookings/{id}/cancel"),
                json!({ "reason": "moved away" }),
            )
        } else {
            (
                reqwest::Method::PUT,
                format!("/api/v2/mcp/bookings/{id}"),
                json!({ "notes": format!("visit {k}") }),
            )
        };
        let (status, answer) = crate::support::app::call_at(
            &app.http,
            address,
            method,
            &salon.key,
            &path,
            Some(body),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    }

    // Every booking in the read model equals the booking folded from the event store.
    let mut expected = Vec::new();
    for id in &made {
        let (status, folded) = app
            .get(&salon.key, &format!("/api/v2/mcp/bookings/{id}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        expected.push(folded["data"].clone());
    }
    expected.sort_by_key(|b| {
        (
            b["start"].as_str().unwrap().to_owned(),
            b["id"].as_str().unwrap().to_owned(),
        )
    });
    let caught_up = poll_until(Duration::from_secs(20), || async {
        let (_, page) = app.get(&salon.key, "/api/v2/mcp/bookings?limit=200").await;
        page["data"]
            .as_array()
            .is_some_and(|rows| *rows == expected)
    })
    .await;
    let (_, page) = app.get(&salon.key, "/api/v2/mcp/bookings?limit=200").await;
    assert!(
        caught_up,
        "read model {page} differs from the store {expected:?}"
    );
    let offsets: i64 =
        sqlx::query_scalar("SELECT count(*) FROM projection_offsets WHERE projection = 'bookings'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(offsets, 24);
    assert!(dead_letters::list(&pool, None).await.unwrap().is_empty());
}

/// A table's indexes and constraints, by name, as Postgres prints them.
async fn indexes(pool: &PgPool, table: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT indexname::text, indexdef FROM pg_indexes WHERE tablename = $1
         UNION ALL
         SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint
         WHERE conrelid = $1::regclass
         ORDER BY 1, 2",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The bookings read model's offsets, by booking.
async fn bookings_offsets(pool: &PgPool) -> Vec<(String, i64, i64)> {
    sqlx::query_as(
        "SELECT aggregate_id, last_sequence, last_position FROM projection_offsets
         WHERE projection = 'bookings' ORDER BY aggregate_id",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_rebuilt_read_model_equals_the_live_one_row_for_row(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let mut last = 0;
    for k in 0..12u32 {
        let (id, _) = book(
            &app,
            &salon,
            usize::try_from(k % 3).unwrap(),
            2,
            8 + k / 3,
            "+4915100000001",
        )
        .await;
        let (status, answer) = if k % 4 == 0 {
            app.post(
                &salon.key,
                &format!("/api/v2/mcp/bookings/{id}/cancel"),
                json!({ "reason": "r" }),
            )
            .await
        } else {
            app.put(
                &salon.key,
                &format!("/api/v2/mcp/bookings/{id}"),
                json!({ "notes": format!("n{k}") }),
            )
            .await
        };
        assert_eq!(status, StatusCode::OK, "{answer}");
        last = answer["position"].as_i64().unwrap();
    }
    list(&app, &salon.key, &format!("?min_position={last}")).await;
    let live = table_rows(&pool, "bookings_view").await;
    assert_eq!(live.len(), 12);
    let (live_indexes, offsets) = (
        indexes(&pool, "bookings_view").await,
        bookings_offsets(&pool).await,
    );
    assert_eq!(offsets.len(), 12);

    // Offsets the first swap has to set right: one missing, one behind, one of no booking.
    sqlx::raw_sql(
        "DELETE FROM projection_offsets WHERE projection = 'bookings' AND aggregate_id =
             (SELECT min(aggregate_id) FROM projection_offsets WHERE projection = 'bookings');
         UPDATE projection_offsets SET last_sequence = 1, last_position = 1
         WHERE projection = 'bookings' AND aggregate_id =
             (SELECT max(aggregate_id) FROM projection_offsets WHERE projection = 'bookings');
         INSERT INTO projection_offsets (projection, aggregate_type, aggregate_id, last_sequence, last_position)
         VALUES ('bookings', 'Booking', '00000000-0000-0000-0000-000000000000', 1, 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_ne!(bookings_offsets(&pool).await, offsets);

    // Twice: the second rebuild starts from the table the first swapped in.
    for _ in 0..2 {
        let mut reports = 0;
        let rebuilt = projections::rebuild::bookings(&pool, |_| reports += 1)
            .await
            .unwrap();
        assert!(reports > 0);
        assert_eq!(rebuilt.rows, 12);
        assert_eq!(table_rows(&pool, "bookings_view").await, live);
        // Same indexes under the same names, same offsets.
        assert_eq!(indexes(&pool, "bookings_view").await, live_indexes);
        assert_eq!(bookings_offsets(&pool).await, offsets);
    }

    // The worker carries on into the swapped-in table.
    let (id, position) = book(&app, &salon, 0, 3, 9, "+4915100000003").await;
    let query = format!("?min_position={position}&customer_phone=%2B4915100000003");
    assert_eq!(ids(&list(&app, &salon.key, &query).await), [id]);
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_rebuild_written_in_many_batches_equals_the_workers_fold(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let (template, _) = book(&app, &salon, 0, 2, 9, "+4915100000005").await;
    let (status, answer) = app
        .put(
            &salon.key,
            &format!("/api/v2/mcp/bookings/{template}"),
            json!({ "notes": "n" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    // 2,500 copies of its two events under new booking ids: the rebuild's rows go to its
    // writers in several batches, the worker applies the same events one batch after another.
    let copied = sqlx::query(
        "WITH c AS MATERIALIZED (SELECT gen_random_uuid() AS id FROM generate_series(1, 2500))
         INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'Booking', c.id::text, e.sequence, e.event_type, e.event_version,
                jsonb_set(e.payload, '{BookingCreated,booking_id}', to_jsonb(c.id::text)),
                jsonb_set(e.metadata, '{event_id}', to_jsonb(gen_random_uuid()::text))
         FROM events e, c
         WHERE e.aggregate_type = 'Booking' AND e.aggregate_id = $1
         -- Positions follow each booking's sequence, as the event store writes them.
         ORDER BY c.id, e.sequence",
    )
    .bind(&template)
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(copied.rows_affected(), 5000);
    assert!(
        poll_until(Duration::from_secs(60), || async {
            projections::runner::status::<Bookings>(&pool)
                .await
                .unwrap()
                .pending_events
                == 0
        })
        .await,
        "the worker did not apply the copies"
    );
    let live = table_rows(&pool, "bookings_view").await;
    assert_eq!(live.len(), 2501);
    let rebuilt = projections::rebuild::bookings(&pool, |_| {}).await.unwrap();
    assert_eq!((rebuilt.events, rebuilt.rows), (5002, 2501));
    assert_eq!(table_rows(&pool, "bookings_view").await, live);
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn replayed_read_models_keep_their_rows_and_their_index_names(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Salon", "professional").await;
    for k in 0..4u32 {
        book(
            &app,
            &salon,
            usize::try_from(k % 3).unwrap(),
            2,
            8 + k,
            "+4915100000005",
        )
        .await;
    }
    const TABLES: [&str; 3] = ["tenants_view", "staff_view", "calendar_entries"];
    let mut migrated = Vec::new();
    for table in TABLES {
        migrated.push(indexes(&pool, table).await);
    }
    // The migrations' names, before any rebuild (`*_pkey`, `*_by_*`).
    assert!(
        migrated
            .iter()
            .flatten()
            .all(|(name, _)| !name.contains("rebuild"))
    );

    let mut replayed = Vec::new();
    for round in 0..2 {
        projections::rebuild::replay(&pool, &projections::Tenants, |_| {})
            .await
            .unwrap();
        projections::rebuild::replay(&pool, &projections::StaffCalendars, |_| {})
            .await
            .unwrap();
        let mut now = Vec::new();
        for (table, migrated) in TABLES.iter().zip(&migrated) {
            assert_eq!(&indexes(&pool, table).await, migrated, "{table}");
            now.push(table_rows(&pool, table).await);
        }
        assert!(now.iter().all(|rows| !rows.is_empty()));
        if round == 1 {
            // The second replay, from the tables the first swapped in, gives the same rows.
            assert_eq!(now, replayed);
        }
        replayed = now;
    }
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_rebuild_is_refused_while_another_of_the_same_model_runs(pool: PgPool) {
    use projections::runner::ProjectionError;
    // Another process's rebuild of bookings, as far as Postgres can tell.
    let mut other = pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(hashtext('rebuild:bookings'))")
        .execute(&mut *other)
        .await
        .unwrap();
    let refused = projections::rebuild::bookings(&pool, |_| {}).await;
    assert!(
        matches!(refused, Err(ProjectionError::RebuildRunning("bookings"))),
        "{refused:?}"
    );
    // Other models are not held up, and nothing of bookings was touched.
    projections::rebuild::replay(&pool, &projections::Tenants, |_| {})
        .await
        .unwrap();
    let fresh: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('bookings_view_rebuild')::text")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(fresh, None);
    sqlx::query("SELECT pg_advisory_unlock(hashtext('rebuild:bookings'))")
        .execute(&mut *other)
        .await
        .unwrap();
    projections::rebuild::bookings(&pool, |_| {}).await.unwrap();
    // The finished rebuild let go of its claim.
    let free: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext('rebuild:bookings'))")
            .fetch_one(&mut *other)
            .await
            .unwrap();
    assert!(free);
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn rebuilds_swap_in_while_bookings_keep_coming(pool: PgPool) {
    let app = std::sync::Arc::new(TestApp::spawn(pool.clone()).await);
    let salon = std::sync::Arc::new(app.seed_salon("Salon", "professional").await);
    // Bookings keep arriving (and the workers applying them) while each model is rebuilt
    // three times; every swap must go through.
    let writer = {
        let (app, salon) = (app.clone(), salon.clone());
        tokio::spawn(async move {
            let mut last = 0;
            for k in 0..36u32 {
                let (_, position) = book(
                    &app,
                    &salon,
                    usize::try_from(k % 3).unwrap(),
                    2 + i64::from(k / 30),
                    [8, 9, 10, 11, 13, 14, 15, 16, 17, 18][usize::try_from((k / 3) % 10).unwrap()],
                    "+4915100000004",
                )
                .await;
                last = position;
            }
            last
        })
    };
    for _ in 0..3 {
        projections::rebuild::bookings(&pool, |_| {}).await.unwrap();
        projections::rebuild::replay(&pool, &projections::StaffCalendars, |_| {})
            .await
            .unwrap();
    }
    let last = writer.await.unwrap();
    // Nothing was lost on the way: the read model holds every booking.
    let page = list(&app, &salon.key, &format!("?min_position={last}&limit=200")).await;
    assert_eq!(ids(&page).len(), 36);
    let entries: i64 = sqlx::query_scalar("SELECT count(*) FROM calendar_entries")
        .fetch_one(&pool)
        .await
        .unwrap();
    let confirmed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type IN ('SlotReserved', 'ReservationConfirmed')",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(entries, confirmed);
}
