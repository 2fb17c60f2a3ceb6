//! `Idempotency-Key`: the first answer to a POST is kept and replayed for repeats.

use domain::values::TenantId;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// What to do with a request that carries a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// First time: run it, then [`Idempotency::complete`].
    Fresh,
    /// Seen and answered: send this again.
    Replay {
        /// The first answer's status.
        status: u16,
        /// The first answer's body.
        body: Value,
    },
    /// Seen and still running elsewhere.
    InProgress,
    /// The key was used for a different request.
    Mismatch,
}

/// How long a claim without an answer blocks repeats; after that a repeat may run again
/// (the first attempt crashed).
const ABANDONED_AFTER_SECONDS: i32 = 60;

/// Stores claims and answers per tenant and key.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pool: PgPool,
}

/// A digest of what makes two requests the same.
pub fn request_hash(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().to_vec()
}

impl Idempotency {
    /// Keys stored in `pool`.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Claims a key for a request.
    pub async fn claim(
        &self,
        tenant: TenantId,
        key: &str,
        hash: &[u8],
    ) -> Result<Claim, sqlx::Error> {
        let inserted = sqlx::query("INSERT INTO idempotency_keys (tenant_id, key, request_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(tenant.0)
            .bind(key)
            .bind(hash)
            .execute(&self.pool)
            .await?;
        if inserted.rows_affected() == 1 {
            return Ok(Claim::Fresh);
        }
        let row = sqlx::query_as::<_, (Vec<u8>, Option<i16>, Option<Value>)>(
            "SELECT request_hash, status_code, response FROM idempotency_keys WHERE tenant_id = $1 AND key = $2",
        )
        .bind(tenant.0)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some((stored, status, body)) = row else {
            return Ok(Claim::InProgress);
        };
        if stored != hash {
            return Ok(Claim::Mismatch);
        }
        if let (Some(status), Some(body)) = (status, body) {
            return Ok(Claim::Replay {
                status: u16::try_from(status).unwrap_or(200),
                body,
            });
        }
        let taken_over = sqlx::query(
            "UPDATE idempotency_keys SET created_at = now()
             WHERE tenant_id = $1 AND key = $2 AND status_code IS NULL
               AND created_at < now() - make_interval(secs => $3)",
        )
        .bind(tenant.0)
        .bind(key)
        .bind(ABANDONED_AFTER_SECONDS)
        .execute(&self.pool)
        .await?;
        Ok(if taken_over.rows_affected() == 1 {
            Claim::Fresh
        } else {
            Claim::InProgress
        })
    }

    /// Records the answer to replay.
    pub async fn complete(
        &self,
        tenant: TenantId,
        key: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), sqlx::Error> {
        // Postgres's jsonb cannot hold NUL; an answer may echo one from the request.
        let mut body = body.clone();
        without_nul(&mut body);
        sqlx::query("UPDATE idempotency_keys SET status_code = $3, response = $4 WHERE tenant_id = $1 AND key = $2")
            .bind(tenant.0)
            .bind(key)
            .bind(i16::try_from(status).unwrap_or(500))
            .bind(&body)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets a claim whose request failed on our side, so a retry can run.
    pub async fn abandon(&self, tenant: TenantId, key: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND status_code IS NULL")
            .bind(tenant.0)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Replaces every NUL in `value`'s strings and keys with U+FFFD.
fn without_nul(value: &mut Value) {
    match value {
        Value::String(s) if s.contains('\0') => *s = s.replace('\0', "\u{fffd}"),
        Value::Array(items) => items.iter_mut().for_each(without_nul),
        Value::Object(map) => {
            if map.keys().any(|k| k.contains('\0')) {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(k, v)| (k.replace('\0', "\u{fffd}"), v))
                    .collect();
            }
            map.values_mut().for_each(without_nul);
        }
        _ => {}
    }
}

#[cfg(test)]
mod nul_tests {
    use super::*;

    #[test]
    fn nul_characters_are_replaced_in_strings_and_keys() {
        let mut value = serde_json::json!({ "a\u{0}": ["x\u{0}y", 1], "b": "ok" });
        without_nul(&mut value);
        assert_eq!(
            value,
            serde_json::json!({ "a\u{fffd}": ["x\u{fffd}y", 1], "b": "ok" })
        );
    }
}
