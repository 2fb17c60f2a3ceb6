//! Bookings: create, change, move, cancel, confirm, complete, no-show, read, list.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use commands::{
    CancelBookingInput, CreateBookingInput, RescheduleBookingInput, UpdateBookingInput,
};
use domain::booking::BookingStatus;
use domain::values::{BookingId, BranchId, PhoneNumber, StaffId};
use projections::Bookings;
use projections::audit::{self, AsOf};
use projections::bookings::BookingFilter;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::created;
use crate::auth::Caller;
use crate::consistency::caught_up;
use crate::error::{ApiError, Json, Path, Query};
use crate::state::AppState;
use crate::views::{BookingView, Data};

/// `/bookings…`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/bookings", get(list).post(create))
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

/// How to read one booking.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShowBookingQuery {
    /// Wait until the read model holds the command that answered with this position.
    #[schemars(range(min = 1))]
    pub min_position: Option<i64>,
    /// The booking as it was then: a version number or an RFC 3339 time, folded from its
    /// events.
    pub as_of: Option<String>,
}

/// A booking from the read model, or as of a version or time from its events. One the read
/// model does not hold at its latest version yet is folded from its events, so successive
/// reads never go back to an older state.
pub(crate) async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(booking_id): Path<BookingId>,
    Query(query): Query<ShowBookingQuery>,
) -> BookingAnswer {
    let tenant_id = caller.who.tenant_id;
    if let Some(as_of) = &query.as_of {
        let as_of: AsOf = as_of
            .parse()
            .map_err(|e: String| ApiError::invalid("as_of", e))?;
        let (booking, version) = audit::fold_as_of::<domain::Booking>(
            &app.pool,
            tenant_id.0,
            &booking_id.to_string(),
            as_of,
        )
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found("booking"))?;
        return Ok(axum::Json(Data {
            data: BookingView::of(&booking)?,
            version: u64::try_from(version).unwrap_or_default(),
            position: None,
        }));
    }
    caught_up::<Bookings>(&app.pool, query.min_position).await?;
    let (booking, version) =
        match projections::bookings::get_current(&app.pool, tenant_id.0, booking_id.0)
            .await
            .map_err(ApiError::internal)?
        {
            Some(found) => found,
            None => {
                let (booking, version) = app.commands.booking(tenant_id, booking_id).await?;
                (booking, i64::try_from(version).unwrap_or_default())
            }
        };
    Ok(axum::Json(Data {
        data: BookingView::of(&booking)?,
        version: u64::try_from(version).unwrap_or_default(),
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

/// The filters of `GET /bookings`; all optional, combined with AND.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListBookingsQuery {
    /// One branch.
    pub branch_id: Option<BranchId>,
    /// One staff member.
    pub staff_id: Option<StaffId>,
    /// One customer: E.164, or national with the tenant's default country code.
    #[schemars(regex(pattern = domain::values::patterns::PHONE_INPUT))]
    pub customer_phone: Option<String>,
    /// One status.
    pub status: Option<BookingStatus>,
    /// Starting at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Starting before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 200; 50 when absent.
    #[schemars(range(min = 1, max = 200))]
    pub limit: Option<u32>,
    /// Wait until the read model holds the command that answered with this position.
    #[schemars(range(min = 1))]
    pub min_position: Option<i64>,
}

/// A page of bookings in start order.
#[derive(Debug, Serialize, JsonSchema)]
pub struct BookingPage {
    /// The bookings.
    pub data: Vec<BookingView>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

/// Bookings from the read model, filtered, in start order, a page at a time.
pub(crate) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<ListBookingsQuery>,
) -> Result<axum::Json<BookingPage>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 200"));
    }
    let customer_phone = match &query.customer_phone {
        Some(phone) => {
            let (tenant, _) = app.commands.tenant(caller.who.tenant_id).await?;
            let parsed = PhoneNumber::parse(phone, tenant.settings.default_country_code)
                .map_err(|e| ApiError::invalid("customer_phone", e.to_string()))?;
            Some(parsed.as_str().to_owned())
        }
        None => None,
    };
    let filter = BookingFilter {
        tenant_id: caller.who.tenant_id.0,
        branch_id: query.branch_id.map(|b| b.0),
        staff_id: query.staff_id.map(|s| s.0),
        customer_phone,
        status: query.status,
        from: query.from,
        to: query.to,
        after: query.cursor.as_deref().map(parse_cursor).transpose()?,
        limit: i64::from(limit),
    };
    caught_up::<Bookings>(&app.pool, query.min_position).await?;
    let bookings = projections::bookings::list(&app.pool, &filter)
        .await
        .map_err(ApiError::internal)?;
    let next_cursor = (bookings.len() == usize::try_from(limit).unwrap_or(usize::MAX))
        .then(|| bookings.last().and_then(cursor_of))
        .flatten();
    let data = bookings
        .iter()
        .map(BookingView::of)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(axum::Json(BookingPage { data, next_cursor }))
}

/// A page cursor: the last booking's start (microseconds since the epoch) and id.
fn cursor_of(booking: &domain::Booking) -> Option<String> {
    let start = booking.appointment?.start.timestamp_micros();
    Some(format!("{start}_{}", booking.id?))
}

fn parse_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid), ApiError> {
    let bad = || ApiError::invalid("cursor", "not a cursor from a previous page");
    let (start, id) = cursor.split_once('_').ok_or_else(bad)?;
    let start = start
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
        .ok_or_else(bad)?;
    let id = Uuid::parse_str(id).map_err(|_| bad())?;
    Ok((start, id))
}
