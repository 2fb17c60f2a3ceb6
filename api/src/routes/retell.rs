//! Retell AI, the voice agent answering the tenants' phones. Every request is signed with the
//! tenant's Retell API key (`x-retell-signature: v=<unix ms>,d=<hex HMAC-SHA256 of the raw
//! body followed by v>`, at most five minutes off) and is refused with 401 otherwise.
//!
//! * `POST /api/v2/webhooks/retell/{tenant_id}/inbound`: the inbound-call webhook. Routes the
//!   call (see `routing`) and answers within Retell's 10 s with the agent for the branch and
//!   dynamic variables: tenant, branch, services, opening hours, the wait.
//! * `POST /api/v2/webhooks/retell/{tenant_id}`: call webhooks. `call_started`, `call_ended`
//!   and `call_analyzed` are merged into the call log, once per call and event. A call that
//!   ends releases the holds it did not confirm; an analysed call whose extracted details
//!   name a service, a time and a name becomes a phone booking, or a callback task when the
//!   details are incomplete or the slot is gone.
//! * `POST /api/v2/webhooks/retell/{tenant_id}/functions/{name}`: the agent's mid-call tools
//!   (`check_availability`, `next_available`, `hold_slot`, `confirm_hold`, `cancel_booking`,
//!   `reschedule_booking`). Retell retries them, so each answers once per call id, function
//!   and arguments: a retry gets the first answer. A refusal the agent should say aloud (the
//!   slot is gone, the shop is closed) is a 200 with `ok: false` and a sentence in `result`.

use std::fmt::Write as _;

use adapters::integrations::{CredentialError, RETELL, RetellSecrets};
use adapters::webhooks::retell_signature_check;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc};
use commands::{
    CancelBookingInput, Channel, CommandMeta, CreateBookingInput, CustomerInput, Permission,
    Principal, RescheduleBookingInput,
};
use domain::Tenant;
use domain::booking::{BookingSource, BookingStatus};
use domain::settings::Locale;
use domain::values::{BookingId, BranchId, PhoneNumber, ServiceId, StaffId, TenantId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::availability::{self, CheckAvailabilityInput};
use super::routing::{self, IncomingCall};
use super::webhooks::{WebhookOutcome, remember, seen};
use crate::auth::Caller;
use crate::calls::{self, CallFacts, CallStage, CallbackTask};
use crate::error::{ApiError, ErrorType, Json, Path};
use crate::idempotency::once;
use crate::reads;
use crate::state::AppState;

/// The signed Retell routes (under `/api/v2/webhooks`).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/retell/{tenant_id}", post(call_event))
        .route("/retell/{tenant_id}/inbound", post(inbound))
        .route("/retell/{tenant_id}/functions/{name}", post(function))
}

/// The tenant's Retell connection (under `/api/v2/mcp`, with an API key).
pub fn settings_router() -> Router<AppState> {
    Router::new().route(
        "/integrations/retell",
        get(show_connection).put(connect).delete(disconnect),
    )
}

/// The key Retell signs with.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetellInput {
    /// The Retell API key with the "webhook" badge (sealed at rest, never shown again).
    #[schemars(length(min = 1, max = 256), regex(pattern = domain::values::patterns::WORD))]
    pub api_key: String,
}

/// Whether Retell is connected, and the URLs to give it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RetellConnection {
    /// Whether a key is stored.
    pub connected: bool,
    /// The phone number's inbound webhook URL (path; prefix the public host).
    pub inbound_webhook_path: String,
    /// The agent's webhook URL (path).
    pub call_webhook_path: String,
    /// Custom functions: this path followed by the function's name.
    pub functions_path: String,
}

fn connection(tenant_id: TenantId, connected: bool) -> RetellConnection {
    let base = format!("/api/v2/webhooks/retell/{tenant_id}");
    RetellConnection {
        connected,
        inbound_webhook_path: format!("{base}/inbound"),
        call_webhook_path: base.clone(),
        functions_path: format!("{base}/functions/"),
    }
}

fn credential_error(e: CredentialError) -> ApiError {
    match e {
        CredentialError::NoKey => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::ServiceUnavailable,
            "credentials cannot be stored: the server has no BOOKINGD_SECRET_KEY",
        ),
        CredentialError::Database(_) => ApiError::unavailable(),
        CredentialError::Sealed => ApiError::internal(e),
    }
}

async fn connect(
    State(app): State<AppState>,
    caller: Caller,
    Json(input): Json<RetellInput>,
) -> Result<axum::Json<RetellConnection>, ApiError> {
    caller.who.require(Permission::ManageCompany)?;
    let key = input.api_key.trim();
    if key.is_empty() || key.chars().count() > 256 || key.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid(
            "api_key",
            "a Retell API key is 1 to 256 characters without spaces",
        ));
    }
    let secrets = RetellSecrets {
        api_key: key.to_owned(),
    };
    app.accounts
        .store(caller.who.tenant_id, RETELL, &secrets, &json!({}))
        .await
        .map_err(credential_error)?;
    Ok(axum::Json(connection(caller.who.tenant_id, true)))
}

async fn show_connection(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<RetellConnection>, ApiError> {
    caller.who.require(Permission::ViewIntegrations)?;
    let settings: Option<Value> = app
        .accounts
        .settings(caller.who.tenant_id, RETELL)
        .await
        .map_err(credential_error)?;
    Ok(axum::Json(connection(
        caller.who.tenant_id,
        settings.is_some(),
    )))
}

async fn disconnect(State(app): State<AppState>, caller: Caller) -> Result<StatusCode, ApiError> {
    caller.who.require(Permission::ManageCompany)?;
    if app
        .accounts
        .remove(caller.who.tenant_id, RETELL)
        .await
        .map_err(credential_error)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("Retell connection"))
    }
}

/// Refuses a request unless the tenant's Retell key signed it.
async fn verified(
    app: &AppState,
    tenant_id: TenantId,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), ApiError> {
    let header = headers
        .get("x-retell-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("x-retell-signature is missing"))?;
    let secrets: RetellSecrets = match app
        .accounts
        .open::<RetellSecrets, Value>(tenant_id, RETELL)
        .await
    {
        Ok(Some((secrets, _))) => secrets,
        Ok(None) => {
            return Err(ApiError::unauthorized(
                "no Retell key signs for this tenant",
            ));
        }
        Err(e) => return Err(credential_error(e)),
    };
    let now_ms = app.clock.now().timestamp_millis();
    retell_signature_check(&secrets.api_key, body, header, now_ms).map_err(|e| {
        tracing::warn!(%tenant_id, error = %e, "Retell request with a bad signature refused");
        ApiError::unauthorized(format!("x-retell-signature refused: {e}"))
    })
}

/// The metadata of what Retell does for a tenant.
fn retell_meta(app: &AppState, tenant_id: TenantId, key: &str) -> CommandMeta {
    CommandMeta {
        tenant_id,
        correlation_id: Uuid::now_v7(),
        causation_id: Uuid::new_v5(
            &Uuid::NAMESPACE_URL,
            format!("retell:{tenant_id}:{key}").as_bytes(),
        ),
        actor: "webhook:retell".to_owned(),
        source: Channel::Webhook,
        now: app.clock.now(),
    }
}

fn retell_caller(app: &AppState, tenant_id: TenantId, key: &str) -> Caller {
    Caller {
        who: Principal::internal(tenant_id),
        meta: retell_meta(app, tenant_id, key),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8], what: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("not a Retell {what}: {e}")))
}

// ---------------------------------------------------------------------------------------
// The inbound-call webhook.

#[derive(Debug, Deserialize)]
struct InboundDelivery {
    event: String,
    call_inbound: InboundCall,
}

#[derive(Debug, Deserialize)]
struct InboundCall {
    #[serde(default)]
    agent_id: Option<String>,
    from_number: String,
    to_number: String,
}

async fn inbound(
    State(app): State<AppState>,
    Path(tenant_id): Path<TenantId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    verified(&app, tenant_id, &headers, &body).await?;
    let delivery: InboundDelivery = parse(&body, "inbound-call webhook")?;
    if delivery.event != "call_inbound" {
        return Err(ApiError::invalid("event", "expected call_inbound"));
    }
    let (tenant, _) = reads::tenant(&app, tenant_id).await?;
    let language = match tenant.settings.locale {
        Locale::De => "de",
        Locale::En => "en",
    };
    let caller = retell_caller(&app, tenant_id, &format!("inbound:{}", Uuid::now_v7()));
    let call = IncomingCall {
        phone_number: delivery.call_inbound.to_number.clone(),
        caller_number: delivery.call_inbound.from_number.clone(),
        caller_location: None,
        language: language.to_owned(),
    };
    let decision = routing::decide(&app, &caller, &call).await?;
    let branch = tenant
        .branches
        .get(&decision.branch_id)
        .ok_or_else(|| ApiError::not_found("branch"))?;
    let locale = tenant.settings.locale;
    let variables = json!({
        "tenant_id": tenant_id.to_string(),
        "tenant_name": tenant.name,
        "branch_id": branch.id.to_string(),
        "branch_name": branch.name,
        "branch_address": format!("{}, {}", branch.address, branch.city),
        "open_now": decision.open_now.to_string(),
        "routing_reason": serde_json::to_value(decision.reason).ok(),
        "opening_hours": opening_hours(branch, locale),
        "services": services_text(&tenant, branch.id, locale),
        "local_time": decision.local_time,
        "estimated_wait_seconds": decision.estimated_wait_seconds.to_string(),
        "caller_number": decision.caller_number,
    });
    let mut answer = json!({
        "dynamic_variables": variables,
        "metadata": {
            "tenant_id": tenant_id.to_string(),
            "branch_id": branch.id.to_string(),
            "called_branch_id": decision.called_branch_id.to_string(),
        },
    });
    if let Some(agent) = decision
        .agent_id
        .filter(|a| delivery.call_inbound.agent_id.as_deref() != Some(a.as_str()))
    {
        answer["override_agent_id"] = json!(agent);
    }
    Ok(axum::Json(json!({ "call_inbound": answer })))
}

const DAYS_DE: [&str; 7] = ["Mo", "Di", "Mi", "Do", "Fr", "Sa", "So"];
const DAYS_EN: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const WEEKDAYS_DE: [&str; 7] = [
    "Montag",
    "Dienstag",
    "Mittwoch",
    "Donnerstag",
    "Freitag",
    "Samstag",
    "Sonntag",
];

/// "Mo 09:00-18:00; Di 09:00-12:00, 13:00-18:00" (closed days left out).
fn opening_hours(branch: &domain::tenant::Branch, locale: Locale) -> String {
    let names = match locale {
        Locale::De => DAYS_DE,
        Locale::En => DAYS_EN,
    };
    branch
        .business_hours
        .0
        .iter()
        .filter(|(_, day)| !day.ranges.is_empty())
        .map(|(weekday, day)| {
            let ranges: Vec<String> = day.ranges.iter().map(ToString::to_string).collect();
            format!("{} {}", names[*weekday as usize], ranges.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// "Herrenhaarschnitt (30 min, 25.00 EUR); …" for the services offered at a branch.
fn services_text(tenant: &Tenant, branch_id: BranchId, locale: Locale) -> String {
    let mut services: Vec<_> = tenant
        .services
        .values()
        .filter(|s| !s.retired && s.branch_ids.contains(&branch_id))
        .collect();
    services.sort_by(|a, b| a.name.cmp(&b.name));
    services
        .iter()
        .map(|s| {
            let price = money(s.price.amount_minor, locale);
            format!(
                "{} ({} min, {price} {})",
                s.name,
                s.duration_minutes,
                s.price.currency.as_str()
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn money(minor: i64, locale: Locale) -> String {
    let (whole, cents) = (minor / 100, (minor % 100).abs());
    match locale {
        Locale::De => format!("{whole},{cents:02}"),
        Locale::En => format!("{whole}.{cents:02}"),
    }
}

/// A start as the agent should say it, in the branch's zone.
fn spoken(at: DateTime<Utc>, tz: chrono_tz::Tz, locale: Locale) -> String {
    let local = at.with_timezone(&tz);
    match locale {
        Locale::De => {
            let day = WEEKDAYS_DE[local.format("%u").to_string().parse::<usize>().unwrap_or(1) - 1];
            format!(
                "{day}, {} um {} Uhr",
                local.format("%d.%m."),
                local.format("%H:%M")
            )
        }
        Locale::En => local.format("%A %-d %B at %H:%M").to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Call webhooks.

#[derive(Debug, Deserialize)]
struct CallDelivery {
    event: String,
    call: RetellCall,
}

/// The fields of Retell's call object that matter here.
#[derive(Debug, Clone, Deserialize)]
struct RetellCall {
    call_id: String,
    #[serde(default)]
    agent_id: Option<String>,
    #[serde(default)]
    direction: Option<String>,
    #[serde(default)]
    from_number: Option<String>,
    #[serde(default)]
    to_number: Option<String>,
    #[serde(default)]
    start_timestamp: Option<i64>,
    #[serde(default)]
    end_timestamp: Option<i64>,
    #[serde(default)]
    duration_ms: Option<i64>,
    #[serde(default)]
    disconnection_reason: Option<String>,
    #[serde(default)]
    metadata: Value,
    #[serde(default)]
    call_analysis: Option<CallAnalysis>,
}

#[derive(Debug, Clone, Deserialize)]
struct CallAnalysis {
    #[serde(default)]
    call_summary: Option<String>,
    #[serde(default)]
    user_sentiment: Option<String>,
    #[serde(default)]
    call_successful: Option<bool>,
    #[serde(default)]
    custom_analysis_data: Value,
}

fn millis(ms: Option<i64>) -> Option<DateTime<Utc>> {
    ms.and_then(DateTime::from_timestamp_millis)
}

impl RetellCall {
    /// The branch the call was routed to: from the metadata the inbound webhook gave it,
    /// else the branch owning the called number.
    fn branch(&self, tenant: &Tenant) -> Option<BranchId> {
        let from_metadata = self
            .metadata
            .get("branch_id")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .map(BranchId)
            .filter(|id| tenant.branches.contains_key(id));
        from_metadata.or_else(|| {
            let called = PhoneNumber::parse(
                self.to_number.as_deref()?,
                tenant.settings.default_country_code,
            )
            .ok()?;
            tenant
                .branches
                .values()
                .find(|b| b.phone_numbers.contains(&called))
                .map(|b| b.id)
        })
    }

    fn facts(&self, tenant: &Tenant) -> CallFacts {
        let analysis = self.call_analysis.as_ref();
        CallFacts {
            branch_id: self.branch(tenant),
            agent_id: self.agent_id.clone(),
            direction: self.direction.clone(),
            from_number: self.from_number.clone(),
            to_number: self.to_number.clone(),
            started_at: millis(self.start_timestamp),
            ended_at: millis(self.end_timestamp),
            duration_ms: self.duration_ms,
            disconnection_reason: self.disconnection_reason.clone(),
            summary: analysis.and_then(|a| a.call_summary.clone()),
            sentiment: analysis.and_then(|a| a.user_sentiment.clone()),
            successful: analysis.and_then(|a| a.call_successful),
            analysis: analysis
                .map(|a| a.custom_analysis_data.clone())
                .filter(|v| !v.is_null()),
        }
    }
}

async fn call_event(
    State(app): State<AppState>,
    Path(tenant_id): Path<TenantId>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<WebhookOutcome>, ApiError> {
    verified(&app, tenant_id, &headers, &body).await?;
    let delivery: CallDelivery = parse(&body, "call webhook")?;
    let stage = match delivery.event.as_str() {
        "call_started" => CallStage::Ongoing,
        "call_ended" => CallStage::Ended,
        "call_analyzed" => CallStage::Analyzed,
        _ => {
            return Ok(axum::Json(WebhookOutcome::new(
                "ignored",
                Some("event not used"),
            )));
        }
    };
    let call = &delivery.call;
    if call.call_id.is_empty() || call.call_id.chars().count() > 200 {
        return Err(ApiError::invalid(
            "call.call_id",
            "must be 1 to 200 characters",
        ));
    }
    let key = format!("{}:{}", call.call_id, delivery.event);
    if seen(&app, "retell", tenant_id, &key).await? {
        return Ok(axum::Json(WebhookOutcome::new("duplicate", None)));
    }
    let (tenant, _) = reads::tenant(&app, tenant_id).await?;
    let facts = call.facts(&tenant);
    calls::record(&app.pool, tenant_id, &call.call_id, stage, &facts).await?;
    let meta = retell_meta(&app, tenant_id, &key);
    let outcome = match stage {
        CallStage::Ongoing => WebhookOutcome::new("applied", None),
        CallStage::Ended => {
            let released = calls::release_holds(&app, tenant_id, &call.call_id, &meta).await?;
            let reason = format!("{} unconfirmed hold(s) released", released.len());
            WebhookOutcome::new("applied", Some(&reason))
        }
        CallStage::Analyzed => {
            let reason = phone_booking(&app, &tenant, call, &facts, &meta).await?;
            WebhookOutcome::new("applied", Some(&reason))
        }
    };
    remember(&app, "retell", tenant_id, &key, &outcome).await?;
    Ok(axum::Json(outcome))
}

/// What the agent's post-call analysis extracted about an appointment.
#[derive(Debug, Default, Deserialize)]
struct Extracted {
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    start: Option<String>,
    #[serde(default)]
    date: Option<String>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    customer_name: Option<String>,
    #[serde(default)]
    customer_phone: Option<String>,
    #[serde(default)]
    callback_requested: Option<bool>,
}

/// The analysed call as a booking (source phone), unless one was made during the call; a
/// callback task when the details are incomplete or the slot is gone. Returns what it did.
async fn phone_booking(
    app: &AppState,
    tenant: &Tenant,
    call: &RetellCall,
    facts: &CallFacts,
    meta: &CommandMeta,
) -> Result<String, ApiError> {
    let tenant_id = meta.tenant_id;
    if let Some(booked) = booked_during(app, tenant_id, &call.call_id).await? {
        calls::set_outcome(&app.pool, tenant_id, &call.call_id, "booked", Some(booked)).await?;
        return Ok(format!("booked during the call: {booked}"));
    }
    let data = facts.analysis.clone().unwrap_or(Value::Null);
    let extracted: Extracted = serde_json::from_value(data.clone()).unwrap_or_default();
    let reason = if extracted.callback_requested == Some(true) {
        "the caller asked to be called back".to_owned()
    } else if extracted.service.is_none() && extracted.start.is_none() && extracted.date.is_none() {
        calls::set_outcome(&app.pool, tenant_id, &call.call_id, "no_booking", None).await?;
        return Ok("no appointment requested".to_owned());
    } else {
        match book_extracted(app, tenant, call, facts, &extracted, meta).await? {
            Ok(booking_id) => {
                calls::set_outcome(
                    &app.pool,
                    tenant_id,
                    &call.call_id,
                    "booked",
                    Some(booking_id),
                )
                .await?;
                return Ok(format!("booked: {booking_id}"));
            }
            Err(reason) => reason,
        }
    };
    let task = CallbackTask {
        call_id: &call.call_id,
        branch_id: facts.branch_id,
        phone: extracted_phone(&extracted, call),
        name: extracted.customer_name.as_deref(),
        reason: &reason,
        details: &data,
    };
    calls::open_callback(&app.pool, tenant_id, &task).await?;
    calls::set_outcome(&app.pool, tenant_id, &call.call_id, "callback", None).await?;
    Ok(format!("callback task: {reason}"))
}

/// Books what the analysis extracted, once per call (the booking id derives from the call
/// id); `Err` says why it could not, for the callback task.
async fn book_extracted(
    app: &AppState,
    tenant: &Tenant,
    call: &RetellCall,
    facts: &CallFacts,
    extracted: &Extracted,
    meta: &CommandMeta,
) -> Result<Result<BookingId, String>, ApiError> {
    let tenant_id = meta.tenant_id;
    let input = match booking_input(tenant, call, facts, extracted) {
        Ok(input) => input,
        Err(missing) => return Ok(Err(format!("incomplete details: {missing}"))),
    };
    let booking_id = BookingId(Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        format!("retell-call-booking:{tenant_id}:{}", call.call_id).as_bytes(),
    ));
    if let Ok((existing, _)) = app.commands.booking(tenant_id, booking_id).await
        && existing.status != BookingStatus::Cancelled
    {
        return Ok(Ok(booking_id));
    }
    match app
        .commands
        .create_booking(&Principal::internal(tenant_id), meta, booking_id, input)
        .await
    {
        Ok(_) => {
            calls::remember_hold(&app.pool, tenant_id, &call.call_id, booking_id).await?;
            Ok(Ok(booking_id))
        }
        Err(e) => {
            let error = ApiError::from(e);
            if error.status.is_server_error() {
                return Err(error);
            }
            Ok(Err(format!("could not book: {}", error.message)))
        }
    }
}

fn extracted_phone<'a>(extracted: &'a Extracted, call: &'a RetellCall) -> Option<&'a str> {
    extracted
        .customer_phone
        .as_deref()
        .or(call.from_number.as_deref())
}

/// A booking confirmed during the call (through the functions), if any.
async fn booked_during(
    app: &AppState,
    tenant_id: TenantId,
    call_id: &str,
) -> Result<Option<BookingId>, ApiError> {
    let made: Vec<(Uuid,)> = sqlx::query_as(
        "SELECT booking_id FROM call_holds WHERE tenant_id = $1 AND call_id = $2 ORDER BY held_at",
    )
    .bind(tenant_id.0)
    .bind(call_id)
    .fetch_all(&app.pool)
    .await?;
    for (id,) in made {
        let (booking, _) = app.commands.booking(tenant_id, BookingId(id)).await?;
        if booking.status == BookingStatus::Confirmed {
            return Ok(Some(BookingId(id)));
        }
    }
    Ok(None)
}

/// The booking the extracted details describe, or what is missing from them.
fn booking_input(
    tenant: &Tenant,
    call: &RetellCall,
    facts: &CallFacts,
    extracted: &Extracted,
) -> Result<CreateBookingInput, String> {
    let mut missing = Vec::new();
    let service = extracted
        .service
        .as_deref()
        .and_then(|s| find_service(tenant, s).ok());
    if service.is_none() {
        missing.push("service");
    }
    let branch_id = facts.branch_id.or_else(|| {
        let service = service?;
        tenant.services.get(&service)?.branch_ids.first().copied()
    });
    let tz = branch_id
        .and_then(|b| tenant.branches.get(&b))
        .map_or(tenant.settings.time_zone, |b| b.time_zone);
    let start = extracted_start(extracted, tz);
    if start.is_none() {
        missing.push("start");
    }
    let name = extracted
        .customer_name
        .clone()
        .filter(|n| !n.trim().is_empty());
    if name.is_none() {
        missing.push("customer_name");
    }
    let phone = extracted_phone(extracted, call).map(str::to_owned);
    if phone.is_none() {
        missing.push("customer_phone");
    }
    match (service, branch_id, start, name, phone) {
        (Some(service_id), Some(branch_id), Some(start), Some(name), Some(phone)) => {
            Ok(CreateBookingInput {
                branch_id,
                service_id,
                staff_id: None,
                start,
                customer: CustomerInput {
                    phone,
                    name,
                    email: None,
                },
                notes: None,
                source: Some(BookingSource::Phone),
                call_id: Some(call.call_id.clone()),
                hold_only: false,
            })
        }
        _ => Err(if missing.is_empty() {
            "branch".to_owned()
        } else {
            missing.join(", ")
        }),
    }
}

/// `start` (RFC 3339), or `date` and `time` read in the branch's zone.
fn extracted_start(extracted: &Extracted, tz: chrono_tz::Tz) -> Option<DateTime<Utc>> {
    if let Some(start) = &extracted.start
        && let Ok(t) = DateTime::parse_from_rfc3339(start)
    {
        return Some(t.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(extracted.date.as_deref()?, "%Y-%m-%d").ok()?;
    let time = NaiveTime::parse_from_str(extracted.time.as_deref()?, "%H:%M").ok()?;
    tz.from_local_datetime(&date.and_time(time))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// A service by id, or by name (exact, then the only one containing it), ignoring case.
fn find_service(tenant: &Tenant, given: &str) -> Result<ServiceId, ApiError> {
    let given = given.trim();
    let live = || tenant.services.values().filter(|s| !s.retired);
    if let Ok(id) = given.parse::<Uuid>()
        && let Some(s) = live().find(|s| s.id.0 == id)
    {
        return Ok(s.id);
    }
    let lower = given.to_lowercase();
    if let Some(s) = live().find(|s| s.name.to_lowercase() == lower) {
        return Ok(s.id);
    }
    let mut partial = live().filter(|s| s.name.to_lowercase().contains(&lower));
    match (partial.next(), partial.next()) {
        (Some(s), None) => Ok(s.id),
        _ => {
            let names: Vec<&str> = live().map(|s| s.name.as_str()).collect();
            Err(ApiError::invalid(
                "service",
                format!(
                    "no single service matches {given:?}; services: {}",
                    names.join(", ")
                ),
            ))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Custom functions.

#[derive(Debug, Deserialize)]
struct FunctionDelivery {
    call: RetellCall,
    #[serde(default)]
    args: Value,
}

#[derive(Debug, Deserialize)]
struct AvailabilityArgs {
    service: String,
    #[serde(default)]
    date: Option<NaiveDate>,
    #[serde(default)]
    branch_id: Option<BranchId>,
    #[serde(default)]
    staff_id: Option<StaffId>,
}

#[derive(Debug, Deserialize)]
struct HoldArgs {
    service: String,
    start: DateTime<Utc>,
    customer_name: String,
    #[serde(default)]
    customer_phone: Option<String>,
    #[serde(default)]
    staff_id: Option<StaffId>,
    #[serde(default)]
    branch_id: Option<BranchId>,
    #[serde(default)]
    notes: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ConfirmArgs {
    hold_id: BookingId,
}

#[derive(Debug, Deserialize)]
struct BookingRefArgs {
    #[serde(default)]
    booking_id: Option<BookingId>,
    #[serde(default)]
    confirmation_number: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    new_start: Option<DateTime<Utc>>,
    #[serde(default)]
    staff_id: Option<StaffId>,
}

async fn function(
    State(app): State<AppState>,
    Path((tenant_id, name)): Path<(TenantId, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    verified(&app, tenant_id, &headers, &body).await?;
    let delivery: FunctionDelivery = parse(&body, "function call")?;
    if !FUNCTIONS.contains(&name.as_str()) {
        return Err(ApiError::not_found("function").with_details(json!({
            "function": name,
            "functions": FUNCTIONS,
        })));
    }
    let call_id = delivery.call.call_id.clone();
    if call_id.is_empty() || call_id.chars().count() > 200 {
        return Err(ApiError::invalid(
            "call.call_id",
            "must be 1 to 200 characters",
        ));
    }
    let args = serde_json::to_vec(&delivery.args).map_err(ApiError::internal)?;
    let digest: String = Sha256::digest(&args)
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    let key = format!("retell:{call_id}:{name}:{digest}");
    let caller = retell_caller(&app, tenant_id, &key);
    let work = run_function(&app, &caller, &name, &delivery);
    match once(&app, tenant_id, &key, ("retell", &name, &args), work).await {
        Ok(value) => Ok(axum::Json(value)),
        Err(e) if e.status.is_client_error() && e.kind != ErrorType::TransactionFailed => {
            // Something the agent should say: answered, so Retell does not retry it.
            Ok(axum::Json(json!({
                "ok": false,
                "result": e.message,
                "error": e.body()["error"],
            })))
        }
        Err(e) => Err(e),
    }
}

const FUNCTIONS: [&str; 6] = [
    "check_availability",
    "next_available",
    "hold_slot",
    "confirm_hold",
    "cancel_booking",
    "reschedule_booking",
];

fn args<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T, ApiError> {
    serde_json::from_value(value.clone())
        .map_err(|e| ApiError::invalid("args", format!("the function's arguments: {e}")))
}

async fn run_function(
    app: &AppState,
    caller: &Caller,
    name: &str,
    delivery: &FunctionDelivery,
) -> Result<Value, ApiError> {
    let (tenant, _) = reads::tenant(app, caller.who.tenant_id).await?;
    let call = &delivery.call;
    match name {
        "check_availability" | "next_available" => {
            let a: AvailabilityArgs = args(&delivery.args)?;
            available(app, caller, &tenant, call, &a, name == "next_available").await
        }
        "hold_slot" => hold(app, caller, &tenant, call, args(&delivery.args)?).await,
        "confirm_hold" => {
            let a: ConfirmArgs = args(&delivery.args)?;
            let out = app
                .commands
                .confirm_booking(&caller.who, &caller.meta, a.hold_id)
                .await?;
            calls::remember_hold(&app.pool, caller.who.tenant_id, &call.call_id, a.hold_id).await?;
            booking_answer(&tenant, &out.state, Said::Confirmed)
        }
        "cancel_booking" => {
            let a: BookingRefArgs = args(&delivery.args)?;
            let id = booking_ref(app, caller.who.tenant_id, &a).await?;
            let reason = a
                .reason
                .unwrap_or_else(|| "cancelled by the caller on the phone".to_owned());
            let out = app
                .commands
                .cancel_booking(&caller.who, &caller.meta, id, CancelBookingInput { reason })
                .await?;
            booking_answer(&tenant, &out.state, Said::Cancelled)
        }
        _ => {
            let a: BookingRefArgs = args(&delivery.args)?;
            let id = booking_ref(app, caller.who.tenant_id, &a).await?;
            let start = a
                .new_start
                .ok_or_else(|| ApiError::invalid("new_start", "give the new start (RFC 3339)"))?;
            let input = RescheduleBookingInput {
                start,
                staff_id: a.staff_id,
            };
            let out = app
                .commands
                .reschedule_booking(&caller.who, &caller.meta, id, input)
                .await?;
            booking_answer(&tenant, &out.state, Said::Moved)
        }
    }
}

/// Free slots on a date (the next ones from today with `next`), for the call's branch.
async fn available(
    app: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    call: &RetellCall,
    a: &AvailabilityArgs,
    next: bool,
) -> Result<Value, ApiError> {
    let service_id = find_service(tenant, &a.service)?;
    let branch = a.branch_id.or_else(|| call.branch(tenant));
    let tz = branch
        .and_then(|b| tenant.branches.get(&b))
        .map_or(tenant.settings.time_zone, |b| b.time_zone);
    let date = match (a.date, next) {
        (Some(date), false) => date,
        (None, false) => return Err(ApiError::invalid("date", "give the date (YYYY-MM-DD)")),
        (date, true) => date.unwrap_or_else(|| reads::today(caller.meta.now, tz)),
    };
    let input = CheckAvailabilityInput {
        service_id,
        date: Some(date),
        start_date: None,
        end_date: None,
        branch_ids: branch.map(|b| vec![b]),
        preferred_staff_id: a.staff_id,
        min_position: None,
    };
    let answer = availability::check(State(app.clone()), caller.clone(), Json(input))
        .await?
        .0;
    let locale = tenant.settings.locale;
    let offered: Vec<_> = if next {
        answer.next_available.into_iter().collect()
    } else {
        answer.slots.iter().take(6).copied().collect()
    };
    let slots: Vec<Value> = offered
        .iter()
        .map(|s| {
            json!({
                "start": s.start,
                "spoken": spoken(s.start, tz, locale),
                "staff_id": s.staff_id,
                "branch_id": s.branch_id,
            })
        })
        .collect();
    let result = slots_said(&offered, &answer, next, tz, locale);
    Ok(json!({
        "ok": true,
        "available": !offered.is_empty(),
        "slots": slots,
        "next_available": answer.next_available.map(|s| s.start),
        "result": result,
    }))
}

/// The slots offered as the agent should say them, and the next free one when the day has
/// none.
fn slots_said(
    offered: &[domain::availability::Slot],
    answer: &availability::Availability,
    next: bool,
    tz: chrono_tz::Tz,
    locale: Locale,
) -> String {
    let times: Vec<String> = offered
        .iter()
        .map(|s| spoken(s.start, tz, locale))
        .collect();
    let mut result = match (times.is_empty(), locale) {
        (true, Locale::De) => "Leider ist kein Termin frei.".to_owned(),
        (true, Locale::En) => "Sorry, there is no free slot.".to_owned(),
        (false, Locale::De) => format!("Frei: {}.", times.join("; ")),
        (false, Locale::En) => format!("Free: {}.", times.join("; ")),
    };
    if !next
        && answer.slots.is_empty()
        && let Some(n) = answer.next_available
    {
        let when = spoken(n.start, tz, locale);
        let _ = match locale {
            Locale::De => write!(result, " Der nächste freie Termin: {when}."),
            Locale::En => write!(result, " The next free slot: {when}."),
        };
    }
    result
}

async fn hold(
    app: &AppState,
    caller: &Caller,
    tenant: &Tenant,
    call: &RetellCall,
    a: HoldArgs,
) -> Result<Value, ApiError> {
    let service_id = find_service(tenant, &a.service)?;
    let branch_id = a
        .branch_id
        .or_else(|| call.branch(tenant))
        .or_else(|| {
            tenant
                .services
                .get(&service_id)?
                .branch_ids
                .first()
                .copied()
        })
        .ok_or_else(|| ApiError::invalid("branch_id", "which branch?"))?;
    let phone = a
        .customer_phone
        .or_else(|| call.from_number.clone())
        .ok_or_else(|| ApiError::invalid("customer_phone", "the caller's number is unknown"))?;
    let input = CreateBookingInput {
        branch_id,
        service_id,
        staff_id: a.staff_id,
        start: a.start,
        customer: CustomerInput {
            phone,
            name: a.customer_name,
            email: None,
        },
        notes: a.notes,
        source: Some(BookingSource::Phone),
        call_id: Some(call.call_id.clone()),
        hold_only: true,
    };
    let hold_id = BookingId::new();
    let out = app
        .commands
        .create_booking(&caller.who, &caller.meta, hold_id, input)
        .await?;
    calls::remember_hold(&app.pool, caller.who.tenant_id, &call.call_id, hold_id).await?;
    let expires_at = caller.meta.now + app.commands.hold_ttl();
    let mut answer = booking_answer(tenant, &out.state, Said::Held)?;
    answer["hold_id"] = json!(hold_id);
    answer["expires_at"] = json!(expires_at);
    Ok(answer)
}

/// A booking by id or by the confirmation number the caller reads out.
async fn booking_ref(
    app: &AppState,
    tenant_id: TenantId,
    a: &BookingRefArgs,
) -> Result<BookingId, ApiError> {
    if let Some(id) = a.booking_id {
        return Ok(id);
    }
    let number = a
        .confirmation_number
        .as_deref()
        .map(|n| n.trim().to_uppercase())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::invalid("booking_id", "give booking_id or confirmation_number"))?;
    let found: Option<(Uuid,)> = sqlx::query_as(
        "SELECT booking_id FROM bookings_view
          WHERE tenant_id = $1 AND state->>'confirmation_number' = $2 LIMIT 1",
    )
    .bind(tenant_id.0)
    .bind(&number)
    .fetch_optional(&app.pool)
    .await?;
    found
        .map(|(id,)| BookingId(id))
        .ok_or_else(|| ApiError::not_found("booking"))
}

#[derive(Debug, Clone, Copy)]
enum Said {
    Held,
    Confirmed,
    Cancelled,
    Moved,
}

fn booking_answer(
    tenant: &Tenant,
    booking: &domain::Booking,
    said: Said,
) -> Result<Value, ApiError> {
    let (Some(id), Some(appointment)) = (booking.id, booking.appointment) else {
        return Err(ApiError::internal("a booking without id or time"));
    };
    let tz = booking.time_zone.unwrap_or(tenant.settings.time_zone);
    let locale = tenant.settings.locale;
    let when = spoken(appointment.start, tz, locale);
    let number = &booking.confirmation_number;
    let result = match (said, locale) {
        (Said::Held, Locale::De) => format!("Der Termin {when} ist für Sie reserviert."),
        (Said::Held, Locale::En) => format!("The slot {when} is held for you."),
        (Said::Confirmed, Locale::De) => {
            format!("Ihr Termin {when} ist gebucht. Ihre Buchungsnummer: {number}.")
        }
        (Said::Confirmed, Locale::En) => {
            format!("Your appointment {when} is booked. Your confirmation number: {number}.")
        }
        (Said::Cancelled, Locale::De) => format!("Der Termin {when} ist storniert."),
        (Said::Cancelled, Locale::En) => format!("The appointment {when} is cancelled."),
        (Said::Moved, Locale::De) => format!("Ihr Termin ist verlegt auf {when}."),
        (Said::Moved, Locale::En) => format!("Your appointment is moved to {when}."),
    };
    Ok(json!({
        "ok": true,
        "booking_id": id,
        "status": booking.status,
        "start": appointment.start,
        "confirmation_number": number,
        "result": result,
    }))
}
