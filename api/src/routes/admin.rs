//! Operator routes (tenant registration, the read side's state) and tenant API key management.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::post;
use chrono::Utc;
use commands::{Channel, CommandMeta, Permission, RegisterTenantInput, Role};
use domain::values::TenantId;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::created;
use crate::auth::{Caller, Operator, correlation_id};
use crate::error::{ApiError, Json, Path};
use crate::state::AppState;
use crate::views::{Data, TenantView};

/// `/api/v2/admin/…`, for the operator only.
pub fn operator_router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/tenants", post(register_tenant))
        .route("/tenants/{tenant_id}/api-keys", post(create_key_for_tenant))
        .merge(super::projections::router())
        .merge(super::alerts::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state,
            require_operator,
        ))
}

/// `/api-keys` under the tenant routes, for tenant admins.
pub fn tenant_router() -> Router<AppState> {
    Router::new().route("/api-keys", post(create_key))
}

/// Middleware: the operator token, checked before anything else (idempotency replays too).
async fn require_operator(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    <Operator as axum::extract::FromRequestParts<AppState>>::from_request_parts(&mut parts, &app)
        .await?;
    Ok(next.run(Request::from_parts(parts, body)).await)
}

/// A key to create.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyInput {
    /// admin, manager, staff, agent or readonly.
    #[schemars(extend("enum" = ["admin", "manager", "staff", "agent", "readonly"]))]
    pub role: String,
    /// A label, e.g. "voice agent".
    #[serde(default = "default_key_name")]
    #[schemars(length(min = 1, max = 100), regex(pattern = domain::values::patterns::TEXT))]
    pub name: String,
}

fn default_key_name() -> String {
    "api".to_owned()
}

/// A created key; the secret is shown only here.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ApiKeyView {
    /// The key's id, recorded as the actor of its commands.
    pub id: Uuid,
    /// Send as `Authorization: Bearer <key>`.
    pub key: String,
    /// Its role.
    pub role: String,
}

/// A registered tenant and its first admin key.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RegisteredTenant {
    /// The tenant.
    pub tenant: TenantView,
    /// Its admin key.
    pub api_key: ApiKeyView,
}

fn parse_role(raw: &str) -> Result<Role, ApiError> {
    Role::parse(raw).ok_or_else(|| {
        ApiError::invalid(
            "role",
            "role must be admin, manager, staff, agent or readonly",
        )
    })
}

fn valid_name(name: &str) -> Result<&str, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::invalid(
            "name",
            "name must be 1 to 100 characters",
        ));
    }
    Ok(name)
}

async fn register_tenant(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
    Json(input): Json<RegisterTenantInput>,
) -> Result<(StatusCode, axum::Json<Data<RegisteredTenant>>), ApiError> {
    let tenant_id = TenantId::new();
    let meta = CommandMeta {
        tenant_id,
        correlation_id: correlation_id(&headers),
        causation_id: Uuid::now_v7(),
        actor: "operator".to_owned(),
        source: Channel::Api,
        now: Utc::now(),
    };
    let out = app.commands.register_tenant(&meta, input).await?;
    let key = app.keys.create(tenant_id, "admin", Role::Admin).await?;
    let data = RegisteredTenant {
        tenant: TenantView::of(&out.state)?,
        api_key: ApiKeyView {
            id: key.id,
            key: key.secret,
            role: Role::Admin.as_str().to_owned(),
        },
    };
    Ok(created(Data::of(data, &out)))
}

async fn create_key_for_tenant(
    State(app): State<AppState>,
    Path(tenant_id): Path<TenantId>,
    Json(input): Json<NewKeyInput>,
) -> Result<(StatusCode, axum::Json<ApiKeyView>), ApiError> {
    let role = parse_role(&input.role)?;
    app.commands.tenant(tenant_id).await?;
    let key = app
        .keys
        .create(tenant_id, valid_name(&input.name)?, role)
        .await?;
    Ok(created(ApiKeyView {
        id: key.id,
        key: key.secret,
        role: role.as_str().to_owned(),
    }))
}

async fn create_key(
    State(app): State<AppState>,
    caller: Caller,
    Json(input): Json<NewKeyInput>,
) -> Result<(StatusCode, axum::Json<ApiKeyView>), ApiError> {
    caller.who.require(Permission::ManageCompany)?;
    let role = parse_role(&input.role)?;
    let key = app
        .keys
        .create(caller.who.tenant_id, valid_name(&input.name)?, role)
        .await?;
    Ok(created(ApiKeyView {
        id: key.id,
        key: key.secret,
        role: role.as_str().to_owned(),
    }))
}
