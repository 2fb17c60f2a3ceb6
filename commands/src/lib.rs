//! Use cases: each validates its input, authorizes the caller, builds domain commands with
//! metadata, executes them against the event store and maps the errors.
//!
//! # Layout
//!
//! * [`Commands`]: the entry point; one method per use case, grouped one file per resource:
//!   `tenants.rs`, `branches.rs`, `services.rs`, `staff.rs`, and the booking flow in
//!   `create_booking.rs`, `reschedule_booking.rs`, `cancel_booking.rs`, `booking_status.rs`,
//!   and what sagas record on bookings in `calendar_sync.rs` and `deposits.rs`.
//! * `executor.rs`: load → decide → append, retried on optimistic-concurrency conflicts.
//! * `metadata.rs`, `auth.rs`, `ports.rs`, `error.rs`: what every use case shares.
//!
//! The booking flow spans two aggregates: the slot is held on the Staff calendar, the Booking
//! is created and the hold becomes a reservation, and all three events commit in one
//! transaction. A hold taken on its own (`hold_only`, for a caller still deciding) lapses by
//! itself when it is never confirmed; nothing can leave a double booking.
#![warn(missing_docs)]

mod auth;
mod booking_status;
mod branches;
mod calendar_sync;
mod cancel_booking;
mod create_booking;
mod deposits;
mod error;
mod executor;
mod metadata;
mod ports;
mod reschedule_booking;
mod services;
mod staff;
pub mod stats;
mod tenants;

use std::sync::Arc;

use cqrs_es::EventStore;
use domain::values::{BookingId, StaffId, TenantId};
use domain::{Booking, BookingCommand, Staff, StaffCommand, Tenant, TenantCommand};

pub use auth::{Permission, Principal, Role};
pub use booking_status::UpdateBookingInput;
pub use branches::{BranchInput, PhoneNumberInput};
pub use cancel_booking::CancelBookingInput;
pub use create_booking::{CreateBookingInput, CustomerInput};
pub use error::CommandError;
pub use executor::{AppendTogether, Appended, Guard, Outcome, Trust, Versioned};
pub use metadata::{Channel, CommandMeta};
pub use ports::Directory;
pub use reschedule_booking::RescheduleBookingInput;
pub use staff::{
    AssignSkillInput, BlockTimeInput, HireStaffInput, OverrideInput, ScheduleInput,
    StaffProfileInput,
};
pub use tenants::{ChangePlanInput, RegisterTenantInput, UpdateTenantInput};

use executor::StripedLocks;

/// An event store holding all three aggregates.
pub trait Store:
    EventStore<Tenant, AC: Versioned + Send + Sync>
    + EventStore<Staff, AC: Versioned + Send + Sync>
    + EventStore<Booking, AC: Versioned + Send + Sync>
    + Trust
    + AppendTogether<Booking, Staff>
    + Send
    + Sync
    + 'static
{
}

impl<S> Store for S where
    S: EventStore<Tenant, AC: Versioned + Send + Sync>
        + EventStore<Staff, AC: Versioned + Send + Sync>
        + EventStore<Booking, AC: Versioned + Send + Sync>
        + Trust
        + AppendTogether<Booking, Staff>
        + Send
        + Sync
        + 'static
{
}

/// Limits from the server's configuration.
#[derive(Debug, Clone)]
pub struct CommandConfig {
    /// How long a hold blocks its slot unless confirmed (`MCP_BOOKING_LOCK_TIMEOUT`).
    pub hold_ttl: chrono::Duration,
    /// The server's cap on how far ahead bookings may start (`MCP_BOOKING_MAX_ADVANCE_DAYS`).
    pub max_advance_days: u32,
    /// How often a command is decided again after losing a concurrency race.
    pub max_attempts: u32,
    /// How many commands may talk to the database at once; the others wait in turn.
    pub concurrent_commands: usize,
}

impl Default for CommandConfig {
    fn default() -> Self {
        Self {
            hold_ttl: chrono::Duration::seconds(300),
            max_advance_days: 90,
            max_attempts: 20,
            concurrent_commands: 4,
        }
    }
}

/// The write side's entry point.
#[derive(Debug)]
pub struct Commands<S> {
    store: S,
    directory: Arc<dyn Directory>,
    locks: StripedLocks,
    config: CommandConfig,
}

impl<S: Store> Commands<S> {
    /// How long a slot hold blocks its slot unless confirmed.
    pub fn hold_ttl(&self) -> chrono::Duration {
        self.config.hold_ttl
    }

    /// Wires the use cases to a store and a directory.
    pub fn new(store: S, directory: Arc<dyn Directory>, config: CommandConfig) -> Self {
        Self {
            store,
            directory,
            locks: StripedLocks::new(1024, config.concurrent_commands),
            config,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &CommandConfig {
        &self.config
    }

    /// The store it writes to.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The tenant's current state, or NotFound.
    pub async fn tenant(&self, tenant_id: TenantId) -> Result<(Tenant, u64), CommandError> {
        let (tenant, version) =
            executor::load::<Tenant, S>(&self.store, &tenant_id.to_string()).await?;
        if tenant.id != Some(tenant_id) {
            return Err(CommandError::NotFound("tenant"));
        }
        Ok((tenant, version))
    }

    /// A staff member of the tenant, or NotFound (also for another tenant's staff).
    pub async fn staff_member(
        &self,
        tenant_id: TenantId,
        staff_id: StaffId,
    ) -> Result<(Staff, u64), CommandError> {
        let (staff, version) =
            executor::load::<Staff, S>(&self.store, &staff_id.to_string()).await?;
        if staff.id.is_none() || staff.tenant_id != Some(tenant_id) {
            return Err(CommandError::NotFound("staff member"));
        }
        Ok((staff, version))
    }

    /// A booking of the tenant, or NotFound (also for another tenant's booking).
    pub async fn booking(
        &self,
        tenant_id: TenantId,
        booking_id: BookingId,
    ) -> Result<(Booking, u64), CommandError> {
        let (booking, version) =
            executor::load::<Booking, S>(&self.store, &booking_id.to_string()).await?;
        if booking.id.is_none() || booking.tenant_id != Some(tenant_id) {
            return Err(CommandError::NotFound("booking"));
        }
        Ok((booking, version))
    }

    async fn run<A>(
        &self,
        id: String,
        command: A::Command,
        meta: &CommandMeta,
    ) -> Result<Outcome<A>, CommandError>
    where
        A: executor::Tenanted,
        A::Command: Clone,
        A::Error: Into<CommandError>,
        S: EventStore<A>,
        <S as EventStore<A>>::AC: Versioned,
    {
        let attempts = self.config.max_attempts;
        executor::execute::<A, S>(&self.store, &self.locks, attempts, &id, &command, meta).await
    }

    /// A Booking command and Staff commands (decided in turn), appended in one transaction.
    async fn run_booking_and_staff(
        &self,
        (booking_id, booking_command): (BookingId, BookingCommand),
        (staff_id, staff_commands): (StaffId, &[StaffCommand]),
        guard: Option<&Guard>,
        meta: &CommandMeta,
    ) -> Result<(Outcome<Booking>, Outcome<Staff>), CommandError> {
        let (booking, staff) = (booking_id.to_string(), staff_id.to_string());
        executor::execute_together::<Booking, Staff, S>(
            &self.store,
            &self.locks,
            self.config.max_attempts,
            (&booking, std::slice::from_ref(&booking_command)),
            (&staff, staff_commands),
            guard,
            meta,
        )
        .await
    }

    async fn run_tenant(
        &self,
        command: TenantCommand,
        meta: &CommandMeta,
    ) -> Result<Outcome<Tenant>, CommandError> {
        self.run(meta.tenant_id.to_string(), command, meta).await
    }

    async fn run_staff(
        &self,
        staff_id: StaffId,
        command: StaffCommand,
        meta: &CommandMeta,
    ) -> Result<Outcome<Staff>, CommandError> {
        self.run(staff_id.to_string(), command, meta).await
    }

    async fn run_booking(
        &self,
        booking_id: BookingId,
        command: BookingCommand,
        meta: &CommandMeta,
    ) -> Result<Outcome<Booking>, CommandError> {
        self.run(booking_id.to_string(), command, meta).await
    }
}

/// The later of two optional positions.
pub(crate) fn max_position(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    a.max(b)
}
