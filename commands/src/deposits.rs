use domain::values::BookingId;
use domain::{Booking, BookingCommand, DepositOutcome};

use crate::{CommandError, CommandMeta, Commands, Outcome, Store};

impl<S: Store> Commands<S> {
    /// Records on a booking what became of its deposit (the payment provider's word, relayed
    /// by the payments saga or its webhook); recording the same outcome again writes nothing.
    #[tracing::instrument(skip_all, fields(tenant_id = %meta.tenant_id, %booking_id))]
    pub async fn record_deposit(
        &self,
        meta: &CommandMeta,
        booking_id: BookingId,
        outcome: DepositOutcome,
    ) -> Result<Outcome<Booking>, CommandError> {
        self.booking(meta.tenant_id, booking_id).await?;
        let command = BookingCommand::RecordDeposit {
            outcome,
            now: meta.now,
        };
        self.run_booking(booking_id, command, meta).await
    }
}
