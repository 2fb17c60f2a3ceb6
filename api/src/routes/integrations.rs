//! A tenant's integrations: connecting Cal.com (its key sealed at rest, the mapping of
//! services and staff to event types and hosts), and how the integrations are doing.

use std::collections::HashSet;

use adapters::circuit::{CircuitHealth, CircuitState};
use adapters::integrations::{CalendarSecrets, CalendarSettings, CredentialError};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::{DateTime, Utc};
use commands::{CommandError, Permission};
use sagas::Saga;
use sagas::ports::{EventTypeMapping, HostMapping};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorType, Json};
use crate::reads;
use crate::state::AppState;

/// `/integrations…`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/integrations/calcom",
            get(show_calcom)
                .put(connect_calcom)
                .delete(disconnect_calcom),
        )
        .route("/integrations/health", get(health))
}

/// Connects the tenant's Cal.com account.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CalComInput {
    /// A Cal.com API key (`cal_live_…` or `cal_test_…`); stored sealed, never shown again.
    #[schemars(length(min = 1, max = 500), regex(pattern = domain::values::patterns::WORD))]
    pub api_key: String,
    /// Which event type books which service (and, optionally, which staff member's).
    pub event_types: Vec<EventTypeMapping>,
    /// Which Cal.com user is which staff member.
    #[serde(default)]
    pub hosts: Vec<HostMapping>,
    /// The secret of the Cal.com webhook pointed at `/api/v2/webhooks/calcom/{tenant_id}`;
    /// stored sealed. Without it, inbound webhooks are refused.
    #[serde(default)]
    pub webhook_secret: Option<String>,
}

/// The tenant's Cal.com connection, without its key.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CalComConnection {
    /// Always `calcom`.
    pub integration: String,
    /// Event types by service and staff member.
    pub event_types: Vec<EventTypeMapping>,
    /// Cal.com users by staff member.
    pub hosts: Vec<HostMapping>,
}

impl CalComConnection {
    fn of(settings: CalendarSettings) -> Self {
        Self {
            integration: adapters::integrations::CALCOM.to_owned(),
            event_types: settings.event_types,
            hosts: settings.hosts,
        }
    }
}

fn credential_error(e: CredentialError) -> ApiError {
    match e {
        CredentialError::NoKey => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::ServiceUnavailable,
            "this server has no secret key to seal credentials with (BOOKINGD_SECRET_KEY)",
        ),
        other => ApiError::internal(other),
    }
}

async fn connect_calcom(
    State(app): State<AppState>,
    caller: Caller,
    Json(input): Json<CalComInput>,
) -> Result<axum::Json<CalComConnection>, ApiError> {
    caller.who.require(Permission::ManageCompany)?;
    let key = input.api_key.trim();
    if key.is_empty() || key.chars().count() > 500 || key.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid(
            "api_key",
            "a Cal.com API key is one word of at most 500 characters",
        ));
    }
    let tenant_id = caller.who.tenant_id;
    check_mappings(&app, tenant_id, &input).await?;
    let settings = CalendarSettings {
        event_types: input.event_types,
        hosts: input.hosts,
    };
    let webhook_secret = input.webhook_secret.filter(|s| !s.trim().is_empty());
    if webhook_secret
        .as_ref()
        .is_some_and(|s| s.chars().count() > 500)
    {
        return Err(ApiError::invalid(
            "webhook_secret",
            "a webhook secret is at most 500 characters",
        ));
    }
    let secrets = CalendarSecrets {
        api_key: key.to_owned(),
        webhook_secret,
    };
    app.accounts
        .store_calendar(tenant_id, &secrets, &settings)
        .await
        .map_err(credential_error)?;
    Ok(axum::Json(CalComConnection::of(settings)))
}

/// Refuses mappings naming services or staff the tenant does not have, or naming one twice.
async fn check_mappings(
    app: &AppState,
    tenant_id: domain::values::TenantId,
    input: &CalComInput,
) -> Result<(), ApiError> {
    let (tenant, _) = reads::tenant(app, tenant_id).await?;
    let mut seen = Mapped::default();
    for (i, mapping) in input.event_types.iter().enumerate() {
        let field = format!("event_types[{i}]");
        if !tenant.services.contains_key(&mapping.service_id) {
            return Err(ApiError::invalid(&field, "no such service"));
        }
        if mapping.event_type_id <= 0 {
            return Err(ApiError::invalid(&field, "event_type_id must be positive"));
        }
        if !seen
            .event_types
            .insert((mapping.service_id, mapping.staff_id))
        {
            return Err(ApiError::invalid(
                &field,
                "this service and staff member are mapped twice",
            ));
        }
        if let Some(staff) = mapping.staff_id {
            known_staff(app, tenant_id, staff, &field).await?;
        }
    }
    for (i, host) in input.hosts.iter().enumerate() {
        let field = format!("hosts[{i}]");
        known_staff(app, tenant_id, host.staff_id, &field).await?;
        if !seen.hosts.insert(host.host_id) {
            return Err(ApiError::invalid(
                &field,
                "this Cal.com user is mapped twice",
            ));
        }
    }
    Ok(())
}

/// What a mapping may name only once.
#[derive(Default)]
struct Mapped {
    event_types: HashSet<(domain::values::ServiceId, Option<domain::values::StaffId>)>,
    hosts: HashSet<i64>,
}

async fn known_staff(
    app: &AppState,
    tenant: domain::values::TenantId,
    staff: domain::values::StaffId,
    field: &str,
) -> Result<(), ApiError> {
    match app.commands.staff_member(tenant, staff).await {
        Ok(_) => Ok(()),
        Err(CommandError::NotFound(_)) => Err(ApiError::invalid(field, "no such staff member")),
        Err(e) => Err(e.into()),
    }
}

async fn show_calcom(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<CalComConnection>, ApiError> {
    caller.who.require(Permission::ViewIntegrations)?;
    let settings = app
        .accounts
        .calendar_settings(caller.who.tenant_id)
        .await
        .map_err(credential_error)?
        .ok_or_else(|| ApiError::not_found("Cal.com connection"))?;
    Ok(axum::Json(CalComConnection::of(settings)))
}

async fn disconnect_calcom(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.who.require(Permission::ManageCompany)?;
    if app
        .accounts
        .remove_calendar(caller.who.tenant_id)
        .await
        .map_err(credential_error)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("Cal.com connection"))
    }
}

/// How the integrations are doing.
#[derive(Debug, Serialize, JsonSchema)]
pub struct IntegrationsHealth {
    /// `healthy` (all circuits closed), `degraded` (one probing) or `unhealthy` (one open).
    pub overall: String,
    /// Per integration.
    pub integrations: Vec<IntegrationHealth>,
}

/// One integration.
#[derive(Debug, Serialize, JsonSchema)]
pub struct IntegrationHealth {
    /// The circuit breaker's view.
    #[serde(flatten)]
    pub circuit: CircuitHealth,
    /// Whether the caller's tenant has connected it (Cal.com), or the service has it
    /// configured (SMS, e-mail).
    pub connected: bool,
    /// The tenant's steps waiting to be tried again after a failure.
    pub pending_retries: i64,
    /// When the next of those is due.
    pub next_retry_at: Option<DateTime<Utc>>,
}

async fn health(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<IntegrationsHealth>, ApiError> {
    caller.who.require(Permission::ViewIntegrations)?;
    let tenant_id = caller.who.tenant_id;
    let mut integrations = Vec::with_capacity(app.circuits.len());
    for circuit in &app.circuits {
        let circuit = circuit.health();
        // The saga whose steps call the integration.
        let saga = match circuit.name.as_str() {
            "calcom" => sagas::CalendarSync::NAME,
            "stripe" => sagas::DepositPayments::NAME,
            _ => sagas::Notifications::NAME,
        };
        let (pending_retries, next_retry_at): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT count(*), min(j.due_at) FROM saga_jobs j
             JOIN saga_instances i ON i.saga = j.saga AND i.instance_id = j.instance_id
             WHERE j.saga = $2 AND j.tenant_id = $1 AND (i.state ->> 'failures')::int > 0",
        )
        .bind(tenant_id.0)
        .bind(saga)
        .fetch_one(&app.pool)
        .await
        .map_err(ApiError::internal)?;
        // Cal.com is each tenant's own account; SMS, e-mail and payments go through the
        // service's.
        let connected = circuit.name != "calcom"
            || app
                .accounts
                .calendar_settings(tenant_id)
                .await
                .map_err(credential_error)?
                .is_some();
        integrations.push(IntegrationHealth {
            circuit,
            connected,
            pending_retries,
            next_retry_at,
        });
    }
    let states: Vec<CircuitState> = integrations.iter().map(|i| i.circuit.state).collect();
    let overall = if states.contains(&CircuitState::Open) {
        "unhealthy"
    } else if states.contains(&CircuitState::HalfOpen) {
        "degraded"
    } else {
        "healthy"
    };
    Ok(axum::Json(IntegrationsHealth {
        overall: overall.to_owned(),
        integrations,
    }))
}
