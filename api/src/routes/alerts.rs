//! Operator alerts: what the sagas could not sort out alone (a calendar that keeps failing or
//! refuses a booking, a Cal.com booking that overlaps ours).

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ApiError, Path, Query};
use crate::state::AppState;

/// `/alerts…` under the operator routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/alerts", get(list))
        .route("/alerts/{alert_id}/resolve", post(resolve))
}

/// Which alerts to list.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// Only this tenant's.
    pub tenant_id: Option<Uuid>,
    /// Resolved ones too.
    #[serde(default)]
    pub include_resolved: bool,
}

/// One alert.
#[derive(Debug, Serialize, JsonSchema, sqlx::FromRow)]
pub struct Alert {
    /// Id.
    pub id: Uuid,
    /// The tenant it concerns.
    pub tenant_id: Uuid,
    /// What raised it (`calendar-sync`, `webhook:calcom`).
    pub source: String,
    /// What it is about (`booking <id>`, `staff member <id>`).
    pub subject: String,
    /// What happened.
    pub message: String,
    /// When.
    pub raised_at: DateTime<Utc>,
    /// When an operator marked it resolved.
    pub resolved_at: Option<DateTime<Utc>>,
}

/// Alerts, newest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Alerts {
    /// At most 500.
    pub data: Vec<Alert>,
}

async fn list(
    State(app): State<AppState>,
    Query(query): Query<AlertQuery>,
) -> Result<axum::Json<Alerts>, ApiError> {
    let data = sqlx::query_as(
        "SELECT id, tenant_id, source, subject, message, raised_at, resolved_at FROM operator_alerts
         WHERE ($1::uuid IS NULL OR tenant_id = $1) AND ($2 OR resolved_at IS NULL)
         ORDER BY raised_at DESC LIMIT 500",
    )
    .bind(query.tenant_id)
    .bind(query.include_resolved)
    .fetch_all(&app.pool)
    .await
    .map_err(ApiError::internal)?;
    Ok(axum::Json(Alerts { data }))
}

async fn resolve(
    State(app): State<AppState>,
    Path(alert_id): Path<Uuid>,
) -> Result<axum::Json<Alert>, ApiError> {
    sqlx::query_as(
        "UPDATE operator_alerts SET resolved_at = COALESCE(resolved_at, now()) WHERE id = $1
         RETURNING id, tenant_id, source, subject, message, raised_at, resolved_at",
    )
    .bind(alert_id)
    .fetch_optional(&app.pool)
    .await
    .map_err(ApiError::internal)?
    .map(axum::Json)
    .ok_or_else(|| ApiError::not_found("alert"))
}
