use std::future::Future;
use std::sync::Once;
use std::time::{Duration, Instant};

use api::Application;
use api::config::{DatabaseConfig, IntegrationConfig, LogFormat, NatsConfig, ServeConfig};
use chrono::{DateTime, NaiveTime, TimeZone, Timelike, Utc};
use reqwest::{Method, StatusCode};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::oneshot;

use super::NatsServer;

/// The operator token every test app runs with.
pub(crate) const OPERATOR_TOKEN: &str = "test-operator-token";

static TRACING: Once = Once::new();

/// Logs stay quiet unless `TEST_LOG` is set.
fn init_tracing() {
    // The test's own HTTP clients need rustls's provider, with or without an app in-process.
    api::startup::install_crypto_provider();
    TRACING.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            api::telemetry::init_subscriber(api::telemetry::get_subscriber(
                "info,sqlx=warn",
                LogFormat::Pretty,
                std::io::stdout,
                None,
            ));
        }
    });
}

/// Polls `check` until it returns true or `within` passes; returns whether it did.
pub(crate) async fn poll_until<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The tests' HTTP client: a request that hangs fails the test after a minute instead of
/// holding up the whole run.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client")
}

/// The URL of the test's database, derived from `DATABASE_URL` and the pool's database name.
pub(crate) fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let name = pool
        .connect_options()
        .get_database()
        .expect("database name")
        .to_owned();
    let (server, _) = base.rsplit_once('/').expect("DATABASE_URL has a database");
    format!("{server}/{name}")
}

/// A bookingd serving in this process, over the test's database and nats-server.
#[derive(Debug)]
pub(crate) struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub(crate) address: String,
    /// The test's database.
    pub(crate) pool: PgPool,
    /// The test's nats-server.
    pub(crate) nats: NatsServer,
    /// An HTTP client.
    pub(crate) http: reqwest::Client,
    stops: Vec<oneshot::Sender<()>>,
}

/// Ids of a seeded salon: one branch open every day 08:00-20:00 Berlin, one 30-minute service
/// (10 minutes' buffer after), three qualified staff working 08:00-20:00 with a 12:00-12:30 break.
#[derive(Debug, Clone)]
pub(crate) struct Salon {
    /// Tenant.
    pub(crate) tenant_id: String,
    /// Admin key.
    pub(crate) key: String,
    /// The branch.
    pub(crate) branch_id: String,
    /// The service.
    pub(crate) service_id: String,
    /// The staff.
    pub(crate) staff_ids: Vec<String>,
}

/// `hour:minute` Berlin time, `days` days from today.
pub(crate) fn berlin(days: i64, hour: u32, minute: u32) -> DateTime<Utc> {
    let tz = chrono_tz::Europe::Berlin;
    let date = Utc::now().with_timezone(&tz).date_naive() + chrono::Duration::days(days);
    let time = NaiveTime::from_hms_opt(hour, minute, 0).expect("time");
    tz.from_local_datetime(&date.and_time(time))
        .earliest()
        .expect("valid local time")
        .with_timezone(&Utc)
}

/// Postgres connections per bookingd a test starts, in process or as a process of its own
/// (besides the relay's three). Tests run side by side on one Postgres and its
/// `max_connections`; `scripts/test.sh` sets how many run at once from the same budget.
pub(crate) const POOL_SIZE: u32 = 10;

pub(crate) fn serve_config(url: &str, nats_url: &str) -> ServeConfig {
    ServeConfig {
        database: DatabaseConfig {
            database_url: SecretString::from(url.to_owned()),
            db_pool_size: POOL_SIZE,
        },
        nats: NatsConfig {
            nats_url: nats_url.to_owned(),
        },
        bind: "127.0.0.1:0".parse().expect("addr"),
        operator_token: Some(SecretString::from(OPERATOR_TOKEN.to_owned())),
        mcp_allowed_hosts: vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
        metrics_enabled: true,
        tracing: api::config::TracingConfig::default(),
        rate_limits: api::config::RateLimitConfig::default(),
        booking_lock_timeout: 300,
        booking_max_advance_days: 90,
        relay: true,
        projections: true,
        sagas: true,
        log_format: LogFormat::Pretty,
        integrations: IntegrationConfig {
            secret_key: Some(SecretString::from(TEST_SECRET_KEY.to_owned())),
            ..IntegrationConfig::default()
        },
        clock: std::sync::Arc::new(sagas::SystemClock),
    }
}

/// The key test servers seal integration credentials with.
pub(crate) const TEST_SECRET_KEY: &str =
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

async fn start_instance(url: &str, nats_url: &str) -> (String, oneshot::Sender<()>) {
    start_configured(serve_config(url, nats_url)).await
}

async fn start_configured(config: ServeConfig) -> (String, oneshot::Sender<()>) {
    let app = Application::build(config).await.expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    (address, stop)
}

const WEEK: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// The same hours on every day of the week.
pub(crate) fn every_day(day: &Value) -> Value {
    Value::Object(
        WEEK.iter()
            .map(|d| ((*d).to_owned(), day.clone()))
            .collect(),
    )
}

/// A zone where it is now around noon (`Etc/GMT±n`), so that bookings from now to a few
/// hours on stay on today's local date whatever time the test runs.
pub(crate) fn zone_near_noon() -> String {
    let offset = (12 - i64::from(Utc::now().hour())).clamp(-12, 14);
    // Etc/GMT zones have inverted signs: Etc/GMT-2 is UTC+2.
    if offset >= 0 {
        format!("Etc/GMT-{offset}")
    } else {
        format!("Etc/GMT+{}", -offset)
    }
}

impl TestApp {
    /// Starts a nats-server and the app.
    pub(crate) async fn spawn(pool: PgPool) -> Self {
        init_tracing();
        let nats = NatsServer::start();
        let (address, stop) = start_instance(&database_url(&pool), &nats.url()).await;
        Self {
            address,
            pool,
            nats,
            http: http_client(),
            stops: vec![stop],
        }
    }

    /// Starts a nats-server and the app with its configuration changed by `change`.
    pub(crate) async fn spawn_with(pool: PgPool, change: impl FnOnce(&mut ServeConfig)) -> Self {
        init_tracing();
        let nats = NatsServer::start();
        let mut config = serve_config(&database_url(&pool), &nats.url());
        change(&mut config);
        let (address, stop) = start_configured(config).await;
        Self {
            address,
            pool,
            nats,
            http: http_client(),
            stops: vec![stop],
        }
    }

    /// A nats-server and no app: the test starts bookingd processes itself.
    pub(crate) async fn bare(pool: PgPool) -> Self {
        init_tracing();
        Self {
            address: String::new(),
            pool,
            nats: NatsServer::start(),
            http: http_client(),
            stops: vec![],
        }
    }

    /// Starts another instance, its configuration changed by `change`; returns its address.
    pub(crate) async fn another_instance_with(
        &mut self,
        change: impl FnOnce(&mut ServeConfig),
    ) -> String {
        let mut config = serve_config(&database_url(&self.pool), &self.nats.url());
        change(&mut config);
        let (address, stop) = start_configured(config).await;
        self.stops.push(stop);
        address
    }

    /// Starts another instance on the same database and nats-server; returns its address.
    pub(crate) async fn another_instance(&mut self) -> String {
        let (address, stop) = start_instance(&database_url(&self.pool), &self.nats.url()).await;
        self.stops.push(stop);
        address
    }

    /// A request to this app.
    pub(crate) async fn call(
        &self,
        method: Method,
        key: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        call_at(&self.http, &self.address, method, key, path, body, None).await
    }

    /// POST with a JSON body.
    pub(crate) async fn post(&self, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, key, path, Some(body)).await
    }

    /// PUT with a JSON body.
    pub(crate) async fn put(&self, key: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, key, path, Some(body)).await
    }

    /// GET.
    pub(crate) async fn get(&self, key: &str, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, key, path, None).await
    }

    /// The booking as `GET /bookings/{id}` answers once the answer satisfies `done`, polled for
    /// up to a minute (some steps wait for a dead process's claim to lapse), and that answer
    /// itself: a later read may already show a newer state.
    pub(crate) async fn booking_when(
        &self,
        key: &str,
        id: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let path = format!("/api/v2/mcp/bookings/{id}");
        let last = std::sync::Mutex::new(Value::Null);
        let seen = poll_until(Duration::from_secs(60), || async {
            let booking = self.get(key, &path).await.1["data"].clone();
            let satisfied = done(&booking);
            *last.lock().unwrap() = booking;
            satisfied
        })
        .await;
        let last = last.into_inner().unwrap();
        assert!(seen, "the booking never got there: {last}");
        last
    }

    /// Posts `request` as a hold only, then confirms it: a booking of two events
    /// (`BookingCreated` held, `BookingConfirmed`) rather than one. Returns its id.
    pub(crate) async fn hold_then_confirm(&self, key: &str, mut request: Value) -> String {
        request["hold_only"] = json!(true);
        let (status, held) = self.post(key, "/api/v2/mcp/bookings", request).await;
        assert_eq!(status, StatusCode::CREATED, "{held}");
        let id = held["data"]["id"].as_str().unwrap().to_owned();
        let path = format!("/api/v2/mcp/bookings/{id}/confirm");
        let (status, confirmed) = self.post(key, &path, json!({})).await;
        assert_eq!(status, StatusCode::OK, "{confirmed}");
        id
    }

    /// Registers a tenant through the operator route; returns its id and admin key.
    pub(crate) async fn register_tenant(&self, name: &str, plan: &str) -> (String, String) {
        let (status, body) = call_at(
            &self.http,
            &self.address,
            Method::POST,
            OPERATOR_TOKEN,
            "/api/v2/admin/tenants",
            Some(json!({ "name": name, "plan": plan })),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["data"]["tenant"]["id"]
                .as_str()
                .expect("id")
                .to_owned(),
            body["data"]["api_key"]["key"]
                .as_str()
                .expect("key")
                .to_owned(),
        )
    }

    /// A tenant with a branch, a service and three qualified staff members.
    pub(crate) async fn seed_salon(&self, name: &str, plan: &str) -> Salon {
        let (tenant_id, key) = self.register_tenant(name, plan).await;
        let hours = every_day(&json!({ "ranges": [{ "start": "08:00", "end": "20:00" }] }));
        let (status, body) = self
            .post(&key, "/api/v2/mcp/tenant/branches", json!({ "name": "Mitte", "address": "Torstr. 1", "city": "Berlin", "coordinates": { "lat": 52.53, "lng": 13.4 }, "time_zone": "Europe/Berlin", "business_hours": hours }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let branch_id = body["data"]["id"].as_str().expect("branch id").to_owned();
        let (status, body) = self
            .post(&key, "/api/v2/mcp/services", json!({ "name": "Haircut", "duration_minutes": 30, "price": { "amount_minor": 2900, "currency": "EUR" }, "buffer_before_minutes": 0, "buffer_after_minutes": 10, "branch_ids": [branch_id], "deposit": null }))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let service_id = body["data"]["id"].as_str().expect("service id").to_owned();
        let catalog_position = body["position"].as_i64().expect("position");
        let schedule = every_day(
            &json!({ "ranges": [{ "start": "08:00", "end": "20:00" }], "breaks": [{ "start": "12:00", "end": "12:30" }] }),
        );
        let mut staff_ids = Vec::new();
        let mut staff_position = 0;
        for name in ["Anna", "Ben", "Cem"] {
            let (status, body) = self
                .post(
                    &key,
                    "/api/v2/mcp/staff",
                    json!({ "branch_id": branch_id, "name": name, "schedule": schedule }),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            let staff_id = body["data"]["id"].as_str().expect("staff id").to_owned();
            let (status, body) = self
                .put(
                    &key,
                    &format!("/api/v2/mcp/staff/{staff_id}/services/{service_id}"),
                    json!({ "level": 3 }),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
            staff_position = body["position"].as_i64().expect("position");
            staff_ids.push(staff_id);
        }
        // The read models have caught up before any test reads them.
        let (status, body) = self
            .get(
                &key,
                &format!("/api/v2/mcp/tenant/branches/{branch_id}?min_position={catalog_position}"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = self
            .get(
                &key,
                &format!("/api/v2/mcp/staff?branch_id={branch_id}&min_position={staff_position}"),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["data"].as_array().map(Vec::len), Some(3), "{body}");
        Salon {
            tenant_id,
            key,
            branch_id,
            service_id,
            staff_ids,
        }
    }

    /// A booking request body for the salon.
    pub(crate) fn booking(salon: &Salon, staff: Option<usize>, start: DateTime<Utc>) -> Value {
        json!({
            "branch_id": salon.branch_id,
            "service_id": salon.service_id,
            "staff_id": staff.map(|i| salon.staff_ids[i].clone()),
            "start": start.to_rfc3339(),
            "customer": { "phone": "0151 2345678", "name": "Erika Mustermann", "email": "erika@example.com" },
        })
    }

    /// Books [`TestApp::booking`] with the salon's key; the answer, which must be 201.
    pub(crate) async fn book(
        &self,
        salon: &Salon,
        staff: Option<usize>,
        start: DateTime<Utc>,
    ) -> Value {
        self.book_with(&salon.key, Self::booking(salon, staff, start))
            .await
    }

    /// Posts a booking request with `key`; the answer, which must be 201.
    pub(crate) async fn book_with(&self, key: &str, body: Value) -> Value {
        let (status, created) = self.post(key, "/api/v2/mcp/bookings", body).await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        created
    }

    /// Events in the store.
    pub(crate) async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    /// Event types of one aggregate, in order.
    pub(crate) async fn event_types(&self, aggregate_type: &str, id: &str) -> Vec<String> {
        sqlx::query_scalar("SELECT event_type FROM events WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence")
            .bind(aggregate_type)
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .expect("event types")
    }

    /// Posts `body` to `path` at `address` (this instance or another) on a task of its own.
    pub(crate) fn spawn_post_at(
        &self,
        address: &str,
        key: &str,
        path: &str,
        body: Value,
    ) -> tokio::task::JoinHandle<(StatusCode, Value)> {
        let (http, address, key, path) = (
            self.http.clone(),
            address.to_owned(),
            key.to_owned(),
            path.to_owned(),
        );
        tokio::spawn(async move {
            call_at(&http, &address, Method::POST, &key, &path, Some(body), None).await
        })
    }

    /// Requests of `service` (`api`, `mcp`, `webhooks`, `admin`) in flight, as `/metrics` counts
    /// them (`mcp_active_connections`), not counting the scrape that asks.
    pub(crate) async fn requests_in_flight(&self, service: &str) -> u64 {
        let text = self
            .http
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        let prefix = format!("mcp_active_connections{{service=\"{service}\"}} ");
        let counted = text
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64);
        // `/metrics` is an `api` route: the scrape counts itself.
        counted.saturating_sub(u64::from(service == "api"))
    }

    /// Waits until the relay has put every stored event on the stream.
    pub(crate) async fn wait_until_relayed(&self, within: Duration) -> bool {
        let url = self.nats.url();
        poll_until(within, || async {
            let stored = self.event_count().await;
            u64::try_from(stored).unwrap_or(0) == super::stream::stream_len(&url).await
        })
        .await
    }
}

/// A request to any instance; `idempotency_key` sets `Idempotency-Key`.
pub(crate) async fn call_at(
    http: &reqwest::Client,
    address: &str,
    method: Method,
    key: &str,
    path: &str,
    body: Option<Value>,
    idempotency_key: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = http
        .request(method, format!("{address}{path}"))
        .bearer_auth(key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(k) = idempotency_key {
        request = request.header("Idempotency-Key", k);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

/// A transaction holding `LOCK TABLE <what>` until rolled back or dropped. Take a mode below
/// ACCESS EXCLUSIVE: that one takes a transaction id, which holds back the relay's horizon, of
/// every test's database at once.
pub(crate) async fn lock_table(
    pool: &PgPool,
    what: &str,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query(&format!("LOCK TABLE {what}"))
        .execute(&mut *blocker)
        .await
        .unwrap();
    blocker
}
