//! Liveness (`/health`): the process answers, and says how its dependencies are. Readiness
//! (`/health/ready`): whether this instance should take traffic: Postgres answers, NATS is
//! connected, the relay and every projection are not far behind. An integration's open circuit
//! is reported but does not make the instance unready: bookings go on without Cal.com, and
//! every instance would see the same outage.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use projections::{Bookings, StaffCalendars, Tenants};
use schemars::JsonSchema;
use serde::Serialize;
use sqlx::PgPool;

use crate::error::{ApiError, ErrorType};
use crate::state::AppState;

/// `/health`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/health/ready", get(ready))
}

/// How bookingd and its dependencies are.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    /// `ok`, or `degraded` when a dependency is down or an integration's circuit is not
    /// closed.
    pub status: String,
    /// `ok` or `unavailable`.
    pub database: String,
    /// `connected`, or the connection's state.
    pub nats: String,
    /// The running version.
    pub version: String,
    /// Each integration's circuit.
    pub integrations: Vec<adapters::circuit::CircuitHealth>,
}

async fn health(State(app): State<AppState>) -> axum::Json<Health> {
    let database = match sqlx::query("SELECT 1").execute(&app.pool).await {
        Ok(_) => "ok",
        Err(_) => "unavailable",
    };
    let nats = match app.nats.connection_state() {
        async_nats::connection::State::Connected => "connected".to_owned(),
        other => other.to_string(),
    };
    let integrations: Vec<_> = app.circuits.iter().map(|c| c.health()).collect();
    let circuits_closed = integrations
        .iter()
        .all(|c| c.state == adapters::circuit::CircuitState::Closed);
    let status = if database == "ok" && nats == "connected" && circuits_closed {
        "ok"
    } else {
        "degraded"
    };
    axum::Json(Health {
        status: status.to_owned(),
        database: database.to_owned(),
        nats,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        integrations,
    })
}

/// Events a relay or projection may be behind before the instance is not ready.
const READY_MAX_BACKLOG: i64 = 1000;
/// How long a committed event may wait for the relay.
const READY_RELAY_STALL_SECONDS: f64 = 30.0;

/// One readiness check.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Check {
    /// `database`, `nats`, `relay`, `projection:<name>`, `integration:<name>`.
    pub name: String,
    /// Whether it passes.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

/// Whether this instance should take traffic.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Readiness {
    /// `ready`.
    pub status: String,
    /// Every check.
    pub checks: Vec<Check>,
}

fn check(name: &str, ok: bool, detail: impl Into<String>) -> Check {
    Check {
        name: name.to_owned(),
        ok,
        detail: detail.into(),
    }
}

async fn ready(State(app): State<AppState>) -> Result<axum::Json<Readiness>, ApiError> {
    let mut checks = Vec::new();
    let database = sqlx::query("SELECT 1").execute(&app.pool).await;
    checks.push(check(
        "database",
        database.is_ok(),
        match &database {
            Ok(_) => "answers".to_owned(),
            Err(e) => e.to_string(),
        },
    ));
    let nats = app.nats.connection_state();
    checks.push(check(
        "nats",
        nats == async_nats::connection::State::Connected,
        nats.to_string(),
    ));
    if database.is_ok() {
        checks.push(relay_check(&app.pool).await);
        checks.extend(projection_checks(&app.pool).await);
    }
    for circuit in app.circuits.iter().map(|c| c.health()) {
        checks.push(check(
            &format!("integration:{}", circuit.name),
            true,
            format!("circuit {:?}", circuit.state).to_lowercase(),
        ));
    }
    let failing: Vec<&str> = checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| c.name.as_str())
        .collect();
    if failing.is_empty() {
        return Ok(axum::Json(Readiness {
            status: "ready".to_owned(),
            checks,
        }));
    }
    let message = format!("not ready: {}", failing.join(", "));
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        ErrorType::ServiceUnavailable,
        message,
    )
    .with_details(serde_json::json!({ "checks": checks })))
}

/// Each projection's backlog.
async fn projection_checks(pool: &PgPool) -> Vec<Check> {
    [
        projections::runner::status::<Bookings>(pool).await,
        projections::runner::status::<Tenants>(pool).await,
        projections::runner::status::<StaffCalendars>(pool).await,
    ]
    .into_iter()
    .map(|status| match status {
        Ok(s) => check(
            &format!("projection:{}", s.name),
            s.pending_events <= READY_MAX_BACKLOG,
            format!(
                "{} events behind, {} parked",
                s.pending_events, s.parked_events
            ),
        ),
        Err(e) => check("projection", false, e.to_string()),
    })
    .collect()
}

/// The relay: events committed but not yet published, how long the oldest has waited, and,
/// when some of them committed after a transaction that is still running, which one: the relay
/// publishes only below the oldest running transaction of the whole Postgres cluster (see
/// `adapters::relay`), so a writer left open in any database holds it back.
async fn relay_check(pool: &PgPool) -> Check {
    let row = sqlx::query_as::<_, RelayBacklog>(RELAY_CHECK)
        .bind(READY_MAX_BACKLOG + 1)
        .fetch_one(pool)
        .await;
    match row {
        Ok(RelayBacklog {
            behind,
            oldest_s,
            held,
            horizon,
            holder,
        }) => {
            let waited = oldest_s.unwrap_or_default();
            let mut detail = format!(
                "{behind}{} events unpublished, the oldest for {waited:.1} s",
                if behind > READY_MAX_BACKLOG { "+" } else { "" },
            );
            if held > 0 {
                detail.push_str(&format!(
                    "; {held} of them wait for transaction {horizon} to end ({})",
                    holder.unwrap_or_else(|| format!(
                        "its session is hidden from this database user; as a superuser: SELECT pid, datname, state, xact_start FROM pg_stat_activity WHERE backend_xid = '{horizon}'"
                    ))
                ));
            }
            check(
                "relay",
                behind <= READY_MAX_BACKLOG && waited <= READY_RELAY_STALL_SECONDS,
                detail,
            )
        }
        Err(e) => check("relay", false, e.to_string()),
    }
}

/// What [`RELAY_CHECK`] finds.
#[derive(sqlx::FromRow)]
struct RelayBacklog {
    behind: i64,
    oldest_s: Option<f64>,
    held: i64,
    horizon: String,
    holder: Option<String>,
}

/// Up to `$1` unpublished events: how many, the oldest one's age, how many of them are at or
/// above the running-transaction horizon, the horizon as a 32-bit transaction id (as
/// `pg_stat_activity` shows it), and the session or prepared transaction holding it where this
/// user may see it.
const RELAY_CHECK: &str = "
WITH behind AS (
    SELECT e.tx_id, e.recorded_at FROM events e, relay_checkpoint c
     WHERE c.name = 'relay' AND (e.tx_id, e.position) > (c.last_tx_id, c.last_position)
     ORDER BY e.tx_id, e.position LIMIT $1
), horizon AS (
    SELECT pg_snapshot_xmin(pg_current_snapshot()) AS full_xid,
           (pg_snapshot_xmin(pg_current_snapshot())::text::numeric % 4294967296)::text AS xid
)
SELECT (SELECT count(*) FROM behind) AS behind,
       (SELECT extract(epoch FROM now() - min(recorded_at))::float8 FROM behind) AS oldest_s,
       (SELECT count(*) FROM behind, horizon WHERE behind.tx_id >= horizon.full_xid) AS held,
       (SELECT xid FROM horizon) AS horizon,
       COALESCE(
           (SELECT format('pid %s in database %s, %s since %s', a.pid, a.datname, a.state,
                          date_trunc('second', a.xact_start))
              FROM pg_stat_activity a, horizon WHERE a.backend_xid::text = horizon.xid LIMIT 1),
           (SELECT format('prepared transaction %L in database %s since %s', p.gid, p.database,
                          date_trunc('second', p.prepared))
              FROM pg_prepared_xacts p, horizon WHERE p.transaction::text = horizon.xid LIMIT 1))
       AS holder";
