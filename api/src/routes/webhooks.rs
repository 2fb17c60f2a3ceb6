//! Inbound webhooks, authenticated by their sender's signature instead of an API key.
//!
//! Cal.com (`POST /api/v2/webhooks/calcom/{tenant_id}`): a booking made directly in Cal.com
//! blocks its host's time here, a cancellation frees it, a reschedule moves it. The signature
//! (`X-Cal-Signature-256`, HMAC-SHA256 of the raw body with the tenant's webhook secret) is
//! checked before the body is read; Cal.com signs no timestamp, so each delivery is
//! remembered by trigger and booking uid and a replay changes nothing.
//!
//! Twilio (`POST /api/v2/webhooks/twilio/status`): delivery reports of the text messages
//! sent, signed (`X-Twilio-Signature`) with the account's auth token over the public URL and
//! every form parameter; each report (message and status) is recorded once.
//!
//! Stripe (`POST /api/v2/webhooks/stripe`): a deposit paid confirms its booking, a failed
//! payment cancels it. `Stripe-Signature` (HMAC-SHA256 of `t.body` with the endpoint secret,
//! any of its `v1` values, at most 300 s old); each event id is taken once.

use adapters::calcom::BOOKING_ID_KEY;
use adapters::integrations::{CalendarSettings, CredentialError};
use adapters::webhooks::{calcom_signature_valid, stripe_signature_check, twilio_signature_valid};
use axum::Router;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use commands::{BlockTimeInput, CancelBookingInput, Channel, CommandError, CommandMeta, Principal};
use domain::values::{BlockId, StaffId, TenantId};
use domain::{DepositOutcome, StaffError};
use schemars::JsonSchema;
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{ApiError, Path};
use crate::state::AppState;

/// `/api/v2/webhooks…`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/calcom/{tenant_id}", post(calcom))
        .route("/twilio/status", post(twilio_status))
        .route("/stripe", post(stripe))
        .merge(super::retell::router())
}

/// What a delivery came to.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WebhookOutcome {
    /// `applied`, `duplicate` (handled before), `ignored` or `conflict` (an operator is told).
    pub status: String,
    /// Why, when not applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl WebhookOutcome {
    pub(crate) fn new(status: &str, reason: Option<&str>) -> Self {
        Self {
            status: status.to_owned(),
            reason: reason.map(str::to_owned),
        }
    }
}

/// A Cal.com delivery: `{"triggerEvent", "createdAt", "payload"}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Delivery {
    trigger_event: String,
    payload: Payload,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    uid: Option<String>,
    start_time: Option<DateTime<Utc>>,
    end_time: Option<DateTime<Utc>>,
    organizer: Option<Organizer>,
    #[serde(default)]
    metadata: Value,
    reschedule_uid: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Organizer {
    id: Option<i64>,
}

fn refused(message: &str) -> ApiError {
    ApiError::unauthorized(message.to_owned())
}

async fn calcom(
    State(app): State<AppState>,
    Path(tenant_id): Path<TenantId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<WebhookOutcome>, ApiError> {
    let settings = verified(&app, tenant_id, &headers, &body).await?;
    let delivery: Delivery = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid("body", format!("not a Cal.com delivery: {e}")))?;
    let Some(uid) = delivery.payload.uid.clone() else {
        return Ok(axum::Json(WebhookOutcome::new(
            "ignored",
            Some("no booking uid"),
        )));
    };
    let key = format!("{}:{uid}", delivery.trigger_event);
    if seen(&app, "calcom", tenant_id, &key).await? {
        return Ok(axum::Json(WebhookOutcome::new("duplicate", None)));
    }
    let meta = CommandMeta {
        tenant_id,
        correlation_id: Uuid::now_v7(),
        causation_id: Uuid::new_v5(
            &Uuid::NAMESPACE_URL,
            format!("calcom:{tenant_id}:{key}").as_bytes(),
        ),
        actor: "webhook:calcom".to_owned(),
        source: Channel::Webhook,
        now: app.clock.now(),
    };
    let outcome = apply(&app, &meta, &settings, &delivery, &uid).await?;
    remember(&app, "calcom", tenant_id, &key, &outcome).await?;
    Ok(axum::Json(outcome))
}

/// The tenant's Cal.com settings, once the delivery's signature is its webhook secret's.
async fn verified(
    app: &AppState,
    tenant_id: TenantId,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<CalendarSettings, ApiError> {
    let signature = headers
        .get("x-cal-signature-256")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refused("X-Cal-Signature-256 is missing"))?;
    let (secrets, settings) = match app.accounts.open_calendar(tenant_id).await {
        Ok(Some(opened)) => opened,
        Ok(None) => return Err(refused("no Cal.com connection signs for this tenant")),
        Err(CredentialError::Database(_)) => return Err(ApiError::unavailable()),
        Err(e) => return Err(ApiError::internal(e)),
    };
    let secret = secrets
        .webhook_secret
        .ok_or_else(|| refused("this tenant has set no Cal.com webhook secret"))?;
    if !calcom_signature_valid(secret.as_bytes(), body, signature) {
        tracing::warn!(%tenant_id, "Cal.com webhook with a bad signature refused");
        return Err(refused("the signature does not match the body"));
    }
    Ok(settings)
}

/// The block a Cal.com booking takes on its host's calendar: one per booking uid.
fn block_of(tenant_id: TenantId, uid: &str) -> BlockId {
    BlockId(Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("calcom-booking:{tenant_id}:{uid}").as_bytes(),
    ))
}

async fn apply(
    app: &AppState,
    meta: &CommandMeta,
    settings: &CalendarSettings,
    delivery: &Delivery,
    uid: &str,
) -> Result<WebhookOutcome, ApiError> {
    let payload = &delivery.payload;
    if payload.metadata.get(BOOKING_ID_KEY).is_some() {
        return Ok(WebhookOutcome::new(
            "ignored",
            Some("a booking of ours, mirrored"),
        ));
    }
    let host = payload.organizer.as_ref().and_then(|o| o.id);
    let Some(staff) = settings
        .hosts
        .iter()
        .find(|h| Some(h.host_id) == host)
        .map(|h| h.staff_id)
    else {
        return Ok(WebhookOutcome::new(
            "ignored",
            Some("the organizer is not mapped to a staff member"),
        ));
    };
    match delivery.trigger_event.as_str() {
        "BOOKING_CREATED" => block(app, meta, staff, uid, payload).await,
        "BOOKING_CANCELLED" => {
            unblock(app, meta, staff, uid).await?;
            Ok(WebhookOutcome::new("applied", None))
        }
        "BOOKING_RESCHEDULED" => {
            if let Some(old) = &payload.reschedule_uid {
                unblock(app, meta, staff, old).await?;
            }
            block(app, meta, staff, uid, payload).await
        }
        _ => Ok(WebhookOutcome::new(
            "ignored",
            Some("a trigger that does not change availability"),
        )),
    }
}

async fn block(
    app: &AppState,
    meta: &CommandMeta,
    staff: StaffId,
    uid: &str,
    payload: &Payload,
) -> Result<WebhookOutcome, ApiError> {
    let (Some(start), Some(end)) = (payload.start_time, payload.end_time) else {
        return Err(ApiError::invalid(
            "payload.startTime",
            "a booking needs startTime and endTime",
        ));
    };
    let who = Principal::internal(meta.tenant_id);
    let input = BlockTimeInput {
        start,
        end,
        reason: format!("Cal.com booking {uid}"),
    };
    let block_id = block_of(meta.tenant_id, uid);
    match app
        .commands
        .block_staff_time(&who, meta, staff, block_id, input)
        .await
    {
        Ok(_) | Err(CommandError::Staff(StaffError::BlockExists(_))) => {
            Ok(WebhookOutcome::new("applied", None))
        }
        Err(CommandError::Staff(StaffError::BlockOverlapsBookings(ours))) => {
            let message = format!(
                "Cal.com booking {uid} ({start} to {end}) overlaps bookings {ours:?} of staff member {staff}"
            );
            tracing::error!(tenant_id = %meta.tenant_id, %message, "calendar conflict");
            sqlx::query(
                "INSERT INTO operator_alerts (id, tenant_id, source, subject, message)
                 VALUES ($1, $2, 'webhook:calcom', $3, $4) ON CONFLICT (id) DO NOTHING",
            )
            .bind(meta.causation_id)
            .bind(meta.tenant_id.0)
            .bind(format!("staff member {staff}"))
            .bind(&message)
            .execute(&app.pool)
            .await
            .map_err(|_| ApiError::unavailable())?;
            Ok(WebhookOutcome::new(
                "conflict",
                Some("the time overlaps bookings made here; an operator is alerted"),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

async fn unblock(
    app: &AppState,
    meta: &CommandMeta,
    staff: StaffId,
    uid: &str,
) -> Result<(), ApiError> {
    let who = Principal::internal(meta.tenant_id);
    match app
        .commands
        .unblock_staff_time(&who, meta, staff, block_of(meta.tenant_id, uid))
        .await
    {
        Ok(_) | Err(CommandError::Staff(StaffError::BlockNotFound(_))) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Records a Twilio delivery report on the message it is about.
async fn twilio_status(
    State(app): State<AppState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<WebhookOutcome>, ApiError> {
    let callbacks = app
        .twilio_callbacks
        .as_ref()
        .ok_or_else(|| refused("SMS is not configured on this server"))?;
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refused("X-Twilio-Signature is missing"))?;
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    if !twilio_signature_valid(
        callbacks.auth_token.expose_secret(),
        &signed_url(callbacks, &uri, &headers),
        &params,
        signature,
    ) {
        tracing::warn!("Twilio callback with a bad signature refused");
        return Err(refused("the signature does not match the request"));
    }
    let field = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(sid), Some(status)) = (field("MessageSid"), field("MessageStatus")) else {
        return Err(ApiError::invalid(
            "MessageSid",
            "a delivery report names the message and its status",
        ));
    };
    let recorded: Option<uuid::Uuid> = sqlx::query_scalar(
        "WITH report AS (
             INSERT INTO webhook_receipts (source, tenant_id, key, outcome)
             SELECT 'twilio', tenant_id, $1 || ':' || $2, 'applied' FROM notifications
             WHERE channel = 'sms' AND provider_id = $1
             ON CONFLICT DO NOTHING RETURNING tenant_id)
         UPDATE notifications SET delivery_status = $2, delivery_error = $3,
             delivered_at = CASE WHEN $2 = 'delivered' THEN now() ELSE delivered_at END
         WHERE channel = 'sms' AND provider_id = $1 AND EXISTS (SELECT 1 FROM report)
         RETURNING tenant_id",
    )
    .bind(sid)
    .bind(status)
    .bind(field("ErrorCode"))
    .fetch_optional(&app.pool)
    .await
    .map_err(|_| ApiError::unavailable())?;
    Ok(axum::Json(match recorded {
        Some(_) => WebhookOutcome::new("applied", None),
        None => WebhookOutcome::new(
            "ignored",
            Some("an unknown message, or a report recorded before"),
        ),
    }))
}

/// The URL Twilio signed: the one it called, as configured publicly, with the query string.
fn signed_url(
    callbacks: &crate::integrations::TwilioCallbacks,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
) -> String {
    match (&callbacks.url, uri.query()) {
        (Some(url), Some(query)) => format!("{url}?{query}"),
        (Some(url), None) => url.clone(),
        (None, _) => {
            let host = headers
                .get("host")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            format!("http://{host}{uri}")
        }
    }
}

/// Whether a delivery was handled before.
pub(crate) async fn seen(
    app: &AppState,
    source: &str,
    tenant: TenantId,
    key: &str,
) -> Result<bool, ApiError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM webhook_receipts WHERE source = $1 AND tenant_id = $2 AND key = $3)",
    )
    .bind(source)
    .bind(tenant.0)
    .bind(key)
    .fetch_one(&app.pool)
    .await
    .map_err(|_| ApiError::unavailable())
}

/// Remembers a handled delivery, after its effect (which is idempotent: a delivery that
/// failed half-way is applied in full when it comes again).
pub(crate) async fn remember(
    app: &AppState,
    source: &str,
    tenant: TenantId,
    key: &str,
    outcome: &WebhookOutcome,
) -> Result<(), ApiError> {
    sqlx::query(
        "INSERT INTO webhook_receipts (source, tenant_id, key, outcome) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(source)
    .bind(tenant.0)
    .bind(key)
    .bind(&outcome.status)
    .execute(&app.pool)
    .await
    .map_err(|_| ApiError::unavailable())?;
    Ok(())
}

/// A Stripe event whose signature holds, parsed.
fn verified_stripe_event(
    app: &AppState,
    headers: &HeaderMap,
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Value, ApiError> {
    let secret = app
        .stripe_webhook_secret
        .as_ref()
        .ok_or_else(|| refused("Stripe is not configured on this server"))?;
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| refused("Stripe-Signature is missing"))?;
    stripe_signature_check(
        secret.expose_secret(),
        body,
        header,
        now.timestamp(),
        STRIPE_TOLERANCE_SECONDS,
    )
    .map_err(|e| refused(&e.to_string()))?;
    let event: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("not a Stripe event: {e}")))?;
    Ok(event)
}

/// How old a Stripe signature may be.
const STRIPE_TOLERANCE_SECONDS: i64 = 300;

/// A deposit paid confirms its booking; a failed payment cancels it.
async fn stripe(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<WebhookOutcome>, ApiError> {
    let now = app.clock.now();
    let event = verified_stripe_event(&app, &headers, &body, now)?;
    let (Some(id), Some(kind)) = (event["id"].as_str(), event["type"].as_str()) else {
        return Err(ApiError::invalid(
            "body",
            "a Stripe event has an id and a type",
        ));
    };
    let object = &event["data"]["object"];
    let uuid = |field: &str| {
        object["metadata"][field]
            .as_str()
            .and_then(|v| Uuid::parse_str(v).ok())
    };
    let (Some(booking), Some(tenant)) = (uuid("booking_id"), uuid("tenant_id")) else {
        return Ok(axum::Json(WebhookOutcome::new(
            "ignored",
            Some("not a deposit of a booking here"),
        )));
    };
    let tenant_id = TenantId(tenant);
    if seen(&app, "stripe", tenant_id, id).await? {
        return Ok(axum::Json(WebhookOutcome::new("duplicate", None)));
    }
    let meta = CommandMeta {
        tenant_id,
        correlation_id: Uuid::now_v7(),
        causation_id: Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("stripe:{id}").as_bytes()),
        actor: "webhook:stripe".to_owned(),
        source: Channel::Webhook,
        now,
    };
    let booking = domain::values::BookingId(booking);
    let intent = object["id"].as_str().unwrap_or_default().to_owned();
    let outcome = match kind {
        "payment_intent.succeeded" => deposit_paid(&app, &meta, booking, intent).await?,
        "payment_intent.payment_failed" => {
            let reason = object["last_payment_error"]["message"]
                .as_str()
                .unwrap_or("the payment failed")
                .to_owned();
            deposit_failed(&app, &meta, booking, reason).await?
        }
        _ => WebhookOutcome::new("ignored", Some("an event deposits do not follow")),
    };
    remember(&app, "stripe", tenant_id, id, &outcome).await?;
    Ok(axum::Json(outcome))
}

/// Records the payment and confirms the booking with its reservation; a booking no longer
/// held (it lapsed, or its slot went) is cancelled and the saga pays the deposit back.
async fn deposit_paid(
    app: &AppState,
    meta: &CommandMeta,
    booking: domain::values::BookingId,
    payment_intent: String,
) -> Result<WebhookOutcome, ApiError> {
    let paid = DepositOutcome::Paid { payment_intent };
    match app.commands.record_deposit(meta, booking, paid).await {
        Ok(_) => {}
        Err(CommandError::NotFound(_)) => {
            return Ok(WebhookOutcome::new("ignored", Some("no such booking")));
        }
        Err(e) => return Err(e.into()),
    }
    let who = Principal::internal(meta.tenant_id);
    match app.commands.confirm_booking(&who, meta, booking).await {
        Ok(_) => Ok(WebhookOutcome::new("applied", None)),
        Err(CommandError::Booking(_)) => Ok(WebhookOutcome::new(
            "applied",
            Some("the booking is no longer held; the deposit is paid back"),
        )),
        Err(CommandError::Staff(_)) => {
            let input = CancelBookingInput {
                reason: "the slot was released before the deposit arrived".to_owned(),
            };
            app.commands
                .cancel_booking(&who, meta, booking, input)
                .await?;
            Ok(WebhookOutcome::new(
                "applied",
                Some("the slot was gone; the booking is cancelled and the deposit paid back"),
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Records the failure and cancels the booking, which frees its slot.
async fn deposit_failed(
    app: &AppState,
    meta: &CommandMeta,
    booking: domain::values::BookingId,
    reason: String,
) -> Result<WebhookOutcome, ApiError> {
    match app
        .commands
        .record_deposit(meta, booking, DepositOutcome::Failed { reason })
        .await
    {
        Ok(_) => {}
        Err(CommandError::NotFound(_)) => {
            return Ok(WebhookOutcome::new("ignored", Some("no such booking")));
        }
        Err(e) => return Err(e.into()),
    }
    let who = Principal::internal(meta.tenant_id);
    let input = CancelBookingInput {
        reason: "the deposit payment failed".to_owned(),
    };
    match app
        .commands
        .cancel_booking(&who, meta, booking, input)
        .await
    {
        Ok(_) | Err(CommandError::Booking(_)) => Ok(WebhookOutcome::new("applied", None)),
        Err(e) => Err(e.into()),
    }
}
