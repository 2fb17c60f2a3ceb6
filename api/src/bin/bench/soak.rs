//! `BENCH_ONLY=soak`: mixed traffic at a steady rate for ten minutes (`SOAK_SECONDS`) against
//! a `bookingd serve` in a process of its own, so that its memory is its own: availability
//! queries, bookings, cancellations and Retell call webhooks (`SOAK_RATE` requests a second,
//! 40 by default; `SOAK_STEADY=true` cancels as many bookings as it makes). Every minute it
//! prints the minute's throughput and p99, bookingd's RSS, and the worst relay lag and
//! projection backlog of `/metrics` sampled every 5 s; at the end, each kind's figures and the
//! RSS at start and end.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::DurationRound;
use hdrhistogram::Histogram;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{Salon, recreate_database, say, seed};

const RETELL_KEY: &str = "key_soak_0123456789abcdef";
const SECRET_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

/// The kinds of request, in the mix's order.
const KINDS: [&str; 4] = [
    "availability",
    "create booking",
    "cancel booking",
    "retell webhook",
];

/// The share of each kind in every 20 requests: availability, book, cancel, webhook.
#[derive(Clone, Copy)]
struct Mix([u64; 4]);

impl Mix {
    /// 8 : 6 : 3 : 3, the bookings piling up; with `SOAK_STEADY=true` 6 : 4 : 4 : 6, as many
    /// cancelled as made, so that the live bookings stay few and memory should level off.
    fn from_env() -> Self {
        if std::env::var("SOAK_STEADY").is_ok_and(|v| v == "true") {
            Self([6, 4, 4, 6])
        } else {
            Self([8, 6, 3, 3])
        }
    }

    fn kind_of(self, i: u64) -> usize {
        let mut at = i % 20;
        for (kind, share) in self.0.iter().enumerate() {
            if at < *share {
                return kind;
            }
            at -= share;
        }
        KINDS.len() - 1
    }
}

/// bookingd in its own process; killed if the soak ends early.
struct Bookingd {
    child: Child,
    base: String,
}

impl Drop for Bookingd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Bookingd {
    async fn start(url: &str, nats_url: &str) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let binary = std::env::current_exe()?.with_file_name("bookingd");
        let child = Command::new(&binary)
            .arg("serve")
            .env("DATABASE_URL", url)
            .env("NATS_URL", nats_url)
            .env("BOOKINGD_BIND", format!("127.0.0.1:{port}"))
            .env("BOOKINGD_OPERATOR_TOKEN", "bench-operator")
            .env("BOOKINGD_SECRET_KEY", SECRET_KEY)
            .env("BOOKINGD_LOG_FORMAT", "json")
            .env("MCP_RATE_LIMIT_ENTERPRISE", "100000000")
            .env("MCP_BOOKING_MAX_ADVANCE_DAYS", "365")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("start {}", binary.display()))?;
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let health = format!("{}/api/v2/mcp/health", server.base);
        for _ in 0..300 {
            if reqwest::get(&health)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("bookingd did not come up on {}", server.base)
    }

    /// Resident memory, in MiB.
    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()));
        status
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
            .map_or(0.0, |kb| kb / 1024.0)
    }
}

/// Latencies (µs) per kind, for the whole run and for the current minute; failures per kind.
struct Recorder {
    run: Vec<Mutex<Histogram<u64>>>,
    minute: Mutex<Histogram<u64>>,
    failures: Vec<AtomicU64>,
    first_failure: Vec<Mutex<Option<String>>>,
    answers: Mutex<HashMap<u16, u64>>,
}

impl Recorder {
    fn new() -> anyhow::Result<Self> {
        let histogram = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3);
        Ok(Self {
            run: KINDS
                .iter()
                .map(|_| histogram().map(Mutex::new))
                .collect::<Result<_, _>>()?,
            minute: Mutex::new(histogram()?),
            failures: KINDS.iter().map(|_| AtomicU64::new(0)).collect(),
            first_failure: KINDS.iter().map(|_| Mutex::new(None)).collect(),
            answers: Mutex::new(HashMap::new()),
        })
    }

    fn record(
        &self,
        kind: usize,
        took: Duration,
        (status, body): (Option<StatusCode>, Value),
        ok: bool,
    ) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        if let Ok(mut h) = self.run[kind].lock() {
            let _ = h.record(us);
        }
        if let Ok(mut h) = self.minute.lock() {
            let _ = h.record(us);
        }
        if !ok {
            self.failures[kind].fetch_add(1, Ordering::Relaxed);
            if let Ok(mut first) = self.first_failure[kind].lock() {
                first.get_or_insert_with(|| format!("{status:?} {body}"));
            }
        }
        if let Ok(mut answers) = self.answers.lock() {
            *answers.entry(status.map_or(0, |s| s.as_u16())).or_default() += 1;
        }
    }
}

/// What the requests share.
struct Soak {
    http: reqwest::Client,
    base: String,
    salon: Salon,
    tenant_id: String,
    first: chrono::DateTime<chrono::Utc>,
    next_slot: AtomicU64,
    booked: Mutex<Vec<String>>,
    recorder: Recorder,
    mix: Mix,
}

impl Soak {
    async fn send(&self, request: reqwest::RequestBuilder) -> (Option<StatusCode>, Value) {
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                (Some(status), response.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (None, Value::Null),
        }
    }

    async fn availability(&self, i: u64) -> ((Option<StatusCode>, Value), bool) {
        let date =
            (self.first + chrono::Duration::days(i64::try_from(i % 60).unwrap_or(0))).date_naive();
        let body = json!({ "service_id": self.salon.service_id, "date": date, "branch_ids": [self.salon.branch_id] });
        let request = self
            .http
            .post(format!(
                "{}/api/v2/mcp/bookings/check-availability",
                self.base
            ))
            .bearer_auth(&self.salon.key)
            .json(&body);
        let answer = self.send(request).await;
        let ok = answer.0 == Some(StatusCode::OK);
        (answer, ok)
    }

    async fn book(&self) -> ((Option<StatusCode>, Value), bool) {
        let k = self.next_slot.fetch_add(1, Ordering::Relaxed);
        let staff_count = self.salon.staff.len() as u64;
        let staff = &self.salon.staff[usize::try_from(k % staff_count).unwrap_or(0)];
        let start = self.first
            + chrono::Duration::minutes(15 * i64::try_from(k / staff_count).unwrap_or(0));
        let body = json!({ "branch_id": self.salon.branch_id, "service_id": self.salon.service_id, "staff_id": staff, "start": start, "customer": { "phone": "+4915112345678", "name": "Soak" } });
        let request = self
            .http
            .post(format!("{}/api/v2/mcp/bookings", self.base))
            .bearer_auth(&self.salon.key)
            .json(&body);
        let answer = self.send(request).await;
        if let Some(id) = answer.1["data"]["id"].as_str()
            && let Ok(mut booked) = self.booked.lock()
        {
            booked.push(id.to_owned());
        }
        let ok = answer.0 == Some(StatusCode::CREATED);
        (answer, ok)
    }

    async fn cancel(&self, i: u64) -> ((Option<StatusCode>, Value), bool) {
        let picked = self.booked.lock().ok().and_then(|mut booked| {
            let n = booked.len();
            (n > 0).then(|| booked.swap_remove(usize::try_from(i).unwrap_or(0) % n))
        });
        let Some(id) = picked else {
            return self.availability(i).await;
        };
        let request = self
            .http
            .post(format!("{}/api/v2/mcp/bookings/{id}/cancel", self.base))
            .bearer_auth(&self.salon.key)
            .json(&json!({ "reason": "soak" }));
        let answer = self.send(request).await;
        let ok = answer.0 == Some(StatusCode::OK);
        (answer, ok)
    }

    /// A call's start and end alternate: call `i / 2`.
    async fn webhook(&self, i: u64) -> ((Option<StatusCode>, Value), bool) {
        let now = chrono::Utc::now().timestamp_millis();
        let mut call = json!({
            "call_id": format!("call_soak_{}", i / 2), "agent_id": "agent_de", "agent_version": 1,
            "call_status": "ongoing", "call_type": "phone_call", "direction": "inbound",
            "from_number": "+4915112345678", "to_number": "+493012345678",
            "start_timestamp": now - 60_000,
        });
        let event = if i.is_multiple_of(2) {
            "call_started"
        } else {
            call["call_status"] = json!("ended");
            call["end_timestamp"] = json!(now);
            call["duration_ms"] = json!(60_000);
            call["disconnection_reason"] = json!("user_hangup");
            "call_ended"
        };
        let raw = serde_json::to_vec(&json!({ "event": event, "call": call })).unwrap_or_default();
        let signature = adapters::webhooks::retell_signature(RETELL_KEY, now, &raw);
        let request = self
            .http
            .post(format!(
                "{}/api/v2/webhooks/retell/{}",
                self.base, self.tenant_id
            ))
            .header("content-type", "application/json")
            .header("x-retell-signature", signature)
            .body(raw);
        let answer = self.send(request).await;
        let ok = answer.0.is_some_and(|s| s.is_success());
        (answer, ok)
    }

    async fn one(&self, i: u64) {
        let kind = self.mix.kind_of(i);
        let started = Instant::now();
        let (answer, ok) = match kind {
            0 => self.availability(i).await,
            1 => self.book().await,
            2 => self.cancel(i).await,
            _ => self.webhook(i).await,
        };
        self.recorder.record(kind, started.elapsed(), answer, ok);
    }
}

/// The pipeline's figures from `/metrics`: relay lag (s), unpublished events, events the
/// projections have yet to apply.
async fn pipeline(http: &reqwest::Client, base: &str) -> (f64, f64, f64) {
    let text = match http.get(format!("{base}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let sum = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (
        sum("bookingd_relay_lag_seconds "),
        sum("bookingd_relay_unpublished_events "),
        sum("bookingd_projection_pending_events{"),
    )
}

/// Seeds the tenant and connects Retell.
async fn prepare(http: &reqwest::Client, base: &str) -> anyhow::Result<(Salon, String)> {
    let salon = seed(http, base, 12).await?;
    let tenant_id = salon.tenant_id.clone();
    let connected = http
        .put(format!("{base}/api/v2/mcp/integrations/retell"))
        .bearer_auth(&salon.key)
        .json(&json!({ "api_key": RETELL_KEY }))
        .send()
        .await?;
    anyhow::ensure!(
        connected.status().is_success(),
        "connect Retell: {}",
        connected.status()
    );
    Ok((salon, tenant_id))
}

/// Runs the soak and prints its figures.
pub(super) async fn run(
    server: &str,
    nats_url: String,
    http: &reqwest::Client,
) -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let rate: u64 = std::env::var("SOAK_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
        .max(1);
    let url = recreate_database(server, "bookingd_soak").await?;
    let pool = sqlx::PgPool::connect(&url).await?;
    adapters::MIGRATOR.run(&pool).await?;
    pool.close().await;
    let js = async_nats::jetstream::new(async_nats::connect(nats_url.as_str()).await?);
    let _ = js.delete_stream("EVENTS").await;
    let bookingd = Bookingd::start(&url, &nats_url).await?;
    let (salon, tenant_id) = prepare(http, &bookingd.base).await?;
    let soak = Arc::new(Soak {
        http: http.clone(),
        base: bookingd.base.clone(),
        salon,
        tenant_id,
        // On a quarter hour, so that no slot straddles midnight (a day's hours end at 24:00).
        first: (chrono::Utc::now() + chrono::Duration::hours(1))
            .duration_trunc(chrono::Duration::minutes(15))?,
        next_slot: AtomicU64::new(0),
        booked: Mutex::new(Vec::new()),
        recorder: Recorder::new()?,
        mix: Mix::from_env(),
    });
    let rss_start = bookingd.rss_mib();
    say(format_args!(
        "soak: {seconds} s at {rate} requests/s ({} availability : {} book : {} cancel : {} Retell webhook), bookingd pid {}, RSS at start {rss_start:.1} MiB",
        soak.mix.0[0],
        soak.mix.0[1],
        soak.mix.0[2],
        soak.mix.0[3],
        bookingd.child.id()
    ));
    let figures = drive(&soak, &bookingd, seconds, rate).await;
    report(&soak, &bookingd, rss_start, seconds, &figures);
    let stopped = Command::new("kill")
        .args(["-TERM", &bookingd.child.id().to_string()])
        .status();
    anyhow::ensure!(stopped.is_ok_and(|s| s.success()), "SIGTERM failed");
    Ok(())
}

/// Per minute: RSS (MiB), relay lag (s), unpublished, projection backlog.
type Minute = (f64, f64, f64, f64);

/// The pipeline's figures, from `/metrics` every 5 s.
type Samples = Arc<Mutex<Vec<(f64, f64, f64)>>>;

fn sample_every_5s(soak: &Soak) -> (Samples, tokio::task::JoinHandle<()>) {
    let samples: Samples = Arc::default();
    let (kept, http, base) = (samples.clone(), soak.http.clone(), soak.base.clone());
    let sampler = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let sample = pipeline(&http, &base).await;
            if let Ok(mut kept) = kept.lock() {
                kept.push(sample);
            }
        }
    });
    (samples, sampler)
}

/// Prints the minute's line (the worst of its samples) and returns its figures.
fn minute(soak: &Soak, bookingd: &Bookingd, samples: &Samples, number: usize, rate: f64) -> Minute {
    let taken = samples.lock().map(|mut v| std::mem::take(&mut *v));
    let worst = |pick: fn(&(f64, f64, f64)) -> f64| {
        taken
            .as_ref()
            .map_or(0.0, |v| v.iter().map(pick).fold(0.0, f64::max))
    };
    let (lag, unpublished, pending) = (worst(|s| s.0), worst(|s| s.1), worst(|s| s.2));
    let rss = bookingd.rss_mib();
    let p99 = soak
        .recorder
        .minute
        .lock()
        .map(|mut h| {
            let p = h.value_at_quantile(0.99) as f64 / 1000.0;
            h.reset();
            p
        })
        .unwrap_or(0.0);
    say(format_args!(
        "minute {number:>2}: {rate:>5.1} req/s  p99 {p99:>7.2} ms  RSS {rss:>6.1} MiB  worst of 5-s samples: relay lag {:>6.1} ms ({unpublished} unpublished), projection backlog {pending}",
        lag * 1000.0
    ));
    (rss, lag, unpublished, pending)
}

/// Sends `rate` requests a second for `seconds`, printing a line a minute.
async fn drive(soak: &Arc<Soak>, bookingd: &Bookingd, seconds: u64, rate: u64) -> Vec<Minute> {
    let started = Instant::now();
    let period = Duration::from_secs(1) / u32::try_from(rate).unwrap_or(u32::MAX);
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(256));
    let mut minutes = Vec::new();
    let mut next_report = Duration::from_secs(60).min(Duration::from_secs(seconds));
    let mut sent_at_report = 0u64;
    let (samples, sampler) = sample_every_5s(soak);
    let mut i = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        ticks.tick().await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let soak_one = soak.clone();
        let n = i;
        tokio::spawn(async move {
            soak_one.one(n).await;
            drop(permit);
        });
        i += 1;
        if started.elapsed() >= next_report {
            let rate = (i - sent_at_report) as f64 / 60.0;
            minutes.push(minute(soak, bookingd, &samples, minutes.len() + 1, rate));
            sent_at_report = i;
            next_report += Duration::from_secs(60);
        }
    }
    sampler.abort();
    // Let what is in flight finish.
    let _ = in_flight.acquire_many(256).await;
    minutes
}

fn report(soak: &Soak, bookingd: &Bookingd, rss_start: f64, seconds: u64, minutes: &[Minute]) {
    let mut total = 0u64;
    for (kind, name) in KINDS.iter().enumerate() {
        let Ok(h) = soak.recorder.run[kind].lock() else {
            continue;
        };
        total += h.len();
        say(format_args!(
            "{name:<16} {:>7} requests  {:>6.1}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms  {} failed",
            h.len(),
            h.len() as f64 / seconds as f64,
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0,
            soak.recorder.failures[kind].load(Ordering::Relaxed)
        ));
        if let Ok(first) = soak.recorder.first_failure[kind].lock()
            && let Some(first) = first.as_ref()
        {
            say(format_args!("  first failure: {first}"));
        }
    }
    let rss_end = bookingd.rss_mib();
    let most = |pick: fn(&Minute) -> f64| minutes.iter().map(pick).fold(0.0, f64::max);
    let answers = soak
        .recorder
        .answers
        .lock()
        .map(|a| {
            let mut a: Vec<_> = a.iter().map(|(k, v)| (*k, *v)).collect();
            a.sort_unstable();
            a
        })
        .unwrap_or_default();
    say(format_args!(
        "all              {total:>7} requests  {:>6.1}/s  answers by status {answers:?}",
        total as f64 / seconds as f64
    ));
    say(format_args!(
        "RSS start {rss_start:.1} MiB, end {rss_end:.1} MiB, highest minute {:.1} MiB; relay lag worst minute {:.1} ms; projection backlog worst minute {}",
        most(|m| m.0),
        most(|m| m.1) * 1000.0,
        most(|m| m.3)
    ));
}
