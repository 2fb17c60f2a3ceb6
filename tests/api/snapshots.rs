use adapters::event_store::fold_from_events;
use adapters::{PgStore, SnapshotPolicy};
use commands::Versioned;
use cqrs_es::{AggregateContext, EventStore};
use domain::Staff;
use reqwest::StatusCode;
use sqlx::PgPool;

use crate::support::TestApp;
use crate::support::app::berlin;

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_staff_member_loaded_through_a_snapshot_equals_the_fold_of_all_events(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let salon = app.seed_salon("Salon", "professional").await;
    let staff = salon.staff_ids[0].clone();
    // 154 bookings of one staff member: most reserved at once (SlotReserved), some held first
    // and then confirmed (SlotHeld, ReservationConfirmed), some cancelled (SlotReleased);
    // past the snapshot interval of 200 events on the staff stream.
    for day in 1..=14 {
        for hour in [8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19] {
            let booking = TestApp::booking(&salon, Some(0), berlin(day, hour, 0));
            let id = if hour % 3 == 0 {
                app.hold_then_confirm(&salon.key, booking).await
            } else {
                let (status, body) = app.post(&salon.key, "/api/v2/mcp/bookings", booking).await;
                assert_eq!(status, StatusCode::CREATED, "{body}");
                body["data"]["id"].as_str().unwrap().to_owned()
            };
            if hour % 4 == 0 {
                let (status, _) = app
                    .post(
                        &salon.key,
                        &format!("/api/v2/mcp/bookings/{id}/cancel"),
                        serde_json::json!({ "reason": "r" }),
                    )
                    .await;
                assert_eq!(status, StatusCode::OK);
            }
        }
    }
    let snapshot_at: Option<i64> = sqlx::query_scalar("SELECT max(last_sequence) FROM snapshots WHERE aggregate_type = 'Staff' AND aggregate_id = $1")
        .bind(&staff)
        .fetch_one(&pool)
        .await
        .unwrap();
    let events: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'Staff' AND aggregate_id = $1",
    )
    .bind(&staff)
    .fetch_one(&pool)
    .await
    .unwrap();
    let snapshot_at = snapshot_at.expect("no snapshot was taken");
    let kept: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM snapshots WHERE aggregate_type = 'Staff' AND aggregate_id = $1",
    )
    .bind(&staff)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(kept, 1, "a new snapshot replaces the old one");
    assert!(
        snapshot_at < events,
        "events after the snapshot must be folded on top of it"
    );

    let store = PgStore::new(pool.clone(), SnapshotPolicy::standard());
    let mut through_snapshot = <PgStore as EventStore<Staff>>::load_aggregate(&store, &staff)
        .await
        .unwrap();
    let (folded, version) = fold_from_events::<Staff>(&store, &staff).await.unwrap();
    assert_eq!(through_snapshot.version(), version);
    assert_eq!(*through_snapshot.aggregate(), folded);
    assert!(!folded.calendar.is_empty());
}
