//! Word that events were appended, so the relay wakes at once instead of at its next poll.
//!
//! The event store bumps a counter after every commit. The relay in the same process watches
//! it directly; [`announce`] passes it on to the relays of other instances as a NOTIFY on
//! [`NOTIFY_CHANNEL`], sent from a connection of its own after the append committed. A NOTIFY
//! inside the appending transaction would serialize every append's commit (Postgres holds a
//! database-wide lock from a notifying transaction's pre-commit until its WAL is flushed).
//! While this process's own relay leads, there is no one else to tell and nothing is sent.
//! Losing a wake-up only delays an event until the relay's next poll; it never loses one.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::watch;

/// The channel appends are announced on.
pub const NOTIFY_CHANNEL: &str = "bookingd_events";

/// The shortest time between two announcements; appends in between share one.
const ANNOUNCE_EVERY: Duration = Duration::from_millis(2);

/// A counter of commits, shared by the store (which bumps it) and whoever waits for it.
#[derive(Debug, Clone)]
pub struct Appends {
    commits: watch::Sender<u64>,
    leading_here: Arc<AtomicBool>,
}

impl Default for Appends {
    fn default() -> Self {
        Self {
            commits: watch::Sender::new(0),
            leading_here: Arc::default(),
        }
    }
}

impl Appends {
    /// Records that an append committed.
    pub fn committed(&self) {
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that sees every later commit (several may be folded into one change).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.commits.subscribe()
    }

    /// Set by this process's relay while it is the leader: it sees these appends directly.
    pub(crate) fn set_leading_here(&self, leading: bool) {
        self.leading_here.store(leading, Ordering::Relaxed);
    }

    fn leading_here(&self) -> bool {
        self.leading_here.load(Ordering::Relaxed)
    }
}

/// Announces this process's appends to every listening relay until `shutdown` turns true.
/// A failed announcement is retried with the next append; the connection is opened again.
pub async fn announce(pool: PgPool, appends: Appends, mut shutdown: watch::Receiver<bool>) {
    let mut commits = appends.subscribe();
    let mut conn: Option<PgConnection> = None;
    loop {
        tokio::select! {
            changed = commits.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
        commits.mark_unchanged();
        if appends.leading_here() {
            continue;
        }
        if let Err(e) = notify(&pool, &mut conn).await {
            tracing::debug!(error = %e, "could not announce appends; the relay will poll");
            if let Some(c) = conn.take() {
                let _ = c.close().await;
            }
        }
        tokio::time::sleep(ANNOUNCE_EVERY).await;
    }
}

async fn notify(pool: &PgPool, conn: &mut Option<PgConnection>) -> Result<(), sqlx::Error> {
    let conn = match conn {
        Some(c) => c,
        None => {
            let mut fresh = pool.acquire().await?.detach();
            // A notification is a hint: it need not wait for its own WAL flush.
            sqlx::query("SET synchronous_commit = off")
                .execute(&mut fresh)
                .await?;
            conn.insert(fresh)
        }
    };
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(conn)
        .await?;
    Ok(())
}
