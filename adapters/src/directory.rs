//! Cross-aggregate look-ups for the write side, answered from the event table's indexes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use commands::{CommandError, Directory};
use domain::values::{BranchId, StaffId, TenantId};
use sqlx::PgPool;
use uuid::Uuid;

use crate::event_store::is_connection_error;

/// The [`Directory`] over the events table.
#[derive(Debug, Clone)]
pub struct PgDirectory {
    pool: PgPool,
}

impl PgDirectory {
    /// A directory reading through `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

pub(crate) fn command_error(error: sqlx::Error) -> CommandError {
    if is_connection_error(&error) {
        CommandError::Unavailable(error.to_string())
    } else {
        CommandError::Internal(error.to_string())
    }
}

#[async_trait]
impl Directory for PgDirectory {
    async fn active_staff(
        &self,
        tenant: TenantId,
        branch: BranchId,
    ) -> Result<Vec<StaffId>, CommandError> {
        let rows = sqlx::query_scalar::<_, String>(
            "SELECT h.aggregate_id FROM events h
             WHERE h.tenant_id = $1 AND h.event_type = 'StaffHired' AND h.aggregate_type = 'Staff'
               AND h.payload -> 'StaffHired' ->> 'branch_id' = $2
               AND NOT EXISTS (
                   SELECT 1 FROM events d
                   WHERE d.tenant_id = $1 AND d.event_type = 'StaffDeactivated' AND d.aggregate_id = h.aggregate_id)
             ORDER BY h.position",
        )
        .bind(tenant.0)
        .bind(branch.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(command_error)?;
        rows.iter()
            .map(|id| {
                Uuid::parse_str(id)
                    .map(StaffId)
                    .map_err(|e| CommandError::Internal(e.to_string()))
            })
            .collect()
    }

    async fn bookings_since(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
    ) -> Result<u64, CommandError> {
        let count = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM events WHERE tenant_id = $1 AND event_type = 'BookingCreated' AND recorded_at >= $2",
        )
        .bind(tenant.0)
        .bind(since)
        .fetch_one(&self.pool)
        .await
        .map_err(command_error)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}
