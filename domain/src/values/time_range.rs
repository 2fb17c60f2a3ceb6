use chrono::{DateTime, Duration, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A half-open interval `[start, end)` of UTC instants, never empty.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
pub struct TimeRange {
    /// First instant inside the range.
    pub start: DateTime<Utc>,
    /// First instant after the range.
    pub end: DateTime<Utc>,
}

/// Why a time range was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeRangeError {
    /// The end is not after the start.
    #[error("the end must be after the start")]
    EndNotAfterStart,
}

impl TimeRange {
    /// A range whose end is after its start.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, TimeRangeError> {
        if end <= start {
            return Err(TimeRangeError::EndNotAfterStart);
        }
        Ok(Self { start, end })
    }

    /// `minutes` long from `start`; `minutes` must be positive.
    pub fn starting_at(start: DateTime<Utc>, minutes: u32) -> Result<Self, TimeRangeError> {
        Self::new(start, start + Duration::minutes(i64::from(minutes)))
    }

    /// Whether the two ranges share an instant.
    pub fn overlaps(&self, other: &Self) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// Whether `other` lies wholly inside this range.
    pub fn contains(&self, other: &Self) -> bool {
        self.start <= other.start && other.end <= self.end
    }

    /// The range widened by `before` and `after` minutes.
    pub fn widened(&self, before: u32, after: u32) -> Self {
        Self {
            start: self.start - Duration::minutes(i64::from(before)),
            end: self.end + Duration::minutes(i64::from(after)),
        }
    }

    /// Length in whole minutes.
    pub fn minutes(&self) -> i64 {
        (self.end - self.start).num_minutes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 7, h, m, 0).unwrap()
    }

    #[test]
    fn touching_ranges_do_not_overlap() {
        let a = TimeRange::new(at(9, 0), at(10, 0)).unwrap();
        let b = TimeRange::new(at(10, 0), at(11, 0)).unwrap();
        assert!(!a.overlaps(&b));
        assert!(a.overlaps(&TimeRange::new(at(9, 59), at(10, 30)).unwrap()));
    }

    #[test]
    fn an_empty_range_is_refused() {
        assert_eq!(
            TimeRange::new(at(9, 0), at(9, 0)),
            Err(TimeRangeError::EndNotAfterStart)
        );
    }

    #[test]
    fn widening_adds_buffers_on_both_sides() {
        let r = TimeRange::new(at(9, 0), at(10, 0)).unwrap().widened(10, 15);
        assert_eq!((r.start, r.end), (at(8, 50), at(10, 15)));
    }
}
