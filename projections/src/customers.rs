//! Customers, derived from the bookings read model: one per phone number, with the name and
//! e-mail of their latest booking and counts of what became of their bookings.

use chrono::{DateTime, Utc};
use domain::booking::Customer as Contact;
use schemars::JsonSchema;
use serde::Serialize;
use sqlx::PgPool;
use sqlx::types::Json;
use uuid::Uuid;

/// A customer as their bookings describe them.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Customer {
    /// E.164.
    pub phone: String,
    /// From their latest booking.
    pub name: String,
    /// From their latest booking that gave one.
    pub email: Option<String>,
    /// Every booking, whatever became of it.
    pub bookings: i64,
    /// Completed bookings.
    pub visits: i64,
    /// Cancelled bookings.
    pub cancellations: i64,
    /// Bookings not attended.
    pub no_shows: i64,
    /// Start of the latest completed booking.
    pub last_visit: Option<DateTime<Utc>>,
    /// Start of the next held or confirmed booking after `now`.
    pub next_visit: Option<DateTime<Utc>>,
}

type Row = (
    String,
    Json<Contact>,
    Option<String>,
    i64,
    i64,
    i64,
    i64,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
);

/// Which customers: one tenant's, optionally one phone number, resumed after a phone number.
#[derive(Debug, Clone)]
pub struct CustomerFilter {
    /// The tenant (always applied).
    pub tenant_id: Uuid,
    /// One phone number, E.164.
    pub phone: Option<String>,
    /// The last phone number of the previous page.
    pub after: Option<String>,
    /// Page size.
    pub limit: i64,
    /// What "next" is measured from.
    pub now: DateTime<Utc>,
}

/// One page of customers, by phone number.
pub async fn list(pool: &PgPool, filter: &CustomerFilter) -> Result<Vec<Customer>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT customer_phone,
                (array_agg(state -> 'customer' ORDER BY start_at DESC, booking_id))[1],
                (array_agg(state -> 'customer' ->> 'email' ORDER BY start_at DESC, booking_id)
                    FILTER (WHERE state -> 'customer' ->> 'email' IS NOT NULL))[1],
                count(*),
                count(*) FILTER (WHERE status = 'completed'),
                count(*) FILTER (WHERE status = 'cancelled'),
                count(*) FILTER (WHERE status = 'no_show'),
                max(start_at) FILTER (WHERE status = 'completed'),
                min(start_at) FILTER (WHERE status IN ('held', 'confirmed') AND start_at >= $5)
         FROM bookings_view
         WHERE tenant_id = $1 AND ($2::text IS NULL OR customer_phone = $2)
           AND ($3::text IS NULL OR customer_phone > $3)
         GROUP BY customer_phone ORDER BY customer_phone LIMIT $4",
    )
    .bind(filter.tenant_id)
    .bind(filter.phone.as_deref())
    .bind(filter.after.as_deref())
    .bind(filter.limit)
    .bind(filter.now)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(
                phone,
                Json(contact),
                email,
                bookings,
                visits,
                cancellations,
                no_shows,
                last,
                next,
            )| {
                Customer {
                    phone,
                    name: contact.name,
                    email,
                    bookings,
                    visits,
                    cancellations,
                    no_shows,
                    last_visit: last,
                    next_visit: next,
                }
            },
        )
        .collect())
}
