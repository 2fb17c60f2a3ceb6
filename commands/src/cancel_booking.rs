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
    #[schemars(length(min = 1, max = 500), regex(pattern = domain::values::patterns::TEXT))]
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
        let (booking, _) = self.booking(meta.tenant_id, booking_id).await?;
        let Some(staff_id) = booking.staff_id else {
            return self.run_booking(booking_id, command, meta).await;
        };
        // The booking and its slot change in one transaction: a crash never leaves a
        // cancelled booking holding its slot.
        let release = StaffCommand::ReleaseSlot { booking_id };
        let (cancelled, released) = self
            .run_booking_and_staff(
                (booking_id, command),
                (staff_id, std::slice::from_ref(&release)),
                None,
                meta,
            )
            .await?;
        let mut position = max_position(cancelled.position, released.position);
        // Moved to someone else between the read and the cancel: free that slot too.
        if let Some(moved_to) = cancelled.state.staff_id
            && moved_to != staff_id
        {
            let released = self.run_staff(moved_to, release, meta).await?;
            position = max_position(position, released.position);
        }
        Ok(Outcome {
            position,
            ..cancelled
        })
    }
}
