//! Operator routes for the read side: where each projection stands, and its parked events.

use adapters::parked::ParkedError;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use projections::dead_letters::{self, DeadLetter, Retried};
use projections::runner::{self, Status};
use projections::{Bookings, StaffCalendars, Tenants};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, Path, Query};
use crate::state::AppState;

/// `/api/v2/admin/projections` and `/api/v2/admin/deadletters…` (the caller adds the operator
/// check).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/projections", get(statuses))
        .route("/deadletters", get(parked))
        .route("/deadletters/{projection}/retry", post(retry))
        .route("/deadletters/{projection}/{event_id}/skip", post(skip))
}

/// Every projection's position, backlog and parked events.
async fn statuses(State(app): State<AppState>) -> Result<axum::Json<Vec<Status>>, ApiError> {
    let internal = ApiError::internal;
    Ok(axum::Json(vec![
        runner::status::<Bookings>(&app.pool)
            .await
            .map_err(internal)?,
        runner::status::<Tenants>(&app.pool)
            .await
            .map_err(internal)?,
        runner::status::<StaffCalendars>(&app.pool)
            .await
            .map_err(internal)?,
    ]))
}

/// Filter of `GET /deadletters`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParkedQuery {
    /// Only this projection's.
    pub projection: Option<String>,
}

/// The parked events, in store order.
async fn parked(
    State(app): State<AppState>,
    Query(query): Query<ParkedQuery>,
) -> Result<axum::Json<Vec<DeadLetter>>, ApiError> {
    let letters = dead_letters::list(&app.pool, query.projection.as_deref())
        .await
        .map_err(ApiError::internal)?;
    Ok(axum::Json(letters))
}

/// Applies a projection's (or takes a saga's) parked events again.
async fn retry(
    State(app): State<AppState>,
    Path(projection): Path<String>,
) -> Result<axum::Json<Retried>, ApiError> {
    match adapters::parked::retry(&app.pool, &projection).await {
        Ok(retried) => Ok(axum::Json(retried)),
        Err(ParkedError::Unknown(_)) => Err(ApiError::not_found("projection or saga")),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// What a skip did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Skipped {
    /// The event given up.
    pub event_id: String,
}

/// Gives one parked event up, so that the events after it can be applied.
async fn skip(
    State(app): State<AppState>,
    Path((projection, event_id)): Path<(String, String)>,
) -> Result<axum::Json<Skipped>, ApiError> {
    let skipped = match adapters::parked::skip(&app.pool, &projection, &event_id).await {
        Ok(skipped) => skipped,
        Err(ParkedError::Unknown(_)) => return Err(ApiError::not_found("projection or saga")),
        Err(e) => return Err(ApiError::internal(e)),
    };
    if skipped {
        Ok(axum::Json(Skipped { event_id }))
    } else {
        Err(ApiError::not_found("parked event"))
    }
}
