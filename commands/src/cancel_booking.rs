use domain::values::BookingId;
use domain::{Booking, BookingCommand, StaffCommand};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::{
    CommandError, CommandMeta, Commands, Outcome, Permission, Principal, Store, max_position,
};

/// Why a booking is cancelled.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelBookingInput {
    /// Free text, e.g. "customer ill".
    pub reason: String,
}

impl<S: Store> Commands<S> {
    /// Cancels a booking and frees its slot.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %booking_id))]
    pub async fn cancel_booking(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        booking_id: BookingId,
        input: CancelBookingInput,
    ) -> Result<Outcome<Booking>, CommandError> {
        who.require(Permission::CancelBookings)?;
        let (tenant, _) = self.tenant(meta.tenant_id).await?;
        let command = BookingCommand::CancelBooking {
            reason: input.reason,
            actor: meta.actor.clone(),
            cutoff_hours: tenant.settings.booking_rules.cancellation_cutoff_hours,
            now: meta.now,
        };
        let cancelled = self.run_booking(booking_id, command, meta).await?;
        let Some(staff_id) = cancelled.state.staff_id else {
            return Ok(cancelled);
        };
        let released = self
            .run_staff(staff_id, StaffCommand::ReleaseSlot { booking_id }, meta)
            .await?;
        Ok(Outcome {
            position: max_position(cancelled.position, released.position),
            ..cancelled
        })
    }
}
