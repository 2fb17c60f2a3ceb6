//! A call to an external service: refused at once while the integration's circuit is open,
//! cut at a timeout, its outcome recorded on the circuit.

use std::future::Future;
use std::time::Duration;

use reqwest::{RequestBuilder, Response};
use sagas::ports::PortError;

use crate::circuit::CircuitBreaker;

/// Sends `request` to `service` (its name in messages) through `breaker`; `classify` turns a
/// response into the caller's result or the error its status stands for.
pub(crate) async fn send<T, F>(
    breaker: &CircuitBreaker,
    service: &str,
    request: RequestBuilder,
    timeout: Duration,
    classify: impl FnOnce(Response) -> F,
) -> Result<T, PortError>
where
    F: Future<Output = Result<T, PortError>>,
{
    breaker.permit()?;
    let request = match sagas::runtime::current_correlation() {
        Some(correlation) => request.header("traceparent", traceparent(correlation)),
        None => request,
    };
    let result = match request.timeout(timeout).send().await {
        Err(e) if e.is_timeout() => Err(PortError::Transient(format!(
            "{service} did not answer within {} s",
            timeout.as_secs_f64()
        ))),
        Err(e) => Err(PortError::Transient(format!("{service} unreachable: {e}"))),
        Ok(response) => classify(response).await,
    };
    breaker.record(&result);
    result
}

/// A W3C `traceparent` whose trace id is the correlation id (both are 16 bytes), with a fresh
/// span id for this call.
pub(crate) fn traceparent(correlation: uuid::Uuid) -> String {
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{}-{span}-01", correlation.simple())
}

/// The first of `headers` holding a number of seconds (`Retry-After`, a rate limit's reset).
pub(crate) fn seconds_header(response: &Response, headers: &[&str]) -> Option<f64> {
    headers.iter().find_map(|name| {
        response
            .headers()
            .get(*name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
    })
}

/// Seconds to wait before trying again, from a 429's headers; `default` without one.
pub(crate) fn retry_wait(seconds: Option<f64>, default: u64) -> u64 {
    seconds.map_or(default, |s| s.ceil().max(1.0) as u64)
}
