//! Customers, derived from their bookings.

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use domain::values::PhoneNumber;
use projections::Bookings;
use projections::customers::{self, Customer, CustomerFilter};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::consistency::caught_up;
use crate::error::{ApiError, Path, Query};
use crate::reads;
use crate::state::AppState;

/// `/customers`, `/customers/{phone}`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/customers", get(list))
        .route("/customers/{phone}", get(show))
}

/// A page of customers.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomersQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 200; 50 when absent.
    #[schemars(range(min = 1, max = 200))]
    pub limit: Option<u32>,
    /// Wait until the read model holds the command that answered with this position.
    #[schemars(range(min = 1))]
    pub min_position: Option<i64>,
}

/// Customers by phone number.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CustomerPage {
    /// The customers.
    pub data: Vec<Customer>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<CustomersQuery>,
) -> Result<axum::Json<CustomerPage>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 200"));
    }
    if let Some(cursor) = &query.cursor
        && !cursor.starts_with('+')
    {
        return Err(ApiError::invalid(
            "cursor",
            "not a cursor from a previous page",
        ));
    }
    caught_up::<Bookings>(&app.pool, query.min_position).await?;
    let data = customers::list(
        &app.pool,
        &CustomerFilter {
            tenant_id: caller.who.tenant_id.0,
            phone: None,
            after: query.cursor,
            limit: i64::from(limit),
            now: caller.meta.now,
        },
    )
    .await
    .map_err(ApiError::internal)?;
    let next_cursor = (data.len() == usize::try_from(limit).unwrap_or(usize::MAX))
        .then(|| data.last().map(|c| c.phone.clone()))
        .flatten();
    Ok(axum::Json(CustomerPage { data, next_cursor }))
}

/// Wait for a command's effect.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadQuery {
    /// Wait until the read model holds the command that answered with this position.
    #[schemars(range(min = 1))]
    pub min_position: Option<i64>,
}

async fn show(
    State(app): State<AppState>,
    caller: Caller,
    Path(phone): Path<String>,
    Query(query): Query<ReadQuery>,
) -> Result<axum::Json<Customer>, ApiError> {
    let (tenant, _) = reads::tenant(&app, caller.who.tenant_id).await?;
    let phone = PhoneNumber::parse(&phone, tenant.settings.default_country_code)
        .map_err(|e| ApiError::invalid("phone", e.to_string()))?;
    caught_up::<Bookings>(&app.pool, query.min_position).await?;
    customers::list(
        &app.pool,
        &CustomerFilter {
            tenant_id: caller.who.tenant_id.0,
            phone: Some(phone.as_str().to_owned()),
            after: None,
            limit: 1,
            now: caller.meta.now,
        },
    )
    .await
    .map_err(ApiError::internal)?
    .pop()
    .map(axum::Json)
    .ok_or_else(|| ApiError::not_found("customer"))
}
