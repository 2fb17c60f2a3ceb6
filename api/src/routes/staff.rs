//! Staff: hiring, profile, schedule, overrides, skills, time blocks.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post, put};
use chrono::NaiveDate;
use commands::{
    AssignSkillInput, BlockTimeInput, HireStaffInput, OverrideInput, ScheduleInput,
    StaffProfileInput,
};
use domain::values::{BlockId, ServiceId, StaffId};

use super::created;
use crate::auth::Caller;
use crate::error::{ApiError, Json, Path};
use crate::state::AppState;
use crate::views::{Data, StaffView};

/// `/staff…`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/staff", post(hire))
        .route("/staff/{staff_id}", get(show).put(update_profile))
        .route("/staff/{staff_id}/schedule", put(update_schedule))
        .route("/staff/{staff_id}/overrides/{date}", put(set_override))
        .route(
            "/staff/{staff_id}/services/{service_id}",
            put(assign).delete(unassign),
        )
        .route("/staff/{staff_id}/blocks", post(block))
        .route("/staff/{staff_id}/blocks/{block_id}", delete(unblock))
        .route("/staff/{staff_id}/deactivate", post(deactivate))
}

type StaffAnswer = Result<axum::Json<Data<StaffView>>, ApiError>;

fn answer(out: &commands::Outcome<domain::Staff>) -> StaffAnswer {
    Ok(axum::Json(Data::of(StaffView::of(&out.state)?, out)))
}

async fn hire(
    State(app): State<AppState>,
    caller: Caller,
    Json(input): Json<HireStaffInput>,
) -> Result<(StatusCode, axum::Json<Data<StaffView>>), ApiError> {
    let out = app
        .commands
        .hire_staff(&caller.who, &caller.meta, StaffId::new(), input)
        .await?;
    Ok(created(Data::of(StaffView::of(&out.state)?, &out)))
}

async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(staff_id): Path<StaffId>,
) -> StaffAnswer {
    let (staff, version) = app
        .commands
        .staff_member(caller.who.tenant_id, staff_id)
        .await?;
    Ok(axum::Json(Data {
        data: StaffView::of(&staff)?,
        version,
        position: None,
    }))
}

async fn update_profile(
    State(app): State<AppState>,
    caller: Caller,
    Path(staff_id): Path<StaffId>,
    Json(input): Json<StaffProfileInput>,
) -> StaffAnswer {
    answer(
        &app.commands
            .update_staff_profile(&caller.who, &caller.meta, staff_id, input)
            .await?,
    )
}

async fn update_schedule(
    State(app): State<AppState>,
    caller: Caller,
    Path(staff_id): Path<StaffId>,
    Json(input): Json<ScheduleInput>,
) -> StaffAnswer {
    answer(
        &app.commands
            .update_staff_schedule(&caller.who, &caller.meta, staff_id, input)
            .await?,
    )
}

async fn set_override(
    State(app): State<AppState>,
    caller: Caller,
    Path((staff_id, date)): Path<(StaffId, NaiveDate)>,
    Json(input): Json<OverrideInput>,
) -> StaffAnswer {
    answer(
        &app.commands
            .set_schedule_override(&caller.who, &caller.meta, staff_id, date, input)
            .await?,
    )
}

async fn assign(
    State(app): State<AppState>,
    caller: Caller,
    Path((staff_id, service_id)): Path<(StaffId, ServiceId)>,
    Json(input): Json<AssignSkillInput>,
) -> StaffAnswer {
    answer(
        &app.commands
            .assign_staff_to_service(&caller.who, &caller.meta, staff_id, service_id, input)
            .await?,
    )
}

async fn unassign(
    State(app): State<AppState>,
    caller: Caller,
    Path((staff_id, service_id)): Path<(StaffId, ServiceId)>,
) -> StaffAnswer {
    answer(
        &app.commands
            .unassign_staff_from_service(&caller.who, &caller.meta, staff_id, service_id)
            .await?,
    )
}

async fn block(
    State(app): State<AppState>,
    caller: Caller,
    Path(staff_id): Path<StaffId>,
    Json(input): Json<BlockTimeInput>,
) -> Result<(StatusCode, axum::Json<Data<StaffView>>), ApiError> {
    let out = app
        .commands
        .block_staff_time(&caller.who, &caller.meta, staff_id, BlockId::new(), input)
        .await?;
    Ok(created(Data::of(StaffView::of(&out.state)?, &out)))
}

async fn unblock(
    State(app): State<AppState>,
    caller: Caller,
    Path((staff_id, block_id)): Path<(StaffId, BlockId)>,
) -> StaffAnswer {
    answer(
        &app.commands
            .unblock_staff_time(&caller.who, &caller.meta, staff_id, block_id)
            .await?,
    )
}

async fn deactivate(
    State(app): State<AppState>,
    caller: Caller,
    Path(staff_id): Path<StaffId>,
) -> StaffAnswer {
    answer(
        &app.commands
            .deactivate_staff(&caller.who, &caller.meta, staff_id)
            .await?,
    )
}
