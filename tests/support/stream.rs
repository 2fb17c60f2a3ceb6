use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use serde_json::Value;
use sqlx::PgPool;

/// One message of stream `EVENTS`, in stream order.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    /// `Nats-Msg-Id`.
    pub(crate) msg_id: String,
    /// The subject.
    pub(crate) subject: String,
    /// The envelope.
    pub(crate) body: Value,
    /// `Bookingd-Correlation-Id`.
    pub(crate) correlation_id: Option<String>,
}

/// Every message of `EVENTS`, read with an ephemeral consumer from the start.
pub(crate) async fn read_stream(nats_url: &str) -> Vec<Published> {
    let client = async_nats::connect(nats_url)
        .await
        .expect("connect to nats");
    let js = jetstream::new(client);
    let Ok(mut stream) = js.get_stream("EVENTS").await else {
        return vec![];
    };
    let total = stream.info().await.expect("stream info").state.messages;
    if total == 0 {
        return vec![];
    }
    let consumer = stream
        .create_consumer(consumer::pull::Config {
            ack_policy: consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .expect("consumer");
    let mut messages = consumer.messages().await.expect("messages");
    let mut out = Vec::new();
    while (out.len() as u64) < total {
        let next = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("stream read timed out");
        let message = next.expect("stream ended").expect("message");
        let msg_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Nats-Msg-Id"))
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        let correlation_id = message
            .headers
            .as_ref()
            .and_then(|h| h.get("Bookingd-Correlation-Id"))
            .map(|v| v.as_str().to_owned());
        out.push(Published {
            correlation_id,
            msg_id,
            subject: message.subject.to_string(),
            body: serde_json::from_slice(&message.payload).expect("json"),
        });
    }
    out
}

/// How many messages the stream holds (0 if it does not exist yet).
pub(crate) async fn stream_len(nats_url: &str) -> u64 {
    let Ok(client) = async_nats::connect(nats_url).await else {
        return 0;
    };
    let js = jetstream::new(client);
    match js.get_stream("EVENTS").await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

/// Event ids in the store, by position.
pub(crate) async fn stored_event_ids(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar::<_, String>("SELECT metadata ->> 'event_id' FROM events ORDER BY position")
        .fetch_all(pool)
        .await
        .expect("event ids")
}

/// Inserts `per_aggregate` events (sequences 1, 2, …) on each of `aggregates` aggregates
/// `Probe`/`probe-<n>` in one statement, stream after stream, as a bare writer would.
pub(crate) async fn insert_probe_events(pool: &PgPool, aggregates: i32, per_aggregate: i32) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT 'Probe', 'probe-' || a, n, 'Probed', '1', '{}',
                jsonb_build_object('tenant_id', '01900000-0000-7000-8000-0000000000aa', 'event_id', gen_random_uuid()::text)
         FROM generate_series(1, $1) AS a, generate_series(1, $2) AS n ORDER BY a, n",
    )
    .bind(aggregates)
    .bind(per_aggregate)
    .execute(pool)
    .await
    .expect("insert probe events");
}

/// Checks the stream against the store: every stored event exactly once, and per aggregate in
/// sequence order. Panics with what is wrong.
pub(crate) async fn assert_stream_matches_store(pool: &PgPool, nats_url: &str) {
    let stored = stored_event_ids(pool).await;
    let published = read_stream(nats_url).await;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for p in &published {
        *seen.entry(p.msg_id.as_str()).or_default() += 1;
    }
    let duplicates: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicates.is_empty(),
        "published more than once: {duplicates:?}"
    );
    let missing: Vec<_> = stored
        .iter()
        .filter(|id| !seen.contains_key(id.as_str()))
        .collect();
    let stored_ids: std::collections::HashSet<&str> = stored.iter().map(String::as_str).collect();
    let unknown: Vec<_> = published
        .iter()
        .filter(|p| !stored_ids.contains(p.msg_id.as_str()))
        .map(|p| &p.body)
        .collect();
    assert!(
        missing.is_empty(),
        "{} stored events not on the stream: {missing:?}; on the stream and not stored: {unknown:?}",
        missing.len(),
    );
    assert_eq!(
        published.len(),
        stored.len(),
        "stream has events the store does not"
    );
    let mut last: HashMap<String, i64> = HashMap::new();
    for p in &published {
        let (kind, id) = (
            p.body["aggregate_type"].as_str().unwrap_or_default(),
            p.body["aggregate_id"].as_str().unwrap_or_default(),
        );
        let tenant = p.body["metadata"]["tenant_id"].as_str().unwrap_or("_");
        assert_eq!(
            p.subject,
            format!("events.{tenant}.{kind}.{id}"),
            "subject of {}",
            p.msg_id
        );
        let key = format!("{kind}/{id}");
        let sequence = p.body["sequence"].as_i64().expect("sequence");
        let previous = last.insert(key.clone(), sequence).unwrap_or(0);
        if sequence <= previous {
            let theirs: Vec<_> = published
                .iter()
                .filter(|q| q.subject == p.subject)
                .map(|q| (q.body["position"].as_i64(), q.body["sequence"].as_i64()))
                .collect();
            panic!(
                "{key}: sequence {sequence} after {previous} on the stream; its (position, sequence) in stream order: {theirs:?}"
            );
        }
    }
}

/// A relay from `pool` to `nats` on a task of its own; sending `true` (or dropping the sender)
/// stops it.
pub(crate) fn spawn_relay(
    pool: &PgPool,
    nats: &async_nats::Client,
) -> (
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    let relay = adapters::relay::Relay::new(
        pool.clone(),
        jetstream::new(nats.clone()),
        adapters::relay::RelayConfig::default(),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    (stop, tokio::spawn(relay.run(stopped)))
}

/// Whether a relay took the lead within ten seconds: an elected relay puts `EVENTS` in place.
pub(crate) async fn relay_took_the_lead(nats: &async_nats::Client) -> bool {
    super::poll_until(Duration::from_secs(10), || async {
        jetstream::new(nats.clone())
            .get_stream("EVENTS")
            .await
            .is_ok()
    })
    .await
}
