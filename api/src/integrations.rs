//! The clients of external services (Cal.com, Twilio, SMTP, Stripe), their circuit breakers, the
//! tenants' sealed credentials, and the saga workers that call them.

use std::sync::Arc;
use std::time::Duration;

use adapters::alternatives::PgAlternatives;
use adapters::calcom::CalCom;
use adapters::circuit::CircuitBreaker;
use adapters::integrations::{PgAccounts, SecretKey};
use adapters::mail::SmtpMailer;
use adapters::stripe::Stripe;
use adapters::twilio::{Twilio, TwilioConfig};
use adapters::{PgStore, SagaWorker, WorkerConfig};
use anyhow::Context;
use commands::Commands;
use sagas::notifications::Gateways;
use sagas::ports::{Mailer, Payments, SmsGateway};
use sagas::{CalendarSyncDriver, Driver, NotificationsDriver, PaymentsDriver, RetryPolicy};
use secrecy::{ExposeSecret, SecretString};
use sqlx::PgPool;
use tokio::sync::watch;

use crate::config::{IntegrationConfig, ServeConfig};

/// The path Twilio reports delivery to.
pub const TWILIO_STATUS_PATH: &str = "/api/v2/webhooks/twilio/status";

/// What checking Twilio's delivery reports needs.
#[derive(Debug, Clone)]
pub struct TwilioCallbacks {
    /// The key of their signatures.
    pub auth_token: SecretString,
    /// The public URL they are sent to (what Twilio signs).
    pub url: Option<String>,
}

/// The clients and what they share.
#[derive(Debug)]
pub(crate) struct Integrations {
    pub(crate) accounts: PgAccounts,
    pub(crate) circuits: Vec<Arc<CircuitBreaker>>,
    pub(crate) twilio_callbacks: Option<TwilioCallbacks>,
    pub(crate) stripe_webhook_secret: Option<SecretString>,
    calcom: Arc<CalCom>,
    payments: Option<Arc<dyn Payments>>,
    sms: Option<Arc<dyn SmsGateway>>,
    mail: Option<Arc<dyn Mailer>>,
}

fn breaker(config: &ServeConfig, name: &str) -> Arc<CircuitBreaker> {
    let settings = &config.integrations;
    Arc::new(CircuitBreaker::new(
        name,
        settings.circuit_failure_threshold,
        chrono::Duration::seconds(i64::from(settings.circuit_recovery_timeout)),
        config.clock.clone(),
    ))
}

fn timeout(settings: &IntegrationConfig) -> Duration {
    Duration::from_secs_f64(settings.timeout.max(0.001))
}

/// A client and its circuit breaker.
type Guarded<T> = (Arc<T>, Arc<CircuitBreaker>);

/// Twilio, when its account, token and sender are configured.
fn twilio(
    config: &ServeConfig,
    http: reqwest::Client,
    public_url: Option<&str>,
) -> Option<(Guarded<dyn SmsGateway>, TwilioCallbacks)> {
    let settings = &config.integrations;
    let (Some(sid), Some(token), Some(from)) = (
        &settings.twilio_account_sid,
        &settings.twilio_auth_token,
        &settings.twilio_from,
    ) else {
        return None;
    };
    let circuit = breaker(config, "twilio");
    let url = public_url.map(|u| format!("{u}{TWILIO_STATUS_PATH}"));
    let twilio = TwilioConfig {
        base_url: settings.twilio_api_url.clone(),
        account_sid: sid.clone(),
        auth_token: token.expose_secret().to_owned(),
        from: from.clone(),
        status_callback: url.clone(),
    };
    let gateway = Arc::new(Twilio::new(
        http,
        twilio,
        timeout(settings),
        circuit.clone(),
    ));
    let callbacks = TwilioCallbacks {
        auth_token: token.clone(),
        url,
    };
    Some(((gateway, circuit), callbacks))
}

/// Stripe, when its secret key is configured.
fn stripe(config: &ServeConfig, http: reqwest::Client) -> Option<Guarded<dyn Payments>> {
    let settings = &config.integrations;
    let key = settings.stripe_secret_key.as_ref()?;
    let circuit = breaker(config, "stripe");
    let stripe = Stripe::new(
        http,
        &settings.stripe_api_url,
        key.expose_secret(),
        timeout(settings),
        circuit.clone(),
    );
    Some((Arc::new(stripe), circuit))
}

/// A saga worker with the shared consumer settings.
fn worker<D: Driver>(
    (pool, js, config): (&PgPool, &async_nats::jetstream::Context, &ServeConfig),
    driver: D,
    lease: chrono::Duration,
) -> SagaWorker<D> {
    SagaWorker::new(
        pool.clone(),
        js.clone(),
        Arc::new(driver),
        config.clock.clone(),
        WorkerConfig::default(),
        lease,
    )
}

/// SMTP, when its relay and sender are configured.
fn smtp(config: &ServeConfig) -> anyhow::Result<Option<Guarded<dyn Mailer>>> {
    let settings = &config.integrations;
    let (Some(url), Some(from)) = (&settings.smtp_url, &settings.smtp_from) else {
        return Ok(None);
    };
    let circuit = breaker(config, "smtp");
    let mailer = SmtpMailer::new(
        url.expose_secret(),
        from,
        timeout(settings),
        circuit.clone(),
    )
    .map_err(|e| anyhow::anyhow!(e))?;
    Ok(Some((Arc::new(mailer), circuit)))
}

impl Integrations {
    /// Builds the configured clients; SMS and e-mail are off unless fully configured.
    pub(crate) fn new(config: &ServeConfig, pool: &PgPool) -> anyhow::Result<Self> {
        let settings = &config.integrations;
        let key = settings
            .secret_key
            .as_ref()
            .map(|k| k.expose_secret().parse::<SecretKey>())
            .transpose()
            .map_err(|e| anyhow::anyhow!("BOOKINGD_SECRET_KEY: {e}"))?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("bookingd/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        let calcom_circuit = breaker(config, "calcom");
        let calcom = Arc::new(CalCom::new(
            http.clone(),
            &settings.calcom_api_url,
            timeout(settings),
            calcom_circuit.clone(),
        ));
        let mut circuits = vec![calcom_circuit];
        let public_url = settings
            .public_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_owned());
        let (sms, twilio_callbacks) = match twilio(config, http.clone(), public_url.as_deref()) {
            Some(((gateway, circuit), callbacks)) => {
                circuits.push(circuit);
                (Some(gateway), Some(callbacks))
            }
            None => (None, None),
        };
        let payments = stripe(config, http.clone()).map(|(payments, circuit)| {
            circuits.push(circuit);
            payments
        });
        let mail = match smtp(config)? {
            Some((mailer, circuit)) => {
                circuits.push(circuit);
                Some(mailer)
            }
            None => None,
        };
        Ok(Self {
            accounts: PgAccounts::new(pool.clone(), key),
            circuits,
            twilio_callbacks,
            stripe_webhook_secret: settings.stripe_webhook_secret.clone(),
            calcom,
            payments,
            sms,
            mail,
        })
    }

    /// The saga workers over these clients.
    pub(crate) fn sagas(
        &self,
        config: &ServeConfig,
        pool: &PgPool,
        nats: &async_nats::Client,
        commands: &Arc<Commands<PgStore>>,
    ) -> Sagas {
        let settings = &config.integrations;
        let retry = RetryPolicy {
            max_retries: settings.max_retries,
            ..RetryPolicy::default()
        };
        // A claim outlives the longest run: each try makes up to three calls, each cut at the
        // timeout, and waits at most a rate limit's reset before the next.
        let calls = timeout(settings)
            .saturating_mul(3)
            .saturating_mul(settings.max_retries + 1);
        let waits = retry
            .max_rate_limit_wait
            .saturating_mul(settings.max_retries);
        let lease = chrono::Duration::from_std(calls + waits + Duration::from_secs(5))
            .unwrap_or(chrono::Duration::hours(1));
        let js = async_nats::jetstream::new(nats.clone());
        let calendar_sync = CalendarSyncDriver::new(
            commands.clone(),
            self.calcom.clone(),
            Arc::new(self.accounts.clone()),
            pool.clone(),
            config.clock.clone(),
            retry,
        );
        let notifications = NotificationsDriver::new(
            commands.clone(),
            Gateways {
                sms: self.sms.clone(),
                mail: self.mail.clone(),
            },
            Arc::new(PgAlternatives::new(
                pool.clone(),
                config.booking_max_advance_days,
            )),
            pool.clone(),
            config.clock.clone(),
        );
        // A notice makes at most two sends, each cut at the timeout.
        let notice_lease = chrono::Duration::from_std(
            timeout(settings).saturating_mul(2) + Duration::from_secs(5),
        )
        .unwrap_or(chrono::Duration::hours(1));
        let payments = PaymentsDriver::new(
            commands.clone(),
            self.payments.clone(),
            config.clock.clone(),
        );
        let shared = (pool, &js, config);
        Sagas {
            payments: worker(shared, payments, lease),
            calendar_sync: worker(shared, calendar_sync, lease),
            notifications: worker(shared, notifications, notice_lease),
        }
    }
}

/// The saga workers.
#[derive(Debug)]
pub(crate) struct Sagas {
    calendar_sync: SagaWorker<CalendarSyncDriver<PgStore>>,
    notifications: SagaWorker<NotificationsDriver<PgStore>>,
    payments: SagaWorker<PaymentsDriver<PgStore>>,
}

impl Sagas {
    /// Runs each until `stopped` turns true.
    pub(crate) fn spawn(self, stopped: &watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(self.calendar_sync.run(stopped.clone())),
            tokio::spawn(self.notifications.run(stopped.clone())),
            tokio::spawn(self.payments.run(stopped.clone())),
        ]
    }
}
