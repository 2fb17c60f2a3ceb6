//! Saga jobs on Postgres when a job is set again while a run of it is out: the new revision
//! never runs beside the old one, sees what the old one did, and counts as a repeat when the
//! old one never settled (its process died), so that it looks before it acts.

use chrono::{DateTime, Duration, Utc};
use sagas::runtime::{self, Reaction, Taken};
use sagas::{Saga, SagaError, SagaEvent};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// A saga that, for each event, runs one step named `step` carrying the event's sequence, and
/// remembers the outcomes settled.
#[derive(Debug)]
struct Echo;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Settled {
    outcomes: Vec<i64>,
}

impl Saga for Echo {
    const NAME: &'static str = "echo";
    const AGGREGATE_TYPE: &'static str = "Booking";
    type State = Settled;
    type Job = i64;
    type Outcome = i64;

    fn react(
        state: &Settled,
        event: &SagaEvent,
        now: DateTime<Utc>,
    ) -> Result<Reaction<Settled, i64>, SagaError> {
        Ok(Reaction::just(state.clone()).and_schedule("step", now, event.sequence))
    }

    fn settle(state: &Settled, _: &i64, outcome: i64, _: DateTime<Utc>) -> Reaction<Settled, i64> {
        let mut next = state.clone();
        next.outcomes.push(outcome);
        Reaction::just(next)
    }
}

const INSTANCE: &str = "01a21de0-0000-7000-8000-000000000001";

fn event(sequence: i64) -> SagaEvent {
    SagaEvent {
        event_id: Uuid::now_v7(),
        tenant_id: Uuid::nil(),
        aggregate_type: "Booking".to_owned(),
        aggregate_id: INSTANCE.to_owned(),
        sequence,
        position: sequence,
        payload: json!({}),
        correlation_id: Uuid::now_v7(),
    }
}

async fn take(pool: &PgPool, sequence: i64, now: DateTime<Utc>) {
    let taken = runtime::take::<Echo>(pool, &event(sequence), now).await;
    assert!(matches!(taken, Ok(Taken::Applied)), "{taken:?}");
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_job_set_again_while_it_runs_waits_for_that_run_and_sees_its_outcome(pool: PgPool) {
    let now = Utc::now();
    let lease = Duration::seconds(30);
    take(&pool, 1, now).await;
    let first = runtime::claim::<Echo>(&pool, now, lease, 16).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].job, first[0].claims), (1, 1));

    // Set again while the first run is out: nothing to claim until it has settled.
    take(&pool, 2, now).await;
    let beside = runtime::claim::<Echo>(&pool, now, lease, 16).await.unwrap();
    assert!(beside.is_empty(), "ran beside the first run: {beside:?}");

    runtime::settle::<Echo>(&pool, &first[0], 10, now)
        .await
        .unwrap();
    let second = runtime::claim::<Echo>(&pool, now, lease, 16).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].job, 2, "the new revision runs");
    assert_eq!(
        second[0].claims, 1,
        "after a settled run it is a first attempt"
    );
    assert_eq!(
        second[0].state.outcomes,
        vec![10],
        "it sees the first run's outcome"
    );
    runtime::settle::<Echo>(&pool, &second[0], 20, now)
        .await
        .unwrap();
    let left = runtime::claim::<Echo>(&pool, now + lease * 3, lease, 16)
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn after_a_run_that_never_settled_the_next_revision_counts_as_a_repeat(pool: PgPool) {
    let now = Utc::now();
    let lease = Duration::seconds(30);
    take(&pool, 1, now).await;
    let lost = runtime::claim::<Echo>(&pool, now, lease, 16).await.unwrap();
    assert_eq!(lost.len(), 1);
    // Its process dies; meanwhile the job is set again.
    take(&pool, 2, now).await;
    assert!(
        runtime::claim::<Echo>(&pool, now + lease / 2, lease, 16)
            .await
            .unwrap()
            .is_empty(),
        "claimed while the lost run's lease holds"
    );
    let after = now + lease + Duration::seconds(1);
    let next = runtime::claim::<Echo>(&pool, after, lease, 16)
        .await
        .unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].job, 2);
    assert!(
        next[0].claims > 1,
        "the lost run may have acted: the next one must look first"
    );
}
