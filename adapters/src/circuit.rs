//! A circuit breaker per integration: closed while calls succeed; open after a run of
//! failures, refusing calls at once; after the recovery timeout half-open, letting one probe
//! through, whose outcome closes or reopens it. Time comes from the saga clock.

use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};
use sagas::SharedClock;
use sagas::ports::PortError;
use serde::Serialize;

/// The breaker's state, as `mcp_circuit_breaker_state` numbers it (0, 1, 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the recovery timeout.
    Open,
    /// One probe is allowed.
    HalfOpen,
}

/// What operators see of a breaker.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct CircuitHealth {
    /// The integration.
    pub name: String,
    /// Its state.
    pub state: CircuitState,
    /// Failures in a row.
    pub failure_count: u32,
    /// The last failure: when and what.
    pub last_failure: Option<DateTime<Utc>>,
    /// What the last failure was.
    pub last_error: Option<String>,
    /// The last success.
    pub last_success: Option<DateTime<Utc>>,
}

#[derive(Debug)]
struct Inner {
    state: CircuitState,
    opened_at: Option<DateTime<Utc>>,
    probing: bool,
    failures: u32,
    last_failure: Option<(DateTime<Utc>, String)>,
    last_success: Option<DateTime<Utc>>,
}

/// One integration's breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    name: String,
    threshold: u32,
    recovery: Duration,
    clock: SharedClock,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// A closed breaker that opens after `threshold` failures in a row and probes again
    /// `recovery` after opening.
    pub fn new(name: &str, threshold: u32, recovery: Duration, clock: SharedClock) -> Self {
        Self {
            name: name.to_owned(),
            threshold: threshold.max(1),
            recovery,
            clock,
            inner: Mutex::new(Inner {
                state: CircuitState::Closed,
                opened_at: None,
                probing: false,
                failures: 0,
                last_failure: None,
                last_success: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a call may go out now; an open breaker past its recovery timeout lets this
    /// one call through as its probe.
    pub fn permit(&self) -> Result<(), PortError> {
        let now = self.clock.now();
        let mut inner = self.lock();
        match inner.state {
            CircuitState::Closed => Ok(()),
            CircuitState::Open if inner.opened_at.is_some_and(|at| now >= at + self.recovery) => {
                inner.state = CircuitState::HalfOpen;
                inner.probing = true;
                Ok(())
            }
            CircuitState::HalfOpen if !inner.probing => {
                inner.probing = true;
                Ok(())
            }
            CircuitState::Open | CircuitState::HalfOpen => Err(PortError::CircuitOpen),
        }
    }

    /// Records a call's outcome. Only failures of the service itself count: a refusal of a
    /// bad request shows the service is up.
    pub fn record<T>(&self, result: &Result<T, PortError>) {
        let now = self.clock.now();
        let mut inner = self.lock();
        inner.probing = false;
        match result {
            Err(e @ (PortError::Transient(_) | PortError::RateLimited(_))) => {
                inner.failures += 1;
                inner.last_failure = Some((now, e.to_string()));
                if inner.state == CircuitState::HalfOpen || inner.failures >= self.threshold {
                    if inner.state != CircuitState::Open {
                        tracing::warn!(integration = %self.name, failures = inner.failures, "circuit opened");
                    }
                    inner.state = CircuitState::Open;
                    inner.opened_at = Some(now);
                }
            }
            Err(PortError::CircuitOpen) => {}
            Ok(_) | Err(PortError::SlotTaken(_) | PortError::Rejected(_)) => {
                if inner.state != CircuitState::Closed {
                    tracing::info!(integration = %self.name, "circuit closed");
                }
                inner.state = CircuitState::Closed;
                inner.opened_at = None;
                inner.failures = 0;
                inner.last_success = Some(now);
            }
        }
    }

    /// Its state for the health route.
    pub fn health(&self) -> CircuitHealth {
        let inner = self.lock();
        CircuitHealth {
            name: self.name.clone(),
            state: inner.state,
            failure_count: inner.failures,
            last_failure: inner.last_failure.as_ref().map(|(at, _)| *at),
            last_error: inner.last_failure.as_ref().map(|(_, e)| e.clone()),
            last_success: inner.last_success,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sagas::ShiftedClock;

    use super::*;

    fn failed() -> Result<(), PortError> {
        Err(PortError::Transient("timed out".to_owned()))
    }

    #[test]
    fn it_opens_after_the_threshold_and_one_probe_closes_it() {
        let clock = ShiftedClock::default();
        let breaker =
            CircuitBreaker::new("calcom", 3, Duration::seconds(60), Arc::new(clock.clone()));
        for _ in 0..3 {
            assert!(breaker.permit().is_ok());
            breaker.record(&failed());
        }
        assert_eq!(breaker.health().state, CircuitState::Open);
        assert_eq!(breaker.permit(), Err(PortError::CircuitOpen));
        clock.advance(Duration::seconds(61));
        assert!(breaker.permit().is_ok(), "the probe goes through");
        assert_eq!(
            breaker.permit(),
            Err(PortError::CircuitOpen),
            "only one probe"
        );
        breaker.record(&Ok::<(), PortError>(()));
        assert_eq!(breaker.health().state, CircuitState::Closed);
        assert!(breaker.permit().is_ok());
    }

    #[test]
    fn a_failed_probe_opens_it_again_and_refusals_do_not_count() {
        let clock = ShiftedClock::default();
        let breaker =
            CircuitBreaker::new("calcom", 2, Duration::seconds(10), Arc::new(clock.clone()));
        breaker.record(&Err::<(), _>(PortError::Rejected("bad key".to_owned())));
        breaker.record(&failed());
        assert_eq!(breaker.health().state, CircuitState::Closed);
        breaker.record(&failed());
        assert_eq!(breaker.health().state, CircuitState::Open);
        clock.advance(Duration::seconds(11));
        assert!(breaker.permit().is_ok());
        breaker.record(&failed());
        assert_eq!(breaker.health().state, CircuitState::Open);
        assert_eq!(breaker.permit(), Err(PortError::CircuitOpen));
    }
}
