//! Branches and the phone numbers that route to them.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use commands::Outcome;
use commands::{BranchInput, PhoneNumberInput};
use domain::Tenant;
use domain::tenant::Branch;
use domain::values::BranchId;
use projections::{StaffCalendars, Tenants};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::created;
use crate::auth::Caller;
use crate::consistency::caught_up;
use crate::error::{ApiError, Json, Path, Query};
use crate::reads;
use crate::state::AppState;
use crate::views::{self, BranchDetail, Data};

/// `/tenant/branches…`, `/tenant/phone-numbers/{phone}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tenant/branches", get(list).post(create))
        .route("/tenant/branches/{branch_id}", get(show).put(update))
        .route("/tenant/branches/{branch_id}/activate", post(activate))
        .route("/tenant/branches/{branch_id}/deactivate", post(deactivate))
        .route(
            "/tenant/branches/{branch_id}/phone-numbers",
            post(assign_phone),
        )
        .route("/tenant/phone-numbers/{phone}", delete(release_phone))
}

type BranchAnswer = Result<axum::Json<Data<Branch>>, ApiError>;

fn answer(out: &Outcome<Tenant>, branch_id: BranchId) -> BranchAnswer {
    Ok(axum::Json(Data::of(
        views::branch(&out.state, branch_id)?,
        out,
    )))
}

/// Which branches to list.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BranchesQuery {
    /// Only active (true) or inactive (false) branches.
    pub active: Option<bool>,
    /// Only branches in this city (case-insensitive).
    pub city: Option<String>,
    /// Wait until the read models hold the command that answered with this position.
    #[schemars(range(min = 1))]
    pub min_position: Option<i64>,
}

/// Branches with their services and staff.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BranchList {
    /// By name.
    pub data: Vec<BranchDetail>,
}

/// The tenant and its staff directory, as the read models have them.
async fn directory(
    app: &AppState,
    caller: &Caller,
    min_position: Option<i64>,
) -> Result<(Tenant, Vec<domain::Staff>), ApiError> {
    caught_up::<Tenants>(&app.pool, min_position).await?;
    caught_up::<StaffCalendars>(&app.pool, min_position).await?;
    let (tenant, _) = reads::tenant(app, caller.who.tenant_id).await?;
    let staff = projections::staff_calendar::list(&app.pool, caller.who.tenant_id.0, None)
        .await
        .map_err(ApiError::internal)?;
    Ok((tenant, staff))
}

async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<BranchesQuery>,
) -> Result<axum::Json<BranchList>, ApiError> {
    let (tenant, staff) = directory(&app, &caller, query.min_position).await?;
    let city = query.city.as_deref().map(str::to_lowercase);
    let mut data: Vec<BranchDetail> = tenant
        .branches
        .values()
        .filter(|b| query.active.is_none_or(|a| b.active == a))
        .filter(|b| city.as_ref().is_none_or(|c| b.city.to_lowercase() == *c))
        .map(|b| BranchDetail::of(&tenant, b, &staff))
        .collect();
    data.sort_by(|a, b| a.branch.name.cmp(&b.branch.name));
    Ok(axum::Json(BranchList { data }))
}

/// Wait for a command's effect.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BranchQuery {
    /// Wait until the read models hold the command that answered with this position.
    #[schemars(range(min = 1))]
    pub min_position: Option<i64>,
}

async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(branch_id): Path<BranchId>,
    Query(query): Query<BranchQuery>,
) -> Result<axum::Json<BranchDetail>, ApiError> {
    let (tenant, staff) = directory(&app, &caller, query.min_position).await?;
    let branch = views::branch(&tenant, branch_id)?;
    Ok(axum::Json(BranchDetail::of(&tenant, &branch, &staff)))
}

async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Json(input): Json<BranchInput>,
) -> Result<(StatusCode, axum::Json<Data<Branch>>), ApiError> {
    let branch_id = BranchId::new();
    let out = app
        .commands
        .create_branch(&caller.who, &caller.meta, branch_id, input)
        .await?;
    Ok(created(Data::of(
        views::branch(&out.state, branch_id)?,
        &out,
    )))
}

async fn update(
    State(app): State<AppState>,
    caller: Caller,
    Path(branch_id): Path<BranchId>,
    Json(input): Json<BranchInput>,
) -> BranchAnswer {
    let out = app
        .commands
        .update_branch(&caller.who, &caller.meta, branch_id, input)
        .await?;
    answer(&out, branch_id)
}

async fn activate(
    State(app): State<AppState>,
    caller: Caller,
    Path(branch_id): Path<BranchId>,
) -> BranchAnswer {
    let out = app
        .commands
        .set_branch_active(&caller.who, &caller.meta, branch_id, true)
        .await?;
    answer(&out, branch_id)
}

async fn deactivate(
    State(app): State<AppState>,
    caller: Caller,
    Path(branch_id): Path<BranchId>,
) -> BranchAnswer {
    let out = app
        .commands
        .set_branch_active(&caller.who, &caller.meta, branch_id, false)
        .await?;
    answer(&out, branch_id)
}

async fn assign_phone(
    State(app): State<AppState>,
    caller: Caller,
    Path(branch_id): Path<BranchId>,
    Json(input): Json<PhoneNumberInput>,
) -> BranchAnswer {
    let out = app
        .commands
        .assign_phone_number(&caller.who, &caller.meta, branch_id, input)
        .await?;
    answer(&out, branch_id)
}

async fn release_phone(
    State(app): State<AppState>,
    caller: Caller,
    Path(phone): Path<String>,
) -> Result<StatusCode, ApiError> {
    app.commands
        .release_phone_number(&caller.who, &caller.meta, &phone)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
