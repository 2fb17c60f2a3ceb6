//! Twilio Programmable Messaging over HTTP: `POST /2010-04-01/Accounts/{sid}/Messages.json`,
//! form-encoded, HTTP Basic with the account SID and auth token, a status callback per
//! message, the integration's circuit breaker and a timeout per call.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use sagas::ports::{PortError, Sent, Sms, SmsGateway};
use serde_json::Value;

use crate::circuit::CircuitBreaker;
use crate::outbound::{self, retry_wait, seconds_header};

/// Where and as whom messages are sent.
#[derive(Clone)]
pub struct TwilioConfig {
    /// `https://api.twilio.com`.
    pub base_url: String,
    /// `AC…`.
    pub account_sid: String,
    /// The auth token (also the key of the status callbacks' signatures).
    pub auth_token: String,
    /// A Twilio number or an alphanumeric sender id.
    pub from: String,
    /// Where Twilio reports delivery (our public `/api/v2/webhooks/twilio/status`).
    pub status_callback: Option<String>,
}

impl std::fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("from", &self.from)
            .field("status_callback", &self.status_callback)
            .finish()
    }
}

/// A Twilio client.
#[derive(Debug, Clone)]
pub struct Twilio {
    http: reqwest::Client,
    config: TwilioConfig,
    timeout: Duration,
    breaker: Arc<CircuitBreaker>,
}

impl Twilio {
    /// A client cutting each call at `timeout`.
    pub fn new(
        http: reqwest::Client,
        config: TwilioConfig,
        timeout: Duration,
        breaker: Arc<CircuitBreaker>,
    ) -> Self {
        Self {
            http,
            config,
            timeout,
            breaker,
        }
    }
}

#[async_trait]
impl SmsGateway for Twilio {
    async fn send(&self, sms: &Sms) -> Result<Sent, PortError> {
        let c = &self.config;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            c.base_url.trim_end_matches('/'),
            c.account_sid
        );
        let mut form = vec![
            ("To", sms.to.as_str()),
            ("From", c.from.as_str()),
            ("Body", sms.body.as_str()),
        ];
        if let Some(callback) = &c.status_callback {
            form.push(("StatusCallback", callback.as_str()));
        }
        let request = self
            .http
            .post(url)
            .basic_auth(&c.account_sid, Some(&c.auth_token))
            .form(&form);
        outbound::send(&self.breaker, "Twilio", request, self.timeout, classify).await
    }
}

async fn classify(response: reqwest::Response) -> Result<Sent, PortError> {
    let status = response.status();
    let retry_after = seconds_header(&response, &["retry-after"]);
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return body["sid"]
            .as_str()
            .map(|sid| Sent {
                provider_id: sid.to_owned(),
            })
            .ok_or_else(|| {
                PortError::Transient("Twilio answered without a message sid".to_owned())
            });
    }
    let described = format!(
        "Twilio answered {status}: {} {}",
        body["code"],
        body["message"].as_str().unwrap_or_default()
    );
    Err(match status {
        StatusCode::TOO_MANY_REQUESTS => PortError::RateLimited(retry_wait(retry_after, 60)),
        s if s.is_server_error() => PortError::Transient(described),
        _ => PortError::Rejected(described),
    })
}
