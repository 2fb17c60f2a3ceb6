//! The one place everything is wired: pool, migrations, NATS, the write side, the relay and
//! the HTTP server, all stopped by one shutdown signal.

use std::future::{Future, IntoFuture};
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use adapters::{
    ApiKeys, Appends, Idempotency, MIGRATOR, PgDirectory, PgStore, ProjectionWorker, Relay,
    RelayConfig, SnapshotPolicy, WorkerConfig,
};
use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use commands::{CommandConfig, Commands};
use projections::{Bookings, StaffCalendars, Tenants};
use secrecy::ExposeSecret;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::auth::{KeyCache, require_api_key};
use crate::config::{DatabaseConfig, ServeConfig};
use crate::error::{method_not_allowed, route_not_found};
use crate::idempotency::{MAX_BODY, idempotent_posts};
use crate::integrations::{Integrations, Sagas};
use crate::rate_limit::limit_requests;
use crate::routes;
use crate::state::{AppState, Shared};

/// rustls needs one process-wide crypto provider; both ring and aws-lc are compiled in.
pub fn install_crypto_provider() {
    let _ = async_nats::rustls::crypto::ring::default_provider().install_default();
}

/// How long a pooled connection may sit idle before it is pinged on acquire.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

/// A pool on the configured database. Fails fast when Postgres is down.
///
/// Its sessions plan each prepared statement once (`plan_cache_mode=force_generic_plan`).
/// Left to choose, Postgres planned the event appends anew on every execution, which cost
/// more than running them; the statements here are look-ups by key, inserts and updates, and
/// the read side's benchmarks (projection lag, rebuild, availability) stay within their goals
/// under generic plans.
pub async fn connect_database(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(config.database_url.expose_secret())
        .context("DATABASE_URL is not a Postgres URL")?
        .options([("plan_cache_mode", "force_generic_plan")]);
    PgPoolOptions::new()
        .max_connections(config.db_pool_size)
        .acquire_timeout(Duration::from_secs(3))
        // By default every acquire first pings the connection: a round trip before each
        // query. One that answered moments ago is taken as alive (if it died since, its query
        // fails and the connection is dropped); one idle for longer is checked first.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_with(options)
        .await
        .context("cannot connect to Postgres")
}

/// The write side on a pool.
pub fn build_commands(pool: &PgPool, config: CommandConfig) -> Commands<PgStore> {
    let store = PgStore::new(pool.clone(), SnapshotPolicy::standard());
    Commands::new(store, Arc::new(PgDirectory::new(pool.clone())), config)
}

/// A NATS client; it starts even while NATS is down (the relay catches up when it returns).
async fn connect_nats(url: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(url)
        .await
        .context("bad NATS_URL")
}

/// The write side's settings from the server's.
fn command_config(config: &ServeConfig) -> CommandConfig {
    CommandConfig {
        hold_ttl: chrono::Duration::seconds(i64::from(config.booking_lock_timeout)),
        max_advance_days: config.booking_max_advance_days,
        concurrent_commands: concurrent_commands(),
        ..CommandConfig::default()
    }
}

/// Commands let through to Postgres at once: two per core, at least four. On two cores 2, 4, 8
/// and 16 made no difference beyond the noise; a fixed four would cap a larger machine.
fn concurrent_commands() -> usize {
    std::thread::available_parallelism().map_or(4, |cores| (2 * cores.get()).max(4))
}

/// The HTTP routes over `state`.
pub fn app_router(state: AppState) -> Router {
    let tenant_routes = Router::new()
        .merge(routes::tenant::router())
        .merge(routes::branches::router())
        .merge(routes::services::router())
        .merge(routes::staff::router())
        .merge(routes::bookings::router())
        .merge(routes::availability::router())
        .merge(routes::customers::router())
        .merge(routes::dashboard::router())
        .merge(routes::live::router())
        .merge(routes::audit::router())
        .merge(routes::integrations::router())
        .merge(routes::admin::tenant_router())
        .merge(routes::routing::router())
        .merge(routes::call_log::router())
        .merge(routes::retell::settings_router())
        .layer(from_fn_with_state(state.clone(), idempotent_posts))
        .layer(from_fn_with_state(state.clone(), limit_requests))
        .layer(from_fn_with_state(state.clone(), require_api_key));
    let operator_routes = routes::admin::operator_router(state.clone())
        .layer(from_fn_with_state(state.clone(), idempotent_posts));
    Router::new()
        .nest("/api/v2/mcp", routes::health::router().merge(tenant_routes))
        .nest("/api/v2/admin", operator_routes)
        .nest("/api/v2/webhooks", routes::webhooks::router())
        .merge(crate::mcp::router(&state))
        .route("/api/v2/openapi.json", get(openapi))
        .route("/metrics", get(crate::metrics::scrape))
        .route_layer(from_fn_with_state(state.clone(), crate::metrics::track))
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                // One line per answered request, in its span (method, path, correlation id).
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(axum::middleware::from_fn(crate::auth::correlate))
        .with_state(state)
}

/// Each request's log span, with the correlation id its events carry.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        correlation_id = %crate::auth::correlation_id(request.headers()),
    );
    crate::telemetry::continue_trace(&span, request.headers());
    span
}

static OPENAPI: LazyLock<Value> = LazyLock::new(crate::openapi::document);

async fn openapi() -> axum::Json<Value> {
    axum::Json(OPENAPI.clone())
}

/// A built, bound, not yet running server.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    router: Router,
    relay: Option<RelayThread>,
    /// Where appends are announced to the relays of other instances.
    announcer: (PgPool, Appends),
    /// The projection workers, when this process runs them.
    projections: Option<Projectors>,
    /// The saga workers, when this process runs them.
    sagas: Option<Sagas>,
}

/// One worker per read model.
#[derive(Debug)]
struct Projectors {
    bookings: ProjectionWorker<Bookings>,
    tenants: ProjectionWorker<Tenants>,
    staff: ProjectionWorker<StaffCalendars>,
}

impl Projectors {
    fn new(pool: &PgPool, nats: &async_nats::Client) -> Self {
        let js = async_nats::jetstream::new(nats.clone());
        Self {
            bookings: ProjectionWorker::new(
                pool.clone(),
                js.clone(),
                Bookings,
                WorkerConfig::default(),
            ),
            tenants: ProjectionWorker::new(
                pool.clone(),
                js.clone(),
                Tenants,
                WorkerConfig::default(),
            ),
            staff: ProjectionWorker::new(pool.clone(), js, StaffCalendars, WorkerConfig::default()),
        }
    }

    fn spawn(self, stopped: &watch::Receiver<bool>) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(self.bookings.run(stopped.clone())),
            tokio::spawn(self.tenants.run(stopped.clone())),
            tokio::spawn(self.staff.run(stopped.clone())),
        ]
    }
}

/// What the relay needs to run on a thread of its own.
///
/// The relay gets its own OS thread, runtime, connections and NATS client so that a saturated
/// HTTP side cannot starve it: as one task among hundreds it would wait behind every request
/// for each wake-up, and the stream would fall ever further behind the store under load.
struct RelayThread {
    database: DatabaseConfig,
    nats_url: String,
    appends: Appends,
    observer: Option<adapters::relay::LagObserver>,
}

impl std::fmt::Debug for RelayThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayThread").finish_non_exhaustive()
    }
}

/// The relay's connections: the lease, the listener and a spare.
const RELAY_CONNECTIONS: u32 = 3;

impl RelayThread {
    /// Starts the relay thread; it stops when `stopped` turns true. The receiver returned
    /// completes when the thread has finished, its runtime shut down.
    fn spawn(self, stopped: watch::Receiver<bool>) -> std::io::Result<oneshot::Receiver<()>> {
        let (finished, finishing) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("bookingd-relay".to_owned())
            .spawn(move || {
                // Dropped last: after the runtime below has shut down.
                let _finished = finished;
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start the relay's runtime");
                        return;
                    }
                };
                runtime.block_on(self.run(stopped));
            })?;
        Ok(finishing)
    }

    async fn run(self, stopped: watch::Receiver<bool>) {
        let database = DatabaseConfig {
            db_pool_size: RELAY_CONNECTIONS,
            ..self.database
        };
        let pool = loop {
            match connect_database(&database).await {
                Ok(pool) => break pool,
                Err(e) => {
                    tracing::warn!(error = %e, "relay cannot reach Postgres; retrying");
                    if *stopped.borrow() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let nats = match async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connect(self.nats_url.as_str())
            .await
        {
            Ok(nats) => nats,
            Err(e) => {
                tracing::error!(error = %e, "relay cannot use NATS_URL");
                return;
            }
        };
        let mut relay = Relay::new(
            pool,
            async_nats::jetstream::new(nats),
            RelayConfig::default(),
        )
        .with_local_appends(&self.appends);
        if let Some(observer) = self.observer {
            relay = relay.with_lag_observer(observer);
        }
        relay.run(stopped).await;
    }
}

impl Application {
    /// Connects, migrates and binds.
    pub async fn build(config: ServeConfig) -> anyhow::Result<Self> {
        install_crypto_provider();
        let pool = connect_database(&config.database).await?;
        MIGRATOR.run(&pool).await.context("migrations failed")?;
        let nats = connect_nats(&config.nats.nats_url).await?;
        let commands = build_commands(&pool, command_config(&config));
        let appends = commands.store().appends().clone();
        let relay = config.relay.then(|| RelayThread {
            database: config.database.clone(),
            nats_url: config.nats.nats_url.clone(),
            appends: appends.clone(),
            observer: None,
        });
        let announcer = (pool.clone(), appends);
        let projections = config.projections.then(|| Projectors::new(&pool, &nats));
        let commands = Arc::new(commands);
        let integrations = Integrations::new(&config, &pool)?;
        let sagas = config
            .sagas
            .then(|| integrations.sagas(&config, &pool, &nats, &commands));
        let state = AppState(Arc::new(Shared {
            commands,
            accounts: integrations.accounts,
            circuits: integrations.circuits,
            twilio_callbacks: integrations.twilio_callbacks,
            stripe_webhook_secret: integrations.stripe_webhook_secret,
            clock: config.clock.clone(),
            keys: ApiKeys::new(pool.clone()),
            key_cache: KeyCache::default(),
            idempotency: Idempotency::new(pool.clone()),
            pool,
            nats,
            calendars: projections::staff_calendar::CalendarCache::default(),
            operator_token: config.operator_token,
            mcp_allowed_hosts: config.mcp_allowed_hosts,
            rate_limits: config.rate_limits,
            plans: crate::rate_limit::PlanCache::default(),
            request_counts: crate::rate_limit::RequestCounts::default(),
            own_writes: crate::consistency::OwnWrites::default(),
            http_metrics: crate::metrics::HttpMetrics::default(),
            metrics_enabled: config.metrics_enabled,
        }));
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("cannot listen on {}", config.bind))?;
        Ok(Self {
            listener,
            router: app_router(state),
            relay,
            announcer,
            projections,
            sagas,
        })
    }

    /// Reports each event's commit-to-PubAck time (for metrics and the benchmark).
    pub fn with_relay_lag_observer(mut self, observer: adapters::relay::LagObserver) -> Self {
        if let Some(relay) = self.relay.as_mut() {
            relay.observer = Some(observer);
        }
        self
    }

    /// Reports each event's commit-to-visible time in the read models (for metrics and the
    /// benchmark).
    pub fn with_projection_lag_observer(
        mut self,
        observer: adapters::projection_worker::LagObserver,
    ) -> Self {
        if let Some(workers) = self.projections.as_mut() {
            workers.bookings = workers.bookings.clone().with_lag_observer(observer);
        }
        self
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Serves until `shutdown` completes, then stops accepting, finishes in-flight requests
    /// and lets the relay publish what is committed.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "bookingd listening");
        let (stop, stopped) = watch::channel(false);
        // The relay and the announcer stop after the workers, so that no transaction of theirs
        // holds the relay's horizon back while it publishes the last events.
        let (stop_relay, relay_stopped) = watch::channel(false);
        let (pool, appends) = self.announcer;
        tokio::spawn(adapters::appends::announce(
            pool,
            appends,
            relay_stopped.clone(),
        ));
        let mut workers = self
            .projections
            .map(|workers| workers.spawn(&stopped))
            .unwrap_or_default();
        if let Some(sagas) = self.sagas {
            workers.extend(sagas.spawn(&stopped));
        }
        let relay = match self.relay {
            Some(relay) => Some(
                relay
                    .spawn(relay_stopped)
                    .context("cannot start the relay thread")?,
            ),
            None => None,
        };
        serve_until(self.listener, self.router, shutdown).await?;
        let _ = stop.send(true);
        stop_workers(workers).await;
        let _ = stop_relay.send(true);
        if let Some(finished) = relay {
            // Waited for without a blocking task: a relay that never stops must not keep this
            // runtime from shutting down (a blocking `join` would hold its pool for ever).
            // A second more than it takes at the most, for its runtime's own shutdown.
            let limit = adapters::relay::STOP_LIMIT + Duration::from_secs(1);
            if tokio::time::timeout(limit, finished).await.is_err() {
                tracing::warn!(
                    limit_s = limit.as_secs(),
                    "relay did not stop in time; its thread is left behind"
                );
            }
        }
        Ok(())
    }
}

/// Serves until `shutdown`; then stops accepting and lets the requests in flight finish, for
/// at most `DRAIN_TIMEOUT` (live streams never do). The caller then stops the workers and the
/// relay, which publishes what has been committed before it exits.
async fn serve_until(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (signalled, on_signal) = oneshot::channel::<()>();
    let mut server = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = signalled.send(());
            })
            .into_future(),
    );
    tokio::select! {
        served = &mut server => served??,
        _ = on_signal => {
            tracing::info!("shutting down: finishing the requests in flight");
            match tokio::time::timeout(DRAIN_TIMEOUT, &mut server).await {
                Ok(served) => served??,
                Err(_) => {
                    tracing::warn!("requests still open after {DRAIN_TIMEOUT:?}; closing them");
                    server.abort();
                }
            }
        }
    }
    Ok(())
}

/// Waits for the workers to finish the batches and jobs they hold. One still at it after
/// [`WORKERS_STOP_LIMIT`] (a statement waiting for a lock, a database that stopped answering)
/// is cut off: its transaction is not committed and its messages are not acknowledged, so they
/// are delivered again, as after a crash.
async fn stop_workers(mut workers: Vec<tokio::task::JoinHandle<()>>) {
    let all = futures::future::join_all(workers.iter_mut());
    if tokio::time::timeout(WORKERS_STOP_LIMIT, all).await.is_err() {
        let stuck = workers.iter().filter(|w| !w.is_finished()).count();
        tracing::warn!(
            stuck,
            limit_s = WORKERS_STOP_LIMIT.as_secs(),
            "workers still busy after shutdown; cutting them off"
        );
        for worker in &workers {
            worker.abort();
        }
    }
}

/// How long projection and saga workers may take to stop once shutdown begins.
const WORKERS_STOP_LIMIT: Duration = Duration::from_secs(10);

/// How long requests in flight may take to finish once shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);

/// Completes on SIGTERM or ctrl-c.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
