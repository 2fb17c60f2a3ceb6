//! The service catalog.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use domain::tenant::{Service, ServiceDetails};
use domain::values::{BranchId, ServiceId};
use projections::Tenants;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::created;
use crate::auth::Caller;
use crate::consistency::caught_up;
use crate::error::{ApiError, Json, Path, Query};
use crate::reads;
use crate::state::AppState;
use crate::views::{self, Data};

/// `/services…`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/services", get(list).post(define))
        .route("/services/{service_id}", get(show).put(update))
        .route("/services/{service_id}/retire", post(retire))
}

/// Which services to list.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogQuery {
    /// Only services offered at this branch.
    pub branch_id: Option<BranchId>,
    /// Include retired services.
    pub include_retired: Option<bool>,
    /// Wait until the read model holds the command that answered with this position.
    #[schemars(range(min = 1))]
    pub min_position: Option<i64>,
}

/// The catalog.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Catalog {
    /// By name.
    pub data: Vec<Service>,
}

pub(crate) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<CatalogQuery>,
) -> Result<axum::Json<Catalog>, ApiError> {
    caught_up::<Tenants>(&app.pool, query.min_position).await?;
    let (tenant, _) = reads::tenant(&app, caller.who.tenant_id).await?;
    if let Some(id) = query.branch_id {
        views::branch(&tenant, id)?;
    }
    let retired = query.include_retired.unwrap_or(false);
    let mut data: Vec<Service> = tenant
        .services
        .into_values()
        .filter(|s| retired || !s.retired)
        .filter(|s| query.branch_id.is_none_or(|b| s.branch_ids.contains(&b)))
        .collect();
    data.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(axum::Json(Catalog { data }))
}

async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(service_id): Path<ServiceId>,
    Query(query): Query<super::tenant::ReadQuery>,
) -> Result<axum::Json<Data<Service>>, ApiError> {
    caught_up::<Tenants>(&app.pool, query.min_position).await?;
    let (tenant, version) = reads::tenant(&app, caller.who.tenant_id).await?;
    Ok(axum::Json(Data {
        data: views::service(&tenant, service_id)?,
        version,
        position: None,
    }))
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
