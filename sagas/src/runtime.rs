//! What every saga shares: its state, inbox and jobs in Postgres, changed together.
//!
//! An event reaches a saga once: its id goes into the saga's inbox in the same transaction
//! that stores the instance's new state and sets or drops its jobs, so a redelivered event is
//! recognised and nothing it caused happens twice. A job is a timer or a step to take with the
//! outside world; runners on any instance claim due jobs (`FOR UPDATE SKIP LOCKED`) for a
//! lease, perform them, and settle the outcome into the state in one more transaction. A
//! runner that dies mid-step leaves its claim to lapse; the job runs again, told how many
//! times it was claimed, so its step can look before it acts a second time.

use std::fmt::Debug;
use std::future::Future;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

tokio::task_local! {
    /// The correlation id of the job being performed, for the calls it makes.
    static CORRELATION: Uuid;
}

/// The correlation id of the saga step running on this task, if any: outbound calls carry it
/// (W3C `traceparent`), so one id leads from the request through the events to them.
pub fn current_correlation() -> Option<Uuid> {
    CORRELATION.try_with(|c| *c).ok()
}

/// An event as a saga receives it.
#[derive(Debug, Clone)]
pub struct SagaEvent {
    /// Unique id (the inbox key).
    pub event_id: Uuid,
    /// Its tenant.
    pub tenant_id: Uuid,
    /// `Tenant`, `Staff` or `Booking`.
    pub aggregate_type: String,
    /// The aggregate's id.
    pub aggregate_id: String,
    /// Its place in the aggregate's stream, from 1.
    pub sequence: i64,
    /// Its place in the store.
    pub position: i64,
    /// The event as stored.
    pub payload: Value,
    /// The request or conversation it belongs to.
    pub correlation_id: Uuid,
}

/// A job to set: due at a time, replacing any job of the same name of the instance.
#[derive(Debug, Clone)]
pub struct Schedule<J> {
    /// Unique per instance; setting it again moves it.
    pub name: String,
    /// When it is due.
    pub due: DateTime<Utc>,
    /// What to do then.
    pub job: J,
}

/// What a step of a saga decided: its new state and the jobs to set and drop.
#[derive(Debug, Clone)]
pub struct Reaction<S, J> {
    /// The state to store.
    pub state: S,
    /// Jobs to set (or move).
    pub schedule: Vec<Schedule<J>>,
    /// Names of jobs to drop.
    pub cancel: Vec<String>,
}

impl<S, J> Reaction<S, J> {
    /// The new state, no jobs touched.
    pub fn just(state: S) -> Self {
        Self {
            state,
            schedule: Vec::new(),
            cancel: Vec::new(),
        }
    }

    /// Also sets `job` under `name`, due at `due`.
    #[must_use]
    pub fn and_schedule(mut self, name: &str, due: DateTime<Utc>, job: J) -> Self {
        self.schedule.push(Schedule {
            name: name.to_owned(),
            due,
            job,
        });
        self
    }

    /// Also drops the job `name`.
    #[must_use]
    pub fn and_cancel(mut self, name: &str) -> Self {
        self.cancel.push(name.to_owned());
        self
    }
}

/// Why a saga could not take an event or a job.
#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    /// Postgres failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The event is not what the saga reads.
    #[error("event unreadable: {0}")]
    Unreadable(String),
}

/// A process manager: pure steps over its state, one instance per aggregate it follows.
pub trait Saga: Send + Sync + 'static {
    /// Stable name: its consumer, state, inbox and jobs are keyed on it.
    const NAME: &'static str;
    /// The aggregate type whose events it follows; each aggregate is one instance.
    const AGGREGATE_TYPE: &'static str;
    /// Per-instance state.
    type State: Serialize + DeserializeOwned + Default + Clone + Debug + Send + Sync;
    /// What a job asks for.
    type Job: Serialize + DeserializeOwned + Clone + Debug + Send + Sync;
    /// What performing a job came to.
    type Outcome: Debug + Send;

    /// The step for an event: new state and jobs. Pure.
    fn react(
        state: &Self::State,
        event: &SagaEvent,
        now: DateTime<Utc>,
    ) -> Result<Reaction<Self::State, Self::Job>, SagaError>;

    /// The step an operator's retry takes (after fixing what made a job fail for good):
    /// by default, none beyond making the instance's jobs due now. Pure.
    fn retry(state: &Self::State, _now: DateTime<Utc>) -> Reaction<Self::State, Self::Job> {
        Reaction::just(state.clone())
    }

    /// The step for a performed job's outcome, on the state as it is now (events may have
    /// changed it while the job ran). Pure.
    fn settle(
        state: &Self::State,
        job: &Self::Job,
        outcome: Self::Outcome,
        now: DateTime<Utc>,
    ) -> Reaction<Self::State, Self::Job>;
}

/// Performs a saga's jobs against the outside world.
pub trait Driver: Send + Sync + 'static {
    /// The saga it drives.
    type Saga: Saga;

    /// Performs one claimed job; its outcome is settled afterwards.
    fn perform(
        &self,
        run: &JobRun<Self::Saga>,
    ) -> impl Future<Output = <Self::Saga as Saga>::Outcome> + Send;
}

/// A claimed job with the instance's state as it was when claimed.
#[derive(Debug, Clone)]
pub struct JobRun<S: Saga> {
    /// The instance (the aggregate id).
    pub instance_id: String,
    /// Its tenant.
    pub tenant_id: Uuid,
    /// The job's name.
    pub name: String,
    /// The job.
    pub job: S::Job,
    /// The instance's state.
    pub state: S::State,
    /// How often this revision of the job has been claimed, this claim included: above 1, an
    /// earlier claim may have acted before it died.
    pub claims: i32,
    /// The revision claimed; a job set again meanwhile has another.
    pub revision: Uuid,
    /// The conversation that set it.
    pub correlation_id: Uuid,
    /// The event that set it.
    pub causation_id: Uuid,
}

/// What became of a delivered event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Its step is stored.
    Applied,
    /// It was taken before.
    Seen,
    /// An earlier event of its aggregate is not taken yet: deliver it again later.
    TooEarly,
    /// Not an event this saga follows.
    Ignored,
}

/// Takes one event: inbox, state and jobs in one transaction.
pub async fn take<S: Saga>(
    pool: &PgPool,
    event: &SagaEvent,
    now: DateTime<Utc>,
) -> Result<Taken, SagaError> {
    if event.aggregate_type != S::AGGREGATE_TYPE {
        return Ok(Taken::Ignored);
    }
    let mut tx = pool.begin().await?;
    let fresh = sqlx::query(
        "INSERT INTO saga_inbox (saga, event_id, instance_id) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(S::NAME)
    .bind(event.event_id)
    .bind(&event.aggregate_id)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if fresh == 0 {
        return Ok(Taken::Seen);
    }
    let (state, last) = load_for_update::<S>(&mut tx, &event.aggregate_id).await?;
    if event.sequence <= last {
        // Taken under another id? Not possible for one stream; keep the inbox row anyway.
        tx.commit().await?;
        return Ok(Taken::Seen);
    }
    if event.sequence > last + 1 {
        return Ok(Taken::TooEarly);
    }
    let reaction = S::react(&state, event, now)?;
    store::<S>(
        &mut tx,
        &event.aggregate_id,
        event.tenant_id,
        &reaction.state,
        Some(event.sequence),
    )
    .await?;
    let cause = (event.correlation_id, event.event_id);
    apply_jobs::<S>(
        &mut tx,
        &event.aggregate_id,
        event.tenant_id,
        &reaction,
        cause,
    )
    .await?;
    tx.commit().await?;
    Ok(Taken::Applied)
}

async fn load_for_update<S: Saga>(
    conn: &mut PgConnection,
    instance_id: &str,
) -> Result<(S::State, i64), SagaError> {
    let row: Option<(Value, i64)> = sqlx::query_as(
        "SELECT state, last_sequence FROM saga_instances
         WHERE saga = $1 AND instance_id = $2 FOR UPDATE",
    )
    .bind(S::NAME)
    .bind(instance_id)
    .fetch_optional(&mut *conn)
    .await?;
    match row {
        Some((state, last)) => Ok((
            serde_json::from_value(state).map_err(|e| SagaError::Unreadable(e.to_string()))?,
            last,
        )),
        None => Ok((S::State::default(), 0)),
    }
}

async fn store<S: Saga>(
    conn: &mut PgConnection,
    instance_id: &str,
    tenant_id: Uuid,
    state: &S::State,
    sequence: Option<i64>,
) -> Result<(), SagaError> {
    sqlx::query(
        "INSERT INTO saga_instances (saga, instance_id, tenant_id, state, last_sequence)
         VALUES ($1, $2, $3, $4, COALESCE($5, 0))
         ON CONFLICT (saga, instance_id) DO UPDATE SET state = EXCLUDED.state,
             last_sequence = COALESCE($5, saga_instances.last_sequence), updated_at = now()",
    )
    .bind(S::NAME)
    .bind(instance_id)
    .bind(tenant_id)
    .bind(Json(state))
    .bind(sequence)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn apply_jobs<S: Saga>(
    conn: &mut PgConnection,
    instance_id: &str,
    tenant_id: Uuid,
    reaction: &Reaction<S::State, S::Job>,
    (correlation_id, causation_id): (Uuid, Uuid),
) -> Result<(), SagaError> {
    for name in &reaction.cancel {
        sqlx::query("DELETE FROM saga_jobs WHERE saga = $1 AND instance_id = $2 AND name = $3")
            .bind(S::NAME)
            .bind(instance_id)
            .bind(name)
            .execute(&mut *conn)
            .await?;
    }
    // A job set again while a run of it is out keeps that run's claim and its count of
    // claims: the new revision runs once the old one has settled (see `settle`), never beside
    // it, and if the old run never settles (its process died, Postgres went away) the new one
    // counts as a repeat, so it looks at what the unsettled run may have done first.
    for scheduled in &reaction.schedule {
        sqlx::query(
            "INSERT INTO saga_jobs (saga, instance_id, name, tenant_id, job, due_at, revision, correlation_id, causation_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (saga, instance_id, name) DO UPDATE SET
                 job = EXCLUDED.job, due_at = EXCLUDED.due_at, revision = EXCLUDED.revision,
                 attempts = CASE WHEN saga_jobs.claimed_until IS NULL THEN 0 ELSE saga_jobs.attempts END,
                 claimed_until = saga_jobs.claimed_until, last_error = NULL,
                 correlation_id = EXCLUDED.correlation_id, causation_id = EXCLUDED.causation_id",
        )
        .bind(S::NAME)
        .bind(instance_id)
        .bind(&scheduled.name)
        .bind(tenant_id)
        .bind(Json(&scheduled.job))
        .bind(scheduled.due)
        .bind(Uuid::now_v7())
        .bind(correlation_id)
        .bind(causation_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Row of a claimed job.
type Claimed = (String, Uuid, String, Value, i32, Uuid, Uuid, Uuid);

/// Claims up to `limit` due jobs of saga `S` for `lease`, with the instances' states.
pub async fn claim<S: Saga>(
    pool: &PgPool,
    now: DateTime<Utc>,
    lease: Duration,
    limit: i64,
) -> Result<Vec<JobRun<S>>, SagaError> {
    let rows: Vec<Claimed> = sqlx::query_as(
        "UPDATE saga_jobs j SET claimed_until = $2 + $3 * interval '1 millisecond', attempts = attempts + 1
         FROM (SELECT saga, instance_id, name FROM saga_jobs
               WHERE saga = $1 AND due_at <= $2 AND (claimed_until IS NULL OR claimed_until <= $2)
               ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED) due
         WHERE j.saga = due.saga AND j.instance_id = due.instance_id AND j.name = due.name
         RETURNING j.instance_id, j.tenant_id, j.name, j.job, j.attempts, j.revision, j.correlation_id, j.causation_id",
    )
    .bind(S::NAME)
    .bind(now)
    .bind(lease.num_milliseconds() as f64)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let mut runs = Vec::with_capacity(rows.len());
    for (instance_id, tenant_id, name, job, claims, revision, correlation_id, causation_id) in rows
    {
        let state: Option<Value> = sqlx::query_scalar(
            "SELECT state FROM saga_instances WHERE saga = $1 AND instance_id = $2",
        )
        .bind(S::NAME)
        .bind(&instance_id)
        .fetch_optional(pool)
        .await?;
        let unreadable = |e: serde_json::Error| SagaError::Unreadable(e.to_string());
        runs.push(JobRun {
            job: serde_json::from_value(job).map_err(unreadable)?,
            state: state
                .map(serde_json::from_value)
                .transpose()
                .map_err(unreadable)?
                .unwrap_or_default(),
            instance_id,
            tenant_id,
            name,
            claims,
            revision,
            correlation_id,
            causation_id,
        });
    }
    Ok(runs)
}

/// Settles a performed job: the saga's step on the current state, the job dropped unless it
/// was set again meanwhile, and the step's jobs, in one transaction.
pub async fn settle<S: Saga>(
    pool: &PgPool,
    run: &JobRun<S>,
    outcome: S::Outcome,
    now: DateTime<Utc>,
) -> Result<(), SagaError> {
    let mut tx = pool.begin().await?;
    let (state, _) = load_for_update::<S>(&mut tx, &run.instance_id).await?;
    let reaction = S::settle(&state, &run.job, outcome, now);
    sqlx::query(
        "DELETE FROM saga_jobs WHERE saga = $1 AND instance_id = $2 AND name = $3 AND revision = $4",
    )
    .bind(S::NAME)
    .bind(&run.instance_id)
    .bind(&run.name)
    .bind(run.revision)
    .execute(&mut *tx)
    .await?;
    // Set again while this run was out: the new revision waited for this run to finish (it
    // must see what this run did), and runs now, as a first attempt.
    sqlx::query(
        "UPDATE saga_jobs SET claimed_until = NULL, attempts = 0
         WHERE saga = $1 AND instance_id = $2 AND name = $3 AND revision <> $4",
    )
    .bind(S::NAME)
    .bind(&run.instance_id)
    .bind(&run.name)
    .bind(run.revision)
    .execute(&mut *tx)
    .await?;
    store::<S>(
        &mut tx,
        &run.instance_id,
        run.tenant_id,
        &reaction.state,
        None,
    )
    .await?;
    let cause = (run.correlation_id, run.causation_id);
    apply_jobs::<S>(&mut tx, &run.instance_id, run.tenant_id, &reaction, cause).await?;
    tx.commit().await?;
    Ok(())
}

/// Claims and performs due jobs until none is due; returns how many ran.
pub async fn run_due<D: Driver>(
    pool: &PgPool,
    driver: &D,
    now: impl Fn() -> DateTime<Utc>,
    lease: Duration,
) -> Result<usize, SagaError> {
    let mut ran = 0;
    loop {
        let runs = claim::<D::Saga>(pool, now(), lease, 16).await?;
        if runs.is_empty() {
            return Ok(ran);
        }
        ran += runs.len();
        let outcomes = futures::future::join_all(
            runs.iter()
                .map(|run| CORRELATION.scope(run.correlation_id, driver.perform(run))),
        )
        .await;
        for (run, outcome) in runs.iter().zip(outcomes) {
            tracing::debug!(saga = D::Saga::NAME, instance = %run.instance_id, job = %run.name, ?outcome, "job performed");
            settle::<D::Saga>(pool, run, outcome, now()).await?;
        }
    }
}

/// A saga instance as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    /// The saga.
    pub saga: String,
    /// The instance.
    pub instance_id: String,
    /// Its tenant.
    pub tenant_id: Uuid,
    /// Its state.
    pub state: Value,
    /// Its pending jobs.
    pub jobs: Vec<JobView>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A pending job as operators see it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct JobView {
    /// Its name.
    pub name: String,
    /// What it asks for.
    pub job: Value,
    /// When due.
    pub due_at: DateTime<Utc>,
    /// Claims of this revision.
    pub attempts: i32,
    /// Held by a runner until then.
    pub claimed_until: Option<DateTime<Utc>>,
}

/// One instance of `saga`, with its jobs.
pub async fn instance(
    pool: &PgPool,
    saga: &str,
    instance_id: &str,
) -> Result<Option<InstanceView>, sqlx::Error> {
    let row: Option<(Uuid, Value, DateTime<Utc>)> = sqlx::query_as(
        "SELECT tenant_id, state, updated_at FROM saga_instances WHERE saga = $1 AND instance_id = $2",
    )
    .bind(saga)
    .bind(instance_id)
    .fetch_optional(pool)
    .await?;
    let Some((tenant_id, state, updated_at)) = row else {
        return Ok(None);
    };
    let jobs = sqlx::query_as(
        "SELECT name, job, due_at, attempts, claimed_until FROM saga_jobs
         WHERE saga = $1 AND instance_id = $2 ORDER BY due_at",
    )
    .bind(saga)
    .bind(instance_id)
    .fetch_all(pool)
    .await?;
    Ok(Some(InstanceView {
        saga: saga.to_owned(),
        instance_id: instance_id.to_owned(),
        tenant_id,
        state,
        jobs,
        updated_at,
    }))
}

/// An operator's retry of one instance: the saga's retry step, and every job of the
/// instance due now, in one transaction. False if there is no such instance.
pub async fn retry<S: Saga>(
    pool: &PgPool,
    instance_id: &str,
    now: DateTime<Utc>,
) -> Result<bool, SagaError> {
    let mut tx = pool.begin().await?;
    let row: Option<(Uuid, Value)> = sqlx::query_as(
        "SELECT tenant_id, state FROM saga_instances WHERE saga = $1 AND instance_id = $2 FOR UPDATE",
    )
    .bind(S::NAME)
    .bind(instance_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((tenant_id, state)) = row else {
        return Ok(false);
    };
    let state: S::State =
        serde_json::from_value(state).map_err(|e| SagaError::Unreadable(e.to_string()))?;
    let reaction = S::retry(&state, now);
    store::<S>(&mut tx, instance_id, tenant_id, &reaction.state, None).await?;
    let operator = Uuid::now_v7();
    apply_jobs::<S>(
        &mut tx,
        instance_id,
        tenant_id,
        &reaction,
        (operator, operator),
    )
    .await?;
    sqlx::query(
        "UPDATE saga_jobs SET due_at = $3, claimed_until = NULL, attempts = 0
         WHERE saga = $1 AND instance_id = $2",
    )
    .bind(S::NAME)
    .bind(instance_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// An instance in a list.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct InstanceSummary {
    /// The saga.
    pub saga: String,
    /// The instance.
    pub instance_id: String,
    /// Its tenant.
    pub tenant_id: Uuid,
    /// Its pending jobs.
    pub jobs: i64,
    /// When the next is due.
    pub next_due: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// Instances, those with pending jobs first, then the latest changed; at most `limit`.
pub async fn list(
    pool: &PgPool,
    saga: Option<&str>,
    tenant: Option<Uuid>,
    limit: i64,
) -> Result<Vec<InstanceSummary>, sqlx::Error> {
    sqlx::query_as(
        "SELECT i.saga, i.instance_id, i.tenant_id, count(j.name) AS jobs, min(j.due_at) AS next_due, i.updated_at
         FROM saga_instances i
         LEFT JOIN saga_jobs j ON j.saga = i.saga AND j.instance_id = i.instance_id
         WHERE ($1::text IS NULL OR i.saga = $1) AND ($2::uuid IS NULL OR i.tenant_id = $2)
         GROUP BY i.saga, i.instance_id
         ORDER BY count(j.name) > 0 DESC, min(j.due_at), i.updated_at DESC
         LIMIT $3",
    )
    .bind(saga)
    .bind(tenant)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Gives an event up: the instance counts it as taken without its step, so the events after
/// it can be taken.
pub async fn skip<S: Saga>(pool: &PgPool, event: &SagaEvent) -> Result<(), SagaError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO saga_inbox (saga, event_id, instance_id) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(S::NAME)
    .bind(event.event_id)
    .bind(&event.aggregate_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO saga_instances (saga, instance_id, tenant_id, state, last_sequence)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (saga, instance_id) DO UPDATE
         SET last_sequence = GREATEST(saga_instances.last_sequence, EXCLUDED.last_sequence),
             updated_at = now()",
    )
    .bind(S::NAME)
    .bind(&event.aggregate_id)
    .bind(event.tenant_id)
    .bind(Json(S::State::default()))
    .bind(event.sequence)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
