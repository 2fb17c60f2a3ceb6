//! Availability query latency: a branch with 20 staff working around the clock, 10,000
//! bookings spread over the next 14 days (made through the API), then
//! `POST /bookings/check-availability` for all 14 days, and for one day, one client at a time;
//! then the MCP tool `check_availability` with 8 callers at once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use projections::{StaffCalendars, Tenants};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::{Figures, Salon, Server, measure, say, seed, start_server};

const STAFF: usize = 20;
const DAYS: i64 = 14;
const QUERIES: u64 = 300;

pub(super) async fn run(
    server: &str,
    nats_url: String,
    http: &reqwest::Client,
) -> anyhow::Result<()> {
    let bookings: u64 = std::env::var("BENCH_AVAILABILITY_BOOKINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let Server {
        base, url, stop, ..
    } = start_server(server, nats_url, "bookingd_bench_availability", true).await?;
    let salon = Arc::new(seed(http, &base, STAFF).await?);
    let first = (Utc::now() + chrono::Duration::days(1))
        .date_naive()
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let url_bookings = format!("{base}/api/v2/mcp/bookings");
    let filled = measure(bookings, 16, |k| {
        let (http, salon, url) = (http.clone(), salon.clone(), url_bookings.clone());
        async move { spread_booking(&http, &url, &salon, first, k).await }
    })
    .await?;
    let pool = PgPool::connect(&url).await?;
    let caught_up = read_models_caught_up(&pool).await?;
    say(format_args!(
        "\navailability: {} bookings made over {DAYS} days for {STAFF} staff ({} failed){}",
        filled.ops,
        filled.failures,
        if caught_up {
            ""
        } else {
            "; read models not caught up after 60 s"
        }
    ));
    let start_date = first.date_naive();
    let end_date = start_date + chrono::Duration::days(DAYS - 1);
    let check = format!("{base}/api/v2/mcp/bookings/check-availability");
    for (what, body) in [
        (
            format!("check-availability, {DAYS} days"),
            json!({ "service_id": salon.service_id, "start_date": start_date, "end_date": end_date, "branch_ids": [salon.branch_id] }),
        ),
        (
            "check-availability, 1 day".to_owned(),
            json!({ "service_id": salon.service_id, "date": start_date, "branch_ids": [salon.branch_id] }),
        ),
    ] {
        let slots = slot_count(http, &check, &salon.key, &body).await?;
        // Timed to the last byte of the answer; the client does not parse it.
        let figures: Figures = measure(QUERIES, 1, |_| {
            let (http, check, key, body) =
                (http.clone(), check.clone(), salon.key.clone(), body.clone());
            async move { answer(&http, &check, &key, &body).await.is_ok() }
        })
        .await?;
        figures.print(&format!("{what} ({slots} slots)"));
    }
    say("(target: the 14-day query p99 < 20 ms)");
    mcp_calls(http, &base, &salon, start_date, end_date).await?;
    let _ = stop.send(());
    Ok(())
}

/// Concurrent voice agents asking through the MCP endpoint.
const MCP_CALLERS: usize = 8;
const MCP_CALLS: u64 = 1600;

/// `tools/call check_availability` over `/mcp` (2026-07-28 era, JSON answers), 8 callers at
/// once, for one day and for the 14 days.
async fn mcp_calls(
    http: &reqwest::Client,
    base: &str,
    salon: &Salon,
    start_date: chrono::NaiveDate,
    end_date: chrono::NaiveDate,
) -> anyhow::Result<()> {
    let url = format!("{base}/mcp");
    for (what, arguments) in [
        (
            "MCP check_availability, 1 day",
            json!({ "service_id": salon.service_id, "date": start_date, "branch_ids": [salon.branch_id] }),
        ),
        (
            "MCP check_availability, 14 days",
            json!({ "service_id": salon.service_id, "start_date": start_date, "end_date": end_date, "branch_ids": [salon.branch_id] }),
        ),
    ] {
        let body = json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {
                "name": "check_availability", "arguments": arguments,
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": { "name": "bookingd-bench", "version": "1" },
                },
            },
        });
        // One call checked in full: a tool result with slots, not an error.
        let first: Value = serde_json::from_slice(&mcp_call(http, &url, &salon.key, &body).await?)?;
        let listed = &first["result"]["structuredContent"];
        let slots = listed["slots"].as_array().map_or(0, Vec::len);
        let total = listed["total_slots"].as_u64().unwrap_or_default();
        anyhow::ensure!(
            first["result"]["isError"] == json!(false) && slots > 0,
            "check_availability over MCP failed: {first}"
        );
        let figures = measure(MCP_CALLS, MCP_CALLERS, |_| {
            let (http, url, key, body) =
                (http.clone(), url.clone(), salon.key.clone(), body.clone());
            async move { mcp_call(&http, &url, &key, &body).await.is_ok() }
        })
        .await?;
        figures.print(&format!(
            "{what}, {MCP_CALLERS} callers ({slots} of {total} slots)"
        ));
    }
    say("(target: MCP check_availability p99 < 50 ms at 8 callers)");
    Ok(())
}

/// One JSON-RPC request to `/mcp`, answered in full.
async fn mcp_call(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<Vec<u8>> {
    let response = http
        .post(url)
        .bearer_auth(key)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "check_availability")
        .json(body)
        .send()
        .await?;
    anyhow::ensure!(response.status().is_success(), "{}", response.status());
    Ok(response.bytes().await?.to_vec())
}

/// Books slot `k`: staff `k % 20`; their bookings are 15 minutes long, 40 minutes apart, and
/// go round the 14 days.
async fn spread_booking(
    http: &reqwest::Client,
    url: &str,
    salon: &Salon,
    first: chrono::DateTime<Utc>,
    k: u64,
) -> bool {
    let staff = usize::try_from(k).unwrap_or(0) % salon.staff.len();
    let j = i64::try_from(k / salon.staff.len() as u64).unwrap_or(0);
    let start =
        first + chrono::Duration::days(j % DAYS) + chrono::Duration::minutes(40 * (j / DAYS));
    let body = json!({ "branch_id": salon.branch_id, "service_id": salon.service_id, "staff_id": salon.staff[staff], "start": start, "customer": { "phone": "+4915112345678", "name": "Bench" } });
    http.post(url)
        .bearer_auth(&salon.key)
        .json(&body)
        .send()
        .await
        .is_ok_and(|r| r.status() == reqwest::StatusCode::CREATED)
}

/// The raw answer to an availability question.
async fn answer(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<Vec<u8>> {
    let response = http.post(url).bearer_auth(key).json(body).send().await?;
    anyhow::ensure!(response.status().is_success(), "{}", response.status());
    Ok(response.bytes().await?.to_vec())
}

async fn slot_count(
    http: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
) -> anyhow::Result<usize> {
    let answer: Value = serde_json::from_slice(&answer(http, url, key, body).await?)?;
    Ok(answer["slots"].as_array().map_or(0, Vec::len))
}

/// Waits until the staff and tenant read models hold every event; false after a minute.
async fn read_models_caught_up(pool: &PgPool) -> anyhow::Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let staff = projections::runner::status::<StaffCalendars>(pool).await?;
        let tenants = projections::runner::status::<Tenants>(pool).await?;
        if staff.pending_events == 0 && tenants.pending_events == 0 {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(false)
}
