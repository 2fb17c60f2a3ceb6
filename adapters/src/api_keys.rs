//! API keys: created with a role for one tenant, stored only as a SHA-256 hash.

use commands::{Principal, Role};
use domain::values::TenantId;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use uuid::Uuid;

/// A freshly created key; the secret is shown once and never stored.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    /// The key's id (the actor in event metadata).
    pub id: Uuid,
    /// The secret to send as `Authorization: Bearer …`.
    pub secret: String,
}

/// Creates and checks API keys.
#[derive(Debug, Clone)]
pub struct ApiKeys {
    pool: PgPool,
}

fn hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

impl ApiKeys {
    /// Keys stored in `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Creates a key; 244 random bits, so a fast hash is enough to store it.
    pub async fn create(
        &self,
        tenant_id: TenantId,
        name: &str,
        role: Role,
    ) -> Result<NewApiKey, sqlx::Error> {
        let id = Uuid::now_v7();
        let secret = format!("bk_{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
        sqlx::query("INSERT INTO api_keys (id, tenant_id, name, role, key_hash, prefix) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id)
            .bind(tenant_id.0)
            .bind(name)
            .bind(role.as_str())
            .bind(hash(&secret))
            .bind(&secret[..11])
            .execute(&self.pool)
            .await?;
        Ok(NewApiKey { id, secret })
    }

    /// The principal a secret stands for, if it is a live key.
    pub async fn authenticate(&self, secret: &str) -> Result<Option<Principal>, sqlx::Error> {
        let row = sqlx::query_as::<_, (Uuid, Uuid, String)>(
            "SELECT id, tenant_id, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(hash(secret))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(key_id, tenant_id, role)| {
            Some(Principal {
                key_id,
                tenant_id: TenantId(tenant_id),
                role: Role::parse(&role)?,
            })
        }))
    }
}
