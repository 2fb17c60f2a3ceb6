//! Configuration: one typed struct per command, read once from flags or the environment.
//! `bookingd --help` and `bookingd serve --help` are the reference.

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
use secrecy::SecretString;

/// bookingd: appointment booking for multi-branch service businesses.
#[derive(Debug, Parser)]
#[command(name = "bookingd", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The sub-commands.
#[derive(Debug, Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once at start; boxing the server's configuration buys nothing"
)]
pub enum Command {
    /// Runs the HTTP API and the relay.
    Serve(ServeConfig),
    /// Applies the database migrations.
    Migrate(DatabaseConfig),
    /// Tenant administration.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// API key administration.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCommand),
    /// Seeds a demo salon chain (Berlin and Hamburg) and prints an API key and curl lines.
    Demo(DemoConfig),
    /// Relay maintenance.
    #[command(subcommand)]
    Relay(RelayCommand),
    /// Events a projection gave up on.
    #[command(subcommand)]
    Deadletters(DeadLettersCommand),
    /// Read model maintenance.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Saga instances: their state, pending jobs and retries.
    #[command(subcommand)]
    Sagas(SagasCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// Where the event store lives.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// Postgres connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/bookingd",
        hide_env_values = true
    )]
    pub database_url: SecretString,
    /// Largest number of Postgres connections this process opens.
    #[arg(long, env = "BOOKINGD_DB_POOL_SIZE", default_value_t = 32)]
    pub db_pool_size: u32,
}

/// Where JetStream lives.
#[derive(Debug, Clone, Args)]
pub struct NatsConfig {
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
}

/// `bookingd serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Database settings.
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// NATS settings.
    #[command(flatten)]
    pub nats: NatsConfig,
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, env = "BOOKINGD_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// Token for the operator routes (`/api/v2/admin`); they are closed without one.
    #[arg(long, env = "BOOKINGD_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<SecretString>,
    /// Seconds a slot hold blocks its slot unless confirmed.
    #[arg(long, env = "MCP_BOOKING_LOCK_TIMEOUT", default_value_t = 300)]
    pub booking_lock_timeout: u32,
    /// Upper bound on how many days ahead bookings may start (tenants may set less).
    #[arg(long, env = "MCP_BOOKING_MAX_ADVANCE_DAYS", default_value_t = 90)]
    pub booking_max_advance_days: u32,
    /// Host names (optionally `host:port`) the `/mcp` endpoint answers to; others get 403,
    /// which guards against DNS rebinding. A public deployment lists its own host.
    #[arg(
        long,
        env = "BOOKINGD_MCP_ALLOWED_HOSTS",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1,::1"
    )]
    pub mcp_allowed_hosts: Vec<String>,
    /// Whether this process takes part in the relay election (one leader publishes).
    #[arg(long, env = "BOOKINGD_RELAY", default_value_t = true, action = clap::ArgAction::Set)]
    pub relay: bool,
    /// Whether this process runs projection workers (they share each projection's consumer
    /// with the other instances).
    #[arg(long, env = "BOOKINGD_PROJECTIONS", default_value_t = true, action = clap::ArgAction::Set)]
    pub projections: bool,
    /// Whether this process runs the sagas (calendar sync); their consumers and job claims
    /// are shared with the other instances.
    #[arg(long, env = "BOOKINGD_SAGAS", default_value_t = true, action = clap::ArgAction::Set)]
    pub sagas: bool,
    /// `pretty` for development, `json` for production.
    #[arg(long, env = "BOOKINGD_LOG_FORMAT", default_value = "pretty")]
    pub log_format: LogFormat,
    /// Integrations: timeouts, retries, circuit breakers, credentials.
    #[command(flatten)]
    pub integrations: IntegrationConfig,
    /// Requests per API key and window, by plan.
    #[command(flatten)]
    pub rate_limits: RateLimitConfig,
    /// Whether `GET /metrics` answers (Prometheus text format).
    #[arg(long, env = "MCP_METRICS_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub metrics_enabled: bool,
    /// Span export over OTLP.
    #[command(flatten)]
    pub tracing: TracingConfig,
    /// Where sagas, timers and circuit breakers read the time (tests move it).
    #[arg(skip = system_clock())]
    pub clock: sagas::SharedClock,
}

fn system_clock() -> sagas::SharedClock {
    std::sync::Arc::new(sagas::SystemClock)
}

/// Calls to external services.
#[derive(Debug, Clone, Args)]
pub struct IntegrationConfig {
    /// Seconds an external call may take before it is cut.
    #[arg(long, env = "MCP_TIMEOUT", default_value_t = 30.0)]
    pub timeout: f64,
    /// Retries of a failed external call (with exponential backoff and jitter).
    #[arg(long, env = "MCP_MAX_RETRIES", default_value_t = 3)]
    pub max_retries: u32,
    /// Failures in a row that open an integration's circuit.
    #[arg(long, env = "MCP_CIRCUIT_FAILURE_THRESHOLD", default_value_t = 5)]
    pub circuit_failure_threshold: u32,
    /// Seconds an open circuit waits before letting one probe through.
    #[arg(long, env = "MCP_CIRCUIT_RECOVERY_TIMEOUT", default_value_t = 60)]
    pub circuit_recovery_timeout: u32,
    /// Cal.com's API (self-hosted instances have their own).
    #[arg(long, env = "CALCOM_API_URL", default_value = "https://api.cal.com")]
    pub calcom_api_url: String,
    /// 64 hex digits sealing tenants' integration credentials at rest; without it they
    /// cannot be stored.
    #[arg(long, env = "BOOKINGD_SECRET_KEY", hide_env_values = true)]
    pub secret_key: Option<SecretString>,
    /// The address the outside world reaches this service at (`https://bookingd.example`),
    /// for the callbacks providers make (Twilio's delivery reports).
    #[arg(long, env = "BOOKINGD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Twilio's API.
    #[arg(long, env = "TWILIO_API_URL", default_value = "https://api.twilio.com")]
    pub twilio_api_url: String,
    /// Twilio account (`AC…`); SMS is off without it, the token and a sender.
    #[arg(long, env = "TWILIO_ACCOUNT_SID")]
    pub twilio_account_sid: Option<String>,
    /// Twilio auth token (also checks its callbacks' signatures).
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    pub twilio_auth_token: Option<SecretString>,
    /// The SMS sender: a Twilio number or an alphanumeric id of up to 11 characters.
    #[arg(long, env = "TWILIO_FROM")]
    pub twilio_from: Option<String>,
    /// SMTP relay (`smtp://host:25`, `smtps://user:password@host`); e-mail is off without it
    /// and a sender.
    #[arg(long, env = "SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<SecretString>,
    /// The address e-mail is sent from.
    #[arg(long, env = "SMTP_FROM")]
    pub smtp_from: Option<String>,
    /// Stripe's API.
    #[arg(long, env = "STRIPE_API_URL", default_value = "https://api.stripe.com")]
    pub stripe_api_url: String,
    /// Stripe secret key (`sk_…`); deposits cannot be collected without it.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<SecretString>,
    /// The signing secret (`whsec_…`) of the Stripe webhook pointed at
    /// `/api/v2/webhooks/stripe`.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<SecretString>,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// `bookingd tenant …`.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Registers a tenant and prints its first admin API key.
    Create {
        /// Database settings.
        #[command(flatten)]
        database: DatabaseConfig,
        /// Company name.
        #[arg(long)]
        name: String,
        /// basic, professional or enterprise.
        #[arg(long, default_value = "basic")]
        plan: String,
    },
}

/// `bookingd api-key …`.
#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Creates an API key for a tenant and prints it once.
    Create {
        /// Database settings.
        #[command(flatten)]
        database: DatabaseConfig,
        /// The tenant's id.
        #[arg(long)]
        tenant: uuid::Uuid,
        /// admin, manager, staff, agent or readonly.
        #[arg(long, default_value = "admin")]
        role: String,
        /// A label for the key.
        #[arg(long, default_value = "cli")]
        name: String,
    },
}

/// `bookingd demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoConfig {
    /// Database settings.
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// The address the printed curl lines point at.
    #[arg(long, env = "BOOKINGD_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
}

/// `bookingd relay …`.
#[derive(Debug, Subcommand)]
pub enum RelayCommand {
    /// Publishes every event from a position on again, to refill a wiped stream.
    Republish {
        /// Database settings.
        #[command(flatten)]
        database: DatabaseConfig,
        /// NATS settings.
        #[command(flatten)]
        nats: NatsConfig,
        /// First position to publish.
        #[arg(long, default_value_t = 0)]
        from: i64,
    },
}

/// `bookingd deadletters …`.
#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// Lists the parked events, in store order.
    List {
        /// Database settings.
        #[command(flatten)]
        database: DatabaseConfig,
        /// Only this projection's.
        #[arg(long)]
        projection: Option<String>,
    },
    /// Applies a projection's parked events again (after the fault is fixed).
    Retry {
        /// Database settings.
        #[command(flatten)]
        database: DatabaseConfig,
        /// The projection (`bookings`, `tenants`, `staff`) or saga (`saga:calendar-sync`,
        /// `saga:notifications`, `saga:payments`).
        projection: String,
    },
    /// Gives one parked event up, so that the events after it can be applied.
    Skip {
        /// Database settings.
        #[command(flatten)]
        database: DatabaseConfig,
        /// The projection (`bookings`).
        projection: String,
        /// The parked event's id.
        event_id: String,
    },
}

/// `bookingd sagas …`.
#[derive(Debug, Subcommand)]
pub enum SagasCommand {
    /// Lists instances, those with pending jobs first.
    List {
        /// Database settings.
        #[command(flatten)]
        database: DatabaseConfig,
        /// Only this saga's (`calendar-sync`, `notifications`, `payments`).
        #[arg(long)]
        saga: Option<String>,
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<uuid::Uuid>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: i64,
    },
    /// Prints one instance's state and jobs as JSON.
    Show {
        /// Database settings.
        #[command(flatten)]
        database: DatabaseConfig,
        /// The saga (`calendar-sync`, `notifications`, `payments`).
        saga: String,
        /// The instance (the booking id).
        instance: String,
    },
    /// Makes an instance's steps due now, including one refused for good (after the cause
    /// is fixed).
    Retry {
        /// Database settings.
        #[command(flatten)]
        database: DatabaseConfig,
        /// The saga (`calendar-sync`, `notifications`, `payments`).
        saga: String,
        /// The instance (the booking id).
        instance: String,
    },
}

/// `bookingd projections …`.
#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Rebuilds read models from the event store into fresh tables and swaps them in; the
    /// service keeps running, and nothing is published.
    Rebuild {
        /// Database settings.
        #[command(flatten)]
        database: DatabaseConfig,
        /// `bookings`, `tenants`, `staff`, or `all`.
        name: String,
    },
}

/// `bookingd audit …`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Writes a tenant's events to standard output as NDJSON, in store order.
    Export {
        /// Database settings.
        #[command(flatten)]
        database: DatabaseConfig,
        /// The tenant's id.
        #[arg(long)]
        tenant: uuid::Uuid,
        /// Events recorded at or after this time (RFC 3339).
        #[arg(long)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Events recorded before this time (RFC 3339).
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
    },
}

impl Default for IntegrationConfig {
    /// The same defaults as the command line's.
    fn default() -> Self {
        Self {
            timeout: 30.0,
            max_retries: 3,
            circuit_failure_threshold: 5,
            circuit_recovery_timeout: 60,
            calcom_api_url: "https://api.cal.com".to_owned(),
            secret_key: None,
            public_url: None,
            twilio_api_url: "https://api.twilio.com".to_owned(),
            twilio_account_sid: None,
            twilio_auth_token: None,
            twilio_from: None,
            smtp_url: None,
            smtp_from: None,
            stripe_api_url: "https://api.stripe.com".to_owned(),
            stripe_secret_key: None,
            stripe_webhook_secret: None,
        }
    }
}

/// Span export: OTLP over HTTP (JSON) to the collector that `OTEL_EXPORTER_OTLP_ENDPOINT`
/// (default `http://localhost:4318`) or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` names.
#[derive(Debug, Clone, Copy, Args)]
pub struct TracingConfig {
    /// Whether spans are exported.
    #[arg(long, env = "MCP_TRACING_ENABLED", default_value_t = false, action = clap::ArgAction::Set)]
    pub tracing_enabled: bool,
    /// The share of traces begun here that are exported, 0 to 1; a caller's `traceparent`
    /// decides for its own trace.
    #[arg(long, env = "MCP_TRACING_SAMPLE_RATE", default_value_t = 1.0)]
    pub tracing_sample_rate: f64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            tracing_enabled: false,
            tracing_sample_rate: 1.0,
        }
    }
}

/// Requests per API key and window, by the tenant's plan.
#[derive(Debug, Clone, Copy, Args)]
pub struct RateLimitConfig {
    /// Requests per window for a basic-plan key.
    #[arg(long, env = "MCP_RATE_LIMIT_BASIC", default_value_t = 100)]
    pub rate_limit_basic: u32,
    /// Requests per window for a professional-plan key.
    #[arg(long, env = "MCP_RATE_LIMIT_PRO", default_value_t = 1000)]
    pub rate_limit_pro: u32,
    /// Requests per window for an enterprise-plan key.
    #[arg(long, env = "MCP_RATE_LIMIT_ENTERPRISE", default_value_t = 10_000)]
    pub rate_limit_enterprise: u32,
    /// The window, in seconds.
    #[arg(long, env = "MCP_RATE_LIMIT_WINDOW", default_value_t = 3600)]
    pub rate_limit_window: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            rate_limit_basic: 100,
            rate_limit_pro: 1000,
            rate_limit_enterprise: 10_000,
            rate_limit_window: 3600,
        }
    }
}
