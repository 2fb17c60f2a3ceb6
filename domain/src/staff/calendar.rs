use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::values::{BookingId, ServiceId, TimeRange};

/// Whether an entry is a hold that may lapse or a firm reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EntryState {
    /// Blocks the slot until `expires_at`, then no longer does.
    Held {
        /// When it lapses.
        expires_at: DateTime<Utc>,
    },
    /// Blocks the slot until released.
    Reserved,
}

/// A hold or reservation on a staff calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CalendarEntry {
    /// The booking it belongs to.
    pub booking_id: BookingId,
    /// The service booked.
    pub service_id: ServiceId,
    /// The appointment.
    pub appointment: TimeRange,
    /// The appointment with buffers.
    pub occupied: TimeRange,
    /// Hold or reservation.
    pub state: EntryState,
}

/// How long past entries stay in the state, so that late confirmations and releases of a
/// recent entry still find it while the state stays bounded as the stream grows.
pub(crate) const RETENTION: Duration = Duration::days(1);

impl CalendarEntry {
    /// Whether the entry keeps others out of its time at `now`. An expired hold does not,
    /// whether or not anything has released it yet.
    pub fn blocks_at(&self, now: DateTime<Utc>) -> bool {
        match self.state {
            EntryState::Held { expires_at } => expires_at > now,
            EntryState::Reserved => true,
        }
    }

    /// Whether the entry is of no further use at `horizon`.
    pub(crate) fn is_stale(&self, horizon: DateTime<Utc>) -> bool {
        let cutoff = horizon - RETENTION;
        match self.state {
            EntryState::Held { expires_at } => expires_at < cutoff,
            EntryState::Reserved => self.occupied.end < cutoff,
        }
    }
}
