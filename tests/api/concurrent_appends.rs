//! Appends from one store at the same time: a conflict on one stream refuses only that
//! command's append, and every other one is written with its positions.

use std::collections::HashMap;

use adapters::{PgStore, SnapshotPolicy};
use cqrs_es::{AggregateError, EventStore};
use domain::{Tenant, TenantEvent};
use sqlx::PgPool;

fn renamed(name: &str) -> Vec<TenantEvent> {
    vec![TenantEvent::TenantUpdated {
        name: name.to_owned(),
        contact_email: None,
    }]
}

fn metadata() -> HashMap<String, String> {
    HashMap::from([("tenant_id".to_owned(), uuid::Uuid::now_v7().to_string())])
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_conflict_among_concurrent_appends_refuses_only_its_own(pool: PgPool) {
    let (here, elsewhere) = (
        PgStore::new(pool.clone(), SnapshotPolicy::standard()),
        PgStore::new(pool.clone(), SnapshotPolicy::standard()),
    );
    let contested = uuid::Uuid::now_v7().to_string();
    let stale = <PgStore as EventStore<Tenant>>::load_aggregate(&here, &contested)
        .await
        .unwrap();
    // Another process appends to the stream after this one read it.
    let first = <PgStore as EventStore<Tenant>>::load_aggregate(&elsewhere, &contested)
        .await
        .unwrap();
    <PgStore as EventStore<Tenant>>::commit(&elsewhere, renamed("first"), first, metadata())
        .await
        .unwrap();

    let fresh: Vec<String> = (0..20).map(|_| uuid::Uuid::now_v7().to_string()).collect();
    let mut contexts = Vec::new();
    for id in &fresh {
        contexts.push(
            <PgStore as EventStore<Tenant>>::load_aggregate(&here, id)
                .await
                .unwrap(),
        );
    }
    let appends = contexts.into_iter().map(|context| {
        <PgStore as EventStore<Tenant>>::commit(&here, renamed("fresh"), context, metadata())
    });
    let contested_append =
        <PgStore as EventStore<Tenant>>::commit(&here, renamed("second"), stale, metadata());
    let (fresh_results, contested_result) =
        tokio::join!(futures::future::join_all(appends), contested_append);

    assert!(
        matches!(contested_result, Err(AggregateError::AggregateConflict)),
        "{contested_result:?}"
    );
    for (id, result) in fresh.iter().zip(&fresh_results) {
        let envelopes = result.as_ref().unwrap_or_else(|e| panic!("{id}: {e:?}"));
        assert_eq!(envelopes.len(), 1);
        assert!(envelopes[0].metadata.contains_key("position"), "{id}");
    }
    let stored: Vec<(String, i64)> = sqlx::query_as(
        "SELECT aggregate_id, count(*) FROM events GROUP BY aggregate_id ORDER BY aggregate_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(stored.len(), 21);
    assert!(stored.iter().all(|(_, n)| *n == 1), "{stored:?}");
    let name: String = sqlx::query_scalar(
        "SELECT payload -> 'TenantUpdated' ->> 'name' FROM events WHERE aggregate_id = $1",
    )
    .bind(&contested)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(name, "first");
}
