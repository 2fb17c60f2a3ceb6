//! The one place errors become HTTP: the error envelope of the original design, its codes,
//! and our own JSON and path extractors so that axum's rejections use the envelope too.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use commands::CommandError;
use domain::{BookingError, StaffError, TenantError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// The error types of the envelope, each with its fixed numeric code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorType {
    /// 1001: the request is malformed or breaks a rule (400, 405, 413, 415, 422).
    ValidationFailed,
    /// 1002: no such resource for this tenant (404).
    ResourceNotFound,
    /// 1003: missing or bad credentials (401), or a role without the permission (403).
    PermissionDenied,
    /// 1004: too many requests (429).
    RateLimitExceeded,
    /// 1005: a dependency is down (503).
    ServiceUnavailable,
    /// 1006: the plan's limit is reached (403).
    TenantQuotaExceeded,
    /// 1007: the change could not be made (409), or failed on our side (500).
    TransactionFailed,
    /// 1008: an external system failed (502).
    IntegrationError,
    /// 1009: the slot is taken, or no qualified staff member is free (409).
    SlotUnavailable,
    /// 1010: concurrent changes kept winning; retry (409).
    VersionConflict,
    /// 1011: the resource's state does not allow the change (409).
    InvalidStateTransition,
}

impl ErrorType {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Self::ValidationFailed => 1001,
            Self::ResourceNotFound => 1002,
            Self::PermissionDenied => 1003,
            Self::RateLimitExceeded => 1004,
            Self::ServiceUnavailable => 1005,
            Self::TenantQuotaExceeded => 1006,
            Self::TransactionFailed => 1007,
            Self::IntegrationError => 1008,
            Self::SlotUnavailable => 1009,
            Self::VersionConflict => 1010,
            Self::InvalidStateTransition => 1011,
        }
    }
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Envelope type.
    pub kind: ErrorType,
    /// For people.
    pub message: String,
    /// For programs: the field, limits, ids.
    pub details: Value,
}

/// The body of every error: `{"error": {...}}`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ErrorBody,
}

/// The error itself.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    /// 1001 … 1011.
    pub code: u16,
    /// The type name.
    #[serde(rename = "type")]
    pub kind: ErrorType,
    /// What went wrong, for people.
    pub message: String,
    /// Specifics, for programs.
    pub details: Value,
    /// When, RFC 3339.
    pub timestamp: String,
}

impl ApiError {
    /// An error with no details.
    pub fn new(status: StatusCode, kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            message: message.into(),
            details: json!({}),
        }
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// 422 VALIDATION_FAILED on a field.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::ValidationFailed,
            message,
        )
        .with_details(json!({ "field": field }))
    }

    /// 404 RESOURCE_NOT_FOUND.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            ErrorType::ResourceNotFound,
            format!("{what} not found"),
        )
    }

    /// 401 PERMISSION_DENIED.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::PermissionDenied,
            message,
        )
    }

    /// 503 SERVICE_UNAVAILABLE.
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::ServiceUnavailable,
            "a dependency is unavailable; retry shortly",
        )
        .with_details(json!({ "retry_after": 1 }))
    }

    /// 503 SERVICE_UNAVAILABLE: a read model has not caught up with a command's position yet.
    pub fn behind(position: i64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::ServiceUnavailable,
            format!("the read model has not reached position {position} yet; retry shortly"),
        )
        .with_details(json!({ "retry_after": 1, "min_position": position }))
    }

    /// 500, with nothing internal in the body; the cause is logged here, once.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error.message = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::TransactionFailed,
            "internal error",
        )
    }

    /// The envelope as JSON.
    pub fn body(&self) -> Value {
        json!({
            "error": {
                "code": self.kind.code(),
                "type": self.kind,
                "message": self.message,
                "details": self.details,
                "timestamp": Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        if self.kind == ErrorType::ServiceUnavailable {
            response
                .headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        if adapters::event_store::is_connection_error(&error) {
            tracing::warn!(error.message = %error, "database unavailable");
            return Self::unavailable();
        }
        Self::internal(error)
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn tenant_error(e: &TenantError) -> (u16, ErrorType) {
    use TenantError as E;
    match e {
        E::NotRegistered
        | E::BranchNotFound(_)
        | E::ServiceNotFound(_)
        | E::PhoneNumberNotAssigned => (404, ErrorType::ResourceNotFound),
        E::BranchLimitReached { .. } | E::PlanTooSmall { .. } => {
            (403, ErrorType::TenantQuotaExceeded)
        }
        E::AlreadyRegistered
        | E::BranchExists(_)
        | E::ServiceExists(_)
        | E::PhoneNumberTaken(_) => (409, ErrorType::TransactionFailed),
        E::BranchAlreadyActive(_) | E::BranchAlreadyInactive(_) | E::ServiceRetired(_) => {
            (409, ErrorType::InvalidStateTransition)
        }
        _ => (422, ErrorType::ValidationFailed),
    }
}

fn staff_error(e: &StaffError) -> (u16, ErrorType) {
    use StaffError as E;
    match e {
        E::NotHired | E::BlockNotFound(_) | E::HoldNotFound(_) => {
            (404, ErrorType::ResourceNotFound)
        }
        E::StaffLimitReached { .. } => (403, ErrorType::TenantQuotaExceeded),
        E::AlreadyHired | E::BlockExists(_) | E::BlockOverlapsBookings(_) => {
            (409, ErrorType::TransactionFailed)
        }
        E::Inactive | E::HasUpcomingBookings(_) => (409, ErrorType::InvalidStateTransition),
        E::SlotUnavailable | E::HoldExpired(_) => (409, ErrorType::SlotUnavailable),
        _ => (422, ErrorType::ValidationFailed),
    }
}

fn booking_error(e: &BookingError) -> (u16, ErrorType) {
    use BookingError as E;
    match e {
        E::NotFound | E::BranchNotFound(_) | E::ServiceNotFound(_) => {
            (404, ErrorType::ResourceNotFound)
        }
        E::MonthlyLimitReached(_) => (403, ErrorType::TenantQuotaExceeded),
        E::AlreadyExists => (409, ErrorType::TransactionFailed),
        E::IllegalTransition { .. } | E::NotStartedYet | E::NoDeposit | E::DepositNotPaid => {
            (409, ErrorType::InvalidStateTransition)
        }
        _ => (422, ErrorType::ValidationFailed),
    }
}

impl From<CommandError> for ApiError {
    fn from(error: CommandError) -> Self {
        let message = error.to_string();
        let (code, kind) = match &error {
            CommandError::Tenant(e) => return Self::domain(tenant_error(e), message, e),
            CommandError::Staff(e) => return Self::domain(staff_error(e), message, e),
            CommandError::Booking(e) => return Self::domain(booking_error(e), message, e),
            CommandError::Invalid { field, .. } => return Self::invalid(field, message),
            CommandError::NotFound(what) => return Self::not_found(what),
            CommandError::Forbidden(p) => {
                return Self::new(StatusCode::FORBIDDEN, ErrorType::PermissionDenied, message)
                    .with_details(json!({ "permission": p.as_str() }));
            }
            CommandError::NoStaffAvailable => (409, ErrorType::SlotUnavailable),
            CommandError::Conflict | CommandError::Outdated => (409, ErrorType::VersionConflict),
            CommandError::Unavailable(cause) => {
                tracing::warn!(error.message = %cause, "event store unavailable");
                return Self::unavailable();
            }
            CommandError::Internal(cause) => return Self::internal(cause),
        };
        Self::new(status(code), kind, message)
    }
}

impl ApiError {
    /// A refusal by a domain rule; `details.reason` names the rule (e.g. `TooShortNotice`).
    fn domain(
        (code, kind): (u16, ErrorType),
        message: String,
        rule: &impl std::fmt::Debug,
    ) -> Self {
        let debug = format!("{rule:?}");
        let reason = debug.split(['(', ' ', '{']).next().unwrap_or_default();
        Self::new(status(code), kind, message).with_details(json!({ "reason": reason }))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match &rejection {
            JsonRejection::JsonSyntaxError(_) => StatusCode::BAD_REQUEST,
            JsonRejection::JsonDataError(_) => StatusCode::UNPROCESSABLE_ENTITY,
            other => other.status(),
        };
        Self::new(status, ErrorType::ValidationFailed, rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorType::ValidationFailed,
            rejection.body_text(),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorType::ValidationFailed,
            rejection.body_text(),
        )
    }
}

/// `axum::Json` whose rejections use the envelope, and which takes a whole number written with
/// a fraction (`60.0`) where an integer is expected: JSON Schema's `integer`, which the API
/// document uses, admits it, and clients that hold every number as a float send it.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(WholeNumbers(value)) = axum::Json::from_request(request, state).await?;
        Ok(Self(value))
    }
}

/// `T` read from JSON as it is, or, where that fails, again with its whole-valued floats made
/// integers: the `Value` tree is built only for a body that needs it. A refusal names the
/// field, as axum's own does.
struct WholeNumbers<T>(T);

impl<'de, T: DeserializeOwned> Deserialize<'de> for WholeNumbers<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        if let Ok(read) = serde_json::from_str(raw.get()) {
            return Ok(Self(read));
        }
        let mut value: Value = serde_json::from_str(raw.get()).map_err(serde::de::Error::custom)?;
        make_whole_numbers_integers(&mut value);
        serde_path_to_error::deserialize(value)
            .map(Self)
            .map_err(serde::de::Error::custom)
    }
}

/// Replaces every float without a fraction (within the 64-bit integers) by that integer. A
/// field of type `f64` reads an integer as well, so only integer fields see a difference.
fn make_whole_numbers_integers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(whole) = n.as_f64().and_then(whole_number) {
                *value = whole;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(make_whole_numbers_integers),
        Value::Object(fields) => fields.values_mut().for_each(make_whole_numbers_integers),
        _ => {}
    }
}

#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "only whole floats strictly inside the integer range are cast, exactly"
)]
fn whole_number(f: f64) -> Option<Value> {
    if f.fract() != 0.0 || !f.is_finite() {
        return None;
    }
    if (0.0..u64::MAX as f64).contains(&f) {
        Some(Value::from(f as u64))
    } else if (i64::MIN as f64..0.0).contains(&f) {
        Some(Value::from(f as i64))
    } else {
        None
    }
}

/// `axum::extract::Path` whose rejections use the envelope.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query` whose rejections use the envelope.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// 404 for unknown routes.
pub async fn route_not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorType::ResourceNotFound,
        "no such route",
    )
}

/// 405 for known routes with another method.
pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorType::ValidationFailed,
        "method not allowed on this route",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_slot_is_409_slot_unavailable() {
        let e = ApiError::from(CommandError::Staff(StaffError::SlotUnavailable));
        assert_eq!((e.status, e.kind.code()), (StatusCode::CONFLICT, 1009));
    }

    #[test]
    fn a_quota_is_403_tenant_quota_exceeded() {
        let e = ApiError::from(CommandError::Booking(BookingError::MonthlyLimitReached(
            500,
        )));
        assert_eq!(
            (e.status, e.kind),
            (StatusCode::FORBIDDEN, ErrorType::TenantQuotaExceeded)
        );
    }

    async fn read<T: DeserializeOwned>(body: &'static str) -> Result<T, ApiError> {
        let request = axum::http::Request::builder()
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body))
            .unwrap();
        Json::<T>::from_request(request, &()).await.map(|Json(t)| t)
    }

    #[derive(Debug, PartialEq, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Service {
        duration_minutes: u32,
        price_minor: i64,
        lat: f64,
        breaks: Vec<u16>,
    }

    #[tokio::test]
    async fn whole_numbers_written_as_floats_are_taken_where_integers_are_expected() {
        let service: Service = read(
            r#"{"duration_minutes": 60.0, "price_minor": -2500.0, "lat": 52.0, "breaks": [15.0, 30]}"#,
        )
        .await
        .unwrap();
        assert_eq!(
            service,
            Service {
                duration_minutes: 60,
                price_minor: -2500,
                lat: 52.0,
                breaks: vec![15, 30]
            }
        );
        let fraction = read::<Service>(
            r#"{"duration_minutes": 60, "price_minor": 0, "lat": 52.5, "breaks": [15.5]}"#,
        )
        .await
        .unwrap_err();
        assert_eq!(fraction.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            fraction
                .message
                .contains("breaks[0]: invalid type: floating point `15.5`"),
            "{}",
            fraction.message
        );
        let unknown = read::<Service>(r#"{"duration_minutes": 60, "extra": 1}"#)
            .await
            .unwrap_err();
        assert!(
            unknown.message.contains("unknown field `extra`"),
            "{}",
            unknown.message
        );
        let syntax = read::<Service>(r#"{"duration_minutes": 60.0"#)
            .await
            .unwrap_err();
        assert_eq!(syntax.status, StatusCode::BAD_REQUEST);
        assert!(read::<u8>("256.0").await.is_err());
        assert!(read::<u64>("1e300").await.is_err());
    }

    #[test]
    fn internal_errors_say_nothing_internal() {
        let e = ApiError::from(CommandError::Internal("password=hunter2".to_owned()));
        assert!(!e.body().to_string().contains("hunter2"));
    }
}
