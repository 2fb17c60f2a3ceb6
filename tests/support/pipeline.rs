//! Whether the whole pipeline agrees after a fault: the event store, the stream, every
//! projection, the calendars and Cal.com.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::PgPool;

use super::calcom::StatefulCalcom;
use super::poll_until;
use super::stream::{assert_stream_matches_store, stream_len};

/// Each projection and the aggregate types it reads.
const PROJECTIONS: [(&str, &str); 3] = [
    ("bookings", "Booking"),
    ("tenants", "Tenant"),
    ("staff", "Staff"),
];

/// Events a projection has not applied, over all projections.
async fn unapplied(pool: &PgPool) -> i64 {
    let mut behind = 0i64;
    for (projection, aggregate_type) in PROJECTIONS {
        let missing: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM events e
             LEFT JOIN projection_offsets o ON o.projection = $1
                 AND o.aggregate_type = e.aggregate_type AND o.aggregate_id = e.aggregate_id
             WHERE e.aggregate_type = $2 AND e.sequence > COALESCE(o.last_sequence, 0)",
        )
        .bind(projection)
        .bind(aggregate_type)
        .fetch_one(pool)
        .await
        .unwrap_or(i64::MAX);
        behind = behind.saturating_add(missing);
    }
    behind
}

/// Waits until every projection has applied every event of its aggregate types.
pub(crate) async fn wait_until_projected(pool: &PgPool, within: Duration) {
    let caught_up = poll_until(within, || async { unapplied(pool).await == 0 }).await;
    if !caught_up {
        let behind: Vec<(String, String, i64, i64, Option<i64>)> = sqlx::query_as(
            "SELECT p.projection, e.aggregate_id, e.sequence, e.position, o.last_sequence
               FROM events e
               JOIN (VALUES ('bookings', 'Booking'), ('tenants', 'Tenant'), ('staff', 'Staff'))
                    AS p (projection, aggregate_type) ON p.aggregate_type = e.aggregate_type
               LEFT JOIN projection_offsets o ON o.projection = p.projection
                    AND o.aggregate_type = e.aggregate_type AND o.aggregate_id = e.aggregate_id
              WHERE e.sequence > COALESCE(o.last_sequence, 0)
              ORDER BY e.position LIMIT 20",
        )
        .fetch_all(pool)
        .await
        .unwrap_or_default();
        panic!(
            "projections did not catch up; (projection, aggregate, sequence, position, applied): {behind:?}"
        );
    }
}

/// The relay publishes in (transaction id, position) order: that order must be each
/// aggregate's sequence order.
async fn assert_tail_order_is_sequence_order(pool: &PgPool) {
    let misordered: Vec<(String, String, i64, i64, String, i64)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, previous, sequence, tx_id::text, position FROM (
             SELECT aggregate_type, aggregate_id, sequence, tx_id, position,
                    lag(sequence) OVER (PARTITION BY aggregate_type, aggregate_id
                                        ORDER BY tx_id, position) AS previous
               FROM events) t
          WHERE previous > sequence",
    )
    .fetch_all(pool)
    .await
    .expect("tail order");
    assert!(
        misordered.is_empty(),
        "tail order differs from sequence order: {misordered:?}"
    );
}

/// Events stored, booking events some saga has not taken (each saga follows every booking),
/// and saga steps due now.
async fn stored_untaken_and_due(pool: &PgPool) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM events),
                (SELECT count(*) FROM events e
                   CROSS JOIN (VALUES ('calendar-sync'), ('notifications'), ('payments')) s (saga)
                   LEFT JOIN saga_instances i ON i.saga = s.saga AND i.instance_id = e.aggregate_id
                  WHERE e.aggregate_type = 'Booking' AND e.sequence > COALESCE(i.last_sequence, 0)),
                (SELECT count(*) FROM saga_jobs WHERE due_at <= now())",
    )
    .fetch_one(pool)
    .await
    .unwrap_or((-1, -1, -1))
}

/// Waits until the pipeline is still: every booking event taken by every saga and no saga
/// step due (sagas append events too), every stored event on the stream, twice in a row with
/// nothing appended in between. A message delivered to a process that died comes back after
/// the consumer's ack wait (30 s).
async fn wait_until_still(pool: &PgPool, nats_url: &str, within: Duration) {
    let last = AtomicI64::new(-1);
    let still = poll_until(within, || async {
        let (stored, untaken, due) = stored_untaken_and_due(pool).await;
        let relayed = u64::try_from(stored).ok() == Some(stream_len(nats_url).await);
        let seen = last.swap(stored, Ordering::Relaxed);
        untaken == 0 && due == 0 && relayed && stored == seen
    })
    .await;
    let (stored, untaken, due) = stored_untaken_and_due(pool).await;
    assert!(
        still,
        "the pipeline did not settle: {stored} events stored, {} on the stream, {untaken} booking events not taken by a saga, {due} saga steps due",
        stream_len(nats_url).await
    );
}

/// Waits until the pipeline is still, then checks the stream holds every stored event exactly
/// once, in order, and that every projection has applied every event.
pub(crate) async fn assert_store_stream_and_projections_agree(
    pool: &PgPool,
    nats_url: &str,
    within: Duration,
) {
    wait_until_still(pool, nats_url, within).await;
    assert_tail_order_is_sequence_order(pool).await;
    assert_stream_matches_store(pool, nats_url).await;
    wait_until_projected(pool, within).await;
}

/// No two live bookings of one staff member overlap, in the store's read model or on the
/// calendars; every live booking holds its reservation and no reservation outlives its booking.
pub(crate) async fn assert_no_overlaps_and_no_orphans(pool: &PgPool) {
    let overlapping: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM bookings_view a JOIN bookings_view b
            ON a.staff_id = b.staff_id AND a.booking_id < b.booking_id
           AND tstzrange(a.start_at, a.end_at) && tstzrange(b.start_at, b.end_at)
         WHERE a.status IN ('held', 'confirmed') AND b.status IN ('held', 'confirmed')",
    )
    .fetch_one(pool)
    .await
    .expect("overlaps");
    assert_eq!(overlapping, 0, "bookings overlap");
    let (unreserved, orphaned): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM bookings_view v
                  WHERE v.status = 'confirmed'
                    AND NOT EXISTS (SELECT 1 FROM calendar_entries c
                                     WHERE c.booking_id = v.booking_id AND c.held_until IS NULL)),
                (SELECT count(*) FROM calendar_entries c
                  WHERE c.held_until IS NULL
                    AND NOT EXISTS (SELECT 1 FROM bookings_view v
                                     WHERE v.booking_id = c.booking_id AND v.status <> 'cancelled'))",
    )
    .fetch_one(pool)
    .await
    .expect("reservations");
    assert_eq!(unreserved, 0, "live bookings without their reservation");
    assert_eq!(orphaned, 0, "reservations without a live booking");
}

/// Calendar-sync steps that failed for a passing reason (Postgres or Cal.com away) wait
/// `RETRY_AFTER` before they run again; this does what the operator would do, `bookingd
/// sagas retry` on each, so they run now.
pub(crate) async fn retry_waiting_calendar_syncs(pool: &PgPool) {
    let waiting: Vec<String> = sqlx::query_scalar(
        "SELECT instance_id FROM saga_jobs WHERE saga = 'calendar-sync' AND due_at > now()",
    )
    .fetch_all(pool)
    .await
    .expect("waiting steps");
    for instance in waiting {
        adapters::saga_worker::retry_instance(pool, "calendar-sync", &instance, chrono::Utc::now())
            .await
            .expect("retry");
    }
}

/// Cal.com holds exactly one booking for each confirmed booking and none live for a cancelled
/// one, and was never asked twice to create or cancel the same booking; waits for the
/// calendar-sync saga to finish its steps first.
pub(crate) async fn assert_calcom_agrees(pool: &PgPool, calcom: &StatefulCalcom, within: Duration) {
    let finished = poll_until(within, || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM saga_jobs WHERE saga = 'calendar-sync'")
            .fetch_one(pool)
            .await
            .is_ok_and(|n| n == 0)
    })
    .await;
    assert!(finished, "calendar sync did not finish its steps");
    let bookings: Vec<(uuid::Uuid, String)> =
        sqlx::query_as("SELECT booking_id, status FROM bookings_view")
            .fetch_all(pool)
            .await
            .expect("bookings");
    let creates = calcom.creates_per_booking().await;
    let cancels = calcom.cancels_per_booking().await;
    let made = calcom.made.lock().unwrap().clone();
    for (id, status) in &bookings {
        let id = id.to_string();
        let created = creates.get(&id).copied().unwrap_or(0);
        let cancelled = cancels.get(&id).copied().unwrap_or(0);
        let live_remote = made
            .iter()
            .filter(|b| b["metadata"]["bookingd_booking_id"] == id.as_str())
            .filter(|b| b["status"] != "cancelled")
            .count();
        assert!(
            created <= 1,
            "booking {id} created in Cal.com {created} times"
        );
        assert!(
            cancelled <= 1,
            "booking {id} cancelled in Cal.com {cancelled} times"
        );
        match status.as_str() {
            "confirmed" => assert_eq!(live_remote, 1, "booking {id} is not in Cal.com once"),
            "cancelled" => assert_eq!(live_remote, 0, "cancelled booking {id} is live in Cal.com"),
            _ => {}
        }
    }
    let known = bookings.len();
    assert!(
        creates.len() <= known,
        "Cal.com was asked to create bookings bookingd does not hold"
    );
}
