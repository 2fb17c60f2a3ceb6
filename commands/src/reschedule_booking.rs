use chrono::{DateTime, Utc};
use domain::booking::check_placement;
use domain::values::{BookingId, StaffId, TimeRange};
use domain::{Booking, BookingCommand, StaffCommand};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::{
    CommandError, CommandMeta, Commands, Outcome, Permission, Principal, Store, max_position,
};

/// Where to move a booking.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RescheduleBookingInput {
    /// New start, RFC 3339 with an offset.
    pub start: DateTime<Utc>,
    /// Another staff member; the same one when absent.
    #[serde(default)]
    pub staff_id: Option<StaffId>,
}

impl<S: Store> Commands<S> {
    /// Moves a booking: the new slot is held before the old one is released, so the customer
    /// never ends up with neither.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %booking_id))]
    pub async fn reschedule_booking(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        booking_id: BookingId,
        input: RescheduleBookingInput,
    ) -> Result<Outcome<Booking>, CommandError> {
        who.require(Permission::CreateBookings)?;
        let (booking, version) = self.booking(meta.tenant_id, booking_id).await?;
        let (tenant, _) = self.tenant(meta.tenant_id).await?;
        let (Some(branch_id), Some(service_id), Some(staff_from)) =
            (booking.branch_id, booking.service_id, booking.staff_id)
        else {
            return Err(CommandError::NotFound("booking"));
        };
        let service = tenant
            .services
            .get(&service_id)
            .ok_or(CommandError::NotFound("service"))?;
        let appointment = TimeRange::starting_at(input.start, service.duration_minutes)
            .map_err(|e| CommandError::invalid("start", e))?;
        check_placement(&tenant, branch_id, service_id, &appointment)?;
        let staff_to = input.staff_id.unwrap_or(staff_from);
        let command = BookingCommand::RescheduleBooking {
            appointment,
            staff_id: staff_to,
            rules: self.rules(&tenant),
            now: meta.now,
        };
        if booking.decide(command.clone())?.is_empty() {
            return Ok(Outcome {
                state: booking,
                version,
                position: None,
            });
        }
        let hold = StaffCommand::HoldSlot {
            booking_id,
            service_id,
            appointment,
            buffer_before_minutes: service.buffer_before_minutes,
            buffer_after_minutes: service.buffer_after_minutes,
            expires_at: meta.now + self.config.hold_ttl,
            now: meta.now,
        };
        self.run_staff(staff_to, hold, meta).await?;
        // The booking moves and the hold becomes its reservation in one transaction; if that
        // fails, the new hold simply lapses and the old reservation is untouched.
        let confirm = StaffCommand::ConfirmReservation {
            booking_id,
            start: appointment.start,
            now: meta.now,
        };
        let (moved, reserved) = self
            .run_booking_and_staff((booking_id, command), (staff_to, &[confirm]), None, meta)
            .await?;
        let mut position = max_position(moved.position, reserved.position);
        if staff_to != staff_from {
            // A third aggregate, in a transaction of its own: a crash just before it leaves the
            // old staff member's slot blocked, never double-booked.
            let released = self
                .run_staff(staff_from, StaffCommand::ReleaseSlot { booking_id }, meta)
                .await?;
            position = max_position(position, released.position);
        }
        Ok(Outcome { position, ..moved })
    }
}
