//! `GET /metrics` in Prometheus's text format (`MCP_METRICS_ENABLED`).
//!
//! Request metrics are counted as requests pass (`mcp_requests_total`,
//! `mcp_request_duration_seconds`, `mcp_active_connections`, by service: `api`, `mcp`,
//! `webhooks`, `admin`); the pipeline's state is read when scraped: the event store's head,
//! the relay's backlog, each projection's and each JetStream consumer's lag (projections and
//! sagas), due saga jobs, parked events, holds outstanding, circuits, command conflicts.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use projections::{Bookings, StaffCalendars, Tenants};

use crate::state::AppState;

/// The original design's buckets, in seconds.
const BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    /// Observations at or below each bucket's bound.
    buckets: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, n) in BUCKETS.iter().zip(self.buckets.iter_mut()) {
            if seconds <= *bound {
                *n += 1;
            }
        }
        self.sum += seconds;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Counts {
    requests: BTreeMap<(&'static str, String, u16), u64>,
    durations: BTreeMap<(&'static str, String), Histogram>,
    active: BTreeMap<&'static str, i64>,
}

/// Request metrics of this process.
#[derive(Debug, Default)]
pub struct HttpMetrics(Mutex<Counts>);

impl HttpMetrics {
    fn with<R>(&self, f: impl FnOnce(&mut Counts) -> R) -> Option<R> {
        self.0.lock().ok().map(|mut counts| f(&mut counts))
    }
}

/// The service a path belongs to.
fn service(path: &str) -> &'static str {
    if path.starts_with("/mcp") {
        "mcp"
    } else if path.starts_with("/api/v2/webhooks") {
        "webhooks"
    } else if path.starts_with("/api/v2/admin") {
        "admin"
    } else {
        "api"
    }
}

/// Leaves the in-flight count right even when the request is dropped half-way.
struct InFlight<'a> {
    metrics: &'a HttpMetrics,
    service: &'static str,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics
            .with(|c| *c.active.entry(self.service).or_default() -= 1);
    }
}

/// Route middleware: counts and times each request by service, route and status.
pub async fn track(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.extensions().get::<MatchedPath>().map_or_else(
        || request.uri().path().to_owned(),
        |p| p.as_str().to_owned(),
    );
    let service = service(&path);
    let operation = format!("{} {path}", request.method());
    let metrics = &app.http_metrics;
    metrics.with(|c| *c.active.entry(service).or_default() += 1);
    let in_flight = InFlight { metrics, service };
    let started = Instant::now();
    let response = next.run(request).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    metrics.with(|c| {
        *c.requests
            .entry((service, operation.clone(), status))
            .or_default() += 1;
        c.durations
            .entry((service, operation))
            .or_default()
            .observe(seconds);
    });
    drop(in_flight);
    response
}

/// `GET /metrics`.
pub async fn scrape(State(app): State<AppState>) -> Response {
    if !app.metrics_enabled {
        return crate::error::route_not_found().await.into_response();
    }
    let mut out = String::with_capacity(16 * 1024);
    write_http(&app.http_metrics, &mut out);
    write_circuits(&app, &mut out);
    write_commands(&mut out);
    if let Err(e) = write_pipeline(&app, &mut out).await {
        tracing::warn!(error = %e, "metrics: the pipeline's state could not be read");
        gauge(
            &mut out,
            "bookingd_metrics_database_up",
            "Whether Postgres answered the scrape.",
            &[],
            0,
        );
    } else {
        gauge(
            &mut out,
            "bookingd_metrics_database_up",
            "Whether Postgres answered the scrape.",
            &[],
            1,
        );
    }
    write_consumers(&app, &mut out).await;
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
        out,
    )
        .into_response()
}

/// `# HELP`/`# TYPE` once, then one sample.
fn gauge(
    out: &mut String,
    name: &str,
    help: &str,
    labels: &[(&str, &str)],
    value: impl std::fmt::Display,
) {
    if !out.contains(&format!("# TYPE {name} ")) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    }
    sample(out, name, labels, value);
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    let _ = write!(out, "{name}");
    if !labels.is_empty() {
        let rendered: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let _ = write!(out, "{{{}}}", rendered.join(","));
    }
    let _ = writeln!(out, " {value}");
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `# HELP` and `# TYPE` of a metric family.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn write_http(metrics: &HttpMetrics, out: &mut String) {
    let Some((requests, durations, active)) =
        metrics.with(|c| (c.requests.clone(), c.durations.clone(), c.active.clone()))
    else {
        return;
    };
    let name = "mcp_requests_total";
    family(
        out,
        name,
        "counter",
        "Requests answered, by service, operation and status.",
    );
    for ((service, operation, status), n) in &requests {
        let status = status.to_string();
        let labels = [
            ("service", *service),
            ("operation", operation),
            ("status", &status),
        ];
        sample(out, name, &labels, n);
    }
    write_durations(&durations, out);
    let name = "mcp_active_connections";
    family(out, name, "gauge", "Requests in flight, by service.");
    for service in ["api", "mcp", "webhooks", "admin"] {
        let n = active.get(service).copied().unwrap_or_default();
        sample(out, name, &[("service", service)], n);
    }
}

fn write_durations(durations: &BTreeMap<(&'static str, String), Histogram>, out: &mut String) {
    let name = "mcp_request_duration_seconds";
    family(
        out,
        name,
        "histogram",
        "Time to answer, by service and operation.",
    );
    for ((service, operation), h) in durations {
        let labels = [("service", *service), ("operation", operation.as_str())];
        for (bound, n) in BUCKETS.iter().map(ToString::to_string).zip(h.buckets) {
            let with_le = [labels[0], labels[1], ("le", bound.as_str())];
            sample(out, &format!("{name}_bucket"), &with_le, n);
        }
        let with_le = [labels[0], labels[1], ("le", "+Inf")];
        sample(out, &format!("{name}_bucket"), &with_le, h.count);
        sample(out, &format!("{name}_sum"), &labels, h.sum);
        sample(out, &format!("{name}_count"), &labels, h.count);
    }
}

fn write_circuits(app: &AppState, out: &mut String) {
    for circuit in app.circuits.iter().map(|c| c.health()) {
        let state = match circuit.state {
            adapters::circuit::CircuitState::Closed => 0,
            adapters::circuit::CircuitState::Open => 1,
            adapters::circuit::CircuitState::HalfOpen => 2,
        };
        gauge(
            out,
            "mcp_circuit_breaker_state",
            "An integration's circuit: 0 closed, 1 open, 2 half-open.",
            &[("service", &circuit.name)],
            state,
        );
    }
}

fn write_commands(out: &mut String) {
    let conflicts = commands::stats::CONFLICTS.load(Ordering::Relaxed);
    let exhausted = commands::stats::EXHAUSTED.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP bookingd_command_conflicts_total Appends refused because another writer appended first; each is decided again.\n# TYPE bookingd_command_conflicts_total counter"
    );
    sample(out, "bookingd_command_conflicts_total", &[], conflicts);
    let _ = writeln!(
        out,
        "# HELP bookingd_command_conflicts_exhausted_total Commands that kept conflicting until their attempts ran out (answered 409).\n# TYPE bookingd_command_conflicts_exhausted_total counter"
    );
    sample(
        out,
        "bookingd_command_conflicts_exhausted_total",
        &[],
        exhausted,
    );
}

type PipelineRow = (i64, i64, Option<f64>, i64, i64, i64);

/// Head, relay backlog and its age, published, holds, parked events.
async fn pipeline_row(pool: &sqlx::PgPool) -> Result<PipelineRow, sqlx::Error> {
    sqlx::query_as(
        "WITH unpublished AS (
             SELECT e.recorded_at FROM events e, relay_checkpoint c
              WHERE c.name = 'relay' AND (e.tx_id, e.position) > (c.last_tx_id, c.last_position))
         SELECT (SELECT COALESCE(max(position), 0) FROM events),
                (SELECT count(*) FROM unpublished),
                (SELECT extract(epoch FROM now() - min(recorded_at))::float8 FROM unpublished),
                (SELECT COALESCE(sum(published), 0)::bigint FROM relay_checkpoint),
                (SELECT count(*) FROM calendar_entries WHERE held_until > now()),
                (SELECT count(*) FROM dead_letters)",
    )
    .fetch_one(pool)
    .await
}

async fn write_pipeline(app: &AppState, out: &mut String) -> Result<(), sqlx::Error> {
    let (head, unpublished, oldest, published, holds, parked) = pipeline_row(&app.pool).await?;
    #[expect(clippy::cast_precision_loss, reason = "counts far below 2^53")]
    let figures = [
        (
            "bookingd_event_store_head_position",
            "The last event's global position.",
            head as f64,
        ),
        (
            "bookingd_relay_unpublished_events",
            "Events committed and not yet acknowledged by JetStream.",
            unpublished as f64,
        ),
        (
            "bookingd_relay_lag_seconds",
            "How long the oldest unpublished event has waited (0 when none).",
            oldest.unwrap_or_default(),
        ),
        (
            "bookingd_relay_published_events",
            "Events the relay has published since the store began.",
            published as f64,
        ),
        (
            "bookingd_holds_outstanding",
            "Slot holds neither confirmed, released nor lapsed.",
            holds as f64,
        ),
        (
            "bookingd_dead_letters",
            "Events parked by a projection or saga.",
            parked as f64,
        ),
    ];
    for (name, help, value) in figures {
        gauge(out, name, help, &[], value);
    }
    write_projections(app, out).await?;
    write_saga_jobs(app, out).await
}

async fn write_projections(app: &AppState, out: &mut String) -> Result<(), sqlx::Error> {
    for status in [
        projections::runner::status::<Bookings>(&app.pool).await?,
        projections::runner::status::<Tenants>(&app.pool).await?,
        projections::runner::status::<StaffCalendars>(&app.pool).await?,
    ] {
        let labels = [("projection", status.name)];
        let help = "Events a projection has yet to apply.";
        gauge(
            out,
            "bookingd_projection_pending_events",
            help,
            &labels,
            status.pending_events,
        );
        let help = "The highest position a projection has applied.";
        gauge(
            out,
            "bookingd_projection_applied_position",
            help,
            &labels,
            status.applied_position,
        );
    }
    Ok(())
}

async fn write_saga_jobs(app: &AppState, out: &mut String) -> Result<(), sqlx::Error> {
    let jobs: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT saga,
                count(*) FILTER (WHERE due_at <= now()
                                   AND (claimed_until IS NULL OR claimed_until < now())),
                count(*)
           FROM saga_jobs GROUP BY saga ORDER BY saga",
    )
    .fetch_all(&app.pool)
    .await?;
    for (saga, due, all) in &jobs {
        let labels = [("saga", saga.as_str())];
        gauge(
            out,
            "bookingd_saga_due_jobs",
            "Saga steps and timers due and not claimed.",
            &labels,
            due,
        );
        gauge(
            out,
            "bookingd_saga_jobs",
            "Saga steps and timers set.",
            &labels,
            all,
        );
    }
    Ok(())
}

/// Each durable consumer of `EVENTS` (projections and sagas): messages not yet delivered and
/// delivered but not acknowledged.
async fn write_consumers(app: &AppState, out: &mut String) {
    let js = async_nats::jetstream::new(app.nats.clone());
    let read = async {
        let stream = js.get_stream("EVENTS").await.ok()?;
        let names: Vec<String> = stream
            .consumer_names()
            .filter_map(|n| async move { n.ok() })
            .collect()
            .await;
        let mut infos = Vec::new();
        for name in names {
            if let Ok(info) = stream.consumer_info(&name).await {
                infos.push((name, info.num_pending, info.num_ack_pending));
            }
        }
        Some(infos)
    };
    let Ok(Some(infos)) = tokio::time::timeout(Duration::from_secs(2), read).await else {
        gauge(
            out,
            "bookingd_metrics_nats_up",
            "Whether JetStream answered the scrape.",
            &[],
            0,
        );
        return;
    };
    gauge(
        out,
        "bookingd_metrics_nats_up",
        "Whether JetStream answered the scrape.",
        &[],
        1,
    );
    for (name, pending, ack_pending) in infos {
        gauge(
            out,
            "bookingd_consumer_pending_messages",
            "Messages of EVENTS a consumer (projection or saga) has yet to receive.",
            &[("consumer", &name)],
            pending,
        );
        gauge(
            out,
            "bookingd_consumer_ack_pending_messages",
            "Messages a consumer received and has not yet acknowledged.",
            &[("consumer", &name)],
            ack_pending,
        );
    }
}
