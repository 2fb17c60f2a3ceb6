//! Free time: the slots a service can be booked in, and a staff member's working and free
//! time per day. Decided by the rules a booking is decided by (`check_timing`,
//! `check_placement`, `Staff::works_during`, `Staff::is_free`), so every slot offered here is
//! one that `CreateBooking` accepts at the same `now` against the same calendar. The tests
//! check exactly that.

use std::ops::RangeInclusive;

use chrono::{DateTime, Duration, NaiveDate, Timelike, Utc};
use chrono_tz::Tz;
use schemars::JsonSchema;
use serde::Serialize;

use crate::Staff;
use crate::settings::BookingRules;
use crate::tenant::{Branch, Service};
use crate::values::{
    BookingId, BranchId, ClockRange, ClockTime, StaffId, TimeRange, local_range_to_utc,
};

/// Time taken on a staff calendar by a booking: a reservation, or a hold until it lapses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy {
    /// The booking.
    pub booking_id: BookingId,
    /// The appointment.
    pub appointment: TimeRange,
    /// The appointment with the service's buffers: what no other booking may overlap.
    pub occupied: TimeRange,
    /// When a hold lapses; `None` for a reservation.
    pub held_until: Option<DateTime<Utc>>,
}

impl Busy {
    /// Whether it keeps others out at `now` (as `CalendarEntry::blocks_at`).
    pub fn blocks_at(&self, now: DateTime<Utc>) -> bool {
        self.held_until.is_none_or(|until| until > now)
    }
}

/// A bookable slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub struct Slot {
    /// Appointment start.
    #[serde(serialize_with = "rfc3339")]
    pub start: DateTime<Utc>,
    /// Appointment end.
    #[serde(serialize_with = "rfc3339")]
    pub end: DateTime<Utc>,
    /// Who would serve it.
    pub staff_id: StaffId,
    /// Where.
    pub branch_id: BranchId,
}

/// Writes an instant as RFC 3339 in UTC, as chrono does, by integer arithmetic for whole
/// seconds: an answer may carry tens of thousands of slots.
fn rfc3339<S: serde::Serializer>(t: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    let seconds = t.timestamp();
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    if t.timestamp_subsec_nanos() != 0 || !(0..=9999).contains(&year) {
        return t.serialize(serializer);
    }
    let of_day = seconds.rem_euclid(86_400);
    let mut out = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, value: i64, digits: usize| {
        let mut v = value;
        for i in (0..digits).rev() {
            out[at + i] = b'0' + u8::try_from(v % 10).unwrap_or(0);
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, of_day / 3600, 2);
    put(14, of_day / 60 % 60, 2);
    put(17, of_day % 60, 2);
    serializer.serialize_str(std::str::from_utf8(&out).unwrap_or_default())
}

/// The proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (the inverse
/// of Howard Hinnant's `days_from_civil`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// An instant as nanoseconds since the epoch, saturating outside 1677–2262.
fn nanos(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(if t.timestamp() > 0 {
        i64::MAX
    } else {
        i64::MIN
    })
}

/// A half-open interval of nanoseconds since the epoch: what the slot search compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Span {
    from: i64,
    to: i64,
}

impl Span {
    fn of(range: &TimeRange) -> Self {
        Self {
            from: nanos(range.start),
            to: nanos(range.end),
        }
    }

    fn overlaps(self, other: Self) -> bool {
        self.from < other.to && other.from < self.to
    }

    fn contains(self, other: Self) -> bool {
        self.from <= other.from && other.to <= self.to
    }
}

const MINUTE: i64 = 60_000_000_000;

/// A staff member with the busy time on their calendar, sorted by start.
#[derive(Debug, Clone, Default)]
pub struct StaffCalendar {
    /// The staff member (profile, skills, schedule, overrides, blocks).
    pub staff: Staff,
    /// Holds and reservations, by occupied start.
    busy: Vec<Busy>,
    /// Their occupied time and when each stops blocking (`i64::MAX`: a reservation).
    spans: Vec<(Span, i64)>,
    /// The longest occupied time among them.
    longest: i64,
}

impl StaffCalendar {
    /// The calendar of `staff` with `busy` time in any order.
    pub fn new(staff: Staff, mut busy: Vec<Busy>) -> Self {
        busy.sort_by_key(|b| b.occupied.start);
        let spans: Vec<(Span, i64)> = busy
            .iter()
            .map(|b| (Span::of(&b.occupied), b.held_until.map_or(i64::MAX, nanos)))
            .collect();
        let longest = spans
            .iter()
            .map(|(s, _)| s.to.saturating_sub(s.from))
            .max()
            .unwrap_or_default();
        Self {
            staff,
            busy,
            spans,
            longest,
        }
    }

    /// The holds and reservations, by occupied start.
    pub fn busy(&self) -> &[Busy] {
        &self.busy
    }

    /// Whether `occupied` is clear of blocks and of live busy time at `now`.
    pub fn is_free(&self, occupied: &TimeRange, now: DateTime<Utc>) -> bool {
        self.is_free_at(Span::of(occupied), nanos(now), &self.block_spans())
    }

    fn block_spans(&self) -> Vec<Span> {
        self.staff
            .blocks
            .values()
            .map(|b| Span::of(&b.range))
            .collect()
    }

    fn is_free_at(&self, occupied: Span, now: i64, blocks: &[Span]) -> bool {
        if blocks.iter().any(|b| b.overlaps(occupied)) {
            return false;
        }
        // Sorted by start: only entries starting before `occupied` ends, and no earlier than
        // the longest entry before its start, can overlap it.
        let upto = self.spans.partition_point(|(s, _)| s.from < occupied.to);
        let earliest = occupied.from.saturating_sub(self.longest);
        !self.spans[..upto]
            .iter()
            .rev()
            .take_while(|(s, _)| s.from >= earliest)
            .any(|(s, until)| *until > now && s.overlaps(occupied))
    }

    /// Whether the staff member could take `service` for `appointment` at `now`: active,
    /// qualified, working then and free (with the service's buffers).
    pub fn can_take(&self, service: &Service, appointment: &TimeRange, now: DateTime<Utc>) -> bool {
        self.staff.active
            && self.staff.skills.contains_key(&service.id)
            && appointment.start > now
            && self.staff.works_during(appointment)
            && self.is_free(
                &appointment.widened(service.buffer_before_minutes, service.buffer_after_minutes),
                now,
            )
    }

    /// Reserved or live held minutes of appointments inside `within`.
    fn booked_minutes(&self, within: &TimeRange, now: DateTime<Utc>) -> i64 {
        self.busy
            .iter()
            .filter(|b| b.blocks_at(now))
            .filter_map(|b| clip(&b.appointment, within))
            .map(|r| r.minutes())
            .sum()
    }
}

/// What to search: a service at a branch, over local dates of the branch, at `now`.
#[derive(Debug, Clone)]
pub struct SlotSearch<'a> {
    /// The branch.
    pub branch: &'a Branch,
    /// The service.
    pub service: &'a Service,
    /// The tenant's rules, with the server's cap on advance days applied.
    pub rules: BookingRules,
    /// Local dates in the branch's zone, both ends included.
    pub dates: RangeInclusive<NaiveDate>,
    /// The moment the answer is for.
    pub now: DateTime<Utc>,
}

impl SlotSearch<'_> {
    /// Whether the branch takes bookings of the service at all.
    pub fn is_offered(&self) -> bool {
        self.branch.active
            && !self.service.retired
            && self.service.branch_ids.contains(&self.branch.id)
    }

    /// The staff member's id if they could serve this search at all: the service offered
    /// at the branch, and they active there and qualified.
    fn serves(&self, staff: &Staff) -> Option<StaffId> {
        (self.is_offered()
            && staff.active
            && staff.branch_id == Some(self.branch.id)
            && staff.skills.contains_key(&self.service.id))
        .then_some(staff.id)
        .flatten()
    }

    /// Every bookable slot with this staff member, in start order.
    pub fn slots(&self, calendar: &StaffCalendar) -> Vec<Slot> {
        let staff = &calendar.staff;
        let Some(staff_id) = self.serves(staff) else {
            return vec![];
        };
        let tz = staff.time_zone.unwrap_or(self.branch.time_zone);
        let step_minutes = i64::from(self.rules.slot_interval_minutes.max(5));
        let step = step_minutes * MINUTE;
        let length = i64::from(self.service.duration_minutes) * MINUTE;
        let (before, after) = (
            i64::from(self.service.buffer_before_minutes) * MINUTE,
            i64::from(self.service.buffer_after_minutes) * MINUTE,
        );
        let now = nanos(self.now);
        let earliest = now + i64::from(self.rules.min_notice_minutes) * MINUTE;
        let latest = nanos(self.now + Duration::days(i64::from(self.rules.max_advance_days)));
        let blocks = calendar.block_spans();
        let mut out = Vec::new();
        for date in dates(&self.dates) {
            let Some(hours) = staff.hours_on(date) else {
                continue;
            };
            let breaks: Vec<Span> = hours.breaks_on(date, tz).iter().map(Span::of).collect();
            let opening = Opening::of(self.branch, date);
            for range in hours.working_on(date, tz) {
                let end = nanos(range.end);
                let mut start = nanos(aligned(range.start, tz, Duration::minutes(step_minutes)));
                while start + length <= end && start <= latest {
                    let appointment = Span {
                        from: start,
                        to: start + length,
                    };
                    if start >= earliest
                        && start > now
                        && !breaks.iter().any(|b| b.overlaps(appointment))
                        && opening.admits(self.branch, appointment)
                        && calendar.is_free_at(
                            Span {
                                from: start - before,
                                to: appointment.to + after,
                            },
                            now,
                            &blocks,
                        )
                    {
                        out.push(Slot {
                            start: DateTime::from_timestamp_nanos(start),
                            end: DateTime::from_timestamp_nanos(appointment.to),
                            staff_id,
                            branch_id: self.branch.id,
                        });
                    }
                    start += step;
                }
            }
        }
        out
    }
}

/// A staff member's day: working time, breaks, and what is still free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct DayPlan {
    /// The local date.
    pub date: NaiveDate,
    /// Working ranges.
    pub working: Vec<TimeRange>,
    /// Breaks.
    pub breaks: Vec<TimeRange>,
    /// Working time not taken by breaks, blocks, holds or reservations, nor already past.
    pub free: Vec<TimeRange>,
    /// Working minutes less breaks.
    pub working_minutes: i64,
    /// Held and reserved appointments starting within the working time.
    pub appointments: usize,
    /// Minutes of appointments within the working time.
    pub booked_minutes: i64,
    /// Minutes of `free`.
    pub free_minutes: i64,
}

/// A staff member's working and free time on each local date (in their zone).
pub fn day_plans(
    calendar: &StaffCalendar,
    dates_wanted: &RangeInclusive<NaiveDate>,
    now: DateTime<Utc>,
) -> Vec<DayPlan> {
    let staff = &calendar.staff;
    let tz = staff.time_zone.unwrap_or(chrono_tz::UTC);
    dates(dates_wanted)
        .map(|date| {
            let (working, breaks) = staff.hours_on(date).map_or_else(
                || (vec![], vec![]),
                |h| (h.working_on(date, tz), h.breaks_on(date, tz)),
            );
            let mut taken: Vec<TimeRange> = breaks.clone();
            taken.extend(staff.blocks.values().map(|b| b.range));
            taken.extend(
                calendar
                    .busy()
                    .iter()
                    .filter(|b| b.blocks_at(now))
                    .map(|b| b.occupied),
            );
            let past = TimeRange {
                start: DateTime::<Utc>::MIN_UTC,
                end: now,
            };
            taken.push(past);
            let free: Vec<TimeRange> = working.iter().flat_map(|w| subtract(*w, &taken)).collect();
            let working_minutes = working.iter().map(TimeRange::minutes).sum::<i64>()
                - breaks.iter().map(TimeRange::minutes).sum::<i64>();
            let booked_minutes = working
                .iter()
                .map(|w| calendar.booked_minutes(w, now))
                .sum();
            let free_minutes = free.iter().map(TimeRange::minutes).sum();
            let appointments = calendar
                .busy
                .iter()
                .filter(|b| {
                    b.blocks_at(now)
                        && working
                            .iter()
                            .any(|w| w.start <= b.appointment.start && b.appointment.start < w.end)
                })
                .count();
            DayPlan {
                date,
                appointments,
                working,
                breaks,
                free,
                working_minutes,
                booked_minutes,
                free_minutes,
            }
        })
        .collect()
}

/// The branch's opening ranges on one local date, converted once.
struct Opening {
    /// The date's instants in the branch's zone.
    bounds: Option<Span>,
    ranges: Vec<Span>,
    breaks: Vec<Span>,
}

impl Opening {
    fn of(branch: &Branch, date: NaiveDate) -> Self {
        let (ranges, breaks) = branch.business_hours.day(date).map_or_else(
            || (vec![], vec![]),
            |h| {
                (
                    h.working_on(date, branch.time_zone),
                    h.breaks_on(date, branch.time_zone),
                )
            },
        );
        let whole_day = ClockTime::new(0, 0)
            .zip(ClockTime::new(24, 0))
            .map(|(start, end)| ClockRange { start, end });
        Self {
            bounds: whole_day
                .and_then(|day| local_range_to_utc(date, day, branch.time_zone))
                .map(|r| Span::of(&r)),
            ranges: ranges.iter().map(Span::of).collect(),
            breaks: breaks.iter().map(Span::of).collect(),
        }
    }

    /// As `WeeklyHours::admits` on the appointment's local date in the branch's zone.
    fn admits(&self, branch: &Branch, appointment: Span) -> bool {
        let on_this_date = self
            .bounds
            .is_some_and(|b| b.from <= appointment.from && appointment.from < b.to);
        if !on_this_date {
            let range = TimeRange {
                start: DateTime::from_timestamp_nanos(appointment.from),
                end: DateTime::from_timestamp_nanos(appointment.to),
            };
            let date = range.start.with_timezone(&branch.time_zone).date_naive();
            return branch.business_hours.admits(date, branch.time_zone, &range);
        }
        self.ranges.iter().any(|r| r.contains(appointment))
            && !self.breaks.iter().any(|b| b.overlaps(appointment))
    }
}

/// Local dates from the range, in order.
fn dates(range: &RangeInclusive<NaiveDate>) -> impl Iterator<Item = NaiveDate> + use<> {
    let end = *range.end();
    range.start().iter_days().take_while(move |d| *d <= end)
}

/// The first instant at or after `t` whose local wall time is on the `step` grid.
fn aligned(t: DateTime<Utc>, tz: Tz, step: Duration) -> DateTime<Utc> {
    let local = t.with_timezone(&tz);
    let minutes = i64::from(local.hour() * 60 + local.minute());
    let step_minutes = step.num_minutes().max(1);
    let late = minutes % step_minutes;
    let base = t
        - Duration::seconds(i64::from(local.second()))
        - Duration::nanoseconds(i64::from(local.nanosecond()));
    if late == 0 && base == t {
        t
    } else {
        base + Duration::minutes(step_minutes - late)
    }
}

/// `range` minus every range in `taken`.
fn subtract(range: TimeRange, taken: &[TimeRange]) -> Vec<TimeRange> {
    let mut pieces = vec![range];
    for t in taken {
        pieces = pieces
            .into_iter()
            .flat_map(|p| {
                if !p.overlaps(t) {
                    return vec![p];
                }
                let mut rest = Vec::with_capacity(2);
                if p.start < t.start {
                    rest.push(TimeRange {
                        start: p.start,
                        end: t.start,
                    });
                }
                if t.end < p.end {
                    rest.push(TimeRange {
                        start: t.end,
                        end: p.end,
                    });
                }
                rest
            })
            .collect();
    }
    pieces
}

/// The part of `range` inside `within`.
fn clip(range: &TimeRange, within: &TimeRange) -> Option<TimeRange> {
    TimeRange::new(range.start.max(within.start), range.end.min(within.end)).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;
    use chrono_tz::Europe::Berlin;

    use super::*;
    use crate::booking::{check_placement, check_timing};
    use crate::staff::{SkillLevel, TimeBlock};
    use crate::tenant::Tenant;
    use crate::values::{
        BlockId, ClockRange, ClockTime, DayHours, Money, ServiceId, TenantId, Weekday, WeeklyHours,
    };
    use crate::{StaffCommand, StaffError};

    fn clock(s: &str) -> ClockTime {
        ClockTime::parse(s).unwrap()
    }

    fn day(open: &str, close: &str, breaks: &[(&str, &str)]) -> DayHours {
        DayHours {
            ranges: vec![ClockRange {
                start: clock(open),
                end: clock(close),
            }],
            breaks: breaks
                .iter()
                .map(|(a, b)| ClockRange {
                    start: clock(a),
                    end: clock(b),
                })
                .collect(),
        }
    }

    fn every_day(hours: &DayHours) -> WeeklyHours {
        use Weekday::*;
        WeeklyHours(
            [
                Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday,
            ]
            .into_iter()
            .map(|d| (d, hours.clone()))
            .collect(),
        )
    }

    struct World {
        tenant: Tenant,
        branch_id: BranchId,
        service_id: ServiceId,
        calendar: StaffCalendar,
        rules: BookingRules,
    }

    /// A branch open 00:00–24:00 every day, a staff member working 09:00–17:00 with a
    /// 12:00–13:00 break, a 45-minute service with 10 minutes of buffer either side.
    fn world() -> World {
        let branch_id = BranchId::new();
        let service_id = ServiceId::new();
        let mut tenant = Tenant {
            id: Some(TenantId::new()),
            ..Tenant::default()
        };
        tenant.branches.insert(
            branch_id,
            Branch {
                id: branch_id,
                name: "Mitte".into(),
                address: "Torstr. 1".into(),
                city: "Berlin".into(),
                coordinates: None,
                time_zone: Berlin,
                business_hours: every_day(&day("08:00", "20:00", &[])),
                phone_numbers: vec![],
                active: true,
            },
        );
        tenant.services.insert(
            service_id,
            Service {
                id: service_id,
                name: "Cut".into(),
                duration_minutes: 45,
                price: Money::new(4500, crate::values::Currency::EUR).unwrap(),
                buffer_before_minutes: 10,
                buffer_after_minutes: 10,
                branch_ids: vec![branch_id],
                deposit: None,
                retired: false,
            },
        );
        let staff = Staff {
            id: Some(StaffId::new()),
            tenant_id: tenant.id,
            branch_id: Some(branch_id),
            time_zone: Some(Berlin),
            name: "Ada".into(),
            active: true,
            skills: BTreeMap::from([(service_id, SkillLevel::new(4).unwrap())]),
            schedule: every_day(&day("09:00", "17:00", &[("12:00", "13:00")])),
            ..Staff::default()
        };
        World {
            tenant,
            branch_id,
            service_id,
            calendar: StaffCalendar::new(staff, vec![]),
            rules: BookingRules {
                min_notice_minutes: 60,
                max_advance_days: 60,
                slot_interval_minutes: 15,
                cancellation_cutoff_hours: 24,
            },
        }
    }

    impl World {
        fn search(&self, date: NaiveDate, now: DateTime<Utc>) -> SlotSearch<'_> {
            SlotSearch {
                branch: &self.tenant.branches[&self.branch_id],
                service: &self.tenant.services[&self.service_id],
                rules: self.rules,
                dates: date..=date,
                now,
            }
        }

        fn slots(&self, date: NaiveDate, now: DateTime<Utc>) -> Vec<Slot> {
            self.search(date, now).slots(&self.calendar)
        }

        /// Whether CreateBooking's checks accept the appointment, with a hold decided on
        /// the staff calendar the way the command does it.
        fn booking_accepts(&self, appointment: &TimeRange, now: DateTime<Utc>) -> bool {
            let service = &self.tenant.services[&self.service_id];
            let mut staff = self.calendar.staff.clone();
            staff.calendar = self
                .calendar
                .busy
                .iter()
                .map(|b| crate::staff::CalendarEntry {
                    booking_id: b.booking_id,
                    service_id: self.service_id,
                    appointment: b.appointment,
                    occupied: b.occupied,
                    state: b
                        .held_until
                        .map_or(crate::staff::EntryState::Reserved, |e| {
                            crate::staff::EntryState::Held { expires_at: e }
                        }),
                })
                .collect();
            let hold = StaffCommand::HoldSlot {
                booking_id: crate::values::BookingId::new(),
                service_id: self.service_id,
                appointment: *appointment,
                buffer_before_minutes: service.buffer_before_minutes,
                buffer_after_minutes: service.buffer_after_minutes,
                expires_at: now + Duration::minutes(5),
                now,
            };
            check_timing(appointment, &self.rules, now).is_ok()
                && check_placement(&self.tenant, self.branch_id, self.service_id, appointment)
                    .is_ok()
                && staff.decide(hold).is_ok_and(|events| !events.is_empty())
        }

        /// Every 5-minute start on `date`: offered exactly when a booking would be accepted.
        fn assert_slots_match_booking_rules(&self, date: NaiveDate, now: DateTime<Utc>) {
            let offered = self.slots(date, now);
            let local_midnight = Berlin
                .from_local_datetime(&date.and_hms_opt(0, 0, 0).unwrap())
                .earliest()
                .unwrap()
                .with_timezone(&Utc);
            let mut t = local_midnight;
            while t < local_midnight + Duration::hours(25) {
                let appointment = TimeRange::starting_at(t, 45).unwrap();
                let on_grid = t.with_timezone(&Berlin).minute().is_multiple_of(15);
                let in_date = t.with_timezone(&Berlin).date_naive() == date;
                let is_offered = offered.iter().any(|s| s.start == t);
                if on_grid && in_date {
                    assert_eq!(
                        is_offered,
                        self.booking_accepts(&appointment, now),
                        "start {t} (local {})",
                        t.with_timezone(&Berlin)
                    );
                } else {
                    assert!(!is_offered, "off-grid start {t} offered");
                }
                t += Duration::minutes(5);
            }
        }
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn berlin(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Berlin
            .with_ymd_and_hms(y, m, d, h, min, 0)
            .earliest()
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn slots_are_written_as_chrono_writes_instants() {
        let staff_id = StaffId::new();
        let branch_id = BranchId::new();
        for (start, end) in [
            (berlin(2030, 1, 8, 9, 0), berlin(2030, 1, 8, 9, 45)),
            (
                berlin(2030, 1, 8, 9, 0) + Duration::milliseconds(1500),
                berlin(2030, 12, 31, 23, 59),
            ),
        ] {
            let slot = Slot {
                start,
                end,
                staff_id,
                branch_id,
            };
            let written = serde_json::to_value(slot).unwrap();
            assert_eq!(written["start"], serde_json::to_value(start).unwrap());
            assert_eq!(written["end"], serde_json::to_value(end).unwrap());
        }
        // Every few days from 1970 to 2200, at an odd second of the day.
        for days in (0..84_000).step_by(7) {
            let t = DateTime::from_timestamp(days * 86_400 + 45_296, 0).unwrap();
            let (y, m, d) = civil_from_days(days);
            assert_eq!(
                format!("{y:04}-{m:02}-{d:02}"),
                t.format("%Y-%m-%d").to_string()
            );
        }
    }

    #[test]
    fn slots_start_on_the_grid_within_hours_and_clear_of_the_break() {
        let w = world();
        let slots = w.slots(date(2030, 1, 8), berlin(2030, 1, 1, 9, 0));
        let starts: Vec<String> = slots
            .iter()
            .map(|s| s.start.with_timezone(&Berlin).format("%H:%M").to_string())
            .collect();
        assert_eq!(starts.first().map(String::as_str), Some("09:00"));
        // 45 minutes must end by the 12:00 break and by 17:00.
        assert!(starts.contains(&"11:15".to_owned()));
        assert!(!starts.contains(&"11:30".to_owned()));
        assert!(!starts.contains(&"12:30".to_owned()));
        assert!(starts.contains(&"13:00".to_owned()));
        assert_eq!(starts.last().map(String::as_str), Some("16:15"));
        assert_eq!(slots.len(), 10 + 14);
    }

    #[test]
    fn a_reservation_takes_its_buffers_out_of_the_day() {
        let mut w = world();
        let appointment = TimeRange::starting_at(berlin(2030, 1, 8, 10, 0), 45).unwrap();
        w.calendar = StaffCalendar::new(
            w.calendar.staff.clone(),
            vec![Busy {
                booking_id: crate::values::BookingId::new(),
                appointment,
                occupied: appointment.widened(10, 10),
                held_until: None,
            }],
        );
        let now = berlin(2030, 1, 1, 9, 0);
        let starts: Vec<DateTime<Utc>> = w
            .slots(date(2030, 1, 8), now)
            .iter()
            .map(|s| s.start)
            .collect();
        // Ours occupies 09:50–10:55; a new one occupies its own 10 minutes either side, so
        // nothing fits before it (09:00 would occupy up to 09:55) and 11:15 is the next start.
        assert!(!starts.contains(&berlin(2030, 1, 8, 9, 0)));
        assert!(!starts.contains(&berlin(2030, 1, 8, 11, 0)));
        assert!(starts.contains(&berlin(2030, 1, 8, 11, 15)));
        w.assert_slots_match_booking_rules(date(2030, 1, 8), now);
    }

    #[test]
    fn a_lapsed_hold_frees_its_slot_and_a_live_one_does_not() {
        let mut w = world();
        let appointment = TimeRange::starting_at(berlin(2030, 1, 8, 10, 0), 45).unwrap();
        let now = berlin(2030, 1, 1, 9, 0);
        for (held_until, free) in [
            (now - Duration::minutes(1), true),
            (now + Duration::minutes(5), false),
        ] {
            w.calendar = StaffCalendar::new(
                w.calendar.staff.clone(),
                vec![Busy {
                    booking_id: crate::values::BookingId::new(),
                    appointment,
                    occupied: appointment.widened(10, 10),
                    held_until: Some(held_until),
                }],
            );
            let slots = w.slots(date(2030, 1, 8), now);
            assert_eq!(slots.iter().any(|s| s.start == appointment.start), free);
            w.assert_slots_match_booking_rules(date(2030, 1, 8), now);
        }
    }

    #[test]
    fn a_block_takes_its_time_out_of_the_day() {
        let mut w = world();
        w.calendar.staff.blocks.insert(
            BlockId::new(),
            TimeBlock {
                range: TimeRange::new(berlin(2030, 1, 8, 14, 0), berlin(2030, 1, 8, 15, 0))
                    .unwrap(),
                reason: "dentist".into(),
            },
        );
        let now = berlin(2030, 1, 1, 9, 0);
        let slots = w.slots(date(2030, 1, 8), now);
        assert!(!slots.iter().any(|s| s.start == berlin(2030, 1, 8, 14, 0)));
        assert!(slots.iter().any(|s| s.start == berlin(2030, 1, 8, 15, 15)));
        w.assert_slots_match_booking_rules(date(2030, 1, 8), now);
    }

    #[test]
    fn minimum_notice_and_max_advance_bound_the_slots() {
        let w = world();
        let now = berlin(2030, 1, 8, 10, 5);
        let starts: Vec<DateTime<Utc>> = w
            .slots(date(2030, 1, 8), now)
            .iter()
            .map(|s| s.start)
            .collect();
        assert_eq!(starts.first(), Some(&berlin(2030, 1, 8, 11, 15)));
        w.assert_slots_match_booking_rules(date(2030, 1, 8), now);
        // Sixty days ahead at 10:05 local: the 09:00 and 09:15 … 10:00 slots are in, later ones out.
        let last_day = date(2030, 3, 9);
        let far: Vec<DateTime<Utc>> = w.slots(last_day, now).iter().map(|s| s.start).collect();
        assert!(far.contains(&berlin(2030, 3, 9, 10, 0)));
        assert!(!far.contains(&berlin(2030, 3, 9, 10, 15)));
        w.assert_slots_match_booking_rules(last_day, now);
        assert!(w.slots(date(2030, 3, 10), now).is_empty());
    }

    #[test]
    fn slots_follow_berlin_wall_time_across_the_spring_change() {
        // 2030-03-31: 02:00 becomes 03:00. A staff member working 01:00–05:00 works three hours.
        let mut w = world();
        let night = day("01:00", "05:00", &[]);
        w.calendar.staff.schedule = every_day(&night);
        w.tenant
            .branches
            .get_mut(&w.branch_id)
            .unwrap()
            .business_hours = every_day(&day("00:00", "24:00", &[]));
        let now = berlin(2030, 3, 20, 9, 0);
        let d = date(2030, 3, 31);
        let slots = w.slots(d, now);
        let local: Vec<String> = slots
            .iter()
            .map(|s| s.start.with_timezone(&Berlin).format("%H:%M").to_string())
            .collect();
        assert_eq!(local.first().map(String::as_str), Some("01:00"));
        assert!(local.contains(&"01:15".to_owned()));
        assert!(local.contains(&"03:00".to_owned()));
        assert!(!local.iter().any(|l| l.starts_with("02:")));
        // 01:00 … 04:15 in three hours of wall time less the missing hour.
        assert_eq!(slots.len(), 10);
        w.assert_slots_match_booking_rules(d, now);
        let plan = &day_plans(&w.calendar, &(d..=d), now)[0];
        assert_eq!(plan.working_minutes, 180);
    }

    #[test]
    fn slots_follow_berlin_wall_time_across_the_autumn_change() {
        // 2030-10-27: 03:00 becomes 02:00 again. 01:00–05:00 is five hours long.
        let mut w = world();
        w.calendar.staff.schedule = every_day(&day("01:00", "05:00", &[]));
        w.tenant
            .branches
            .get_mut(&w.branch_id)
            .unwrap()
            .business_hours = every_day(&day("00:00", "24:00", &[]));
        let now = berlin(2030, 10, 20, 9, 0);
        let d = date(2030, 10, 27);
        let slots = w.slots(d, now);
        let plan = &day_plans(&w.calendar, &(d..=d), now)[0];
        assert_eq!(plan.working_minutes, 300);
        // Five hours of 15-minute steps, the last start 45 minutes before the end; the
        // repeated hour's wall times (02:00–02:45) are offered twice, as two instants.
        assert_eq!(slots.len(), 18);
        let twice = slots
            .iter()
            .filter(|s| s.start.with_timezone(&Berlin).format("%H:%M").to_string() == "02:15")
            .count();
        assert_eq!(twice, 2);
        w.assert_slots_match_booking_rules(d, now);
        // Ordinary days either side keep the same local hours.
        for other in [
            date(2030, 10, 26),
            date(2030, 10, 28),
            date(2030, 3, 30),
            date(2030, 4, 1),
        ] {
            let now = other.and_hms_opt(0, 0, 0).unwrap().and_utc() - Duration::days(3);
            w.assert_slots_match_booking_rules(other, now);
        }
    }

    #[test]
    fn a_business_day_shorter_than_the_shift_bounds_the_slots() {
        let mut w = world();
        w.tenant
            .branches
            .get_mut(&w.branch_id)
            .unwrap()
            .business_hours = every_day(&day("10:00", "16:00", &[("13:00", "13:30")]));
        let now = berlin(2030, 1, 1, 9, 0);
        let starts: Vec<String> = w
            .slots(date(2030, 1, 8), now)
            .iter()
            .map(|s| s.start.with_timezone(&Berlin).format("%H:%M").to_string())
            .collect();
        assert_eq!(starts.first().map(String::as_str), Some("10:00"));
        assert_eq!(starts.last().map(String::as_str), Some("15:15"));
        assert!(!starts.contains(&"13:15".to_owned()));
        w.assert_slots_match_booking_rules(date(2030, 1, 8), now);
    }

    #[test]
    fn an_unqualified_inactive_or_foreign_staff_member_has_no_slots() {
        let now = berlin(2030, 1, 1, 9, 0);
        let d = date(2030, 1, 8);
        let mut w = world();
        w.calendar.staff.skills.clear();
        assert!(w.slots(d, now).is_empty());
        let mut w = world();
        w.calendar.staff.active = false;
        assert!(w.slots(d, now).is_empty());
        let mut w = world();
        w.calendar.staff.branch_id = Some(BranchId::new());
        assert!(w.slots(d, now).is_empty());
        let mut w = world();
        w.tenant.branches.get_mut(&w.branch_id).unwrap().active = false;
        assert!(w.slots(d, now).is_empty());
    }

    #[test]
    fn a_schedule_override_replaces_the_weekday() {
        let mut w = world();
        let d = date(2030, 1, 8);
        w.calendar
            .staff
            .overrides
            .insert(d, day("14:00", "16:00", &[]));
        let now = berlin(2030, 1, 1, 9, 0);
        let slots = w.slots(d, now);
        assert_eq!(slots.len(), 6);
        w.assert_slots_match_booking_rules(d, now);
        assert!(matches!(
            w.calendar.staff.decide(StaffCommand::HoldSlot {
                booking_id: crate::values::BookingId::new(),
                service_id: w.service_id,
                appointment: TimeRange::starting_at(berlin(2030, 1, 8, 9, 0), 45).unwrap(),
                buffer_before_minutes: 0,
                buffer_after_minutes: 0,
                expires_at: now,
                now,
            }),
            Err(StaffError::OutsideSchedule)
        ));
    }

    #[test]
    fn a_day_plan_counts_working_booked_and_free_minutes() {
        let mut w = world();
        let appointment = TimeRange::starting_at(berlin(2030, 1, 8, 10, 0), 45).unwrap();
        w.calendar = StaffCalendar::new(
            w.calendar.staff.clone(),
            vec![Busy {
                booking_id: crate::values::BookingId::new(),
                appointment,
                occupied: appointment.widened(10, 10),
                held_until: None,
            }],
        );
        let d = date(2030, 1, 8);
        let plan = &day_plans(&w.calendar, &(d..=d), berlin(2030, 1, 1, 9, 0))[0];
        assert_eq!(plan.working_minutes, 7 * 60);
        assert_eq!(plan.booked_minutes, 45);
        assert_eq!(plan.appointments, 1);
        assert_eq!(plan.free_minutes, 7 * 60 - 65);
        assert_eq!(plan.free.len(), 3);
    }
}
