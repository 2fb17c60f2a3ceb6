//! The OpenAPI 3.1 document, served at `/api/v2/openapi.json`. Request and response schemas
//! are generated from the same types the handlers use, so the document cannot drift from them.

use domain::values::patterns;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{Map, Value, json};

use crate::error::ErrorEnvelope;
use crate::routes::admin::{ApiKeyView, NewKeyInput, RegisteredTenant};
use crate::routes::health::Health;
use crate::views::{BookingView, Data, StaffView, TenantView};

/// Every error status a route can answer with; all use the error envelope.
const ERROR_STATUSES: [(&str, &str); 12] = [
    ("400", "Malformed request (VALIDATION_FAILED)"),
    ("401", "Missing or invalid credentials (PERMISSION_DENIED)"),
    (
        "403",
        "Role lacks the permission (PERMISSION_DENIED) or plan limit reached (TENANT_QUOTA_EXCEEDED)",
    ),
    (
        "404",
        "No such resource for this tenant (RESOURCE_NOT_FOUND)",
    ),
    (
        "405",
        "Method not allowed on this route (VALIDATION_FAILED)",
    ),
    (
        "409",
        "Slot taken (SLOT_UNAVAILABLE), state does not allow it (INVALID_STATE_TRANSITION), concurrent change (VERSION_CONFLICT) or duplicate (TRANSACTION_FAILED)",
    ),
    ("413", "Body too large (VALIDATION_FAILED)"),
    ("415", "Body is not JSON (VALIDATION_FAILED)"),
    ("422", "A rule refused the input (VALIDATION_FAILED)"),
    ("429", "Too many requests (RATE_LIMIT_EXCEEDED)"),
    ("500", "Failed on our side (TRANSACTION_FAILED)"),
    ("503", "A dependency is down; retry (SERVICE_UNAVAILABLE)"),
];

struct Doc {
    generator: SchemaGenerator,
    paths: Map<String, Value>,
}

/// One operation: method, path, what it needs and answers.
struct Op<'a> {
    method: &'a str,
    path: &'a str,
    tag: &'a str,
    summary: &'a str,
    permission: Option<&'a str>,
    body: Option<Schema>,
    status: &'a str,
    response: Option<Schema>,
}

impl Doc {
    fn schema<T: JsonSchema>(&mut self) -> Option<Schema> {
        Some(self.generator.subschema_for::<T>())
    }

    fn add(&mut self, op: Op<'_>) {
        let parameters: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| {
                let schema = match name {
                    "date" => json!({ "type": "string", "format": "date" }),
                    "phone" => json!({ "type": "string", "pattern": patterns::PHONE_INPUT }),
                    "projection" | "event_id" => json!({ "type": "string" }),
                    _ => json!({ "type": "string", "format": "uuid" }),
                };
                json!({ "name": name, "in": "path", "required": true, "schema": schema })
            })
            .chain((op.method == "post").then(|| {
                json!({ "name": "Idempotency-Key", "in": "header", "required": false,
                        "description": "Repeats with the same key return the first answer and write nothing.",
                        "schema": { "type": "string", "minLength": 1, "maxLength": 255, "pattern": patterns::IDEMPOTENCY_KEY } })
            }))
            .collect();
        let mut responses = Map::new();
        let success = match op.response {
            Some(schema) => {
                json!({ "description": "Success", "content": { "application/json": { "schema": schema } } })
            }
            None => json!({ "description": "Success, no body" }),
        };
        responses.insert(op.status.to_owned(), success);
        for (status, _) in ERROR_STATUSES {
            responses.insert(
                status.to_owned(),
                json!({ "$ref": format!("#/components/responses/Error{status}") }),
            );
        }
        let mut operation = json!({
            "tags": [op.tag],
            "summary": op.summary,
            "operationId": format!("{}_{}", op.method, op.path.replace(['/', '{', '}', '-'], "_").trim_matches('_')),
            "parameters": parameters,
            "responses": responses,
        });
        if let Some(p) = op.permission {
            operation["description"] = json!(format!("Requires the `{p}` permission."));
        }
        if let Some(body) = op.body {
            operation["requestBody"] =
                json!({ "required": true, "content": { "application/json": { "schema": body } } });
        }
        if op.tag == "admin" {
            operation["security"] = json!([{ "operator": [] }]);
        } else if op.tag == "health" || op.tag == "webhooks" {
            operation["security"] = json!([]);
        }
        let path = self
            .paths
            .entry(op.path.to_owned())
            .or_insert_with(|| json!({}));
        path[op.method] = operation;
    }
}

impl Doc {
    /// Marks a GET operation's success body as a stream of `media_type` (NDJSON lines,
    /// Server-Sent Events), each item one instance of its schema.
    fn streams_as(&mut self, path: &str, media_type: &str) {
        let ok = &mut self.paths[path]["get"]["responses"]["200"]["content"];
        if let Some(json) = ok.get("application/json").cloned() {
            *ok = json!({ media_type: json });
        }
    }

    /// Documents `T`'s fields as the query parameters of an operation added before.
    fn query<T: JsonSchema>(&mut self, path: &str, method: &str) {
        let schema = self.generator.root_schema_for::<T>();
        let required: Vec<Value> = schema
            .get("required")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let properties = schema
            .get("properties")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let parameters = properties.into_iter().map(|(name, mut schema)| {
            let description = schema.as_object_mut().and_then(|o| o.remove("description"));
            let mut parameter = json!({
                "name": name,
                "in": "query",
                "required": required.contains(&Value::String(name.clone())),
                "schema": schema,
            });
            if let Some(description) = description {
                parameter["description"] = description;
            }
            parameter
        });
        if let Some(list) = self.paths[path][method]["parameters"].as_array_mut() {
            list.extend(parameters);
        }
    }
}

fn mcp(path: &str) -> String {
    format!("/api/v2/mcp{path}")
}

/// Builds the document.
#[expect(
    clippy::too_many_lines,
    reason = "one entry per route, read as a table"
)]
pub fn document() -> Value {
    use commands::*;
    use domain::settings::TenantSettings;
    use domain::tenant::{Branch, Service, ServiceDetails};

    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut d = Doc {
        generator: settings.into_generator(),
        paths: Map::new(),
    };
    let manage = Some("manage-company");
    let staff = Some("manage-staff");
    let book = Some("create-bookings");
    let cancel = Some("cancel-bookings");

    macro_rules! op {
        ($m:literal, $p:expr, $tag:literal, $sum:literal, $perm:expr, none, $st:literal, $resp:ty) => {{
            let response = d.schema::<$resp>();
            d.add(Op {
                method: $m,
                path: $p.as_ref(),
                tag: $tag,
                summary: $sum,
                permission: $perm,
                body: None,
                status: $st,
                response,
            });
        }};
        ($m:literal, $p:expr, $tag:literal, $sum:literal, $perm:expr, $body:ty, $st:literal, $resp:ty) => {{
            let body = d.schema::<$body>();
            let response = d.schema::<$resp>();
            d.add(Op {
                method: $m,
                path: $p.as_ref(),
                tag: $tag,
                summary: $sum,
                permission: $perm,
                body,
                status: $st,
                response,
            });
        }};
    }

    op!(
        "post",
        "/api/v2/admin/tenants",
        "admin",
        "Register a tenant and its first admin key",
        None,
        RegisterTenantInput,
        "201",
        Data<RegisteredTenant>
    );
    op!(
        "post",
        "/api/v2/admin/tenants/{tenant_id}/api-keys",
        "admin",
        "Create an API key for a tenant",
        None,
        NewKeyInput,
        "201",
        ApiKeyView
    );
    op!(
        "get",
        "/api/v2/openapi.json",
        "health",
        "This document",
        None,
        none,
        "200",
        Value
    );
    op!(
        "get",
        mcp("/health"),
        "health",
        "Liveness and dependency status",
        None,
        none,
        "200",
        Health
    );
    op!(
        "get",
        "/metrics",
        "health",
        "Prometheus metrics (text format 0.0.4): requests, durations, in-flight, circuits, event store, relay, projections, consumers, saga jobs, holds, conflicts",
        None,
        none,
        "200",
        String
    );
    op!(
        "get",
        mcp("/health/ready"),
        "health",
        "Readiness: Postgres, NATS, relay and projection backlogs (503 with the failing checks)",
        None,
        none,
        "200",
        crate::routes::health::Readiness
    );
    op!(
        "post",
        mcp("/api-keys"),
        "tenant",
        "Create an API key",
        manage,
        NewKeyInput,
        "201",
        ApiKeyView
    );
    op!(
        "get",
        mcp("/tenant"),
        "tenant",
        "The tenant profile from its read model: tenant, features, limits",
        None,
        none,
        "200",
        Data<crate::views::TenantProfile>
    );
    d.query::<crate::routes::tenant::ReadQuery>(&mcp("/tenant"), "get");
    op!(
        "put",
        mcp("/tenant"),
        "tenant",
        "Change name or contact",
        manage,
        UpdateTenantInput,
        "200",
        Data<TenantView>
    );
    op!(
        "put",
        mcp("/tenant/plan"),
        "tenant",
        "Change plan",
        manage,
        ChangePlanInput,
        "200",
        Data<TenantView>
    );
    op!(
        "put",
        mcp("/tenant/settings"),
        "tenant",
        "Replace settings",
        manage,
        TenantSettings,
        "200",
        Data<TenantView>
    );
    op!(
        "post",
        mcp("/tenant/branches"),
        "branches",
        "Create a branch",
        manage,
        BranchInput,
        "201",
        Data<Branch>
    );
    op!(
        "put",
        mcp("/tenant/branches/{branch_id}"),
        "branches",
        "Change a branch",
        manage,
        BranchInput,
        "200",
        Data<Branch>
    );
    op!(
        "post",
        mcp("/tenant/branches/{branch_id}/activate"),
        "branches",
        "Reopen a branch",
        manage,
        none,
        "200",
        Data<Branch>
    );
    op!(
        "post",
        mcp("/tenant/branches/{branch_id}/deactivate"),
        "branches",
        "Close a branch for bookings",
        manage,
        none,
        "200",
        Data<Branch>
    );
    op!(
        "post",
        mcp("/tenant/branches/{branch_id}/phone-numbers"),
        "branches",
        "Route a phone number to a branch",
        manage,
        PhoneNumberInput,
        "200",
        Data<Branch>
    );
    d.add(Op {
        method: "delete",
        path: &mcp("/tenant/phone-numbers/{phone}"),
        tag: "branches",
        summary: "Stop routing a phone number",
        permission: manage,
        body: None,
        status: "204",
        response: None,
    });
    op!(
        "post",
        mcp("/services"),
        "services",
        "Define a service",
        manage,
        ServiceDetails,
        "201",
        Data<Service>
    );
    op!(
        "put",
        mcp("/services/{service_id}"),
        "services",
        "Change a service",
        manage,
        ServiceDetails,
        "200",
        Data<Service>
    );
    op!(
        "post",
        mcp("/services/{service_id}/retire"),
        "services",
        "Retire a service",
        manage,
        none,
        "200",
        Data<Service>
    );
    op!(
        "post",
        mcp("/staff"),
        "staff",
        "Hire a staff member",
        staff,
        HireStaffInput,
        "201",
        Data<StaffView>
    );
    op!(
        "get",
        mcp("/staff/{staff_id}"),
        "staff",
        "A staff member and their calendar",
        None,
        none,
        "200",
        Data<StaffView>
    );
    op!(
        "put",
        mcp("/staff/{staff_id}"),
        "staff",
        "Change contact details",
        staff,
        StaffProfileInput,
        "200",
        Data<StaffView>
    );
    op!(
        "put",
        mcp("/staff/{staff_id}/schedule"),
        "staff",
        "Replace the weekly schedule",
        staff,
        ScheduleInput,
        "200",
        Data<StaffView>
    );
    op!(
        "put",
        mcp("/staff/{staff_id}/overrides/{date}"),
        "staff",
        "Set or clear one date's hours",
        staff,
        OverrideInput,
        "200",
        Data<StaffView>
    );
    op!(
        "put",
        mcp("/staff/{staff_id}/services/{service_id}"),
        "staff",
        "Qualify for a service",
        staff,
        AssignSkillInput,
        "200",
        Data<StaffView>
    );
    op!(
        "delete",
        mcp("/staff/{staff_id}/services/{service_id}"),
        "staff",
        "Withdraw a qualification",
        staff,
        none,
        "200",
        Data<StaffView>
    );
    op!(
        "post",
        mcp("/staff/{staff_id}/blocks"),
        "staff",
        "Block time (vacation, sickness)",
        staff,
        BlockTimeInput,
        "201",
        Data<StaffView>
    );
    op!(
        "delete",
        mcp("/staff/{staff_id}/blocks/{block_id}"),
        "staff",
        "Remove a block",
        staff,
        none,
        "200",
        Data<StaffView>
    );
    op!(
        "post",
        mcp("/staff/{staff_id}/deactivate"),
        "staff",
        "Take off the rota",
        staff,
        none,
        "200",
        Data<StaffView>
    );
    op!(
        "post",
        mcp("/bookings"),
        "bookings",
        "Book: hold, create, reserve",
        book,
        CreateBookingInput,
        "201",
        Data<BookingView>
    );
    op!(
        "get",
        "/api/v2/admin/projections",
        "admin",
        "Where each projection stands: applied position, backlog, parked events",
        None,
        none,
        "200",
        Vec<projections::runner::Status>
    );
    op!(
        "get",
        "/api/v2/admin/deadletters",
        "admin",
        "Events a projection parked, in store order",
        None,
        none,
        "200",
        Vec<projections::dead_letters::DeadLetter>
    );
    d.query::<crate::routes::projections::ParkedQuery>("/api/v2/admin/deadletters", "get");
    op!(
        "post",
        "/api/v2/admin/deadletters/{projection}/retry",
        "admin",
        "Apply a projection's parked events again",
        None,
        none,
        "200",
        projections::dead_letters::Retried
    );
    op!(
        "post",
        "/api/v2/admin/deadletters/{projection}/{event_id}/skip",
        "admin",
        "Give one parked event up so that its aggregate moves on",
        None,
        none,
        "200",
        crate::routes::projections::Skipped
    );
    op!(
        "get",
        mcp("/audit/events"),
        "audit",
        "The tenant's events with their metadata, in store order, paged",
        None,
        none,
        "200",
        crate::routes::audit::AuditPage
    );
    d.query::<crate::routes::audit::AuditQuery>(&mcp("/audit/events"), "get");
    op!(
        "get",
        mcp("/audit/export"),
        "audit",
        "The tenant's events as NDJSON (one event per line), in store order",
        None,
        none,
        "200",
        projections::event::StoredEvent
    );
    d.query::<crate::routes::audit::AuditQuery>(&mcp("/audit/export"), "get");
    d.streams_as(&mcp("/audit/export"), "application/x-ndjson");
    op!(
        "get",
        mcp("/bookings/{booking_id}/history"),
        "bookings",
        "Every event of a booking, oldest first",
        None,
        none,
        "200",
        crate::routes::audit::AuditPage
    );
    op!(
        "get",
        mcp("/bookings"),
        "bookings",
        "Bookings from the read model: filtered, in start order, paged",
        None,
        none,
        "200",
        crate::routes::bookings::BookingPage
    );
    d.query::<crate::routes::bookings::ListBookingsQuery>(&mcp("/bookings"), "get");
    op!(
        "get",
        mcp("/bookings/{booking_id}"),
        "bookings",
        "A booking",
        None,
        none,
        "200",
        Data<BookingView>
    );
    op!(
        "put",
        mcp("/bookings/{booking_id}"),
        "bookings",
        "Change customer details or notes",
        book,
        UpdateBookingInput,
        "200",
        Data<BookingView>
    );
    op!(
        "post",
        mcp("/bookings/{booking_id}/cancel"),
        "bookings",
        "Cancel and free the slot",
        cancel,
        CancelBookingInput,
        "200",
        Data<BookingView>
    );
    op!(
        "post",
        mcp("/bookings/{booking_id}/reschedule"),
        "bookings",
        "Move to a new time or staff member",
        book,
        RescheduleBookingInput,
        "200",
        Data<BookingView>
    );
    op!(
        "post",
        mcp("/bookings/{booking_id}/confirm"),
        "bookings",
        "Confirm a held booking",
        book,
        none,
        "200",
        Data<BookingView>
    );
    op!(
        "post",
        mcp("/bookings/{booking_id}/complete"),
        "bookings",
        "Record that it took place",
        book,
        none,
        "200",
        Data<BookingView>
    );
    op!(
        "post",
        mcp("/bookings/{booking_id}/no-show"),
        "bookings",
        "Record that the customer did not come",
        book,
        none,
        "200",
        Data<BookingView>
    );

    op!(
        "get",
        mcp("/tenant/branches"),
        "branches",
        "Branches with their services and staff, from the read models",
        None,
        none,
        "200",
        crate::routes::branches::BranchList
    );
    d.query::<crate::routes::branches::BranchesQuery>(&mcp("/tenant/branches"), "get");
    op!(
        "get",
        mcp("/tenant/branches/{branch_id}"),
        "branches",
        "A branch with its services and staff",
        None,
        none,
        "200",
        crate::views::BranchDetail
    );
    d.query::<crate::routes::branches::BranchQuery>(&mcp("/tenant/branches/{branch_id}"), "get");
    op!(
        "get",
        mcp("/services"),
        "services",
        "The service catalog",
        None,
        none,
        "200",
        crate::routes::services::Catalog
    );
    d.query::<crate::routes::services::CatalogQuery>(&mcp("/services"), "get");
    op!(
        "get",
        mcp("/services/{service_id}"),
        "services",
        "A service",
        None,
        none,
        "200",
        Data<Service>
    );
    d.query::<crate::routes::tenant::ReadQuery>(&mcp("/services/{service_id}"), "get");
    op!(
        "put",
        mcp("/integrations/calcom"),
        "integrations",
        "Connect Cal.com: the key (sealed at rest) and the event types and hosts",
        manage,
        crate::routes::integrations::CalComInput,
        "200",
        crate::routes::integrations::CalComConnection
    );
    op!(
        "get",
        mcp("/integrations/calcom"),
        "integrations",
        "The Cal.com connection, without its key",
        Some("view-integrations"),
        none,
        "200",
        crate::routes::integrations::CalComConnection
    );
    d.add(Op {
        method: "delete",
        path: &mcp("/integrations/calcom"),
        tag: "integrations",
        summary: "Disconnect Cal.com",
        permission: manage,
        body: None,
        status: "204",
        response: None,
    });
    op!(
        "post",
        "/api/v2/webhooks/calcom/{tenant_id}",
        "webhooks",
        "Cal.com booking webhooks (X-Cal-Signature-256): bookings made in Cal.com block their host's time",
        None,
        serde_json::Value,
        "200",
        crate::routes::webhooks::WebhookOutcome
    );
    op!(
        "get",
        "/api/v2/admin/alerts",
        "admin",
        "Operator alerts, newest first",
        None,
        none,
        "200",
        crate::routes::alerts::Alerts
    );
    d.query::<crate::routes::alerts::AlertQuery>("/api/v2/admin/alerts", "get");
    let response = d.schema::<crate::routes::alerts::Alert>();
    d.add(Op {
        method: "post",
        path: "/api/v2/admin/alerts/{alert_id}/resolve",
        tag: "admin",
        summary: "Mark an alert resolved",
        permission: None,
        body: None,
        status: "200",
        response,
    });
    op!(
        "post",
        "/api/v2/webhooks/stripe",
        "webhooks",
        "Stripe events (Stripe-Signature): deposits paid or failed",
        None,
        serde_json::Value,
        "200",
        crate::routes::webhooks::WebhookOutcome
    );
    let response = d.schema::<crate::routes::webhooks::WebhookOutcome>();
    d.add(Op {
        method: "post",
        path: "/api/v2/webhooks/twilio/status",
        tag: "webhooks",
        summary: "Twilio delivery reports (X-Twilio-Signature), form-encoded",
        permission: None,
        body: None,
        status: "200",
        response,
    });
    op!(
        "get",
        mcp("/integrations/health"),
        "integrations",
        "Circuit state, failures and pending retries per integration",
        Some("view-integrations"),
        none,
        "200",
        crate::routes::integrations::IntegrationsHealth
    );
    op!(
        "get",
        mcp("/staff"),
        "staff",
        "The staff directory",
        None,
        none,
        "200",
        crate::routes::staff::Directory
    );
    d.query::<crate::routes::staff::DirectoryQuery>(&mcp("/staff"), "get");
    op!(
        "get",
        mcp("/staff/{staff_id}/calendar"),
        "staff",
        "A staff calendar over some dates, live or as of a version or time",
        None,
        none,
        "200",
        crate::routes::staff::CalendarView
    );
    d.query::<crate::routes::staff::CalendarQuery>(&mcp("/staff/{staff_id}/calendar"), "get");
    op!(
        "post",
        mcp("/bookings/check-availability"),
        "availability",
        "Free slots for a service on a date or range, and the next free one",
        None,
        crate::routes::availability::CheckAvailabilityInput,
        "200",
        crate::routes::availability::Availability
    );
    op!(
        "get",
        mcp("/staff/{staff_id}/availability"),
        "availability",
        "A staff member's working hours, free time and utilization per day",
        None,
        none,
        "200",
        crate::routes::availability::StaffAvailability
    );
    d.query::<crate::routes::availability::StaffAvailabilityQuery>(
        &mcp("/staff/{staff_id}/availability"),
        "get",
    );
    op!(
        "get",
        mcp("/staff/available"),
        "availability",
        "Qualified staff free for a service at a time, best first",
        None,
        none,
        "200",
        crate::routes::availability::FreeStaffList
    );
    d.query::<crate::routes::availability::AvailableStaffQuery>(&mcp("/staff/available"), "get");
    op!(
        "get",
        mcp("/staff/{staff_id}/workload"),
        "dashboard",
        "A staff member's appointments and utilization per day",
        None,
        none,
        "200",
        crate::routes::dashboard::Workload
    );
    d.query::<crate::routes::dashboard::StaffSpanQuery>(&mcp("/staff/{staff_id}/workload"), "get");
    op!(
        "get",
        mcp("/staff/{staff_id}/performance"),
        "dashboard",
        "A staff member's outcomes, no-show rate, utilization and bookings per day",
        None,
        none,
        "200",
        crate::routes::dashboard::Performance
    );
    d.query::<crate::routes::dashboard::StaffSpanQuery>(
        &mcp("/staff/{staff_id}/performance"),
        "get",
    );
    op!(
        "get",
        mcp("/dashboard/summary"),
        "dashboard",
        "Bookings by outcome, revenue, utilization, source mix and busiest hours",
        None,
        none,
        "200",
        crate::routes::dashboard::Summary
    );
    d.query::<crate::routes::dashboard::SummaryQuery>(&mcp("/dashboard/summary"), "get");
    op!(
        "get",
        mcp("/dashboard/timeseries"),
        "dashboard",
        "Bookings and revenue per hour, day, week or month",
        None,
        none,
        "200",
        crate::routes::dashboard::Timeseries
    );
    d.query::<crate::routes::dashboard::TimeseriesQuery>(&mcp("/dashboard/timeseries"), "get");
    op!(
        "get",
        mcp("/customers"),
        "customers",
        "Customers derived from their bookings, by phone number, paged",
        None,
        none,
        "200",
        crate::routes::customers::CustomerPage
    );
    d.query::<crate::routes::customers::CustomersQuery>(&mcp("/customers"), "get");
    op!(
        "get",
        mcp("/customers/{phone}"),
        "customers",
        "One customer",
        None,
        none,
        "200",
        projections::customers::Customer
    );
    d.query::<crate::routes::customers::ReadQuery>(&mcp("/customers/{phone}"), "get");
    op!(
        "get",
        mcp("/audit/stream"),
        "audit",
        "The tenant's events as Server-Sent Events, live from a position",
        None,
        none,
        "200",
        projections::event::StoredEvent
    );
    d.query::<crate::routes::live::StreamQuery>(&mcp("/audit/stream"), "get");
    op!(
        "get",
        mcp("/branches/{branch_id}/events"),
        "branches",
        "A branch's live channel as Server-Sent Events",
        None,
        none,
        "200",
        crate::routes::live::BranchUpdate
    );
    d.query::<crate::routes::live::StreamQuery>(&mcp("/branches/{branch_id}/events"), "get");
    d.streams_as(&mcp("/audit/stream"), "text/event-stream");
    d.streams_as(&mcp("/branches/{branch_id}/events"), "text/event-stream");
    d.query::<crate::routes::bookings::ShowBookingQuery>(&mcp("/bookings/{booking_id}"), "get");
    let mcp_access = Some("access-mcp");
    {
        use crate::routes::routing as r;
        op!(
            "post",
            mcp("/routing/incoming-call"),
            "routing",
            "Route an incoming call: branch, opening, nearest open branch, agent, wait",
            mcp_access,
            r::IncomingCall,
            "200",
            r::RoutingDecision
        );
        op!(
            "get",
            mcp("/routing/nearest-branch"),
            "routing",
            "Up to five active branches nearest to a point",
            None,
            none,
            "200",
            r::NearbyBranches
        );
        d.query::<r::NearestBranchQuery>(&mcp("/routing/nearest-branch"), "get");
        op!(
            "get",
            mcp("/routing/rules"),
            "routing",
            "The routing rules",
            None,
            none,
            "200",
            r::RoutingRules
        );
        op!(
            "put",
            mcp("/routing/rules"),
            "routing",
            "Replace the routing rules",
            manage,
            r::RoutingRules,
            "200",
            r::RoutingRules
        );
        op!(
            "get",
            mcp("/routing/call-distribution"),
            "routing",
            "Calls per branch and local hour, from the call log",
            None,
            none,
            "200",
            r::CallDistribution
        );
        d.query::<r::DistributionQuery>(&mcp("/routing/call-distribution"), "get");
    }
    {
        use crate::routes::call_log as c;
        op!(
            "get",
            mcp("/calls"),
            "routing",
            "The call log, newest first",
            None,
            none,
            "200",
            c::CallLog
        );
        d.query::<c::CallsQuery>(&mcp("/calls"), "get");
        op!(
            "get",
            mcp("/callbacks"),
            "routing",
            "Callers to ring back (calls that could not end in a booking)",
            None,
            none,
            "200",
            c::Callbacks
        );
        d.query::<c::CallbacksQuery>(&mcp("/callbacks"), "get");
        let response = d.schema::<c::Callback>();
        d.add(Op {
            method: "post",
            path: &mcp("/callbacks/{callback_id}/resolve"),
            tag: "routing",
            summary: "Mark a callback done",
            permission: book,
            body: None,
            status: "200",
            response,
        });
    }
    {
        use crate::routes::retell as r;
        op!(
            "put",
            mcp("/integrations/retell"),
            "integrations",
            "Connect Retell: the API key it signs with (sealed at rest)",
            manage,
            r::RetellInput,
            "200",
            r::RetellConnection
        );
        op!(
            "get",
            mcp("/integrations/retell"),
            "integrations",
            "Whether Retell is connected, and the paths to give it",
            Some("view-integrations"),
            none,
            "200",
            r::RetellConnection
        );
        d.add(Op {
            method: "delete",
            path: &mcp("/integrations/retell"),
            tag: "integrations",
            summary: "Disconnect Retell",
            permission: manage,
            body: None,
            status: "204",
            response: None,
        });
        op!(
            "post",
            "/api/v2/webhooks/retell/{tenant_id}/inbound",
            "webhooks",
            "Retell's inbound-call webhook (x-retell-signature): routes the call, answers the agent, metadata and dynamic variables",
            None,
            serde_json::Value,
            "200",
            serde_json::Value
        );
        op!(
            "post",
            "/api/v2/webhooks/retell/{tenant_id}",
            "webhooks",
            "Retell call webhooks (x-retell-signature): call_started, call_ended, call_analyzed",
            None,
            serde_json::Value,
            "200",
            crate::routes::webhooks::WebhookOutcome
        );
        op!(
            "post",
            "/api/v2/webhooks/retell/{tenant_id}/functions/{name}",
            "webhooks",
            "Retell custom functions (x-retell-signature): check_availability, next_available, hold_slot, confirm_hold, cancel_booking, reschedule_booking",
            None,
            serde_json::Value,
            "200",
            serde_json::Value
        );
        op!(
            "post",
            "/mcp",
            "mcp",
            "Model Context Protocol (Streamable HTTP, JSON-RPC 2.0; both protocol eras): the booking tools",
            mcp_access,
            serde_json::Value,
            "200",
            serde_json::Value
        );
    }

    let error = d.generator.subschema_for::<ErrorEnvelope>();
    let mut responses = Map::new();
    for (status, description) in ERROR_STATUSES {
        responses.insert(format!("Error{status}"), json!({ "description": description, "content": { "application/json": { "schema": error } } }));
    }
    let schemas = d.generator.take_definitions(true);
    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "bookingd",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Appointment booking for multi-branch service businesses. Commands answer with the resource, its version and the event position; errors use one envelope."
        },
        "servers": [{ "url": "/" }],
        "security": [{ "apiKey": [] }],
        "paths": d.paths,
        "components": {
            "schemas": schemas,
            "responses": responses,
            "securitySchemes": {
                "apiKey": { "type": "http", "scheme": "bearer", "description": "A tenant API key (bk_…)." },
                "operator": { "type": "http", "scheme": "bearer", "description": "BOOKINGD_OPERATOR_TOKEN." }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_resolves() {
        let doc = document();
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/components/").skip(1) {
            let path: Vec<&str> = piece.split('"').next().unwrap().split('/').collect();
            assert!(
                doc["components"][path[0]][path[1]].is_object(),
                "dangling $ref to {path:?}"
            );
        }
    }

    #[test]
    fn bookings_are_documented_with_their_errors() {
        let doc = document();
        let post = &doc["paths"]["/api/v2/mcp/bookings"]["post"];
        assert!(post["requestBody"].is_object());
        assert!(post["responses"]["409"].is_object());
    }

    #[test]
    fn read_routes_document_their_queries_and_streams() {
        let doc = document();
        let paths = &doc["paths"];
        let parameters = |path: &str| -> Vec<String> {
            paths[path]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect()
        };
        assert!(parameters("/api/v2/mcp/staff/available").contains(&"date_time".to_owned()));
        assert!(parameters("/api/v2/mcp/dashboard/summary").contains(&"min_position".to_owned()));
        assert!(parameters("/api/v2/mcp/bookings/{booking_id}").contains(&"as_of".to_owned()));
        assert!(
            paths["/api/v2/mcp/bookings/check-availability"]["post"]["requestBody"].is_object()
        );
        assert!(
            paths["/api/v2/mcp/audit/stream"]["get"]["responses"]["200"]["content"]
                ["text/event-stream"]
                .is_object()
        );
    }

    /// A client validating its input against the document learns the forms and bounds the
    /// API enforces, instead of being refused for them.
    #[test]
    fn inputs_carry_the_constraints_the_api_enforces() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let customer = &schemas["CustomerInput"]["properties"];
        assert_eq!(customer["phone"]["pattern"], patterns::PHONE_INPUT);
        assert_eq!(customer["name"]["maxLength"], 200);
        assert_eq!(customer["name"]["pattern"], patterns::TEXT);
        let service = &schemas["ServiceDetails"]["properties"];
        assert_eq!(service["duration_minutes"]["minimum"], 15);
        assert_eq!(service["duration_minutes"]["maximum"], 480);
        assert_eq!(service["branch_ids"]["minItems"], 1);
        assert_eq!(schemas["WeeklyHours"]["additionalProperties"], false);
        assert_eq!(
            schemas["NewKeyInput"]["properties"]["role"]["enum"][4],
            "readonly"
        );
        assert_eq!(
            schemas["BookingRules"]["properties"]["max_advance_days"]["maximum"],
            365
        );
        let zones = schemas["TimeZone"]["enum"].as_array().unwrap();
        assert!(zones.contains(&json!("Europe/Berlin")));
        let point = &schemas["Coordinates"]["properties"];
        assert_eq!(
            (&point["lat"]["minimum"], &point["lng"]["maximum"]),
            (&json!(-90), &json!(180))
        );

        let parameter = |path: &str, method: &str, name: &str| -> Value {
            doc["paths"][path][method]["parameters"]
                .as_array()
                .and_then(|list| list.iter().find(|p| p["name"] == name))
                .map(|p| p["schema"].clone())
                .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
        };
        let limit = parameter("/api/v2/mcp/bookings", "get", "limit");
        assert_eq!(
            (&limit["minimum"], &limit["maximum"]),
            (&json!(1), &json!(200))
        );
        let limit = parameter("/api/v2/mcp/audit/events", "get", "limit");
        assert_eq!(limit["maximum"], 1000);
        assert_eq!(
            parameter("/api/v2/mcp/tenant", "get", "min_position")["minimum"],
            1
        );
        let nearest = "/api/v2/mcp/routing/nearest-branch";
        assert_eq!(parameter(nearest, "get", "lat")["maximum"], 90);
        let distance = parameter(nearest, "get", "max_distance");
        assert_eq!(
            (&distance["exclusiveMinimum"], &distance["maximum"]),
            (&json!(0), &json!(20_000))
        );
        assert_eq!(
            parameter("/api/v2/mcp/customers/{phone}", "get", "phone")["pattern"],
            patterns::PHONE_INPUT
        );
        assert_eq!(
            parameter("/api/v2/mcp/bookings", "post", "Idempotency-Key")["pattern"],
            patterns::IDEMPOTENCY_KEY
        );
    }
}
