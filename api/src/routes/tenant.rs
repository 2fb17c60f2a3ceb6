//! The tenant itself: profile, plan, settings.

use axum::Router;
use axum::extract::State;
use axum::routing::{get, put};
use commands::{ChangePlanInput, UpdateTenantInput};
use domain::settings::TenantSettings;

use crate::auth::Caller;
use crate::error::{ApiError, Json};
use crate::state::AppState;
use crate::views::{Data, TenantView};

/// `/tenant`, `/tenant/plan`, `/tenant/settings`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tenant", get(show).put(update))
        .route("/tenant/plan", put(change_plan))
        .route("/tenant/settings", put(update_settings))
}

async fn show(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<Data<TenantView>>, ApiError> {
    let (tenant, version) = app.commands.tenant(caller.who.tenant_id).await?;
    Ok(axum::Json(Data {
        data: TenantView::of(&tenant)?,
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
