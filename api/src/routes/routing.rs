//! Call routing: which branch and which agent take an incoming call, the branches nearest to
//! a caller, the tenant's routing rules, and how calls spread over branches and hours.
//!
//! A call goes to the branch that owns the called number when it is open now (in its own
//! zone). Otherwise to the nearest open branch of the tenant within the rules' distance,
//! measured from the caller when their location is known, else from the called branch; then
//! to the rules' fallback branch; else it stays with the called branch, marked closed, so the
//! agent can take a message or offer a later slot.

use std::collections::BTreeMap;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use chrono::{DateTime, NaiveDate, Utc};
use commands::Permission;
use domain::Tenant;
use domain::tenant::Branch;
use domain::values::{BranchId, Coordinates, PhoneNumber, ServiceId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, Json, Query};
use crate::reads::{self, DateSpan};
use crate::state::AppState;

/// `/routing/…`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/routing/incoming-call", post(incoming_call))
        .route("/routing/nearest-branch", get(nearest_branch))
        .route("/routing/rules", get(show_rules).put(update_rules))
        .route("/routing/call-distribution", get(call_distribution))
}

/// An incoming call to route.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IncomingCall {
    /// The number that was called (E.164, or national for the tenant's country).
    #[schemars(regex(pattern = domain::values::patterns::PHONE_INPUT))]
    pub phone_number: String,
    /// The caller's number.
    #[schemars(regex(pattern = domain::values::patterns::PHONE_INPUT))]
    pub caller_number: String,
    /// Where the caller is, when known.
    #[serde(default)]
    pub caller_location: Option<Coordinates>,
    /// The caller's language, as a BCP 47 tag (`de`, `de-DE`, `en-GB`).
    #[schemars(regex(pattern = r"^[A-Za-z]{2,3}(?:[-_].*)?$"))]
    pub language: String,
}

/// Why the call goes where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoutingReason {
    /// The called branch is open.
    CalledBranchOpen,
    /// The called branch is closed; the nearest open branch takes it.
    NearestOpenBranch,
    /// No branch near enough is open; the tenant's fallback branch takes it.
    FallbackBranch,
    /// Nothing is open; the called branch keeps it.
    AllClosed,
}

/// Where a call goes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RoutingDecision {
    /// The branch that takes the call.
    pub branch_id: BranchId,
    /// Its name.
    pub branch_name: String,
    /// The branch owning the called number.
    pub called_branch_id: BranchId,
    /// Whether the branch taking the call is open now.
    pub open_now: bool,
    /// Why this branch.
    pub reason: RoutingReason,
    /// From the caller (or the called branch) to the branch taking the call, when it is
    /// another branch and both places are known.
    pub distance_km: Option<f64>,
    /// The voice agent for the caller's language, when the rules name one.
    pub agent_id: Option<String>,
    /// The language the agent should speak (the primary subtag).
    pub language: String,
    /// Seconds the caller is likely to wait before an agent is free.
    pub estimated_wait_seconds: u32,
    /// The taking branch's zone.
    pub time_zone: String,
    /// The local time there, `YYYY-MM-DDTHH:MM`.
    pub local_time: String,
    /// The caller's number, normalised to E.164.
    pub caller_number: String,
}

/// The tenant's routing rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingRules {
    /// The voice agent per language (primary subtag, lower case: `de`, `en`).
    #[serde(default)]
    pub agents: BTreeMap<String, String>,
    /// The agent when no language matches.
    #[serde(default)]
    pub default_agent: Option<String>,
    /// The branch taking calls when neither the called branch nor one near enough is open.
    #[serde(default)]
    pub fallback_branch_id: Option<BranchId>,
    /// How far (km) a call may be sent to another branch.
    #[serde(default = "default_redirect_km")]
    pub max_redirect_km: f64,
    /// Calls one branch's agents take at once; more wait.
    #[serde(default = "default_concurrent_calls")]
    pub concurrent_calls_per_branch: u32,
}

fn default_redirect_km() -> f64 {
    50.0
}

fn default_concurrent_calls() -> u32 {
    3
}

impl Default for RoutingRules {
    fn default() -> Self {
        Self {
            agents: BTreeMap::new(),
            default_agent: None,
            fallback_branch_id: None,
            max_redirect_km: default_redirect_km(),
            concurrent_calls_per_branch: default_concurrent_calls(),
        }
    }
}

impl RoutingRules {
    fn validate(&self, tenant: &Tenant) -> Result<(), ApiError> {
        for (language, agent) in &self.agents {
            if language.len() != 2 || !language.bytes().all(|b| b.is_ascii_lowercase()) {
                return Err(ApiError::invalid(
                    "agents",
                    format!("{language:?} is not a two-letter lower-case language code"),
                ));
            }
            valid_agent("agents", agent)?;
        }
        if let Some(agent) = &self.default_agent {
            valid_agent("default_agent", agent)?;
        }
        if self
            .fallback_branch_id
            .is_some_and(|id| !tenant.branches.contains_key(&id))
        {
            return Err(ApiError::invalid("fallback_branch_id", "no such branch"));
        }
        if !(self.max_redirect_km.is_finite() && (0.0..=20_000.0).contains(&self.max_redirect_km)) {
            return Err(ApiError::invalid(
                "max_redirect_km",
                "must be between 0 and 20000",
            ));
        }
        if !(1..=1000).contains(&self.concurrent_calls_per_branch) {
            return Err(ApiError::invalid(
                "concurrent_calls_per_branch",
                "must be between 1 and 1000",
            ));
        }
        Ok(())
    }

    /// The agent for a language tag: its primary subtag, else the default.
    fn agent_for(&self, language: &str) -> Option<String> {
        self.agents
            .get(language)
            .or(self.default_agent.as_ref())
            .cloned()
    }
}

fn valid_agent(field: &str, agent: &str) -> Result<(), ApiError> {
    if agent.is_empty() || agent.chars().count() > 128 || agent.chars().any(char::is_whitespace) {
        return Err(ApiError::invalid(
            field,
            "an agent id is 1 to 128 characters without spaces",
        ));
    }
    Ok(())
}

/// The primary subtag of a BCP 47 tag, lower case (`de-DE` → `de`).
fn primary_language(tag: &str) -> Result<String, ApiError> {
    let primary = tag.split(['-', '_']).next().unwrap_or_default();
    if !(2..=3).contains(&primary.len()) || !primary.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(ApiError::invalid(
            "language",
            format!("{tag:?} is not a language tag such as de or de-DE"),
        ));
    }
    Ok(primary.to_ascii_lowercase())
}

/// The tenant's rules; the defaults when none were stored.
pub async fn rules(pool: &PgPool, tenant_id: Uuid) -> Result<RoutingRules, ApiError> {
    let stored: Option<(sqlx::types::Json<RoutingRules>,)> =
        sqlx::query_as("SELECT rules FROM routing_rules WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(pool)
            .await?;
    Ok(stored.map(|(r,)| r.0).unwrap_or_default())
}

async fn show_rules(
    State(app): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<RoutingRules>, ApiError> {
    Ok(axum::Json(rules(&app.pool, caller.who.tenant_id.0).await?))
}

async fn update_rules(
    State(app): State<AppState>,
    caller: Caller,
    Json(input): Json<RoutingRules>,
) -> Result<axum::Json<RoutingRules>, ApiError> {
    caller.who.require(Permission::ManageCompany)?;
    let (tenant, _) = reads::tenant(&app, caller.who.tenant_id).await?;
    input.validate(&tenant)?;
    sqlx::query(
        "INSERT INTO routing_rules (tenant_id, rules) VALUES ($1, $2)
         ON CONFLICT (tenant_id) DO UPDATE SET rules = EXCLUDED.rules, updated_at = now()",
    )
    .bind(caller.who.tenant_id.0)
    .bind(sqlx::types::Json(&input))
    .execute(&app.pool)
    .await?;
    Ok(axum::Json(input))
}

async fn incoming_call(
    State(app): State<AppState>,
    caller: Caller,
    Json(call): Json<IncomingCall>,
) -> Result<axum::Json<RoutingDecision>, ApiError> {
    Ok(axum::Json(decide(&app, &caller, &call).await?))
}

/// Routes one call (see the module's rules).
pub async fn decide(
    app: &AppState,
    caller: &Caller,
    call: &IncomingCall,
) -> Result<RoutingDecision, ApiError> {
    caller.who.require(Permission::AccessMcp)?;
    let (tenant, _) = reads::tenant(app, caller.who.tenant_id).await?;
    let country = tenant.settings.default_country_code;
    let called = PhoneNumber::parse(&call.phone_number, country)
        .map_err(|e| ApiError::invalid("phone_number", e.to_string()))?;
    let from = PhoneNumber::parse(&call.caller_number, country)
        .map_err(|e| ApiError::invalid("caller_number", e.to_string()))?;
    if call.caller_location.is_some_and(|c| !c.is_valid()) {
        return Err(ApiError::invalid(
            "caller_location",
            "lat -90..90, lng -180..180",
        ));
    }
    let language = primary_language(&call.language)?;
    let home = tenant
        .branches
        .values()
        .find(|b| b.phone_numbers.contains(&called))
        .ok_or_else(|| {
            ApiError::not_found("branch").with_details(serde_json::json!({
                "phone_number": called.as_str(),
                "reason": "no branch of this tenant has this number",
            }))
        })?;
    let rules = rules(&app.pool, caller.who.tenant_id.0).await?;
    let routed = route(&tenant, home, call.caller_location, &rules, caller.meta.now);
    let wait = estimated_wait(&app.pool, caller.who.tenant_id.0, routed.branch.id, &rules).await?;
    let local = caller.meta.now.with_timezone(&routed.branch.time_zone);
    Ok(RoutingDecision {
        branch_id: routed.branch.id,
        branch_name: routed.branch.name.clone(),
        called_branch_id: home.id,
        open_now: routed.open,
        reason: routed.reason,
        distance_km: routed.distance_km.map(round_km),
        agent_id: rules.agent_for(&language),
        language,
        estimated_wait_seconds: wait,
        time_zone: routed.branch.time_zone.name().to_owned(),
        local_time: local.format("%Y-%m-%dT%H:%M").to_string(),
        caller_number: from.as_str().to_owned(),
    })
}

/// The branch a call goes to, and why.
struct Routed<'t> {
    branch: &'t Branch,
    open: bool,
    reason: RoutingReason,
    distance_km: Option<f64>,
}

/// The routing decision proper, from the tenant as it is at `now`.
fn route<'t>(
    tenant: &'t Tenant,
    home: &'t Branch,
    caller_location: Option<Coordinates>,
    rules: &RoutingRules,
    now: DateTime<Utc>,
) -> Routed<'t> {
    let open = |b: &Branch| b.active && b.business_hours.is_open_at(now, b.time_zone);
    if open(home) {
        return Routed {
            branch: home,
            open: true,
            reason: RoutingReason::CalledBranchOpen,
            distance_km: None,
        };
    }
    if let Some(origin) = caller_location.or(home.coordinates) {
        let nearest = tenant
            .branches
            .values()
            .filter(|b| b.id != home.id && open(b))
            .filter_map(|b| Some((b, origin.distance_km(&b.coordinates?))))
            .filter(|(_, d)| *d <= rules.max_redirect_km)
            .min_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((branch, distance)) = nearest {
            return Routed {
                branch,
                open: true,
                reason: RoutingReason::NearestOpenBranch,
                distance_km: Some(distance),
            };
        }
    }
    if let Some(fallback) = rules
        .fallback_branch_id
        .and_then(|id| tenant.branches.get(&id))
        .filter(|b| b.active && b.id != home.id)
    {
        let distance = caller_location
            .or(home.coordinates)
            .zip(fallback.coordinates)
            .map(|(a, b)| a.distance_km(&b));
        return Routed {
            branch: fallback,
            open: open(fallback),
            reason: RoutingReason::FallbackBranch,
            distance_km: distance,
        };
    }
    Routed {
        branch: home,
        open: false,
        reason: RoutingReason::AllClosed,
        distance_km: None,
    }
}

fn round_km(km: f64) -> f64 {
    (km * 10.0).round() / 10.0
}

/// Calls already on the line at a branch beyond what its agents take at once, times the
/// average length of its calls over the last week (three minutes when there were none).
async fn estimated_wait(
    pool: &PgPool,
    tenant_id: Uuid,
    branch_id: BranchId,
    rules: &RoutingRules,
) -> Result<u32, ApiError> {
    let (ongoing, average_ms): (i64, Option<f64>) = sqlx::query_as(
        "SELECT
            (SELECT count(*) FROM calls WHERE tenant_id = $1 AND branch_id = $2
               AND status = 'ongoing' AND started_at > now() - interval '2 hours'),
            (SELECT avg(duration_ms)::float8 FROM calls WHERE tenant_id = $1 AND branch_id = $2
               AND duration_ms IS NOT NULL AND ended_at > now() - interval '7 days')",
    )
    .bind(tenant_id)
    .bind(branch_id.0)
    .fetch_one(pool)
    .await?;
    let capacity = i64::from(rules.concurrent_calls_per_branch);
    let ahead = (ongoing - capacity + 1).max(0);
    let average_s = average_ms.map_or(180.0, |ms| ms / 1000.0);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a wait in seconds, non-negative and far below u32::MAX"
    )]
    let wait = (ahead as f64 * average_s / capacity as f64).ceil() as u32;
    Ok(wait)
}

/// Where the caller is.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NearestBranchQuery {
    /// Latitude, -90 to 90.
    #[schemars(range(min = -90, max = 90))]
    pub lat: f64,
    /// Longitude, -180 to 180.
    #[schemars(range(min = -180, max = 180))]
    pub lng: f64,
    /// Only branches offering this service.
    #[serde(default)]
    pub service_id: Option<ServiceId>,
    /// Farthest distance in km, above 0 and at most 20,000; 50 when absent.
    #[serde(default)]
    #[schemars(range(max = 20_000), extend("exclusiveMinimum" = 0))]
    pub max_distance: Option<f64>,
}

/// A branch near the caller.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NearbyBranch {
    /// The branch.
    pub branch_id: BranchId,
    /// Name.
    pub name: String,
    /// Street and number.
    pub address: String,
    /// City.
    pub city: String,
    /// Great-circle distance from the caller.
    pub distance_km: f64,
    /// Whether it is open now.
    pub available_now: bool,
}

/// Up to five branches, nearest first.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NearbyBranches {
    /// Nearest first.
    pub data: Vec<NearbyBranch>,
}

async fn nearest_branch(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<NearestBranchQuery>,
) -> Result<axum::Json<NearbyBranches>, ApiError> {
    Ok(axum::Json(nearest(&app, &caller, &query).await?))
}

/// The active branches nearest to a point.
pub async fn nearest(
    app: &AppState,
    caller: &Caller,
    query: &NearestBranchQuery,
) -> Result<NearbyBranches, ApiError> {
    let origin = Coordinates {
        lat: query.lat,
        lng: query.lng,
    };
    if !(origin.is_valid() && origin.lat.is_finite() && origin.lng.is_finite()) {
        return Err(ApiError::invalid("lat", "lat -90..90, lng -180..180"));
    }
    let max = query.max_distance.unwrap_or(50.0);
    if !(max.is_finite() && max > 0.0 && max <= 20_000.0) {
        return Err(ApiError::invalid(
            "max_distance",
            "must be above 0 and at most 20000",
        ));
    }
    let (tenant, _) = reads::tenant(app, caller.who.tenant_id).await?;
    let offering = match query.service_id {
        Some(id) => Some(
            tenant
                .live_service(id)
                .map_err(|_| ApiError::not_found("service"))?
                .branch_ids
                .clone(),
        ),
        None => None,
    };
    let now = caller.meta.now;
    let mut data: Vec<NearbyBranch> = tenant
        .branches
        .values()
        .filter(|b| b.active)
        .filter(|b| offering.as_ref().is_none_or(|ids| ids.contains(&b.id)))
        .filter_map(|b| {
            let distance = origin.distance_km(&b.coordinates?);
            (distance <= max).then(|| NearbyBranch {
                branch_id: b.id,
                name: b.name.clone(),
                address: b.address.clone(),
                city: b.city.clone(),
                distance_km: round_km(distance),
                available_now: b.business_hours.is_open_at(now, b.time_zone),
            })
        })
        .collect();
    data.sort_by(|a, b| a.distance_km.total_cmp(&b.distance_km));
    data.truncate(5);
    Ok(NearbyBranches { data })
}

/// Which days.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DistributionQuery {
    /// First local date; a week before the last when absent.
    pub start_date: Option<NaiveDate>,
    /// Last local date (at most 92 days after the first); today when absent.
    pub end_date: Option<NaiveDate>,
    /// Only this branch.
    pub branch_id: Option<BranchId>,
}

/// Calls of one branch in one local hour of the day.
#[derive(Debug, Serialize, JsonSchema)]
pub struct HourlyCalls {
    /// The branch.
    pub branch_id: BranchId,
    /// Local hour, 0 to 23.
    pub hour: u8,
    /// Calls started in that hour over the span.
    pub calls: i64,
    /// Of them, calls that ended in a booking.
    pub booked: i64,
}

/// How calls spread over branches and hours of the day.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CallDistribution {
    /// First date.
    pub start_date: NaiveDate,
    /// Last date.
    pub end_date: NaiveDate,
    /// Every branch and hour that had a call, by branch then hour.
    pub data: Vec<HourlyCalls>,
    /// Calls per branch over the span.
    pub totals: BTreeMap<BranchId, i64>,
}

async fn call_distribution(
    State(app): State<AppState>,
    caller: Caller,
    Query(query): Query<DistributionQuery>,
) -> Result<axum::Json<CallDistribution>, ApiError> {
    let (tenant, _) = reads::tenant(&app, caller.who.tenant_id).await?;
    let tz = tenant.settings.time_zone;
    let today = reads::today(caller.meta.now, tz);
    let end = query.end_date.unwrap_or(today);
    let start = query.start_date.unwrap_or(end - chrono::Duration::days(6));
    let span = DateSpan::parse(
        Some(start),
        Some(end),
        ("start_date", "end_date"),
        today,
        0,
        92,
    )?;
    if let Some(id) = query.branch_id {
        crate::views::branch(&tenant, id)?;
    }
    let (ids, zones): (Vec<Uuid>, Vec<String>) = tenant
        .branches
        .values()
        .filter(|b| query.branch_id.is_none_or(|id| id == b.id))
        .map(|b| (b.id.0, b.time_zone.name().to_owned()))
        .unzip();
    let range = span.instants(tz);
    let rows: Vec<(Uuid, i32, i64, i64)> = sqlx::query_as(
        "SELECT c.branch_id, extract(hour FROM c.started_at AT TIME ZONE b.tz)::int AS hour,
                count(*), count(*) FILTER (WHERE c.outcome = 'booked')
           FROM calls c
           JOIN unnest($2::uuid[], $3::text[]) AS b(id, tz) ON c.branch_id = b.id
          WHERE c.tenant_id = $1 AND c.started_at >= $4 AND c.started_at < $5
          GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(caller.who.tenant_id.0)
    .bind(&ids)
    .bind(&zones)
    .bind(range.start)
    .bind(range.end)
    .fetch_all(&app.pool)
    .await?;
    let mut totals = BTreeMap::new();
    let data = rows
        .into_iter()
        .map(|(branch, hour, calls, booked)| {
            *totals.entry(BranchId(branch)).or_insert(0) += calls;
            HourlyCalls {
                branch_id: BranchId(branch),
                hour: u8::try_from(hour).unwrap_or_default(),
                calls,
                booked,
            }
        })
        .collect();
    Ok(axum::Json(CallDistribution {
        start_date: span.start,
        end_date: span.end,
        data,
        totals,
    }))
}

#[cfg(test)]
mod tests {
    use super::valid_agent;

    #[test]
    fn an_agent_id_is_bounded_in_characters_not_bytes() {
        assert!(valid_agent("agent", &"ü".repeat(128)).is_ok());
        assert!(valid_agent("agent", &"ü".repeat(129)).is_err());
        assert!(valid_agent("agent", "agent one").is_err());
        assert!(valid_agent("agent", "").is_err());
    }
}
