//! Tenants' credentials for external services, sealed at rest with the server's secret key
//! (XChaCha20-Poly1305, a fresh nonce per write, the tenant and integration bound in as
//! associated data so a sealed key cannot be moved to another tenant's row).

use async_trait::async_trait;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use domain::values::TenantId;
use sagas::ports::{Accounts, CalendarAccount, EventTypeMapping, HostMapping, PortError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::types::Json;

/// The integration name Cal.com credentials are stored under.
pub const CALCOM: &str = "calcom";
/// The integration name Retell credentials are stored under.
pub const RETELL: &str = "retell";

/// A tenant's Retell secret: the API key Retell signs its webhooks and function calls with.
#[derive(Clone, Serialize, Deserialize)]
pub struct RetellSecrets {
    /// The key with Retell's "webhook" badge.
    pub api_key: String,
}

impl std::fmt::Debug for RetellSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetellSecrets(<redacted>)")
    }
}

/// The server's secret key: 32 bytes, given as 64 hex digits (`BOOKINGD_SECRET_KEY`).
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl std::str::FromStr for SecretKey {
    type Err = String;

    fn from_str(hex: &str) -> Result<Self, Self::Err> {
        let hex = hex.trim();
        if hex.len() != 64 || !hex.is_ascii() {
            return Err("the secret key must be 64 hex digits (32 bytes)".to_owned());
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| "the secret key must be 64 hex digits (32 bytes)".to_owned())?;
        }
        Ok(Self(key))
    }
}

/// Why credentials could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// No secret key is configured, so nothing can be sealed or opened.
    #[error("no secret key is configured (BOOKINGD_SECRET_KEY)")]
    NoKey,
    /// The sealed value does not open with this key.
    #[error("stored credentials do not open with the configured key")]
    Sealed,
    /// Postgres failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// A tenant's Cal.com settings apart from the key.
#[derive(Debug, Clone, Default, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CalendarSettings {
    /// Event types by service (and staff member).
    pub event_types: Vec<EventTypeMapping>,
    /// Cal.com users by staff member.
    #[serde(default)]
    pub hosts: Vec<HostMapping>,
}

/// A tenant's Cal.com secrets, sealed together.
#[derive(Clone, Serialize, Deserialize)]
pub struct CalendarSecrets {
    /// The API key the calls are made with.
    pub api_key: String,
    /// The secret Cal.com signs its webhooks with (`X-Cal-Signature-256`).
    #[serde(default)]
    pub webhook_secret: Option<String>,
}

impl std::fmt::Debug for CalendarSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CalendarSecrets(<redacted>)")
    }
}

/// Credentials in Postgres.
#[derive(Debug, Clone)]
pub struct PgAccounts {
    pool: PgPool,
    key: Option<SecretKey>,
}

impl PgAccounts {
    /// Credentials sealed with `key` (none: storing and reading them is refused).
    pub fn new(pool: PgPool, key: Option<SecretKey>) -> Self {
        Self { pool, key }
    }

    fn cipher(&self) -> Result<XChaCha20Poly1305, CredentialError> {
        let key = self.key.as_ref().ok_or(CredentialError::NoKey)?;
        Ok(XChaCha20Poly1305::new((&key.0).into()))
    }

    /// Stores (or replaces) the tenant's Cal.com secrets and settings.
    pub async fn store_calendar(
        &self,
        tenant: TenantId,
        secrets: &CalendarSecrets,
        settings: &CalendarSettings,
    ) -> Result<(), CredentialError> {
        self.store(tenant, CALCOM, secrets, settings).await
    }

    /// The tenant's Cal.com settings (without the key), if connected.
    pub async fn calendar_settings(
        &self,
        tenant: TenantId,
    ) -> Result<Option<CalendarSettings>, CredentialError> {
        self.settings(tenant, CALCOM).await
    }

    /// Removes the tenant's Cal.com connection; true if there was one.
    pub async fn remove_calendar(&self, tenant: TenantId) -> Result<bool, CredentialError> {
        self.remove(tenant, CALCOM).await
    }

    /// The tenant's Cal.com secrets and settings, if connected.
    pub async fn open_calendar(
        &self,
        tenant: TenantId,
    ) -> Result<Option<(CalendarSecrets, CalendarSettings)>, CredentialError> {
        self.open(tenant, CALCOM).await
    }

    /// Stores (or replaces) one integration's secrets, sealed, and its plain settings.
    pub async fn store<S: Serialize + Sync, T: Serialize + Sync>(
        &self,
        tenant: TenantId,
        integration: &str,
        secrets: &S,
        settings: &T,
    ) -> Result<(), CredentialError> {
        let cipher = self.cipher()?;
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated(tenant, integration);
        let plain = serde_json::to_vec(secrets).map_err(|_| CredentialError::Sealed)?;
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| CredentialError::Sealed)?;
        sqlx::query(
            "INSERT INTO integration_credentials (tenant_id, integration, nonce, sealed, settings)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (tenant_id, integration) DO UPDATE SET nonce = EXCLUDED.nonce,
                 sealed = EXCLUDED.sealed, settings = EXCLUDED.settings, updated_at = now()",
        )
        .bind(tenant.0)
        .bind(integration)
        .bind(nonce.as_slice())
        .bind(sealed)
        .bind(Json(settings))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One integration's settings (without its secrets), if connected.
    pub async fn settings<T: DeserializeOwned + Send + Unpin + 'static>(
        &self,
        tenant: TenantId,
        integration: &str,
    ) -> Result<Option<T>, CredentialError> {
        let row: Option<Json<T>> = sqlx::query_scalar(
            "SELECT settings FROM integration_credentials WHERE tenant_id = $1 AND integration = $2",
        )
        .bind(tenant.0)
        .bind(integration)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|Json(s)| s))
    }

    /// Removes one integration's connection; true if there was one.
    pub async fn remove(
        &self,
        tenant: TenantId,
        integration: &str,
    ) -> Result<bool, CredentialError> {
        let done = sqlx::query(
            "DELETE FROM integration_credentials WHERE tenant_id = $1 AND integration = $2",
        )
        .bind(tenant.0)
        .bind(integration)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// One integration's secrets and settings, if connected.
    pub async fn open<S: DeserializeOwned, T: DeserializeOwned + Send + Unpin + 'static>(
        &self,
        tenant: TenantId,
        integration: &str,
    ) -> Result<Option<(S, T)>, CredentialError> {
        let row: Option<(Vec<u8>, Vec<u8>, Json<T>)> = sqlx::query_as(
            "SELECT nonce, sealed, settings FROM integration_credentials
             WHERE tenant_id = $1 AND integration = $2",
        )
        .bind(tenant.0)
        .bind(integration)
        .fetch_optional(&self.pool)
        .await?;
        let Some((nonce, sealed, Json(settings))) = row else {
            return Ok(None);
        };
        if nonce.len() != 24 {
            return Err(CredentialError::Sealed);
        }
        let aad = associated(tenant, integration);
        let plain = self
            .cipher()?
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &sealed,
                    aad: &aad,
                },
            )
            .map_err(|_| CredentialError::Sealed)?;
        let secrets = serde_json::from_slice(&plain).map_err(|_| CredentialError::Sealed)?;
        Ok(Some((secrets, settings)))
    }
}

fn associated(tenant: TenantId, integration: &str) -> Vec<u8> {
    format!("{tenant}/{integration}").into_bytes()
}

#[async_trait]
impl Accounts for PgAccounts {
    async fn calendar(&self, tenant: TenantId) -> Result<Option<CalendarAccount>, PortError> {
        let opened = self.open_calendar(tenant).await.map_err(|e| match e {
            CredentialError::Database(e) => PortError::Transient(e.to_string()),
            other => PortError::Rejected(other.to_string()),
        })?;
        Ok(opened.map(|(secrets, settings)| CalendarAccount {
            api_key: secrets.api_key,
            event_types: settings.event_types,
            hosts: settings.hosts,
        }))
    }
}
