//! The service catalog.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{post, put};
use domain::tenant::{Service, ServiceDetails};
use domain::values::ServiceId;

use super::created;
use crate::auth::Caller;
use crate::error::{ApiError, Json, Path};
use crate::state::AppState;
use crate::views::{self, Data};

/// `/services…`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/services", post(define))
        .route("/services/{service_id}", put(update))
        .route("/services/{service_id}/retire", post(retire))
}

async fn define(
    State(app): State<AppState>,
    caller: Caller,
    Json(details): Json<ServiceDetails>,
) -> Result<(StatusCode, axum::Json<Data<Service>>), ApiError> {
    let service_id = ServiceId::new();
    let out = app
        .commands
        .define_service(&caller.who, &caller.meta, service_id, details)
        .await?;
    Ok(created(Data::of(
        views::service(&out.state, service_id)?,
        &out,
    )))
}

async fn update(
    State(app): State<AppState>,
    caller: Caller,
    Path(service_id): Path<ServiceId>,
    Json(details): Json<ServiceDetails>,
) -> Result<axum::Json<Data<Service>>, ApiError> {
    let out = app
        .commands
        .update_service(&caller.who, &caller.meta, service_id, details)
        .await?;
    Ok(axum::Json(Data::of(
        views::service(&out.state, service_id)?,
        &out,
    )))
}

async fn retire(
    State(app): State<AppState>,
    caller: Caller,
    Path(service_id): Path<ServiceId>,
) -> Result<axum::Json<Data<Service>>, ApiError> {
    let out = app
        .commands
        .retire_service(&caller.who, &caller.meta, service_id)
        .await?;
    Ok(axum::Json(Data::of(
        views::service(&out.state, service_id)?,
        &out,
    )))
}
