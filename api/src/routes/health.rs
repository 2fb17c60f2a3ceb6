//! Liveness: the process answers, and says how its dependencies are.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use schemars::JsonSchema;
use serde::Serialize;

use crate::state::AppState;

/// `/health`.
pub fn router() -> Router<AppState> {
    Router::new().route("/health", get(health))
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
