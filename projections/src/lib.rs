//! Read models and the queries the API serves, built from the event stream.
//!
//! # Layout
//!
//! * [`runner`]: applies a delivered event to a projection exactly once and in order per
//!   aggregate (the read model's write and the offset commit together), and answers whether
//!   a command's events are in (read-your-writes).
//! * [`dead_letters`]: events a projection gave up on, with retry and skip.
//! * [`rebuild`]: a read model rebuilt from the event store into a fresh table, swapped in.
//! * [`event`]: one stored event, as published, applied, parked and audited.
//! * [`audit`]: a tenant's events as stored, for audits and exports.
//! * One file per read model, each a [`Projection`] plus its query functions:
//!   [`bookings`], [`tenants`], [`staff_calendar`].
//! * Queries derived from those tables: [`customers`], [`dashboard`].
//!
//! The bus side (JetStream consumers, acks, redelivery) lives in `adapters`; this crate only
//! sees [`StoredEvent`] events and a Postgres pool.
#![warn(missing_docs)]

pub mod audit;
pub mod bookings;
pub mod customers;
pub mod dashboard;
pub mod dead_letters;
pub mod event;
pub mod rebuild;
pub mod runner;
pub mod staff_calendar;
pub mod tenants;

pub use bookings::Bookings;
pub use event::StoredEvent;
pub use runner::{Outcome, Projection, ProjectionError};
pub use staff_calendar::StaffCalendars;
pub use tenants::Tenants;
