//! Counters of this process's command execution, for metrics.

use std::sync::atomic::AtomicU64;

/// Appends refused because another writer appended to the stream first (each is decided
/// again on the new state).
pub static CONFLICTS: AtomicU64 = AtomicU64::new(0);

/// Commands that kept conflicting until their attempts ran out.
pub static EXHAUSTED: AtomicU64 = AtomicU64::new(0);
