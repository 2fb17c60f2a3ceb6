//! Read-your-writes: a query given the position a command answered with waits, briefly, until
//! the read model holds that command's effect. The MCP tools pass the position for the caller
//! ([`OwnWrites`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use projections::Projection;
use sqlx::PgPool;

use crate::error::ApiError;

/// How long a query waits for its read model before answering 503.
const WAIT: Duration = Duration::from_secs(3);

/// How often it looks.
const POLL: Duration = Duration::from_millis(5);

/// Returns once `P` has applied the events written up to `min_position` by its command, or
/// 503 with a retry hint after a few seconds. No position: no wait.
pub async fn caught_up<P: Projection>(
    pool: &PgPool,
    min_position: Option<i64>,
) -> Result<(), ApiError> {
    let Some(position) = min_position else {
        return Ok(());
    };
    if position < 1 {
        return Err(ApiError::invalid(
            "min_position",
            "must be a positive event position",
        ));
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if projections::runner::has_applied::<P>(pool, position)
            .await
            .map_err(ApiError::internal)?
        {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::behind(position));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// How long a key's last write is waited for by its reads; long after a read model would
/// show it.
const OWN_WRITE_TTL: Duration = Duration::from_secs(60);

/// The position of the last change each API key made through this instance's MCP tools, for a
/// minute, so that the key's next read through them waits until the read models show that
/// change: an agent that booked and then looks the customer up finds the booking. A language
/// model does not carry a position from one tool call to the next, so the server does it. Held
/// per instance: a read served by another instance does not wait.
#[derive(Debug, Default)]
pub struct OwnWrites(Mutex<HashMap<uuid::Uuid, (i64, Instant)>>);

impl OwnWrites {
    /// Notes that `key` wrote up to `position`.
    pub fn wrote(&self, key: uuid::Uuid, position: Option<i64>) {
        let (Some(position), Ok(mut map)) = (position, self.0.lock()) else {
            return;
        };
        if map.len() >= 10_000 {
            map.retain(|_, (_, at)| at.elapsed() < OWN_WRITE_TTL);
        }
        let entry = map.entry(key).or_insert((position, Instant::now()));
        *entry = (entry.0.max(position), Instant::now());
    }

    /// The position a read by `key` should wait for: `asked`, or the key's own last write if
    /// that is later and recent.
    pub fn at_least(&self, key: uuid::Uuid, asked: Option<i64>) -> Option<i64> {
        let own = self.0.lock().ok().and_then(|map| {
            map.get(&key)
                .filter(|(_, at)| at.elapsed() < OWN_WRITE_TTL)
                .map(|(position, _)| *position)
        });
        asked.max(own)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_waits_for_the_later_of_its_own_position_and_its_keys_last_write() {
        let writes = OwnWrites::default();
        let (agent, other) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        assert_eq!(writes.at_least(agent, None), None);
        writes.wrote(agent, Some(7));
        writes.wrote(agent, None);
        writes.wrote(agent, Some(5));
        assert_eq!(writes.at_least(agent, None), Some(7));
        assert_eq!(writes.at_least(agent, Some(9)), Some(9));
        assert_eq!(writes.at_least(other, Some(3)), Some(3));
    }
}
