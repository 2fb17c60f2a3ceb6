//! The tenant itself: profile, plan, settings.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, put};
use commands::{ChangePlanInput, UpdateTenantInput};
use domain::settings::TenantSettings;
use projections::Tenants;

use crate::auth::Caller;
use crate::consistency::caught_up;
use crate::error::{ApiError, Json, Query};
use crate::reads;
use crate::state::AppState;
use crate::views::{Data, TenantProfile, TenantView};

/// `/tenant`, `/tenant/plan`, `/tenant/settings`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tenant", get(show).put(update))
        .route("/tenant/plan", put(change_plan))
        .route("/tenant/settings", put(update_settings))
}

/// Wait for a command's effect.
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// Wait until the read model holds the command that answered with this position.
    #[schemars(range(min = 1))]
    pub min_position: Option<i64>,
}

async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<ReadQuery>,
) -> Result<axum::Json<Data<TenantProfile>>, ApiError> {
    caught_up::<Tenants>(&app.pool, query.min_position).await?;
    let (tenant, version) = reads::tenant(&app, caller.who.tenant_id).await?;
    Ok(axum::Json(Data {
        data: TenantProfile::of(&tenant)?,
        version,
        position: None,
    }))
}

async fn update(
    State(app): State<AppState>,
    caller: Caller,
    Json(input): Json<UpdateTenantInput>,
) -> Result<axum::Json<Data<TenantView>>, ApiError> {
    let out = app
        .commands
        .update_tenant(&caller.who, &caller.meta, input)
        .await?;
    Ok(axum::Json(Data::of(TenantView::of(&out.state)?, &out)))
}

async fn change_plan(
    State(app): State<AppState>,
    caller: Caller,
    Json(input): Json<ChangePlanInput>,
) -> Result<axum::Json<Data<TenantView>>, ApiError> {
    let out = app
        .commands
        .change_plan(&caller.who, &caller.meta, input)
        .await?;
    Ok(axum::Json(Data::of(TenantView::of(&out.state)?, &out)))
}

async fn update_settings(
    State(app): State<AppState>,
    caller: Caller,
    Json(settings): Json<TenantSettings>,
) -> Result<axum::Json<Data<TenantView>>, ApiError> {
    let out = app
        .commands
        .update_settings(&caller.who, &caller.meta, settings)
        .await?;
    Ok(axum::Json(Data::of(TenantView::of(&out.state)?, &out)))
}
