//! Bookings: create, change, move, cancel, confirm, complete, no-show, read.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use commands::{
    CancelBookingInput, CreateBookingInput, RescheduleBookingInput, UpdateBookingInput,
};
use domain::values::BookingId;

use super::created;
use crate::auth::Caller;
use crate::error::{ApiError, Json, Path};
use crate::state::AppState;
use crate::views::{BookingView, Data};

/// `/bookings…`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/bookings", post(create))
        .route("/bookings/{booking_id}", get(show).put(update))
        .route("/bookings/{booking_id}/cancel", post(cancel))
        .route("/bookings/{booking_id}/reschedule", post(reschedule))
        .route("/bookings/{booking_id}/confirm", post(confirm))
        .route("/bookings/{booking_id}/complete", post(complete))
        .route("/bookings/{booking_id}/no-show", post(no_show))
}

type BookingAnswer = Result<axum::Json<Data<BookingView>>, ApiError>;

fn answer(out: &commands::Outcome<domain::Booking>) -> BookingAnswer {
    Ok(axum::Json(Data::of(BookingView::of(&out.state)?, out)))
}

async fn create(
    State(app): State<AppState>,
    caller: Caller,
    Json(input): Json<CreateBookingInput>,
) -> Result<(StatusCode, axum::Json<Data<BookingView>>), ApiError> {
    let out = app
        .commands
        .create_booking(&caller.who, &caller.meta, BookingId::new(), input)
        .await?;
    Ok(created(Data::of(BookingView::of(&out.state)?, &out)))
}

async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(booking_id): Path<BookingId>,
) -> BookingAnswer {
    let (booking, version) = app
        .commands
        .booking(caller.who.tenant_id, booking_id)
        .await?;
    Ok(axum::Json(Data {
        data: BookingView::of(&booking)?,
        version,
        position: None,
    }))
}

async fn update(
    State(app): State<AppState>,
    caller: Caller,
    Path(booking_id): Path<BookingId>,
    Json(input): Json<UpdateBookingInput>,
) -> BookingAnswer {
    answer(
        &app.commands
            .update_booking_details(&caller.who, &caller.meta, booking_id, input)
            .await?,
    )
}

async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    Path(booking_id): Path<BookingId>,
    Json(input): Json<CancelBookingInput>,
) -> BookingAnswer {
    answer(
        &app.commands
            .cancel_booking(&caller.who, &caller.meta, booking_id, input)
            .await?,
    )
}

async fn reschedule(
    State(app): State<AppState>,
    caller: Caller,
    Path(booking_id): Path<BookingId>,
    Json(input): Json<RescheduleBookingInput>,
) -> BookingAnswer {
    answer(
        &app.commands
            .reschedule_booking(&caller.who, &caller.meta, booking_id, input)
            .await?,
    )
}

async fn confirm(
    State(app): State<AppState>,
    caller: Caller,
    Path(booking_id): Path<BookingId>,
) -> BookingAnswer {
    answer(
        &app.commands
            .confirm_booking(&caller.who, &caller.meta, booking_id)
            .await?,
    )
}

async fn complete(
    State(app): State<AppState>,
    caller: Caller,
    Path(booking_id): Path<BookingId>,
) -> BookingAnswer {
    answer(
        &app.commands
            .complete_booking(&caller.who, &caller.meta, booking_id)
            .await?,
    )
}

async fn no_show(
    State(app): State<AppState>,
    caller: Caller,
    Path(booking_id): Path<BookingId>,
) -> BookingAnswer {
    answer(
        &app.commands
            .mark_no_show(&caller.who, &caller.meta, booking_id)
            .await?,
    )
}
