//! The tenants read model: each tenant as its events left it (profile, plan, settings,
//! branches with their hours and numbers, the service catalog), one row per tenant.
//!
//! Like the bookings model, the row holds the aggregate's own fold (`domain::Tenant::apply`).

use domain::{Aggregate, Tenant, TenantEvent};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::event::StoredEvent;
use crate::rebuild::Rebuild;
use crate::runner::{Projection, ProjectionError};

/// The projection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tenants;

impl Projection for Tenants {
    const NAME: &'static str = "tenants";
    const AGGREGATE_TYPES: &'static [&'static str] = &["Tenant"];

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        self.apply_in(conn, "", event).await
    }
}

impl Rebuild for Tenants {
    const TABLES: &'static [&'static str] = &["tenants_view"];

    async fn apply_in(
        &self,
        conn: &mut PgConnection,
        suffix: &str,
        event: &StoredEvent,
    ) -> Result<(), ProjectionError> {
        let change: TenantEvent = serde_json::from_value(event.payload.clone())
            .map_err(|e| ProjectionError::Unreadable(e.to_string()))?;
        let id = Uuid::parse_str(&event.aggregate_id)
            .map_err(|e| ProjectionError::Unreadable(format!("tenant id: {e}")))?;
        let mut tenant = sqlx::query_scalar::<_, Json<Tenant>>(&format!(
            "SELECT state FROM tenants_view{suffix} WHERE tenant_id = $1"
        ))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .map(|Json(t)| t)
        .unwrap_or_default();
        tenant.apply(change);
        sqlx::query(&format!(
            "INSERT INTO tenants_view{suffix} (tenant_id, version, position, state) VALUES ($1, $2, $3, $4)
             ON CONFLICT (tenant_id) DO UPDATE SET
                version = EXCLUDED.version, position = EXCLUDED.position, state = EXCLUDED.state"
        ))
        .bind(id)
        .bind(event.sequence)
        .bind(event.position)
        .bind(Json(&tenant))
        .execute(&mut *conn)
        .await?;
        Ok(())
    }
}

/// A tenant as the read model has it, with its stream version.
pub async fn get(pool: &PgPool, tenant_id: Uuid) -> Result<Option<(Tenant, i64)>, sqlx::Error> {
    let row: Option<(Json<Tenant>, i64)> =
        sqlx::query_as("SELECT state, version FROM tenants_view WHERE tenant_id = $1")
            .bind(tenant_id)
            .fetch_optional(pool)
            .await?;
    Ok(row.map(|(Json(t), v)| (t, v)))
}
