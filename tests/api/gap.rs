use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};

use crate::support::app::database_url;
use crate::support::stream::{assert_stream_matches_store, read_stream};
use crate::support::{TestApp, poll_until};

const INSERT: &str = "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
    VALUES ('Probe', $1, 1, 'Probed', '1', '{}', jsonb_build_object('tenant_id', $2::text, 'event_id', $3::text))
    RETURNING position";

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn an_event_that_commits_after_a_higher_position_is_still_published(pool: PgPool) {
    let app = TestApp::spawn(pool.clone()).await;
    let (tenant, _) = app.register_tenant("Gap", "basic").await;
    assert!(app.wait_until_relayed(Duration::from_secs(30)).await);

    // The early transaction takes the lower position and stays open.
    let mut early = PgConnection::connect(&database_url(&pool)).await.unwrap();
    let mut tx = early.begin().await.unwrap();
    let early_id = uuid::Uuid::now_v7().to_string();
    let low: i64 = sqlx::query_scalar(INSERT)
        .bind("early")
        .bind(&tenant)
        .bind(&early_id)
        .fetch_one(&mut *tx)
        .await
        .unwrap();

    // A later one takes a higher position and commits first.
    let late_id = uuid::Uuid::now_v7().to_string();
    let high: i64 = sqlx::query_scalar(INSERT)
        .bind("late")
        .bind(&tenant)
        .bind(&late_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(high > low);

    // A relay that moved its cursor past `high` now would skip `low` for ever; ours must hold
    // back while the early transaction is open.
    let url = app.nats.url();
    let published_late = poll_until(Duration::from_secs(2), || async {
        read_stream(&url).await.iter().any(|p| p.msg_id == late_id)
    })
    .await;
    assert!(
        !published_late,
        "the relay published past an open transaction"
    );

    tx.commit().await.unwrap();
    assert!(
        app.wait_until_relayed(Duration::from_secs(30)).await,
        "the late-committing event was never published"
    );
    assert_stream_matches_store(&pool, &url).await;
    let order: Vec<String> = read_stream(&url)
        .await
        .into_iter()
        .map(|p| p.msg_id)
        .filter(|id| *id == early_id || *id == late_id)
        .collect();
    assert_eq!(order, [early_id, late_id]);
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn transaction_ids_of_more_digits_are_published_after_fewer(pool: PgPool) {
    // History written by transactions 998 to 1001, before any relay runs: two streams whose
    // events cross from three-digit to four-digit transaction ids.
    let mut app = TestApp::bare(pool.clone()).await;
    let tenant = uuid::Uuid::now_v7().to_string();
    let mut ids = Vec::new();
    for (stream, sequence, tx_id) in [("a", 1, 998), ("b", 1, 999), ("a", 2, 1000), ("b", 2, 1001)]
    {
        let id = uuid::Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO events (tx_id, aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
             VALUES ($1::text::xid8, 'Probe', $2, $3, 'Probed', '1', '{}', jsonb_build_object('tenant_id', $4::text, 'event_id', $5::text))",
        )
        .bind(tx_id.to_string())
        .bind(stream)
        .bind(sequence)
        .bind(&tenant)
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap();
        ids.push(id);
    }
    app.address = app.another_instance().await;
    assert!(app.wait_until_relayed(Duration::from_secs(30)).await);
    let order: Vec<String> = read_stream(&app.nats.url())
        .await
        .into_iter()
        .map(|p| p.msg_id)
        .collect();
    assert_eq!(order, ids, "published in transaction order");
    assert_stream_matches_store(&pool, &app.nats.url()).await;
}
