//! The Model Context Protocol endpoint (`/mcp`): the booking tools for AI agents.
//!
//! Served by rmcp's Streamable HTTP service, stateless, for both protocol eras: the
//! 2026-07-28 requests that carry their version in `_meta`, and the `initialize` handshake
//! that deployed voice platforms still use. Every tool is a thin adapter over the handler the
//! REST route runs, so both surfaces decide alike. The tenant and role come from the Bearer
//! API key (resolved by the same middleware as the REST routes), never from an argument.
//!
//! Mistakes the model can correct (a taken slot, a date in the past, an unknown id) come back
//! as tool errors (`isError`) with the envelope's message; only faults of the server itself
//! are protocol errors. Write tools take an `idempotency_key`: a repeat with the same key and
//! arguments answers what the first call answered and writes nothing.

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use commands::{
    CancelBookingInput, Channel, CommandMeta, CreateBookingInput, CustomerInput, Permission,
    Principal, RescheduleBookingInput,
};
use domain::availability::Slot;
use domain::booking::{BookingSource, BookingStatus};
use domain::values::{BookingId, BranchId, ServiceId, StaffId};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::{Extension, schema_for_output};
use rmcp::handler::server::wrapper::{Json, Parameters};
use rmcp::model::{CallToolResult, ContentBlock};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::auth::{Caller, correlation_id, require_api_key};
use crate::error::{self, ApiError};
use crate::idempotency::once;
use crate::routes::availability::{
    self, AvailableStaffQuery, CheckAvailabilityInput, FreeStaffList,
};
use crate::routes::bookings::{self, BookingPage, ListBookingsQuery};
use crate::routes::routing::{
    self, IncomingCall, NearbyBranches, NearestBranchQuery, RoutingDecision,
};
use crate::routes::services::{self, Catalog, CatalogQuery};
use crate::state::AppState;
use crate::views::BookingView;

/// `/mcp`: the service behind the API-key middleware.
pub fn router(state: &AppState) -> Router<AppState> {
    let tools = BookingTools {
        app: state.clone(),
        tools: Arc::new(portable_router()),
    };
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_allowed_hosts(state.mcp_allowed_hosts.iter().cloned());
    let service = StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .nest_service("/mcp", service)
        .layer(from_fn(require_mcp_access))
        .layer(from_fn_with_state(
            state.clone(),
            crate::rate_limit::limit_requests,
        ))
        .layer(from_fn_with_state(state.clone(), require_api_key))
}

/// The tools, with schemas every client can read: schemars writes an optional field as
/// `"type": ["string", "null"]`, which clients mapping schemas onto a single-type dialect
/// (Gemini's function declarations) reject; it becomes `anyOf` with a `null` branch.
fn portable_router() -> ToolRouter<BookingTools> {
    let mut router = BookingTools::tool_router();
    for route in router.map.values_mut() {
        let tool = &mut route.attr;
        let mut input = Value::Object((*tool.input_schema).clone());
        make_portable(&mut input);
        if let Value::Object(input) = input {
            tool.input_schema = Arc::new(input);
        }
        if let Some(output) = &tool.output_schema {
            let mut output = Value::Object((**output).clone());
            make_portable(&mut output);
            if let Value::Object(output) = output {
                tool.output_schema = Some(Arc::new(output));
            }
        }
    }
    router
}

/// Formats JSON Schema defines; schemars adds its own (`uint32`, `int64`, `double`), which
/// validators warn about.
const STANDARD_FORMATS: [&str; 10] = [
    "date-time",
    "date",
    "time",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uri",
    "uuid",
];

/// Rewrites every `{"type": [T, "null"], …}` below `schema` as
/// `{"anyOf": [{"type": T, …}, {"type": "null"}]}`, keeping its description and title outside,
/// and drops formats JSON Schema does not define.
fn make_portable(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            for value in map.values_mut() {
                make_portable(value);
            }
            if map
                .get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| !STANDARD_FORMATS.contains(&f))
            {
                map.remove("format");
            }
            let Some(Value::Array(types)) = map.get("type") else {
                return;
            };
            let non_null: Vec<Value> = types.iter().filter(|t| *t != "null").cloned().collect();
            if non_null.len() != 1 || non_null.len() == types.len() {
                return;
            }
            let mut branch = std::mem::take(map);
            branch.insert("type".to_owned(), non_null[0].clone());
            for outer in ["description", "title", "default"] {
                if let Some(v) = branch.remove(outer) {
                    map.insert(outer.to_owned(), v);
                }
            }
            map.insert(
                "anyOf".to_owned(),
                serde_json::json!([Value::Object(branch), { "type": "null" }]),
            );
        }
        Value::Array(items) => items.iter_mut().for_each(make_portable),
        _ => {}
    }
}

/// Middleware: the key's role must allow `access-mcp`.
async fn require_mcp_access(request: Request, next: Next) -> Result<Response, ApiError> {
    let who = request
        .extensions()
        .get::<Principal>()
        .ok_or_else(|| ApiError::unauthorized("missing API key"))?;
    who.require(Permission::AccessMcp)?;
    Ok(next.run(request).await)
}

/// The tools, over the shared application state.
#[derive(Debug, Clone)]
pub struct BookingTools {
    app: AppState,
    tools: Arc<ToolRouter<BookingTools>>,
}

#[tool_handler(
    router = self.tools,
    name = "bookingd",
    version = "0.1.0",
    instructions = "Appointment booking for salons, clinics and studios. Find a service with list_services, \
free slots with check_availability, then hold_slot while the caller decides and confirm_hold, or \
create_booking at once. Times are RFC 3339; phone numbers E.164 or national. Write tools take an \
idempotency_key: reuse it when retrying the same request."
)]
impl ServerHandler for BookingTools {}

/// Why a tool call failed.
#[derive(Debug)]
pub enum ToolError {
    /// Something the model can correct or tell the caller: `isError` with this text.
    Refused(String),
    /// A fault of the server: a JSON-RPC error.
    Fault(ErrorData),
}

impl From<ApiError> for ToolError {
    fn from(e: ApiError) -> Self {
        if e.status.is_server_error() && e.status != axum::http::StatusCode::SERVICE_UNAVAILABLE {
            return Self::Fault(ErrorData::internal_error(e.message, None));
        }
        let mut text = format!("{}: {}", kind_name(e.kind), e.message);
        if !e.details.is_null() {
            text.push_str(&format!(" ({})", e.details));
        }
        Self::Refused(text)
    }
}

impl From<commands::CommandError> for ToolError {
    fn from(e: commands::CommandError) -> Self {
        ApiError::from(e).into()
    }
}

impl rmcp::handler::server::tool::IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<rmcp::model::CallToolResponse, ErrorData> {
        match self {
            Self::Refused(text) => Ok(CallToolResult::error(vec![ContentBlock::text(text)]).into()),
            Self::Fault(e) => Err(e),
        }
    }
}

/// The caller of a tool: the key resolved by the middleware, metadata for its events.
fn caller(parts: &Parts) -> Result<Caller, ToolError> {
    let who = parts
        .extensions
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| {
            ToolError::Fault(ErrorData::internal_error("no API key on the request", None))
        })?;
    let meta = CommandMeta {
        tenant_id: who.tenant_id,
        correlation_id: correlation_id(&parts.headers),
        causation_id: Uuid::now_v7(),
        actor: who.actor(),
        source: Channel::Mcp,
        now: Utc::now(),
    };
    Ok(Caller { who, meta })
}

/// The customer making a booking.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerArgs {
    /// Phone number: E.164 (+4917612345678), or national (0176 12345678) for the salon's country.
    #[schemars(regex(pattern = domain::values::patterns::PHONE_INPUT))]
    pub phone: String,
    /// Full name.
    pub name: String,
    /// E-mail, if the caller gave one.
    #[serde(default)]
    pub email: Option<String>,
}

/// Slots in a tool answer unless the caller asks for more: enough to offer a choice, small
/// enough for a voice platform (Retell cuts tool results at about 15,000 characters).
const DEFAULT_SLOTS: u32 = 20;
const MAX_SLOTS: u32 = 500;

/// A question for free slots.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AvailabilityArgs {
    /// The service (from list_services).
    pub service_id: ServiceId,
    /// One local date (YYYY-MM-DD); or give start_date (and end_date).
    #[serde(default)]
    pub date: Option<NaiveDate>,
    /// First local date of a range.
    #[serde(default)]
    pub start_date: Option<NaiveDate>,
    /// Last local date of a range (at most 31 days after the first).
    #[serde(default)]
    pub end_date: Option<NaiveDate>,
    /// Only these branches; every branch offering the service when absent.
    #[serde(default)]
    pub branch_ids: Option<Vec<BranchId>>,
    /// Only this staff member's slots.
    #[serde(default)]
    pub preferred_staff_id: Option<StaffId>,
    /// How many slots to list, earliest first (default 20, at most 500); total_slots says
    /// how many there are.
    #[serde(default)]
    pub max_slots: Option<u32>,
}

/// Free slots, the earliest first.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SlotList {
    /// Whether any slot is free in the range.
    pub available: bool,
    /// How many slots are free in the range.
    pub total_slots: usize,
    /// The earliest of them (max_slots at most), by start, then branch and staff.
    pub slots: Vec<Slot>,
    /// The first free slot in or after the range, up to the advance limit; null if none.
    pub next_available: Option<Slot>,
}

/// A slot to book or hold.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BookArgs {
    /// The branch (from check_availability's slot).
    pub branch_id: BranchId,
    /// The service (from list_services).
    pub service_id: ServiceId,
    /// A staff member (from the slot); the first qualified free one when absent.
    #[serde(default)]
    pub staff_id: Option<StaffId>,
    /// Start, RFC 3339 with an offset, e.g. 2026-12-01T10:00:00+01:00.
    pub start: DateTime<Utc>,
    /// Who comes.
    pub customer: CustomerArgs,
    /// Notes for the staff.
    #[serde(default)]
    pub notes: Option<String>,
    /// The phone call this happens on, if any.
    #[serde(default)]
    pub call_id: Option<String>,
    /// Any unique string per intended booking (a UUID); a retry with the same key and
    /// arguments returns the first answer and books nothing more.
    pub idempotency_key: String,
}

impl BookArgs {
    fn input(&self, hold_only: bool) -> CreateBookingInput {
        CreateBookingInput {
            branch_id: self.branch_id,
            service_id: self.service_id,
            staff_id: self.staff_id,
            start: self.start,
            customer: CustomerInput {
                phone: self.customer.phone.clone(),
                name: self.customer.name.clone(),
                email: self.customer.email.clone(),
            },
            notes: self.notes.clone(),
            source: Some(if self.call_id.is_some() {
                BookingSource::Phone
            } else {
                BookingSource::Mcp
            }),
            call_id: self.call_id.clone(),
            hold_only,
        }
    }
}

/// A slot held for a caller who has not yet said yes.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Hold {
    /// Pass to confirm_hold (it is also the booking's id).
    pub hold_id: BookingId,
    /// The slot is kept until then; afterwards it may be given to someone else.
    pub expires_at: DateTime<Utc>,
    /// The held booking (status `held`).
    pub booking: BookingView,
}

/// One booking by id.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BookingRef {
    /// The booking (or hold) id.
    pub booking_id: BookingId,
}

/// A hold to turn into a booking.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmArgs {
    /// From hold_slot.
    pub hold_id: BookingId,
    /// A unique string per confirmation; a retry with the same key answers the same.
    pub idempotency_key: String,
}

/// A booking to cancel.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelArgs {
    /// The booking.
    pub booking_id: BookingId,
    /// Why, in a few words ("customer ill").
    pub reason: String,
    /// A unique string per cancellation; a retry with the same key answers the same.
    pub idempotency_key: String,
}

/// A booking to move.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RescheduleArgs {
    /// The booking.
    pub booking_id: BookingId,
    /// The new start, RFC 3339 with an offset.
    pub start: DateTime<Utc>,
    /// Another staff member; the same one when absent.
    #[serde(default)]
    pub staff_id: Option<StaffId>,
    /// A unique string per move; a retry with the same key answers the same.
    pub idempotency_key: String,
}

/// Whose bookings.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerLookup {
    /// The customer's phone: E.164, or national for the salon's country.
    #[schemars(regex(pattern = domain::values::patterns::PHONE_INPUT))]
    pub phone: String,
    /// Also bookings that have started or ended; only upcoming ones when absent or false.
    #[serde(default)]
    pub include_past: bool,
}

/// A customer's bookings.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CustomerBookings {
    /// In start order (at most 50).
    pub bookings: Vec<BookingView>,
}

/// Services on offer.
#[derive(Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServicesArgs {
    /// Only services offered at this branch.
    #[serde(default)]
    pub branch_id: Option<BranchId>,
}

#[tool_router]
impl BookingTools {
    /// Free appointment slots for a service on a date or a range of dates (up to 31 days),
    /// and the next free slot after them.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn check_availability(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<AvailabilityArgs>,
    ) -> Result<Json<SlotList>, ToolError> {
        let caller = caller(&parts)?;
        let max = args.max_slots.unwrap_or(DEFAULT_SLOTS);
        if !(1..=MAX_SLOTS).contains(&max) {
            return Err(ToolError::Refused(format!(
                "VALIDATION_FAILED: max_slots must be between 1 and {MAX_SLOTS}"
            )));
        }
        let input = CheckAvailabilityInput {
            service_id: args.service_id,
            date: args.date,
            start_date: args.start_date,
            end_date: args.end_date,
            branch_ids: args.branch_ids,
            preferred_staff_id: args.preferred_staff_id,
            min_position: self.app.own_writes.at_least(caller.who.key_id, None),
        };
        let answer = availability::check(
            axum::extract::State(self.app.clone()),
            caller,
            error::Json(input),
        )
        .await?
        .0;
        let total_slots = answer.slots.len();
        let mut slots = answer.slots;
        slots.truncate(usize::try_from(max).unwrap_or(usize::MAX));
        Ok(Json(SlotList {
            available: answer.available,
            total_slots,
            slots,
            next_available: answer.next_available,
        }))
    }

    /// Staff members qualified and free for a service at a branch at one start time, best
    /// skilled first.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn find_available_staff(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(mut query): Parameters<AvailableStaffQuery>,
    ) -> Result<Json<FreeStaffList>, ToolError> {
        let caller = caller(&parts)?;
        query.min_position = self
            .app
            .own_writes
            .at_least(caller.who.key_id, query.min_position);
        let answer = availability::available_staff(
            axum::extract::State(self.app.clone()),
            caller,
            error::Query(query),
        )
        .await?;
        Ok(Json(answer.0))
    }

    /// Holds a slot while the caller decides: nobody else can take it until expires_at.
    /// Confirm it with confirm_hold; unconfirmed, it lapses by itself.
    #[tool(
        output_schema = schema_for_output::<Hold>(),
        annotations(destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn hold_slot(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<BookArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let caller = caller(&parts)?;
        let app = &self.app;
        let value = self
            .once(&caller, "hold_slot", &args.idempotency_key, &args, async {
                let hold_id = BookingId::new();
                let out = app
                    .commands
                    .create_booking(&caller.who, &caller.meta, hold_id, args.input(true))
                    .await?;
                app.own_writes.wrote(caller.who.key_id, out.position);
                if let Some(call_id) = &args.call_id {
                    crate::calls::remember_hold(&app.pool, caller.who.tenant_id, call_id, hold_id)
                        .await?;
                }
                let hold = Hold {
                    hold_id,
                    expires_at: caller.meta.now + app.commands.hold_ttl(),
                    booking: BookingView::of(&out.state)?,
                };
                to_value(&hold)
            })
            .await?;
        Ok(CallToolResult::structured(value))
    }

    /// Turns a hold into a confirmed booking. Fails if the hold has lapsed: then check
    /// availability again.
    #[tool(
        output_schema = schema_for_output::<BookingView>(),
        annotations(destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn confirm_hold(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<ConfirmArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let caller = caller(&parts)?;
        let app = &self.app;
        let value = self
            .once(
                &caller,
                "confirm_hold",
                &args.idempotency_key,
                &args,
                async {
                    let out = app
                        .commands
                        .confirm_booking(&caller.who, &caller.meta, args.hold_id)
                        .await?;
                    app.own_writes.wrote(caller.who.key_id, out.position);
                    to_value(&BookingView::of(&out.state)?)
                },
            )
            .await?;
        Ok(CallToolResult::structured(value))
    }

    /// Books an appointment at once (no hold step).
    #[tool(
        output_schema = schema_for_output::<BookingView>(),
        annotations(destructive_hint = false, idempotent_hint = true, open_world_hint = false))]
    async fn create_booking(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<BookArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let caller = caller(&parts)?;
        let app = &self.app;
        let value = self
            .once(
                &caller,
                "create_booking",
                &args.idempotency_key,
                &args,
                async {
                    let out = app
                        .commands
                        .create_booking(
                            &caller.who,
                            &caller.meta,
                            BookingId::new(),
                            args.input(false),
                        )
                        .await?;
                    app.own_writes.wrote(caller.who.key_id, out.position);
                    to_value(&BookingView::of(&out.state)?)
                },
            )
            .await?;
        Ok(CallToolResult::structured(value))
    }

    /// Cancels a booking (or releases a hold) and frees its slot.
    #[tool(
        output_schema = schema_for_output::<BookingView>(),
        annotations(destructive_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn cancel_booking(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<CancelArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let caller = caller(&parts)?;
        let app = &self.app;
        let value = self
            .once(
                &caller,
                "cancel_booking",
                &args.idempotency_key,
                &args,
                async {
                    let input = CancelBookingInput {
                        reason: args.reason.clone(),
                    };
                    let out = app
                        .commands
                        .cancel_booking(&caller.who, &caller.meta, args.booking_id, input)
                        .await?;
                    app.own_writes.wrote(caller.who.key_id, out.position);
                    to_value(&BookingView::of(&out.state)?)
                },
            )
            .await?;
        Ok(CallToolResult::structured(value))
    }

    /// Moves a booking to a new start (and optionally another staff member). The new slot is
    /// taken before the old one is freed.
    #[tool(
        output_schema = schema_for_output::<BookingView>(),
        annotations(destructive_hint = true, idempotent_hint = true, open_world_hint = false))]
    async fn reschedule_booking(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<RescheduleArgs>,
    ) -> Result<CallToolResult, ToolError> {
        let caller = caller(&parts)?;
        let app = &self.app;
        let value = self
            .once(
                &caller,
                "reschedule_booking",
                &args.idempotency_key,
                &args,
                async {
                    let input = RescheduleBookingInput {
                        start: args.start,
                        staff_id: args.staff_id,
                    };
                    let out = app
                        .commands
                        .reschedule_booking(&caller.who, &caller.meta, args.booking_id, input)
                        .await?;
                    app.own_writes.wrote(caller.who.key_id, out.position);
                    to_value(&BookingView::of(&out.state)?)
                },
            )
            .await?;
        Ok(CallToolResult::structured(value))
    }

    /// One booking: status, time, staff, customer, confirmation number.
    ///
    /// Read from the booking's own events, not from a read model: an agent that has just held,
    /// confirmed or moved a booking mid-call sees that change here at once.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn get_booking(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<BookingRef>,
    ) -> Result<Json<BookingView>, ToolError> {
        let caller = caller(&parts)?;
        let (booking, _version) = self
            .app
            .commands
            .booking(caller.who.tenant_id, args.booking_id)
            .await?;
        Ok(Json(BookingView::of(&booking)?))
    }

    /// A customer's bookings, found by phone number: upcoming ones, or all with include_past.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn find_customer_bookings(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<CustomerLookup>,
    ) -> Result<Json<CustomerBookings>, ToolError> {
        let caller = caller(&parts)?;
        let from = (!args.include_past).then_some(caller.meta.now);
        let query = ListBookingsQuery {
            customer_phone: Some(args.phone),
            from,
            limit: Some(50),
            min_position: self.app.own_writes.at_least(caller.who.key_id, None),
            ..ListBookingsQuery::default()
        };
        let page: BookingPage = bookings::list(
            axum::extract::State(self.app.clone()),
            caller,
            error::Query(query),
        )
        .await?
        .0;
        let bookings = page
            .data
            .into_iter()
            .filter(|b| {
                args.include_past
                    || matches!(b.status, BookingStatus::Held | BookingStatus::Confirmed)
            })
            .collect();
        Ok(Json(CustomerBookings { bookings }))
    }

    /// Where an incoming call should go: the branch owning the called number, whether it is
    /// open now, else the nearest open branch, the agent for the caller's language, the wait.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn route_incoming_call(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(call): Parameters<IncomingCall>,
    ) -> Result<Json<RoutingDecision>, ToolError> {
        let caller = caller(&parts)?;
        let decision = routing::decide(&self.app, &caller, &call).await?;
        Ok(Json(decision))
    }

    /// Up to five branches nearest to a point, with their distance and whether they are open
    /// now.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn find_nearest_branch(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(query): Parameters<NearestBranchQuery>,
    ) -> Result<Json<NearbyBranches>, ToolError> {
        let caller = caller(&parts)?;
        Ok(Json(routing::nearest(&self.app, &caller, &query).await?))
    }

    /// The services on offer, with duration, price and the branches offering them.
    #[tool(annotations(read_only_hint = true, open_world_hint = false))]
    async fn list_services(
        &self,
        Extension(parts): Extension<Parts>,
        Parameters(args): Parameters<ServicesArgs>,
    ) -> Result<Json<Catalog>, ToolError> {
        let caller = caller(&parts)?;
        let query = CatalogQuery {
            branch_id: args.branch_id,
            include_retired: None,
            min_position: self.app.own_writes.at_least(caller.who.key_id, None),
        };
        let answer = services::list(
            axum::extract::State(self.app.clone()),
            caller,
            error::Query(query),
        )
        .await?;
        Ok(Json(answer.0))
    }
}

impl BookingTools {
    /// Runs a write tool once per key and arguments.
    async fn once<A: Serialize>(
        &self,
        caller: &Caller,
        tool: &str,
        key: &str,
        args: &A,
        work: impl Future<Output = Result<Value, ApiError>>,
    ) -> Result<Value, ToolError> {
        if key.is_empty() || key.chars().count() > 200 {
            return Err(ToolError::Refused(
                "VALIDATION_FAILED: idempotency_key must be 1 to 200 characters".to_owned(),
            ));
        }
        let body = serde_json::to_vec(args)
            .map_err(|e| ToolError::Fault(ErrorData::internal_error(e.to_string(), None)))?;
        let scoped = format!("mcp:{tool}:{key}");
        Ok(once(
            &self.app,
            caller.who.tenant_id,
            &scoped,
            ("mcp", tool, &body),
            work,
        )
        .await?)
    }
}

fn to_value<T: Serialize>(value: &T) -> Result<Value, ApiError> {
    serde_json::to_value(value).map_err(ApiError::internal)
}

/// The envelope's name for an error type (`VALIDATION_FAILED`).
fn kind_name(kind: crate::error::ErrorType) -> String {
    serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nullable_types_become_any_of_and_only_standard_formats_stay() {
        let mut schema = json!({
            "type": "object",
            "properties": {
                "notes": { "description": "Notes.", "type": ["string", "null"], "maxLength": 9 },
                "count": { "type": "integer" },
                "both": { "type": ["string", "integer"] },
                "nested": { "items": { "type": ["number", "null"], "format": "double" } },
                "id": { "type": "string", "format": "uuid" },
            },
        });
        make_portable(&mut schema);
        assert_eq!(
            schema["properties"]["notes"],
            json!({ "description": "Notes.",
                    "anyOf": [{ "type": "string", "maxLength": 9 }, { "type": "null" }] })
        );
        assert_eq!(schema["properties"]["count"], json!({ "type": "integer" }));
        assert_eq!(
            schema["properties"]["both"],
            json!({ "type": ["string", "integer"] })
        );
        assert_eq!(
            schema["properties"]["nested"]["items"],
            json!({ "anyOf": [{ "type": "number" }, { "type": "null" }] })
        );
        assert_eq!(schema["properties"]["id"]["format"], "uuid");
    }

    #[test]
    fn no_tool_schema_keeps_a_type_list() {
        let router = portable_router();
        assert_eq!(router.map.len(), 12);
        for route in router.map.values() {
            let tool = &route.attr;
            let text = serde_json::to_string(&(&tool.input_schema, &tool.output_schema)).unwrap();
            assert!(!text.contains(r#""type":["#), "{}: {text}", tool.name);
            assert!(
                tool.output_schema.is_some(),
                "{} has an output schema",
                tool.name
            );
        }
    }
}
