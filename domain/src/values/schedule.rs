use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::TimeRange;

/// A day of the week, written `monday` … `sunday`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    /// Monday.
    Monday,
    /// Tuesday.
    Tuesday,
    /// Wednesday.
    Wednesday,
    /// Thursday.
    Thursday,
    /// Friday.
    Friday,
    /// Saturday.
    Saturday,
    /// Sunday.
    Sunday,
}

impl Weekday {
    /// Monday to Sunday.
    pub const ALL: [Self; 7] = [
        Self::Monday,
        Self::Tuesday,
        Self::Wednesday,
        Self::Thursday,
        Self::Friday,
        Self::Saturday,
        Self::Sunday,
    ];
}

impl From<chrono::Weekday> for Weekday {
    fn from(value: chrono::Weekday) -> Self {
        match value {
            chrono::Weekday::Mon => Self::Monday,
            chrono::Weekday::Tue => Self::Tuesday,
            chrono::Weekday::Wed => Self::Wednesday,
            chrono::Weekday::Thu => Self::Thursday,
            chrono::Weekday::Fri => Self::Friday,
            chrono::Weekday::Sat => Self::Saturday,
            chrono::Weekday::Sun => Self::Sunday,
        }
    }
}

/// A wall-clock time `HH:MM`, from `00:00` to `24:00` (the end of the day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ClockTime {
    minutes: u16,
}

super::patterns::string_schema!(ClockTime, "ClockTime", super::patterns::CLOCK_TIME);

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// Not `HH:MM`.
    #[error("{0:?} is not a time of day (expected HH:MM)")]
    InvalidTime(String),
    /// A range whose end is not after its start.
    #[error("{0}: the end must be after the start")]
    EndNotAfterStart(ClockRange),
    /// Two working ranges of one day overlap.
    #[error("{0} overlaps {1}")]
    Overlapping(ClockRange, ClockRange),
    /// A break outside the working ranges of its day.
    #[error("break {0} lies outside the working hours")]
    BreakOutsideHours(ClockRange),
}

impl ClockTime {
    /// `hours:minutes`; `24:00` is allowed as the end of a day.
    pub fn new(hours: u16, minutes: u16) -> Option<Self> {
        let total = hours * 60 + minutes;
        (minutes < 60 && total <= 24 * 60).then_some(Self { minutes: total })
    }

    /// Parses `HH:MM`.
    pub fn parse(s: &str) -> Result<Self, ScheduleError> {
        let invalid = || ScheduleError::InvalidTime(s.to_owned());
        let (h, m) = s.split_once(':').ok_or_else(invalid)?;
        let two_digits = |part: &str| part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit());
        if !two_digits(h) || !two_digits(m) {
            return Err(invalid());
        }
        let h: u16 = h.parse().map_err(|_| invalid())?;
        let m: u16 = m.parse().map_err(|_| invalid())?;
        Self::new(h, m).ok_or_else(invalid)
    }

    /// Minutes since midnight.
    pub fn minutes(self) -> u16 {
        self.minutes
    }

    fn on(self, date: NaiveDate) -> chrono::NaiveDateTime {
        let midnight = date.and_time(NaiveTime::MIN);
        midnight + chrono::Duration::minutes(i64::from(self.minutes))
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

impl TryFrom<String> for ClockTime {
    type Error = ScheduleError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ClockTime> for String {
    fn from(value: ClockTime) -> Self {
        value.to_string()
    }
}

/// A wall-clock range `[start, end)` within one day.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct ClockRange {
    /// `HH:MM`.
    pub start: ClockTime,
    /// `HH:MM`, after `start`.
    pub end: ClockTime,
}

impl fmt::Display for ClockRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl ClockRange {
    fn overlaps(&self, other: &Self) -> bool {
        self.start < other.end && other.start < self.end
    }

    fn contains(&self, other: &Self) -> bool {
        self.start <= other.start && other.end <= self.end
    }
}

/// The hours of one day: working (or opening) ranges and breaks inside them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DayHours {
    /// Working ranges, not overlapping; empty means closed.
    pub ranges: Vec<ClockRange>,
    /// Breaks, each inside one of the ranges.
    #[serde(default)]
    pub breaks: Vec<ClockRange>,
}

impl DayHours {
    /// Checks that ranges are well-formed, disjoint, and that breaks lie inside them.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        for r in self.ranges.iter().chain(&self.breaks) {
            if r.end <= r.start {
                return Err(ScheduleError::EndNotAfterStart(*r));
            }
        }
        for (i, a) in self.ranges.iter().enumerate() {
            if let Some(b) = self.ranges[i + 1..].iter().find(|b| a.overlaps(b)) {
                return Err(ScheduleError::Overlapping(*a, *b));
            }
        }
        match self
            .breaks
            .iter()
            .find(|b| !self.ranges.iter().any(|r| r.contains(b)))
        {
            Some(b) => Err(ScheduleError::BreakOutsideHours(*b)),
            None => Ok(()),
        }
    }

    /// The working ranges on `date` in `tz`, as UTC instants.
    pub fn working_on(&self, date: NaiveDate, tz: Tz) -> Vec<TimeRange> {
        self.ranges
            .iter()
            .filter_map(|r| local_range_to_utc(date, *r, tz))
            .collect()
    }

    /// The breaks on `date` in `tz`, as UTC instants.
    pub fn breaks_on(&self, date: NaiveDate, tz: Tz) -> Vec<TimeRange> {
        self.breaks
            .iter()
            .filter_map(|r| local_range_to_utc(date, *r, tz))
            .collect()
    }

    /// Whether `appointment` lies inside one working range of `date` and clear of every break.
    pub fn admits(&self, date: NaiveDate, tz: Tz, appointment: &TimeRange) -> bool {
        self.working_on(date, tz)
            .iter()
            .any(|r| r.contains(appointment))
            && !self
                .breaks_on(date, tz)
                .iter()
                .any(|b| b.overlaps(appointment))
    }
}

/// Hours per weekday; a missing day is closed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WeeklyHours(pub BTreeMap<Weekday, DayHours>);

impl JsonSchema for WeeklyHours {
    fn schema_name() -> Cow<'static, str> {
        "WeeklyHours".into()
    }

    /// An object with a property per weekday and no others (a map's schema would allow any
    /// key).
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let day = generator.subschema_for::<DayHours>().to_value();
        // The names as serde writes them, so the schema cannot drift from the wire.
        let properties: serde_json::Map<String, serde_json::Value> = Weekday::ALL
            .into_iter()
            .filter_map(|weekday| match serde_json::to_value(weekday) {
                Ok(serde_json::Value::String(name)) => Some((name, day.clone())),
                _ => None,
            })
            .collect();
        schemars::json_schema!({
            "type": "object",
            "description": "Hours per weekday; a missing day is closed.",
            "properties": properties,
            "additionalProperties": false,
        })
    }
}

impl WeeklyHours {
    /// Validates every day.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        self.0.values().try_for_each(DayHours::validate)
    }

    /// Whether `at` falls in a working (opening) range of its local day in `tz`, outside the
    /// breaks.
    pub fn is_open_at(&self, at: DateTime<Utc>, tz: Tz) -> bool {
        let date = at.with_timezone(&tz).date_naive();
        let Some(day) = self.day(date) else {
            return false;
        };
        let covers = |r: &TimeRange| r.start <= at && at < r.end;
        day.working_on(date, tz).iter().any(covers) && !day.breaks_on(date, tz).iter().any(covers)
    }

    /// The hours of the weekday of `date`.
    pub fn day(&self, date: NaiveDate) -> Option<&DayHours> {
        self.0.get(&Weekday::from(date.weekday()))
    }

    /// Whether `appointment`, starting on local `date`, fits the hours of that day.
    pub fn admits(&self, date: NaiveDate, tz: Tz, appointment: &TimeRange) -> bool {
        self.day(date)
            .is_some_and(|d| d.admits(date, tz, appointment))
    }
}

/// Converts a wall-clock range on `date` in `tz` to UTC. Across a DST change the earliest
/// valid instant is taken for the start and the latest for the end; a time that does not exist
/// (the spring gap) moves forward to the first one that does.
pub fn local_range_to_utc(date: NaiveDate, range: ClockRange, tz: Tz) -> Option<TimeRange> {
    let start = resolve(tz, range.start.on(date), true)?;
    let end = resolve(tz, range.end.on(date), false)?;
    TimeRange::new(start, end).ok()
}

fn resolve(
    tz: Tz,
    local: chrono::NaiveDateTime,
    earliest: bool,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let mut probe = local;
    // A DST gap is at most a few hours wide; step forward until the wall time exists.
    for _ in 0..=12 {
        let mapped = tz.from_local_datetime(&probe);
        let picked = if earliest {
            mapped.earliest()
        } else {
            mapped.latest()
        };
        if let Some(t) = picked {
            return Some(t.with_timezone(&chrono::Utc));
        }
        probe += chrono::Duration::minutes(15);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weekly_hours_schema_has_a_property_per_weekday_as_written() {
        let schema = schemars::schema_for!(WeeklyHours);
        let mut documented: Vec<String> = schema
            .get("properties")
            .and_then(serde_json::Value::as_object)
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let mut written: Vec<String> = [
            chrono::Weekday::Mon,
            chrono::Weekday::Tue,
            chrono::Weekday::Wed,
            chrono::Weekday::Thu,
            chrono::Weekday::Fri,
            chrono::Weekday::Sat,
            chrono::Weekday::Sun,
        ]
        .into_iter()
        .map(|d| {
            serde_json::to_value(Weekday::from(d))
                .unwrap()
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
        documented.sort();
        written.sort();
        assert_eq!(documented, written);
        assert_eq!(
            schema.get("additionalProperties"),
            Some(&serde_json::json!(false))
        );
    }

    fn clock(s: &str) -> ClockTime {
        ClockTime::parse(s).unwrap()
    }

    fn range(a: &str, b: &str) -> ClockRange {
        ClockRange {
            start: clock(a),
            end: clock(b),
        }
    }

    #[test]
    fn clock_times_are_hh_mm() {
        assert_eq!(clock("09:30").minutes(), 570);
        assert_eq!(clock("24:00").minutes(), 1440);
        for bad in ["9:30", "24:01", "12:60", "noon", "12-30"] {
            assert!(ClockTime::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_day_with_an_end_before_its_start_is_refused() {
        let day = DayHours {
            ranges: vec![range("18:00", "09:00")],
            breaks: vec![],
        };
        assert!(matches!(
            day.validate(),
            Err(ScheduleError::EndNotAfterStart(_))
        ));
    }

    #[test]
    fn a_break_outside_working_hours_is_refused() {
        let day = DayHours {
            ranges: vec![range("09:00", "12:00")],
            breaks: vec![range("12:30", "13:00")],
        };
        assert!(matches!(
            day.validate(),
            Err(ScheduleError::BreakOutsideHours(_))
        ));
    }

    #[test]
    fn open_is_inside_a_range_of_the_local_day_and_outside_its_breaks() {
        let tz = chrono_tz::Europe::Berlin;
        let day = DayHours {
            ranges: vec![range("09:00", "18:00")],
            breaks: vec![range("12:00", "13:00")],
        };
        // Tuesday 2026-12-01; Berlin is UTC+1 in winter.
        let hours = WeeklyHours(BTreeMap::from([(Weekday::Tuesday, day)]));
        let at = |h, m| Utc.with_ymd_and_hms(2026, 12, 1, h, m, 0).unwrap();
        assert!(!hours.is_open_at(at(7, 59), tz));
        assert!(hours.is_open_at(at(8, 0), tz));
        assert!(!hours.is_open_at(at(11, 30), tz));
        assert!(hours.is_open_at(at(12, 0), tz));
        assert!(!hours.is_open_at(at(17, 0), tz));
        // Wednesday has no hours.
        assert!(!hours.is_open_at(at(8, 0) + chrono::Duration::days(1), tz));
    }

    #[test]
    fn weekdays_are_written_in_lower_case() {
        let json = serde_json::to_string(&Weekday::Monday).unwrap();
        assert_eq!(json, "\"monday\"");
        assert!(serde_json::from_str::<Weekday>("\"funday\"").is_err());
    }

    #[test]
    fn berlin_hours_map_to_utc_in_winter_and_summer() {
        let tz = chrono_tz::Europe::Berlin;
        let winter = local_range_to_utc(
            NaiveDate::from_ymd_opt(2030, 1, 7).unwrap(),
            range("09:00", "17:00"),
            tz,
        )
        .unwrap();
        assert_eq!(
            winter.start,
            Utc.with_ymd_and_hms(2030, 1, 7, 8, 0, 0).unwrap()
        );
        let summer = local_range_to_utc(
            NaiveDate::from_ymd_opt(2030, 7, 8).unwrap(),
            range("09:00", "17:00"),
            tz,
        )
        .unwrap();
        assert_eq!(
            summer.start,
            Utc.with_ymd_and_hms(2030, 7, 8, 7, 0, 0).unwrap()
        );
    }

    #[test]
    fn a_range_across_the_spring_gap_is_an_hour_shorter() {
        // 2030-03-31: clocks jump from 02:00 to 03:00 in Berlin.
        let tz = chrono_tz::Europe::Berlin;
        let r = local_range_to_utc(
            NaiveDate::from_ymd_opt(2030, 3, 31).unwrap(),
            range("01:00", "05:00"),
            tz,
        )
        .unwrap();
        assert_eq!(r.minutes(), 180);
    }

    #[test]
    fn an_appointment_over_a_break_is_not_admitted() {
        let tz = chrono_tz::Europe::Berlin;
        let date = NaiveDate::from_ymd_opt(2030, 1, 7).unwrap();
        let day = DayHours {
            ranges: vec![range("09:00", "17:00")],
            breaks: vec![range("12:00", "13:00")],
        };
        let at = |h, m| Utc.with_ymd_and_hms(2030, 1, 7, h, m, 0).unwrap();
        assert!(day.admits(date, tz, &TimeRange::new(at(8, 0), at(9, 0)).unwrap()));
        assert!(!day.admits(date, tz, &TimeRange::new(at(10, 30), at(11, 30)).unwrap()));
        assert!(!day.admits(date, tz, &TimeRange::new(at(7, 30), at(8, 30)).unwrap()));
    }
}
