//! Stripe PaymentIntents over HTTP: form-encoded bodies, the secret key as Bearer, a pinned
//! `Stripe-Version`, an `Idempotency-Key` per booking and step, the integration's circuit
//! breaker and a timeout per call.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::values::BookingId;
use reqwest::StatusCode;
use sagas::ports::{PaymentIntent, PaymentRequest, Payments, PortError};
use serde_json::Value;

use crate::circuit::CircuitBreaker;
use crate::outbound::{self, retry_wait, seconds_header};

/// The API version every request is pinned to.
pub const STRIPE_VERSION: &str = "2025-10-29.clover";

/// A Stripe client.
#[derive(Clone)]
pub struct Stripe {
    http: reqwest::Client,
    base_url: String,
    secret_key: String,
    timeout: Duration,
    breaker: Arc<CircuitBreaker>,
}

impl std::fmt::Debug for Stripe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stripe")
            .field("base_url", &self.base_url)
            .field("secret_key", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Stripe {
    /// A client for `base_url` (`https://api.stripe.com`) with the platform's secret key.
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        secret_key: &str,
        timeout: Duration,
        breaker: Arc<CircuitBreaker>,
    ) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
            secret_key: secret_key.to_owned(),
            timeout,
            breaker,
        }
    }

    async fn post(
        &self,
        path: &str,
        key: &str,
        form: &[(&str, String)],
    ) -> Result<Value, PortError> {
        let request = self
            .http
            .post(format!("{}{path}", self.base_url))
            .bearer_auth(&self.secret_key)
            .header("Stripe-Version", STRIPE_VERSION)
            .header("Idempotency-Key", key)
            .form(form);
        outbound::send(&self.breaker, "Stripe", request, self.timeout, classify).await
    }
}

async fn classify(response: reqwest::Response) -> Result<Value, PortError> {
    let status = response.status();
    let retry_after = seconds_header(&response, &["retry-after"]);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return Ok(body);
    }
    let error = &body["error"];
    let described = format!(
        "Stripe answered {status}: {} {}",
        error["type"].as_str().unwrap_or_default(),
        error["message"].as_str().unwrap_or_default()
    );
    Err(match status {
        StatusCode::TOO_MANY_REQUESTS => PortError::RateLimited(retry_wait(retry_after, 1)),
        // A concurrent request with the same key, or Stripe's own trouble: try again.
        StatusCode::CONFLICT => PortError::Transient(described),
        s if s.is_server_error() => PortError::Transient(described),
        _ => PortError::Rejected(described),
    })
}

#[async_trait]
impl Payments for Stripe {
    async fn create_intent(&self, request: &PaymentRequest) -> Result<PaymentIntent, PortError> {
        let mut form = vec![
            ("amount", request.amount_minor.to_string()),
            ("currency", request.currency.clone()),
            ("automatic_payment_methods[enabled]", "true".to_owned()),
            ("description", request.description.clone()),
            ("metadata[booking_id]", request.booking_id.to_string()),
            ("metadata[tenant_id]", request.tenant_id.to_string()),
        ];
        if let Some(email) = &request.receipt_email {
            form.push(("receipt_email", email.clone()));
        }
        let key = format!("deposit:{}", request.booking_id);
        let intent = self.post("/v1/payment_intents", &key, &form).await?;
        let id = intent["id"]
            .as_str()
            .ok_or_else(|| PortError::Transient("Stripe answered without an id".to_owned()))?;
        Ok(PaymentIntent {
            id: id.to_owned(),
            client_secret: intent["client_secret"].as_str().map(str::to_owned),
        })
    }

    async fn cancel_intent(&self, booking: BookingId, intent: &str) -> Result<(), PortError> {
        let form = [("cancellation_reason", "abandoned".to_owned())];
        self.post(
            &format!("/v1/payment_intents/{intent}/cancel"),
            &format!("close:{booking}"),
            &form,
        )
        .await?;
        Ok(())
    }

    async fn refund(&self, booking: BookingId, intent: &str) -> Result<String, PortError> {
        let form = [
            ("payment_intent", intent.to_owned()),
            ("metadata[booking_id]", booking.to_string()),
        ];
        let refund = self
            .post("/v1/refunds", &format!("refund:{booking}"), &form)
            .await?;
        refund["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| PortError::Transient("Stripe answered without a refund id".to_owned()))
    }
}
