//! Read-your-writes: a query given the position a command answered with waits, briefly, until
//! the read model holds that command's effect.

use std::time::Duration;

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
