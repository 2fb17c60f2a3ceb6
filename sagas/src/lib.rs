//! Process managers driven by the event stream, and the ports they call.
//!
//! * `runtime.rs`: what every saga shares: state, inbox and jobs (timers and outbound steps)
//!   in Postgres, each event's effect on them in one transaction; job claiming with leases.
//! * `clock.rs`: the time sagas, timers and circuit breakers read, injectable for tests.
//! * `ports.rs`: the external services as traits; `adapters` implements them over HTTP.
//! * One saga per file, each a pure `react`/`settle` step plus its driver:
//!   `calendar_sync.rs` (Cal.com), `notifications.rs` (SMS and e-mail), `payments.rs`
//!   (deposits with Stripe).
#![warn(missing_docs)]

pub mod calendar_sync;
pub mod clock;
pub mod notifications;
pub mod payments;
pub mod ports;
pub mod runtime;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod testing;

pub use calendar_sync::{CalendarSync, CalendarSyncDriver, RetryPolicy};
pub use clock::{Clock, SharedClock, ShiftedClock, SystemClock};
pub use notifications::{Notifications, NotificationsDriver};
pub use payments::{DepositPayments, PaymentsDriver};
pub use runtime::{Driver, Saga, SagaError, SagaEvent};
