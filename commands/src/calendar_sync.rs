use domain::values::BookingId;
use domain::{Booking, BookingCommand, CalendarOutcome};

use crate::{CommandError, CommandMeta, Commands, Outcome, Store};

impl<S: Store> Commands<S> {
    /// Records on a booking what mirroring it to the external calendar came to. For the
    /// calendar-sync saga, whose actor is in `meta`; recording the same outcome again writes
    /// nothing.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %booking_id))]
    pub async fn record_calendar_sync(
        &self,
        meta: &CommandMeta,
        booking_id: BookingId,
        outcome: CalendarOutcome,
    ) -> Result<Outcome<Booking>, CommandError> {
        self.booking(meta.tenant_id, booking_id).await?;
        let command = BookingCommand::RecordCalendarSync {
            outcome,
            now: meta.now,
        };
        self.run_booking(booking_id, command, meta).await
    }
}
