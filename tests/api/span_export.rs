//! Span export over OTLP: with `MCP_TRACING_ENABLED`, a request that came with a W3C
//! `traceparent` is exported to the collector as spans of the caller's trace, and what is
//! still batched goes out when bookingd stops; the JSON log's line for the request carries the
//! same id.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::PgPool;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::app::{berlin, database_url};
use crate::support::process::BookingdProcess;
use crate::support::{TestApp, poll_until};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Every span the collector received, from OTLP/HTTP JSON bodies.
async fn spans(collector: &MockServer) -> Vec<Value> {
    let mut spans = Vec::new();
    for request in collector.received_requests().await.unwrap_or_default() {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        for resource in body["resourceSpans"].as_array().into_iter().flatten() {
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                for span in scope["spans"].as_array().into_iter().flatten() {
                    let mut span = span.clone();
                    span["resource"] = resource["resource"].clone();
                    spans.push(span);
                }
            }
        }
    }
    spans
}

#[sqlx::test(migrator = "adapters::MIGRATOR")]
async fn a_traced_request_is_exported_as_spans_of_the_callers_trace(pool: PgPool) {
    let collector = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/traces"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
        .mount(&collector)
        .await;
    let mut app = TestApp::bare(pool.clone()).await;
    let env = [
        ("MCP_TRACING_ENABLED", "true".to_owned()),
        ("MCP_TRACING_SAMPLE_RATE", "0".to_owned()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.uri()),
        ("RUST_LOG", "info,sqlx=warn".to_owned()),
        ("BOOKINGD_LOG_FORMAT", "json".to_owned()),
    ];
    let log_path = std::env::temp_dir().join(format!("bookingd-log-{}", uuid::Uuid::new_v4()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut bookingd =
        BookingdProcess::start_logging(&database_url(&pool), &app.nats.url(), &env, log.into())
            .await;
    app.address = bookingd.address.clone();
    let salon = app.seed_salon("Salon", "professional").await;

    // The caller has sampled its trace: it is exported although bookingd samples none of its
    // own (rate 0).
    let response = app
        .http
        .post(format!("{}/api/v2/mcp/bookings", app.address))
        .bearer_auth(&salon.key)
        .header("traceparent", format!("00-{TRACE}-00f067aa0ba902b7-01"))
        .json(&TestApp::booking(&salon, None, berlin(2, 10, 0)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);

    // Stopping flushes the batch.
    let stopped = bookingd.terminate().await;
    assert!(stopped.is_some_and(|s| s.success()), "{stopped:?}");
    let exported = poll_until(Duration::from_secs(10), || async {
        spans(&collector)
            .await
            .iter()
            .any(|s| s["traceId"] == TRACE)
    })
    .await;
    let all = spans(&collector).await;
    assert!(exported, "no span of the caller's trace: {all:?}");
    let ours: Vec<&Value> = all.iter().filter(|s| s["traceId"] == TRACE).collect();
    let request = ours
        .iter()
        .find(|s| s["name"] == "request")
        .expect("the request's span");
    assert_eq!(request["parentSpanId"], "00f067aa0ba902b7", "{request}");
    let service = request["resource"]["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["key"] == "service.name");
    assert_eq!(
        service.map(|a| &a["value"]["stringValue"]),
        Some(&Value::from("bookingd"))
    );
    // The JSON log's line for the request carries the trace id as its correlation id.
    let logs = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let answered = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["span"]["path"] == "/api/v2/mcp/bookings" && l["span"]["method"] == "POST");
    let answered = answered.expect("a log line for the booking request");
    assert_eq!(
        answered["span"]["correlation_id"], "4bf92f35-77b3-4da6-a3ce-929d0e0e4736",
        "{answered}"
    );
    assert_eq!(answered["fields"]["status"], 201, "{answered}");
    // Spans begun without a caller's decision were not sampled (rate 0).
    assert!(
        all.iter().all(|s| s["traceId"] == TRACE),
        "spans of other traces were exported at rate 0: {all:?}"
    );
}
