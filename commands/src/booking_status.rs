use domain::values::BookingId;
use domain::{Booking, BookingCommand, StaffCommand};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::{
    CommandError, CommandMeta, Commands, Outcome, Permission, Principal, Store, max_position,
};

/// Changes to a booking's details.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateBookingInput {
    /// New customer name.
    #[serde(default)]
    #[schemars(length(min = 1, max = 200), regex(pattern = domain::values::patterns::TEXT))]
    pub customer_name: Option<String>,
    /// New customer e-mail.
    #[serde(default)]
    #[schemars(length(max = 254), regex(pattern = domain::values::patterns::EMAIL))]
    pub customer_email: Option<String>,
    /// New notes.
    #[serde(default)]
    #[schemars(length(min = 1, max = 2000), regex(pattern = domain::values::patterns::TEXT))]
    pub notes: Option<String>,
}

impl<S: Store> Commands<S> {
    /// Confirms a held booking: the booking and its reservation commit together.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %booking_id))]
    pub async fn confirm_booking(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        booking_id: BookingId,
    ) -> Result<Outcome<Booking>, CommandError> {
        who.require(Permission::CreateBookings)?;
        let (booking, version) = self.booking(meta.tenant_id, booking_id).await?;
        let command = BookingCommand::ConfirmBooking { now: meta.now };
        if booking.decide(command.clone())?.is_empty() {
            return Ok(Outcome {
                state: booking,
                version,
                position: None,
            });
        }
        let (Some(staff_id), Some(appointment)) = (booking.staff_id, booking.appointment) else {
            return Err(CommandError::NotFound("booking"));
        };
        let confirm = StaffCommand::ConfirmReservation {
            booking_id,
            start: appointment.start,
            now: meta.now,
        };
        let (confirmed, reserved) = self
            .run_booking_and_staff((booking_id, command), (staff_id, &[confirm]), None, meta)
            .await?;
        Ok(Outcome {
            position: max_position(reserved.position, confirmed.position),
            ..confirmed
        })
    }

    /// Records that the appointment took place.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %booking_id))]
    pub async fn complete_booking(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        booking_id: BookingId,
    ) -> Result<Outcome<Booking>, CommandError> {
        who.require(Permission::CreateBookings)?;
        self.run_booking(
            booking_id,
            BookingCommand::CompleteBooking { now: meta.now },
            meta,
        )
        .await
    }

    /// Records that the customer did not come.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %booking_id))]
    pub async fn mark_no_show(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        booking_id: BookingId,
    ) -> Result<Outcome<Booking>, CommandError> {
        who.require(Permission::CreateBookings)?;
        self.run_booking(
            booking_id,
            BookingCommand::MarkNoShow { now: meta.now },
            meta,
        )
        .await
    }

    /// Changes customer name, e-mail or notes.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %booking_id))]
    pub async fn update_booking_details(
        &self,
        who: &Principal,
        meta: &CommandMeta,
        booking_id: BookingId,
        input: UpdateBookingInput,
    ) -> Result<Outcome<Booking>, CommandError> {
        who.require(Permission::CreateBookings)?;
        let command = BookingCommand::UpdateBookingDetails {
            customer_name: input.customer_name,
            customer_email: input.customer_email,
            notes: input.notes,
        };
        self.run_booking(booking_id, command, meta).await
    }
}
