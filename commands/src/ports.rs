use async_trait::async_trait;
use chrono::{DateTime, Utc};
use domain::values::{BranchId, StaffId, TenantId};

use crate::CommandError;

/// Look-ups across aggregates that a decision needs but no single stream holds.
#[async_trait]
pub trait Directory: Send + Sync + std::fmt::Debug {
    /// Active staff of a branch, in hiring order.
    async fn active_staff(
        &self,
        tenant: TenantId,
        branch: BranchId,
    ) -> Result<Vec<StaffId>, CommandError>;

    /// Bookings the tenant has created since `since`.
    async fn bookings_since(
        &self,
        tenant: TenantId,
        since: DateTime<Utc>,
    ) -> Result<u64, CommandError>;
}
