use std::hash::{BuildHasher, Hash};
use std::sync::atomic::Ordering;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventEnvelope, EventStore};
use tokio::sync::{Mutex, MutexGuard, Semaphore, SemaphorePermit};

use domain::values::TenantId;
use domain::{Booking, BookingError, Staff, StaffError, Tenant, TenantError};

use crate::{CommandError, CommandMeta};

/// An aggregate context that knows the sequence number it was loaded at, and whether its state
/// was read from the database or trusted from the store's cache.
pub trait Versioned {
    /// The sequence of the last event folded into the aggregate; 0 for a new stream.
    fn version(&self) -> u64;

    /// False when the state came from the store's cache without a database read. An append
    /// from such a state is still safe (it conflicts if the stream moved on), but a refusal or
    /// a no-op decided on it must be checked against the database first.
    fn is_verified(&self) -> bool;
}

/// The envelopes two appends wrote, or why they did not.
pub type Appended<A, B> = Result<(Vec<EventEnvelope<A>>, Vec<EventEnvelope<B>>), CommandError>;

/// A stream a command was decided on without appending to it (a tenant's services and rules
/// for a booking), at the version the decision saw: the append happens only if that stream
/// is still at that version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// Its aggregate type.
    pub aggregate_type: &'static str,
    /// Its aggregate id.
    pub aggregate_id: String,
    /// Its last sequence number when the command was decided.
    pub version: u64,
}

impl Guard {
    /// A guard on aggregate `id` of type `A` at `version`.
    pub fn of<A: Aggregate>(id: String, version: u64) -> Self {
        Self {
            aggregate_type: A::TYPE,
            aggregate_id: id,
            version,
        }
    }
}

/// A store that can append to two streams in one transaction: both appends happen or neither.
pub trait AppendTogether<A: Aggregate, B: Aggregate>: EventStore<A> + EventStore<B> {
    /// Appends `a`'s events and `b`'s events atomically, provided `guard`'s stream has not
    /// moved on ([`CommandError::Outdated`] when it has); a conflict on either stream is
    /// [`CommandError::Conflict`].
    fn append_together(
        &self,
        a: (<Self as EventStore<A>>::AC, Vec<A::Event>),
        b: (<Self as EventStore<B>>::AC, Vec<B::Event>),
        guard: Option<&Guard>,
        metadata: &CommandMeta,
    ) -> impl std::future::Future<Output = Appended<A, B>> + Send;
}

/// A store that may answer loads from memory.
pub trait Trust {
    /// Makes the next load of this stream read the database.
    fn distrust(&self, aggregate_type: &'static str, id: &str);

    /// Declares a stream new (a freshly generated id), so its first command needs no read; if
    /// it was not new after all, the append conflicts and the command is decided again.
    fn assume_new<A: Aggregate + Clone + Send + Sync + 'static>(&self, id: &str);

    /// The state last seen of a stream, without a read, and its version: good for deciding
    /// only under a [`Guard`] at that version.
    fn last_seen<A: Aggregate + Clone + Send + Sync + 'static>(&self, id: &str)
    -> Option<(A, u64)>;
}

/// The result of a command: the aggregate after it, its version, and the global position of
/// its last event (for read-your-writes), or the unchanged state when nothing was decided.
#[derive(Debug, Clone)]
pub struct Outcome<A> {
    /// The aggregate after the command.
    pub state: A,
    /// Its stream's last sequence number.
    pub version: u64,
    /// The event store position of the last event written, if any was.
    pub position: Option<i64>,
}

/// Serializes commands on one aggregate within this process, so local contenders queue
/// instead of losing optimistic-concurrency races; other processes are still caught by the
/// store's conflict check. It also bounds how many commands talk to the database at once:
/// beyond a few per core, more only makes every one of them slower, so the rest wait their
/// turn in arrival order.
#[derive(Debug)]
pub(crate) struct StripedLocks {
    stripes: Vec<Mutex<()>>,
    hasher: std::hash::RandomState,
    running: Semaphore,
}

impl StripedLocks {
    pub(crate) fn new(stripes: usize, concurrent: usize) -> Self {
        Self {
            stripes: (0..stripes.max(1)).map(|_| Mutex::new(())).collect(),
            hasher: std::hash::RandomState::new(),
            running: Semaphore::new(concurrent.max(1)),
        }
    }

    /// Waits for a free slot among the commands running at once (after the aggregate's lock,
    /// so a command queued behind its own aggregate holds no slot).
    async fn turn(&self) -> Option<SemaphorePermit<'_>> {
        self.running.acquire().await.ok()
    }

    fn index(&self, key: impl Hash) -> usize {
        let hash = self.hasher.hash_one(key);
        usize::try_from(hash % self.stripes.len() as u64).unwrap_or(0)
    }

    pub(crate) async fn lock(&self, key: impl Hash) -> MutexGuard<'_, ()> {
        self.stripes[self.index(key)].lock().await
    }

    /// Locks two keys, always in stripe order so that two callers cannot deadlock.
    pub(crate) async fn lock_two(
        &self,
        a: impl Hash,
        b: impl Hash,
    ) -> (MutexGuard<'_, ()>, Option<MutexGuard<'_, ()>>) {
        let (first, second) = {
            let (x, y) = (self.index(a), self.index(b));
            (x.min(y), x.max(y))
        };
        let held = self.stripes[first].lock().await;
        let other = if second == first {
            None
        } else {
            Some(self.stripes[second].lock().await)
        };
        (held, other)
    }
}

/// An aggregate that belongs to one tenant.
pub(crate) trait Tenanted: Aggregate<Services = ()> + Clone {
    /// What a missing one is called in a NotFound answer.
    const NAME: &'static str;

    /// Whether it belongs to `tenant`; one that does not exist yet belongs to anyone.
    fn open_to(&self, tenant: TenantId) -> bool;

    /// Whether a refusal only says that the aggregate does not exist.
    fn is_missing(error: &Self::Error) -> bool;
}

impl Tenanted for Tenant {
    const NAME: &'static str = "tenant";

    fn open_to(&self, tenant: TenantId) -> bool {
        self.id.is_none_or(|id| id == tenant)
    }

    fn is_missing(error: &TenantError) -> bool {
        matches!(error, TenantError::NotRegistered)
    }
}

impl Tenanted for Staff {
    const NAME: &'static str = "staff member";

    fn open_to(&self, tenant: TenantId) -> bool {
        self.id.is_none() || self.tenant_id == Some(tenant)
    }

    fn is_missing(error: &StaffError) -> bool {
        matches!(error, StaffError::NotHired)
    }
}

impl Tenanted for Booking {
    const NAME: &'static str = "booking";

    fn open_to(&self, tenant: TenantId) -> bool {
        self.id.is_none() || self.tenant_id == Some(tenant)
    }

    fn is_missing(error: &BookingError) -> bool {
        matches!(error, BookingError::NotFound)
    }
}

/// Maps a store error; conflicts are handled by the caller.
pub(crate) fn store_error<E: std::error::Error + Into<CommandError>>(
    error: AggregateError<E>,
) -> CommandError {
    match error {
        AggregateError::UserError(e) => e.into(),
        AggregateError::AggregateConflict => CommandError::Conflict,
        AggregateError::DatabaseConnectionError(e) => CommandError::Unavailable(e.to_string()),
        AggregateError::DeserializationError(e) => {
            CommandError::Internal(format!("stored data unreadable: {e}"))
        }
        AggregateError::UnexpectedError(e) => CommandError::Internal(e.to_string()),
    }
}

/// The highest `position` stamped on committed envelopes by the store.
pub(crate) fn last_position<A: Aggregate>(events: &[EventEnvelope<A>]) -> Option<i64> {
    events
        .iter()
        .filter_map(|e| e.metadata.get("position")?.parse().ok())
        .max()
}

/// Loads an aggregate as the database has it (for reads, never from trust alone).
pub(crate) async fn load<A, S>(store: &S, id: &str) -> Result<(A, u64), CommandError>
where
    A: Aggregate + Clone,
    A::Error: Into<CommandError>,
    S: EventStore<A> + Trust,
    S::AC: Versioned,
{
    let mut context = store.load_aggregate(id).await.map_err(store_error)?;
    if !context.is_verified() {
        store.distrust(A::TYPE, id);
        context = store.load_aggregate(id).await.map_err(store_error)?;
    }
    let version = context.version();
    Ok((context.aggregate().clone(), version))
}

/// Loads, decides and appends, reloading and deciding again when another writer appended to
/// the stream in between, at most `attempts` times. Another tenant's aggregate, or a refusal
/// that only says the aggregate does not exist, is NotFound.
pub(crate) async fn execute<A, S>(
    store: &S,
    locks: &StripedLocks,
    attempts: u32,
    id: &str,
    command: &A::Command,
    meta: &CommandMeta,
) -> Result<Outcome<A>, CommandError>
where
    A: Tenanted,
    A::Command: Clone,
    A::Error: Into<CommandError>,
    S: EventStore<A> + Trust,
    S::AC: Versioned,
{
    let _local = locks.lock((A::TYPE, id)).await;
    let _turn = locks.turn().await;
    for attempt in 1..=attempts.max(1) {
        let Some((mut context, events, version)) =
            decide_side::<A, S>(store, id, std::slice::from_ref(command), meta).await?
        else {
            continue;
        };
        if events.is_empty() {
            return Ok(Outcome {
                state: context.aggregate().clone(),
                version,
                position: None,
            });
        }
        let count = events.len() as u64;
        let state = context.aggregate().clone();
        match store.commit(events, context, meta.to_map()).await {
            Ok(committed) => {
                return Ok(Outcome {
                    state,
                    version: version + count,
                    position: last_position(&committed),
                });
            }
            Err(AggregateError::AggregateConflict) => {
                crate::stats::CONFLICTS.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(aggregate = A::TYPE, id, attempt, "conflict; deciding again");
            }
            Err(e) => return Err(store_error(e)),
        }
    }
    crate::stats::EXHAUSTED.fetch_add(1, Ordering::Relaxed);
    Err(CommandError::Conflict)
}

/// A loaded aggregate's context, the events decided on it, and its version before them.
type Side<A, S> = (<S as EventStore<A>>::AC, Vec<<A as Aggregate>::Event>, u64);

/// Loads and decides `commands` in turn, each on the state the previous ones left; one
/// refusal refuses them all. `Ok(None)` means the state was trusted from the cache and produced
/// a refusal or a no-op: only an append proves a trusted state current, so it is read again.
async fn decide_side<A, S>(
    store: &S,
    id: &str,
    commands: &[A::Command],
    meta: &CommandMeta,
) -> Result<Option<Side<A, S>>, CommandError>
where
    A: Tenanted,
    A::Command: Clone,
    A::Error: Into<CommandError>,
    S: EventStore<A> + Trust,
    S::AC: Versioned,
{
    let mut context = store.load_aggregate(id).await.map_err(store_error)?;
    let version = context.version();
    let verified = context.is_verified();
    let sink = EventSink::default();
    let mut decided = if context.aggregate().open_to(meta.tenant_id) {
        Ok(())
    } else {
        Err(CommandError::NotFound(A::NAME))
    };
    for command in commands {
        if decided.is_err() {
            break;
        }
        // The sink applies each event as it is written, so the next command sees it.
        decided = context
            .aggregate()
            .handle(command.clone(), &(), &sink)
            .await
            .map_err(|e| {
                if A::is_missing(&e) {
                    CommandError::NotFound(A::NAME)
                } else {
                    e.into()
                }
            });
    }
    let events = sink.collect().await;
    if !verified && (decided.is_err() || events.is_empty()) {
        store.distrust(A::TYPE, id);
        return Ok(None);
    }
    decided?;
    Ok(Some((context, events, version)))
}

/// Decides commands on each of two streams and appends both in one transaction, deciding
/// both again when either stream moved on meanwhile (but not when the guarded one did: the
/// commands themselves were built from it).
pub(crate) async fn execute_together<A, B, S>(
    store: &S,
    locks: &StripedLocks,
    attempts: u32,
    (id_a, commands_a): (&str, &[A::Command]),
    (id_b, commands_b): (&str, &[B::Command]),
    guard: Option<&Guard>,
    meta: &CommandMeta,
) -> Result<(Outcome<A>, Outcome<B>), CommandError>
where
    A: Tenanted + 'static,
    B: Tenanted + 'static,
    A::Command: Clone,
    B::Command: Clone,
    A::Error: Into<CommandError>,
    B::Error: Into<CommandError>,
    S: AppendTogether<A, B> + Trust,
    <S as EventStore<A>>::AC: Versioned,
    <S as EventStore<B>>::AC: Versioned,
{
    let _local = locks.lock_two((A::TYPE, id_a), (B::TYPE, id_b)).await;
    let _turn = locks.turn().await;
    for attempt in 1..=attempts.max(1) {
        let Some((mut context_a, events_a, version_a)) =
            decide_side::<A, S>(store, id_a, commands_a, meta).await?
        else {
            continue;
        };
        let Some((mut context_b, events_b, version_b)) =
            decide_side::<B, S>(store, id_b, commands_b, meta).await?
        else {
            continue;
        };
        let (state_a, count_a) = (context_a.aggregate().clone(), events_a.len() as u64);
        let (state_b, count_b) = (context_b.aggregate().clone(), events_b.len() as u64);
        match store
            .append_together((context_a, events_a), (context_b, events_b), guard, meta)
            .await
        {
            Ok((committed_a, committed_b)) => {
                return Ok((
                    Outcome {
                        state: state_a,
                        version: version_a + count_a,
                        position: last_position(&committed_a),
                    },
                    Outcome {
                        state: state_b,
                        version: version_b + count_b,
                        position: last_position(&committed_b),
                    },
                ));
            }
            Err(CommandError::Conflict) => {
                crate::stats::CONFLICTS.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(
                    a = A::TYPE,
                    b = B::TYPE,
                    attempt,
                    "conflict; deciding both again"
                );
            }
            Err(e) => return Err(e),
        }
    }
    crate::stats::EXHAUSTED.fetch_add(1, Ordering::Relaxed);
    Err(CommandError::Conflict)
}
