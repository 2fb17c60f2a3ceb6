//! `bookingd-bench`: the write side's figures, printed in one run.
//!
//! * create-booking over HTTP (hold, create, reserve) at 1 and 16 concurrent clients:
//!   throughput and p50/p99 latency;
//! * relay lag, commit to PubAck, p50/p99, over those bookings (the relay then competes with
//!   a saturated machine), and again at steady 200 and 800 bookings/s; each with its two
//!   parts, the wait for the round that reads an event and the time from that round's read to
//!   the event's PubAck (its own message's, or its atomic batch's).
//!   Measured from the start of the statement that appended the event (`recorded_at`); its
//!   commit follows within the statement's time (with `track_commit_timestamp` on, six runs
//!   at 16 clients: p50 0.2 ms, p99 1.5 to 2.4 ms).
//! * measured the same way in the same run: the raw cqrs-es + postgres-es single-command rate
//!   (`CqrsFramework` on postgres-es's own tables) and a plain one-row INSERT rate.
//!
//! Needs Postgres (`DATABASE_URL` names a server; the database `bookingd_bench` is recreated)
//! and a nats-server of 2.10 or newer (`NATS_URL`). Run with `scripts/bench.sh`.
//! `BENCH_BOOKINGS` sets the bookings per run (4000); `BENCH_RELAY=false` measures the write
//! path without the relay competing for the two cores.
//!
//! Then the read side's figures (`read_side.rs`), on a second database `bookingd_bench_read`:
//! projection lag at a steady 500 bookings/s and the rebuild rate over 200,000 events.
//!
//! `BENCH_ONLY=soak` runs only the soak (`soak.rs`): ten minutes of mixed traffic against a
//! `bookingd` process, with its memory and the pipeline's lag minute by minute.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use api::Application;
use api::config::{DatabaseConfig, LogFormat, NatsConfig, ServeConfig};
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, CqrsFramework, DomainEvent};
use futures::StreamExt;
use hdrhistogram::Histogram;
use postgres_es::PostgresEventRepository;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::PgPool;

/// The same allocator as `bookingd`, so the server measured here is the one that runs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "bench/availability.rs"]
mod availability;
#[path = "bench/read_side.rs"]
mod read_side;
#[path = "bench/soak.rs"]
mod soak;

fn say(line: impl std::fmt::Display) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

/// Throughput and latency of one measured run.
struct Figures {
    ops: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
    failures: u64,
}

impl Figures {
    fn print(&self, what: &str) {
        let ms = |q| self.latency.value_at_quantile(q) as f64 / 1000.0;
        say(format_args!(
            "{what:<46} {:>8.0} ops/s   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} ops, {} failed)",
            self.ops as f64 / self.elapsed.as_secs_f64(),
            ms(0.5),
            ms(0.99),
            self.ops,
            self.failures
        ));
    }
}

/// Runs `op(i)` for i in 0..n with `concurrency` in flight and measures each.
async fn measure<F, Fut>(n: u64, concurrency: usize, op: F) -> anyhow::Result<Figures>
where
    F: Fn(u64) -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    let results: Vec<(bool, u64)> = futures::stream::iter(0..n)
        .map(|i| {
            let fut = op(i);
            async move {
                let t = Instant::now();
                let ok = fut.await;
                (
                    ok,
                    u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX),
                )
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let mut latency = Histogram::<u64>::new(3)?;
    let mut failures = 0;
    for (ok, micros) in results {
        if ok {
            let _ = latency.record(micros);
        } else {
            failures += 1;
        }
    }
    Ok(Figures {
        ops: n - failures,
        elapsed,
        latency,
        failures,
    })
}

/// The smallest aggregate postgres-es can store: one command, one event.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Probe {
    created: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum ProbeEvent {
    Created { at: DateTime<Utc> },
}

impl DomainEvent for ProbeEvent {
    fn event_type(&self) -> String {
        "Created".to_owned()
    }
    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("probe exists")]
struct ProbeError;

impl Aggregate for Probe {
    const TYPE: &'static str = "Probe";
    type Command = ();
    type Event = ProbeEvent;
    type Error = ProbeError;
    type Services = ();

    async fn handle(&mut self, _: (), _: &(), sink: &EventSink<Self>) -> Result<(), ProbeError> {
        if self.created {
            return Err(ProbeError);
        }
        sink.write(ProbeEvent::Created { at: Utc::now() }, self)
            .await;
        Ok(())
    }

    fn apply(&mut self, _: ProbeEvent) {
        self.created = true;
    }
}

const RAW_TABLES: &str = "
CREATE TABLE raw_events (aggregate_type text NOT NULL, aggregate_id text NOT NULL, sequence bigint CHECK (sequence >= 0) NOT NULL,
    event_type text NOT NULL, event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence));
CREATE TABLE raw_snapshots (aggregate_type text NOT NULL, aggregate_id text NOT NULL, last_sequence bigint CHECK (last_sequence >= 0) NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL, payload json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, last_sequence));
CREATE TABLE raw_inserts (aggregate_type text NOT NULL, aggregate_id text NOT NULL, sequence bigint NOT NULL,
    event_type text NOT NULL, event_version text NOT NULL, payload json NOT NULL, metadata json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence));";

async fn recreate_database(server_url: &str, name: &str) -> anyhow::Result<String> {
    let admin = PgPool::connect(&format!("{server_url}/postgres"))
        .await
        .context("connect to Postgres")?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await?;
    Ok(format!("{server_url}/{name}"))
}

async fn raw_baselines(pool: &PgPool, n: u64) -> anyhow::Result<Vec<(String, Figures)>> {
    sqlx::raw_sql(RAW_TABLES).execute(pool).await?;
    let repo =
        PostgresEventRepository::new(pool.clone()).with_tables("raw_events", "raw_snapshots");
    let cqrs = Arc::new(CqrsFramework::new(
        PersistedEventStore::<_, Probe>::new_event_store(repo),
        vec![],
        (),
    ));
    let mut out = Vec::new();
    for concurrency in [1, 16] {
        let figures = measure(n, concurrency, |_| {
            let cqrs = cqrs.clone();
            async move {
                let metadata = HashMap::from([
                    ("tenant_id".to_owned(), uuid::Uuid::nil().to_string()),
                    ("actor".to_owned(), "bench".to_owned()),
                    ("source".to_owned(), "bench".to_owned()),
                ]);
                cqrs.execute_with_metadata(&uuid::Uuid::new_v4().to_string(), (), metadata)
                    .await
                    .is_ok()
            }
        })
        .await?;
        out.push((
            format!("raw cqrs-es + postgres-es command, c={concurrency}"),
            figures,
        ));
    }
    for concurrency in [1, 16] {
        let figures = measure(n, concurrency, |_| {
            let pool = pool.clone();
            async move {
                sqlx::query(
                    "INSERT INTO raw_inserts VALUES ('Probe', $1, 1, 'Created', '1', $2, $3)",
                )
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(json!({ "Created": { "at": Utc::now() } }))
                .bind(
                    json!({ "tenant_id": uuid::Uuid::nil(), "actor": "bench", "source": "bench" }),
                )
                .execute(&pool)
                .await
                .is_ok()
            }
        })
        .await?;
        out.push((format!("plain one-row INSERT, c={concurrency}"), figures));
    }
    Ok(out)
}

struct Salon {
    tenant_id: String,
    key: String,
    branch_id: String,
    service_id: String,
    staff: Vec<String>,
}

async fn post(http: &reqwest::Client, url: &str, key: &str, body: &Value) -> anyhow::Result<Value> {
    let response = http.post(url).bearer_auth(key).json(body).send().await?;
    let status = response.status();
    let value: Value = response.json().await?;
    anyhow::ensure!(status.is_success(), "{url}: {status} {value}");
    Ok(value)
}

async fn seed(http: &reqwest::Client, base: &str, staff_count: usize) -> anyhow::Result<Salon> {
    let tenant = post(http, &format!("{base}/api/v2/admin/tenants"), "bench-operator", &json!({ "name": "Bench", "plan": "enterprise", "settings": { "booking_rules": { "min_notice_minutes": 0, "max_advance_days": 365 } } })).await?;
    let key = tenant["data"]["api_key"]["key"]
        .as_str()
        .context("key")?
        .to_owned();
    let day = json!({ "ranges": [{ "start": "00:00", "end": "24:00" }] });
    let week: serde_json::Map<String, Value> = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ]
    .iter()
    .map(|d| ((*d).to_owned(), day.clone()))
    .collect();
    let mcp = format!("{base}/api/v2/mcp");
    let branch = post(http, &format!("{mcp}/tenant/branches"), &key, &json!({ "name": "Bench", "address": "A", "city": "Berlin", "coordinates": null, "time_zone": "UTC", "business_hours": week })).await?;
    let branch_id = branch["data"]["id"].as_str().context("branch")?.to_owned();
    let service = post(http, &format!("{mcp}/services"), &key, &json!({ "name": "Cut", "duration_minutes": 15, "price": { "amount_minor": 1000, "currency": "EUR" }, "buffer_before_minutes": 0, "buffer_after_minutes": 0, "branch_ids": [branch_id], "deposit": null })).await?;
    let service_id = service["data"]["id"]
        .as_str()
        .context("service")?
        .to_owned();
    let mut staff = Vec::new();
    for i in 0..staff_count {
        let hired = post(
            http,
            &format!("{mcp}/staff"),
            &key,
            &json!({ "branch_id": branch_id, "name": format!("Staff {i}"), "schedule": week }),
        )
        .await?;
        let id = hired["data"]["id"].as_str().context("staff")?.to_owned();
        let response = http
            .put(format!("{mcp}/staff/{id}/services/{service_id}"))
            .bearer_auth(&key)
            .json(&json!({ "level": 3 }))
            .send()
            .await?;
        anyhow::ensure!(response.status().is_success(), "assign skill");
        staff.push(id);
    }
    Ok(Salon {
        tenant_id: tenant["data"]["tenant"]["id"]
            .as_str()
            .context("tenant id")?
            .to_owned(),
        key,
        branch_id,
        service_id,
        staff,
    })
}

/// Books slot `k`: staff `k % S`, consecutive 15-minute slots from `first`.
async fn book(
    http: &reqwest::Client,
    url: &str,
    salon: &Salon,
    first: DateTime<Utc>,
    k: u64,
) -> bool {
    let staff = usize::try_from(k).unwrap_or(0) % salon.staff.len();
    let slot = k / salon.staff.len() as u64;
    let start = first + chrono::Duration::minutes(15 * i64::try_from(slot).unwrap_or(0));
    let body = json!({ "branch_id": salon.branch_id, "service_id": salon.service_id, "staff_id": salon.staff[staff], "start": start, "customer": { "phone": "+4915112345678", "name": "Bench" } });
    http.post(url)
        .bearer_auth(&salon.key)
        .json(&body)
        .send()
        .await
        .is_ok_and(|r| r.status() == reqwest::StatusCode::CREATED)
}

type Lags = Arc<Mutex<Histogram<u64>>>;

/// A bookingd started in this process: its base URL, its database URL, the relay-lag and
/// projection-lag histograms it fills, and the switch that stops it (dropping it stops it too).
struct Server {
    base: String,
    url: String,
    relay_lags: RelayLags,
    projection_lags: Lags,
    stop: tokio::sync::oneshot::Sender<()>,
}

/// Records `lag` into `lags`, in microseconds.
fn record(lags: &Lags, lag: Duration) {
    if let Ok(mut h) = lags.lock() {
        let _ = h.record(u64::try_from(lag.as_micros()).unwrap_or(u64::MAX));
    }
}

/// An empty lag histogram, three significant figures.
fn empty_lags() -> anyhow::Result<Lags> {
    Ok(Arc::new(Mutex::new(Histogram::<u64>::new(3)?)))
}

/// A histogram and an observer that records durations into it.
fn lag_histogram() -> anyhow::Result<(Lags, adapters::projection_worker::LagObserver)> {
    let lags = empty_lags()?;
    let observer = {
        let lags = lags.clone();
        Arc::new(move |lag: Duration| record(&lags, lag))
    };
    Ok((lags, observer))
}

/// The relay's lag per event, whole and in its two parts: waiting for the round that reads
/// the event, and from that round's read to the event's PubAck.
struct RelayLags {
    total: Lags,
    to_read: Lags,
    to_ack: Lags,
}

/// What [`RelayLags`] held when taken.
struct RelayFigures {
    total: Histogram<u64>,
    to_read: Histogram<u64>,
    to_ack: Histogram<u64>,
}

impl RelayLags {
    /// Empty histograms and the observer that fills them.
    fn new() -> anyhow::Result<(Self, adapters::relay::LagObserver)> {
        let lags = Self {
            total: empty_lags()?,
            to_read: empty_lags()?,
            to_ack: empty_lags()?,
        };
        let (total, to_read, to_ack) = (
            lags.total.clone(),
            lags.to_read.clone(),
            lags.to_ack.clone(),
        );
        let observer = Arc::new(move |lag: adapters::relay::Lag| {
            record(&total, lag.total());
            record(&to_read, lag.to_read);
            record(&to_ack, lag.to_ack);
        });
        Ok((lags, observer))
    }

    /// Empties the histograms, returning what they held.
    fn take(&self) -> anyhow::Result<RelayFigures> {
        Ok(RelayFigures {
            total: take(&self.total)?,
            to_read: take(&self.to_read)?,
            to_ack: take(&self.to_ack)?,
        })
    }
}

impl RelayFigures {
    /// p50 and p99 of each part, in milliseconds.
    fn parts(&self) -> String {
        let ms = |h: &Histogram<u64>, q| h.value_at_quantile(q) as f64 / 1000.0;
        format!(
            "waiting for its round p50 {:.2} p99 {:.2} ms, round's read to its PubAck p50 {:.2} p99 {:.2} ms",
            ms(&self.to_read, 0.5),
            ms(&self.to_read, 0.99),
            ms(&self.to_ack, 0.5),
            ms(&self.to_ack, 0.99)
        )
    }
}

/// Starts bookingd in this process on a fresh database `name`, with or without projection
/// workers.
async fn start_server(
    server: &str,
    nats_url: String,
    name: &str,
    projections: bool,
) -> anyhow::Result<Server> {
    let url = recreate_database(server, name).await?;
    // A fresh stream, so that its duplicate window and size start empty.
    let js = async_nats::jetstream::new(
        async_nats::connect(nats_url.as_str())
            .await
            .context("connect to NATS")?,
    );
    let _ = js.delete_stream("EVENTS").await;
    let (relay_lags, relay_observer) = RelayLags::new()?;
    let (projection_lags, projection_observer) = lag_histogram()?;
    let config = ServeConfig {
        database: DatabaseConfig {
            database_url: SecretString::from(url.clone()),
            db_pool_size: 32,
        },
        nats: NatsConfig { nats_url },
        bind: "127.0.0.1:0".parse()?,
        operator_token: Some(SecretString::from("bench-operator".to_owned())),
        mcp_allowed_hosts: vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
        metrics_enabled: true,
        tracing: api::config::TracingConfig::default(),
        // The benchmark measures the write side, not the limiter's refusals.
        rate_limits: api::config::RateLimitConfig {
            rate_limit_basic: u32::MAX,
            rate_limit_pro: u32::MAX,
            rate_limit_enterprise: u32::MAX,
            rate_limit_window: 3600,
        },
        booking_lock_timeout: 300,
        booking_max_advance_days: 365,
        relay: std::env::var("BENCH_RELAY").map_or(true, |v| v != "false"),
        projections,
        // Off unless BENCH_SAGAS=true: none of the bench tenants has an integration, so the
        // sagas only add their bookkeeping (state, inbox, jobs per booking event).
        sagas: std::env::var("BENCH_SAGAS").is_ok_and(|v| v == "true"),
        log_format: LogFormat::Pretty,
        integrations: api::config::IntegrationConfig::default(),
        clock: std::sync::Arc::new(sagas::SystemClock),
    };
    let app = Application::build(config)
        .await?
        .with_relay_lag_observer(relay_observer)
        .with_projection_lag_observer(projection_observer);
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    Ok(Server {
        base,
        url,
        relay_lags,
        projection_lags,
        stop,
    })
}

/// Books `n` slots with `concurrency` clients, after the first `offset` slots.
async fn bookings(
    http: &reqwest::Client,
    base: &str,
    salon: &Arc<Salon>,
    offset: u64,
    n: u64,
    concurrency: usize,
) -> anyhow::Result<Figures> {
    let first = (Utc::now() + chrono::Duration::days(1))
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let url = format!("{base}/api/v2/mcp/bookings");
    measure(n, concurrency, |k| {
        let (http, salon, url) = (http.clone(), salon.clone(), url.clone());
        async move { book(&http, &url, &salon, first, offset + k).await }
    })
    .await
}

/// Waits until the relay's checkpoint has passed every event; false after a minute.
async fn relay_caught_up(pool: &PgPool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM events e, relay_checkpoint c WHERE c.name = 'relay' AND (e.tx_id, e.position) > (c.last_tx_id, c.last_position)")
            .fetch_one(pool)
            .await
            .unwrap_or(1);
        if pending == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn report(
    bookings: &[(String, Figures)],
    raw: &[(String, Figures)],
    relay: &RelayFigures,
    caught_up: bool,
) {
    let lag = &relay.total;
    say("");
    for (what, figures) in bookings.iter().chain(raw) {
        figures.print(what);
    }
    let ms = |h: &Histogram<u64>, q| h.value_at_quantile(q) as f64 / 1000.0;
    say(format_args!(
        "{:<46} {:>14}   p50 {:>6.2} ms   p99 {:>6.2} ms   ({} events{})",
        "relay lag, commit to PubAck",
        "",
        ms(lag, 0.5),
        ms(lag, 0.99),
        lag.len(),
        if caught_up {
            ""
        } else {
            ", relay had not caught up after 60 s"
        }
    ));
    say(format_args!("    in parts: {}", relay.parts()));
    let rate = |f: &Figures| f.ops as f64 / f.elapsed.as_secs_f64();
    say(format_args!(
        "\ncreate-booking c=16 / raw cqrs-es c=16 = {:.2} (target >= 0.5); create-booking c=16 p99 {:.2} ms (target < 30); relay lag p99 {:.2} ms (target < 25)",
        rate(&bookings[1].1) / rate(&raw[1].1),
        ms(&bookings[1].1.latency, 0.99),
        ms(lag, 0.99)
    ));
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    api::startup::install_crypto_provider();
    init_logs();
    let server = std::env::var("BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432".to_owned());
    let nats_url = std::env::var("NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4223".to_owned());
    let n: u64 = std::env::var("BENCH_BOOKINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    // One part alone: `BENCH_ONLY=write`, `read`, `availability` or `soak` (not part of a
    // full run).
    match std::env::var("BENCH_ONLY").as_deref() {
        Ok("read") => return read_side::run(&server, nats_url, &reqwest::Client::new()).await,
        Ok("soak") => return soak::run(&server, nats_url, &reqwest::Client::new()).await,
        Ok("availability") => {
            return availability::run(&server, nats_url, &reqwest::Client::new()).await;
        }
        _ => {}
    }
    // The write side's figures, with no read model competing for the cores.
    let projections = std::env::var("BENCH_PROJECTIONS").is_ok_and(|v| v == "true");
    let Server {
        base,
        url,
        relay_lags: lags,
        stop,
        ..
    } = start_server(&server, nats_url.clone(), "bookingd_bench", projections).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()?;
    let salon = Arc::new(seed(&http, &base, 40).await?);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    say(format_args!(
        "bookingd-bench: {n} bookings per run, 40 staff, {cores} cores"
    ));

    // Warm-up (connections, prepared statements, caches), not measured: at 16 clients, so
    // that the measured runs find every connection they use already open.
    bookings(&http, &base, &salon, 0, 200, 16).await?;
    lags.take()?;
    let mut results = Vec::new();
    for (run, concurrency) in [1, 16].into_iter().enumerate() {
        let figures = bookings(&http, &base, &salon, 200 + n * run as u64, n, concurrency).await?;
        results.push((
            format!("create-booking over HTTP, c={concurrency}"),
            figures,
        ));
    }
    let pool = PgPool::connect(&url).await?;
    let caught_up = relay_caught_up(&pool).await;
    let saturated = lags.take()?;
    let raw = raw_baselines(&pool, n).await?;
    report(&results, &raw, &saturated, caught_up);
    steady_relay_lag(&http, &base, &salon, 200 + 2 * n, &pool, &lags).await?;
    let _ = stop.send(());
    if std::env::var("BENCH_ONLY").as_deref() == Ok("write") {
        return Ok(());
    }
    read_side::run(&server, nats_url.clone(), &http).await?;
    availability::run(&server, nats_url, &http).await
}

/// Logs to stderr when `BENCH_LOG` gives a filter.
fn init_logs() {
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        api::telemetry::init_subscriber(api::telemetry::get_subscriber(
            &filter,
            LogFormat::Pretty,
            std::io::stderr,
            None,
        ));
    }
}

/// Empties the lag histogram, returning what it held.
fn take(lags: &Lags) -> anyhow::Result<Histogram<u64>> {
    let mut h = lags
        .lock()
        .map_err(|_| anyhow::anyhow!("lag histogram poisoned"))?;
    let taken = h.clone();
    h.reset();
    Ok(taken)
}

/// The relay at steady rates below saturation, as in service, booking from slot `offset` on.
async fn steady_relay_lag(
    http: &reqwest::Client,
    base: &str,
    salon: &Arc<Salon>,
    mut offset: u64,
    pool: &PgPool,
    lags: &RelayLags,
) -> anyhow::Result<()> {
    for rate in PACED_RATES {
        paced_relay_lag(http, base, salon, (offset, rate), pool, lags).await?;
        offset += rate * PACED_SECONDS;
    }
    Ok(())
}

/// The relay at a steady `rate`.
async fn paced_relay_lag(
    http: &reqwest::Client,
    base: &str,
    salon: &Arc<Salon>,
    (offset, rate): (u64, u64),
    pool: &PgPool,
    lags: &RelayLags,
) -> anyhow::Result<()> {
    lags.take()?;
    let paced = paced_bookings(http, base, salon, offset, rate, PACED_SECONDS).await?;
    let caught_up = relay_caught_up(pool).await;
    let figures = lags.take()?;
    let steady = &figures.total;
    let ms = |q| steady.value_at_quantile(q) as f64 / 1000.0;
    say(format_args!(
        "relay lag at a steady {rate} bookings/s ({} booked, {} failed): p50 {:.2} ms, p99 {:.2} ms over {} events{}",
        paced.ops,
        paced.failures,
        ms(0.5),
        ms(0.99),
        steady.len(),
        if caught_up {
            ""
        } else {
            "; the relay had not caught up after 60 s"
        }
    ));
    say(format_args!("    in parts: {}", figures.parts()));
    Ok(())
}

/// Paced rates for the relay's lag below saturation: one well below it, and one about half of
/// what a two-core machine takes at 16 clients.
const PACED_RATES: [u64; 2] = [200, 800];
const PACED_SECONDS: u64 = 10;

/// Books at a fixed rate for `seconds`, whatever the latency (at most 64 in flight).
async fn paced_bookings(
    http: &reqwest::Client,
    base: &str,
    salon: &Arc<Salon>,
    offset: u64,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Figures> {
    let first = (Utc::now() + chrono::Duration::days(1))
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let url = Arc::new(format!("{base}/api/v2/mcp/bookings"));
    let limit = Arc::new(tokio::sync::Semaphore::new(64));
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for k in 0..rate * seconds {
        ticker.tick().await;
        let permit = limit.clone().acquire_owned().await?;
        let (http, salon, url) = (http.clone(), salon.clone(), url.clone());
        tasks.spawn(async move {
            let t = Instant::now();
            let ok = book(&http, &url, &salon, first, offset + k).await;
            drop(permit);
            (
                ok,
                u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX),
            )
        });
    }
    let mut latency = Histogram::<u64>::new(3)?;
    let mut failures = 0;
    while let Some(done) = tasks.join_next().await {
        let (ok, micros) = done?;
        if ok {
            latency.record(micros)?;
        } else {
            failures += 1;
        }
    }
    Ok(Figures {
        ops: rate * seconds - failures,
        elapsed: started.elapsed(),
        latency,
        failures,
    })
}
