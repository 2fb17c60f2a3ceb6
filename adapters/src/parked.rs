//! Events parked by any consumer, projection or saga, retried or given up by its name: what
//! the command line and the operator routes share.

use projections::dead_letters::{self, Retried};
use projections::{Bookings, StaffCalendars, Tenants};
use sagas::{CalendarSync, DepositPayments, Notifications};
use sqlx::PgPool;

use crate::saga_worker::{retry_parked, skip_parked};

/// The consumers that park events.
pub const CONSUMERS: &[&str] = &[
    "bookings",
    "tenants",
    "staff",
    "saga:calendar-sync",
    "saga:notifications",
    "saga:payments",
];

/// Why parked events could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum ParkedError {
    /// No consumer has that name.
    #[error("nothing named {name:?} parks events (known: {known})", name = .0, known = CONSUMERS.join(", "))]
    Unknown(String),
    /// Postgres failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A saga could not take the event.
    #[error(transparent)]
    Saga(#[from] sagas::SagaError),
}

/// Applies (or takes) `consumer`'s parked events again, in store order.
pub async fn retry(pool: &PgPool, consumer: &str) -> Result<Retried, ParkedError> {
    Ok(match consumer {
        "bookings" => dead_letters::retry(pool, &Bookings).await?,
        "tenants" => dead_letters::retry(pool, &Tenants).await?,
        "staff" => dead_letters::retry(pool, &StaffCalendars).await?,
        "saga:calendar-sync" => retry_parked::<CalendarSync>(pool).await?,
        "saga:notifications" => retry_parked::<Notifications>(pool).await?,
        "saga:payments" => retry_parked::<DepositPayments>(pool).await?,
        other => return Err(ParkedError::Unknown(other.to_owned())),
    })
}

/// Gives one of `consumer`'s parked events up; false when no such event is parked.
pub async fn skip(pool: &PgPool, consumer: &str, event_id: &str) -> Result<bool, ParkedError> {
    Ok(match consumer {
        "bookings" | "tenants" | "staff" => dead_letters::skip(pool, consumer, event_id).await?,
        "saga:calendar-sync" => skip_parked::<CalendarSync>(pool, event_id).await?,
        "saga:notifications" => skip_parked::<Notifications>(pool, event_id).await?,
        "saga:payments" => skip_parked::<DepositPayments>(pool, event_id).await?,
        other => return Err(ParkedError::Unknown(other.to_owned())),
    })
}
