//! The audit trail: a tenant's events with their metadata, a booking's history, and an NDJSON
//! export, all in store order and all limited to the caller's tenant.

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::Response;
use axum::routing::get;
use chrono::{DateTime, Utc};
use domain::values::BookingId;
use projections::audit::{self, AuditFilter};
use projections::event::StoredEvent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::{ApiError, Path, Query};
use crate::state::AppState;

/// `/audit/…` and `/bookings/{id}/history`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/audit/events", get(events))
        .route("/audit/export", get(export))
        .route("/bookings/{booking_id}/history", get(history))
}

/// The filters of `GET /audit/events` and `GET /audit/export`; all optional.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// `Tenant`, `Staff` or `Booking`.
    pub aggregate_type: Option<String>,
    /// One aggregate's id.
    pub aggregate_id: Option<String>,
    /// One event type, e.g. `BookingCancelled`.
    pub event_type: Option<String>,
    /// Recorded at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Recorded before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// Only events after this position.
    pub from_position: Option<i64>,
    /// `next_cursor` of the previous page (ignored by the export).
    pub cursor: Option<String>,
    /// Page size, 1 to 1000; 100 when absent (ignored by the export).
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
}

/// A page of events in store order.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AuditPage {
    /// The events.
    pub data: Vec<StoredEvent>,
    /// Pass as `cursor` for the next page; absent on the last one.
    pub next_cursor: Option<String>,
}

impl AuditQuery {
    fn filter(&self, caller: &Caller, limit: u32) -> Result<AuditFilter, ApiError> {
        let cursor =
            match &self.cursor {
                Some(c) => Some(c.parse::<i64>().map_err(|_| {
                    ApiError::invalid("cursor", "not a cursor from a previous page")
                })?),
                None => None,
            };
        Ok(AuditFilter {
            tenant_id: caller.who.tenant_id.0,
            aggregate_type: self.aggregate_type.clone(),
            aggregate_id: self.aggregate_id.clone(),
            event_type: self.event_type.clone(),
            from: self.from,
            to: self.to,
            after: cursor.or(self.from_position).unwrap_or(0).max(0),
            limit: i64::from(limit),
            unsettled: false,
        })
    }
}

/// The tenant's events, filtered, a page at a time.
async fn events(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be between 1 and 1000"));
    }
    let data = audit::events(&app.pool, &query.filter(&caller, limit)?)
        .await
        .map_err(ApiError::internal)?;
    let next_cursor = (data.len() == usize::try_from(limit).unwrap_or(usize::MAX))
        .then(|| data.last().map(|e| e.position.to_string()))
        .flatten();
    Ok(axum::Json(AuditPage { data, next_cursor }))
}

/// Every event of one booking of the tenant, oldest first.
async fn history(
    State(app): State<AppState>,
    caller: Caller,
    Path(booking_id): Path<BookingId>,
) -> Result<axum::Json<AuditPage>, ApiError> {
    let filter = AuditFilter {
        tenant_id: caller.who.tenant_id.0,
        aggregate_type: Some("Booking".to_owned()),
        aggregate_id: Some(booking_id.to_string()),
        limit: 10_000,
        unsettled: true,
        ..AuditFilter::default()
    };
    let data = audit::events(&app.pool, &filter)
        .await
        .map_err(ApiError::internal)?;
    if data.is_empty() {
        return Err(ApiError::not_found("booking"));
    }
    Ok(axum::Json(AuditPage {
        data,
        next_cursor: None,
    }))
}

/// Events per page of the export.
const EXPORT_PAGE: u32 = 1000;

/// All the tenant's events matching the filters, one JSON object per line, streamed.
async fn export(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ApiError> {
    let first = query.filter(&caller, EXPORT_PAGE)?;
    let pool = app.pool.clone();
    let pages = futures::stream::try_unfold(Some(first), move |filter| {
        let pool = pool.clone();
        async move {
            let Some(mut filter) = filter else {
                return Ok::<_, sqlx::Error>(None);
            };
            let page = audit::events(&pool, &filter).await?;
            let full = page.len() == usize::try_from(EXPORT_PAGE).unwrap_or(usize::MAX);
            let mut lines = Vec::new();
            for event in &page {
                serde_json::to_writer(&mut lines, event)
                    .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                lines.push(b'\n');
            }
            let next = match page.last() {
                Some(last) if full => {
                    filter.after = last.position;
                    Some(filter)
                }
                _ => None,
            };
            Ok(Some((bytes::Bytes::from(lines), next)))
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(pages))
        .map_err(ApiError::internal)
}
