//! Cal.com API v2 over HTTP: bookings created, looked up, moved and cancelled, with the
//! `cal-api-version` the bookings endpoints need, a timeout per call and the integration's
//! circuit breaker. Retries belong to the saga, which looks before it acts again (Cal.com
//! takes no idempotency key).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use domain::values::BookingId;
use reqwest::{Method, StatusCode};
use sagas::ports::{Calendar, CalendarAccount, CalendarBooking, PortError, RemoteBooking};
use serde_json::{Value, json};

use crate::circuit::CircuitBreaker;
use crate::outbound::{self, retry_wait, seconds_header};

/// The version header the bookings endpoints are spoken in.
pub const BOOKINGS_API_VERSION: &str = "2024-08-13";

/// The metadata key that carries our booking id.
pub const BOOKING_ID_KEY: &str = "bookingd_booking_id";

/// The metadata key that carries our tenant id.
pub const TENANT_ID_KEY: &str = "bookingd_tenant_id";

/// A Cal.com client.
#[derive(Debug, Clone)]
pub struct CalCom {
    http: reqwest::Client,
    base_url: String,
    timeout: Duration,
    breaker: Arc<CircuitBreaker>,
}

impl CalCom {
    /// A client for `base_url` (`https://api.cal.com`), cutting each call at `timeout`.
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        timeout: Duration,
        breaker: Arc<CircuitBreaker>,
    ) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            timeout,
            breaker,
        }
    }

    /// One call: the `data` of a success, or why not.
    async fn call(
        &self,
        account: &CalendarAccount,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
    ) -> Result<Value, PortError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(&account.api_key)
            .header("cal-api-version", BOOKINGS_API_VERSION);
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        outbound::send(&self.breaker, "Cal.com", request, self.timeout, classify).await
    }
}

/// A response's `data`, or the error its status and message stand for.
async fn classify(response: reqwest::Response) -> Result<Value, PortError> {
    let status = response.status();
    let reset = seconds_header(&response, &["x-ratelimit-reset-default", "retry-after"]);
    let body: Value = match response.json().await {
        Ok(body) => body,
        Err(e) if status.is_success() => {
            return Err(PortError::Transient(format!(
                "Cal.com answered {status} with an unreadable body: {e}"
            )));
        }
        Err(_) => Value::Null,
    };
    if status.is_success() {
        return Ok(body.get("data").cloned().unwrap_or(Value::Null));
    }
    let message = body["error"]["message"]
        .as_str()
        .or_else(|| body["message"].as_str())
        .unwrap_or_default()
        .to_owned();
    let described = format!("Cal.com answered {status}: {message}");
    Err(match status {
        StatusCode::TOO_MANY_REQUESTS => PortError::RateLimited(retry_wait(reset, 60)),
        s if s.is_server_error() || s == StatusCode::REQUEST_TIMEOUT => {
            PortError::Transient(described)
        }
        StatusCode::BAD_REQUEST if slot_taken(&message) => PortError::SlotTaken(message),
        _ => PortError::Rejected(described),
    })
}

/// Cal.com's messages for a host who is busy or unavailable at the requested time.
fn slot_taken(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    message.contains("already has booking") || message.contains("is not available")
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A booking as the API returns it.
fn remote(data: &Value) -> Result<RemoteBooking, PortError> {
    let unreadable = |what: &str| PortError::Transient(format!("Cal.com booking without {what}"));
    let uid = data["uid"].as_str().ok_or_else(|| unreadable("uid"))?;
    let start = data["start"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .ok_or_else(|| unreadable("a start"))?;
    Ok(RemoteBooking {
        uid: uid.to_owned(),
        start: start.with_timezone(&Utc),
        event_type_id: data["eventTypeId"].as_i64(),
        cancelled: data["status"].as_str() == Some("cancelled"),
        rescheduled_to: data["rescheduledToUid"].as_str().map(str::to_owned),
    })
}

#[async_trait]
impl Calendar for CalCom {
    async fn create(
        &self,
        account: &CalendarAccount,
        booking: &CalendarBooking,
    ) -> Result<RemoteBooking, PortError> {
        let mut attendee = json!({
            "name": booking.name,
            "timeZone": booking.time_zone,
            "phoneNumber": booking.phone,
            "language": booking.language,
        });
        if let Some(email) = &booking.email {
            attendee["email"] = json!(email);
        }
        let mut body = json!({
            "start": rfc3339(booking.start),
            "eventTypeId": booking.event_type_id,
            "attendee": attendee,
            "metadata": {
                BOOKING_ID_KEY: booking.booking_id.to_string(),
                TENANT_ID_KEY: booking.tenant_id.to_string(),
            },
        });
        if let Some(notes) = &booking.notes {
            body["bookingFieldsResponses"] = json!({ "notes": notes });
        }
        let data = self
            .call(account, Method::POST, "/v2/bookings", &[], Some(body))
            .await?;
        remote(&data)
    }

    async fn find(
        &self,
        account: &CalendarAccount,
        booking_id: BookingId,
        event_type_id: i64,
        start: DateTime<Utc>,
    ) -> Result<Option<RemoteBooking>, PortError> {
        let query = [
            ("eventTypeId", event_type_id.to_string()),
            ("afterStart", rfc3339(start - chrono::Duration::days(1))),
            ("beforeEnd", rfc3339(start + chrono::Duration::days(2))),
            ("take", "250".to_owned()),
        ];
        let data = self
            .call(account, Method::GET, "/v2/bookings", &query, None)
            .await?;
        let ours = booking_id.to_string();
        data.as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["metadata"][BOOKING_ID_KEY].as_str() == Some(ours.as_str()))
            .map(remote)
            .find(|b| b.as_ref().map_or(true, |b| !b.cancelled))
            .transpose()
    }

    async fn get(&self, account: &CalendarAccount, uid: &str) -> Result<RemoteBooking, PortError> {
        let data = self
            .call(
                account,
                Method::GET,
                &format!("/v2/bookings/{uid}"),
                &[],
                None,
            )
            .await?;
        remote(&data)
    }

    async fn reschedule(
        &self,
        account: &CalendarAccount,
        uid: &str,
        start: DateTime<Utc>,
    ) -> Result<RemoteBooking, PortError> {
        let body = json!({ "start": rfc3339(start) });
        let data = self
            .call(
                account,
                Method::POST,
                &format!("/v2/bookings/{uid}/reschedule"),
                &[],
                Some(body),
            )
            .await?;
        remote(&data)
    }

    async fn cancel(
        &self,
        account: &CalendarAccount,
        uid: &str,
        reason: &str,
    ) -> Result<(), PortError> {
        let body = json!({ "cancellationReason": reason });
        self.call(
            account,
            Method::POST,
            &format!("/v2/bookings/{uid}/cancel"),
            &[],
            Some(body),
        )
        .await?;
        Ok(())
    }
}
