//! Where sagas, timers and circuit breakers read the time: the system clock in production, a
//! clock the test moves by hand.

use std::fmt::Debug;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + Debug {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock moved by a settable offset: time runs, and a test can jump ahead (to
/// make a timer due) without waiting.
#[derive(Debug, Clone, Default)]
pub struct ShiftedClock {
    offset: Arc<Mutex<Duration>>,
}

impl ShiftedClock {
    /// Moves the clock ahead by `by`.
    pub fn advance(&self, by: Duration) {
        let mut offset = self.offset.lock().unwrap_or_else(PoisonError::into_inner);
        *offset += by;
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + *self.offset.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A shared clock.
pub type SharedClock = Arc<dyn Clock>;
