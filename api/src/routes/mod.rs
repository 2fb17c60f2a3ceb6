//! Route groups, each with its own `router()`.

pub mod admin;
pub mod alerts;
pub mod audit;
pub mod availability;
pub mod bookings;
pub mod branches;
pub mod call_log;
pub mod customers;
pub mod dashboard;
pub mod health;
pub mod integrations;
pub mod live;
pub mod projections;
pub mod retell;
pub mod routing;
pub mod services;
pub mod staff;
pub mod tenant;
pub mod webhooks;

use axum::http::StatusCode;

/// 201 with a JSON body.
pub(crate) fn created<T: serde::Serialize>(body: T) -> (StatusCode, axum::Json<T>) {
    (StatusCode::CREATED, axum::Json(body))
}
