//! Branches and the phone numbers that route to them.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, post, put};
use commands::Outcome;
use commands::{BranchInput, PhoneNumberInput};
use domain::Tenant;
use domain::tenant::Branch;
use domain::values::BranchId;

use super::created;
use crate::auth::Caller;
use crate::error::{ApiError, Json, Path};
use crate::state::AppState;
use crate::views::{self, Data};

/// `/tenant/branches…`, `/tenant/phone-numbers/{phone}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/tenant/branches", post(create))
        .route("/tenant/branches/{branch_id}", put(update))
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
