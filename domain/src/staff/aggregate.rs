use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::calendar::{CalendarEntry, EntryState};
use super::{StaffCommand, StaffError, StaffEvent};
use crate::values::{
    BlockId, BookingId, BranchId, DayHours, PhoneNumber, ServiceId, StaffId, TenantId, TimeRange,
    WeeklyHours, bounded_text, is_email,
};

/// How skilled a staff member is at a service, 1 (trainee) to 5 (expert).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(try_from = "u8", into = "u8")]
pub struct SkillLevel(u8);

impl SkillLevel {
    /// 1 to 5.
    pub fn new(level: u8) -> Option<Self> {
        (1..=5).contains(&level).then_some(Self(level))
    }
}

impl TryFrom<u8> for SkillLevel {
    type Error = String;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Self::new(value).ok_or_else(|| format!("skill level must be 1 to 5, got {value}"))
    }
}

impl From<SkillLevel> for u8 {
    fn from(value: SkillLevel) -> Self {
        value.0
    }
}

/// Time the staff member is away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TimeBlock {
    /// When.
    pub range: TimeRange,
    /// Why.
    pub reason: String,
}

/// A slot asked for on the calendar: for which booking and service, and what it occupies.
#[derive(Debug, Clone, Copy)]
struct Slot {
    booking_id: BookingId,
    service_id: ServiceId,
    appointment: TimeRange,
    occupied: TimeRange,
}

/// A staff member and their calendar. The calendar is the consistency boundary of "no double
/// booking": every hold is decided against the entries this state holds, and two concurrent
/// decisions on one stream cannot both be appended (optimistic concurrency on the sequence).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Staff {
    /// Set by StaffHired.
    pub id: Option<StaffId>,
    /// Tenant.
    pub tenant_id: Option<TenantId>,
    /// Branch.
    pub branch_id: Option<BranchId>,
    /// The branch's zone.
    pub time_zone: Option<Tz>,
    /// Name.
    pub name: String,
    /// E-mail.
    pub email: Option<String>,
    /// Phone.
    pub phone: Option<PhoneNumber>,
    /// On the rota.
    pub active: bool,
    /// Services and skill.
    pub skills: BTreeMap<ServiceId, SkillLevel>,
    /// Weekly hours.
    pub schedule: WeeklyHours,
    /// Dates with their own hours.
    pub overrides: BTreeMap<NaiveDate, DayHours>,
    /// Vacations and other absences.
    pub blocks: BTreeMap<BlockId, TimeBlock>,
    /// Holds and reservations, recent and upcoming.
    pub calendar: Vec<CalendarEntry>,
}

fn text(field: &'static str, value: &str) -> Result<String, StaffError> {
    bounded_text(value, 200).ok_or(StaffError::InvalidText { field })
}

fn email(value: Option<String>) -> Result<Option<String>, StaffError> {
    match value {
        Some(e) if !is_email(&e) => Err(StaffError::InvalidEmail(e)),
        other => Ok(other),
    }
}

impl Staff {
    /// Decides a command against the current state. Pure: no I/O, no clock.
    #[expect(clippy::too_many_lines, reason = "one short arm per command")]
    pub fn decide(&self, command: StaffCommand) -> Result<Vec<StaffEvent>, StaffError> {
        if let StaffCommand::HireStaff { .. } = command {
            return self.hire(command);
        }
        if self.id.is_none() {
            return Err(StaffError::NotHired);
        }
        match command {
            StaffCommand::HireStaff { .. } => Err(StaffError::AlreadyHired),
            StaffCommand::UpdateStaffProfile {
                name,
                email: mail,
                phone,
            } => Ok(vec![StaffEvent::StaffProfileUpdated {
                name: match name {
                    Some(n) => text("name", &n)?,
                    None => self.name.clone(),
                },
                email: match mail {
                    Some(e) => email(Some(e))?,
                    None => self.email.clone(),
                },
                phone: phone.or_else(|| self.phone.clone()),
            }]),
            StaffCommand::UpdateStaffSchedule { schedule } => {
                schedule.validate().map_err(StaffError::InvalidSchedule)?;
                Ok(vec![StaffEvent::StaffScheduleUpdated { schedule }])
            }
            StaffCommand::SetScheduleOverride { date, hours } => {
                if let Some(h) = &hours {
                    h.validate().map_err(StaffError::InvalidSchedule)?;
                }
                Ok(vec![StaffEvent::ScheduleOverrideSet { date, hours }])
            }
            StaffCommand::AssignStaffToService { service_id, level } => {
                if self.skills.get(&service_id) == Some(&level) {
                    return Ok(vec![]);
                }
                Ok(vec![StaffEvent::StaffAssignedToService {
                    service_id,
                    level,
                }])
            }
            StaffCommand::UnassignStaffFromService { service_id } => {
                if !self.skills.contains_key(&service_id) {
                    return Err(StaffError::NotQualified(service_id));
                }
                Ok(vec![StaffEvent::StaffUnassignedFromService { service_id }])
            }
            StaffCommand::BlockStaffTime {
                block_id,
                range,
                reason,
                now,
            } => self.block(block_id, range, &reason, now),
            StaffCommand::UnblockStaffTime { block_id } => {
                if !self.blocks.contains_key(&block_id) {
                    return Err(StaffError::BlockNotFound(block_id));
                }
                Ok(vec![StaffEvent::StaffTimeUnblocked { block_id }])
            }
            StaffCommand::DeactivateStaff { now } => {
                if !self.active {
                    return Err(StaffError::Inactive);
                }
                let upcoming = self
                    .calendar
                    .iter()
                    .filter(|e| e.blocks_at(now) && e.appointment.end > now)
                    .count();
                if upcoming > 0 {
                    return Err(StaffError::HasUpcomingBookings(upcoming));
                }
                Ok(vec![StaffEvent::StaffDeactivated])
            }
            StaffCommand::HoldSlot {
                booking_id,
                service_id,
                appointment,
                buffer_before_minutes,
                buffer_after_minutes,
                expires_at,
                now,
            } => {
                let occupied = appointment.widened(buffer_before_minutes, buffer_after_minutes);
                let slot = Slot {
                    booking_id,
                    service_id,
                    appointment,
                    occupied,
                };
                self.take(&slot, Some(expires_at), now)
            }
            StaffCommand::ReserveSlot {
                booking_id,
                service_id,
                appointment,
                buffer_before_minutes,
                buffer_after_minutes,
                now,
            } => {
                let occupied = appointment.widened(buffer_before_minutes, buffer_after_minutes);
                let slot = Slot {
                    booking_id,
                    service_id,
                    appointment,
                    occupied,
                };
                self.take(&slot, None, now)
            }
            StaffCommand::ConfirmReservation {
                booking_id,
                start,
                now,
            } => self.confirm(booking_id, start, now),
            StaffCommand::ReleaseSlot { booking_id } => Ok(self
                .entries_of(booking_id)
                .map(|e| StaffEvent::SlotReleased {
                    booking_id,
                    appointment: e.appointment,
                })
                .collect()),
        }
    }

    fn hire(&self, command: StaffCommand) -> Result<Vec<StaffEvent>, StaffError> {
        let StaffCommand::HireStaff {
            staff_id,
            tenant_id,
            branch_id,
            time_zone,
            name,
            email: mail,
            phone,
            schedule,
            staff_in_branch,
            limit,
        } = command
        else {
            return Ok(vec![]);
        };
        if self.id.is_some() {
            return Err(StaffError::AlreadyHired);
        }
        if let Some(limit) = limit.filter(|l| staff_in_branch >= *l) {
            return Err(StaffError::StaffLimitReached { limit });
        }
        schedule.validate().map_err(StaffError::InvalidSchedule)?;
        Ok(vec![StaffEvent::StaffHired {
            staff_id,
            tenant_id,
            branch_id,
            time_zone,
            name: text("name", &name)?,
            email: email(mail)?,
            phone,
            schedule,
        }])
    }

    fn block(
        &self,
        block_id: BlockId,
        range: TimeRange,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<StaffEvent>, StaffError> {
        if self.blocks.contains_key(&block_id) {
            return Err(StaffError::BlockExists(block_id));
        }
        let overlapping: Vec<BookingId> = self
            .calendar
            .iter()
            .filter(|e| e.blocks_at(now) && e.occupied.overlaps(&range))
            .map(|e| e.booking_id)
            .collect();
        if !overlapping.is_empty() {
            return Err(StaffError::BlockOverlapsBookings(overlapping));
        }
        Ok(vec![StaffEvent::StaffTimeBlocked {
            block_id,
            range,
            reason: text("reason", reason)?,
        }])
    }

    /// The hours of a local date: its override if it has one, else the weekly schedule.
    pub fn hours_on(&self, date: NaiveDate) -> Option<&DayHours> {
        self.overrides
            .get(&date)
            .or_else(|| self.schedule.day(date))
    }

    /// Whether the appointment fits the working hours of its local day, clear of breaks.
    pub fn works_during(&self, appointment: &TimeRange) -> bool {
        let tz = self.time_zone.unwrap_or(chrono_tz::UTC);
        let date = appointment.start.with_timezone(&tz).date_naive();
        self.hours_on(date)
            .is_some_and(|h| h.admits(date, tz, appointment))
    }

    /// Whether `occupied` is clear of blocks and of other bookings' live entries at `now`.
    pub fn is_free(&self, occupied: &TimeRange, except: BookingId, now: DateTime<Utc>) -> bool {
        !self.blocks.values().any(|b| b.range.overlaps(occupied))
            && !self.calendar.iter().any(|e| {
                e.booking_id != except && e.blocks_at(now) && e.occupied.overlaps(occupied)
            })
    }

    /// Adds a calendar entry taken at `at`, first dropping what is long past by then.
    fn enter(&mut self, entry: CalendarEntry, at: DateTime<Utc>) {
        // Pruning is keyed on the event's own time, so a state loaded from a snapshot and one
        // folded from every event stay identical.
        self.calendar.retain(|e| !e.is_stale(at));
        self.blocks
            .retain(|_, b| b.range.end >= at - super::calendar::RETENTION);
        self.calendar.push(entry);
    }

    fn entries_of(&self, booking_id: BookingId) -> impl Iterator<Item = &CalendarEntry> {
        self.calendar
            .iter()
            .filter(move |e| e.booking_id == booking_id)
    }

    /// Holds a slot until `expires_at`, or, without an expiry, reserves it. Taking again what
    /// the booking already has live is no change (a reservation of its live hold confirms
    /// the hold).
    fn take(
        &self,
        slot: &Slot,
        expires_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Vec<StaffEvent>, StaffError> {
        let Slot {
            booking_id,
            service_id,
            appointment,
            occupied,
        } = *slot;
        if !self.active {
            return Err(StaffError::Inactive);
        }
        if !self.skills.contains_key(&service_id) {
            return Err(StaffError::NotQualified(service_id));
        }
        if appointment.start <= now {
            return Err(StaffError::InThePast);
        }
        if !self.works_during(&appointment) {
            return Err(StaffError::OutsideSchedule);
        }
        if self
            .entries_of(booking_id)
            .any(|e| e.appointment == appointment && e.blocks_at(now))
        {
            return match expires_at {
                Some(_) => Ok(vec![]),
                None => self.confirm(booking_id, appointment.start, now),
            };
        }
        if !self.is_free(&occupied, booking_id, now) {
            return Err(StaffError::SlotUnavailable);
        }
        let Some(expires_at) = expires_at else {
            // A reservation is the booking's one entry, as a confirmed hold would be.
            let mut events: Vec<StaffEvent> = self
                .entries_of(booking_id)
                .map(|e| StaffEvent::SlotReleased {
                    booking_id,
                    appointment: e.appointment,
                })
                .collect();
            events.push(StaffEvent::SlotReserved {
                booking_id,
                service_id,
                appointment,
                occupied,
                reserved_at: now,
            });
            return Ok(events);
        };
        Ok(vec![StaffEvent::SlotHeld {
            booking_id,
            service_id,
            appointment,
            occupied,
            expires_at,
            held_at: now,
        }])
    }

    fn confirm(
        &self,
        booking_id: BookingId,
        start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<StaffEvent>, StaffError> {
        let target = self
            .entries_of(booking_id)
            .find(|e| e.appointment.start == start)
            .ok_or(StaffError::HoldNotFound(booking_id))?;
        if !target.blocks_at(now) {
            return Err(StaffError::HoldExpired(booking_id));
        }
        let mut events: Vec<StaffEvent> = self
            .entries_of(booking_id)
            .filter(|e| e.appointment.start != start)
            .map(|e| StaffEvent::SlotReleased {
                booking_id,
                appointment: e.appointment,
            })
            .collect();
        if target.state != EntryState::Reserved {
            events.push(StaffEvent::ReservationConfirmed {
                booking_id,
                appointment: target.appointment,
            });
        }
        Ok(events)
    }
}

impl Aggregate for Staff {
    const TYPE: &'static str = "Staff";
    type Command = StaffCommand;
    type Event = StaffEvent;
    type Error = StaffError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for event in self.decide(command)? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    #[expect(clippy::too_many_lines, reason = "one assignment arm per event")]
    fn apply(&mut self, event: Self::Event) {
        match event {
            StaffEvent::StaffHired {
                staff_id,
                tenant_id,
                branch_id,
                time_zone,
                name,
                email,
                phone,
                schedule,
            } => {
                self.id = Some(staff_id);
                self.tenant_id = Some(tenant_id);
                self.branch_id = Some(branch_id);
                self.time_zone = Some(time_zone);
                self.name = name;
                self.email = email;
                self.phone = phone;
                self.schedule = schedule;
                self.active = true;
            }
            StaffEvent::StaffProfileUpdated { name, email, phone } => {
                self.name = name;
                self.email = email;
                self.phone = phone;
            }
            StaffEvent::StaffScheduleUpdated { schedule } => self.schedule = schedule,
            StaffEvent::ScheduleOverrideSet { date, hours } => match hours {
                Some(h) => {
                    self.overrides.insert(date, h);
                }
                None => {
                    self.overrides.remove(&date);
                }
            },
            StaffEvent::StaffAssignedToService { service_id, level } => {
                self.skills.insert(service_id, level);
            }
            StaffEvent::StaffUnassignedFromService { service_id } => {
                self.skills.remove(&service_id);
            }
            StaffEvent::StaffTimeBlocked {
                block_id,
                range,
                reason,
            } => {
                self.blocks.insert(block_id, TimeBlock { range, reason });
            }
            StaffEvent::StaffTimeUnblocked { block_id } => {
                self.blocks.remove(&block_id);
            }
            StaffEvent::StaffDeactivated => self.active = false,
            StaffEvent::SlotHeld {
                booking_id,
                service_id,
                appointment,
                occupied,
                expires_at,
                held_at,
            } => self.enter(
                CalendarEntry {
                    booking_id,
                    service_id,
                    appointment,
                    occupied,
                    state: EntryState::Held { expires_at },
                },
                held_at,
            ),
            StaffEvent::SlotReserved {
                booking_id,
                service_id,
                appointment,
                occupied,
                reserved_at,
            } => self.enter(
                CalendarEntry {
                    booking_id,
                    service_id,
                    appointment,
                    occupied,
                    state: EntryState::Reserved,
                },
                reserved_at,
            ),
            StaffEvent::ReservationConfirmed {
                booking_id,
                appointment,
            } => {
                if let Some(e) = self
                    .calendar
                    .iter_mut()
                    .find(|e| e.booking_id == booking_id && e.appointment == appointment)
                {
                    e.state = EntryState::Reserved;
                }
            }
            StaffEvent::SlotReleased {
                booking_id,
                appointment,
            } => {
                self.calendar
                    .retain(|e| !(e.booking_id == booking_id && e.appointment == appointment));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::{ClockRange, ClockTime, Weekday};
    use chrono::{Duration, TimeZone};
    use cqrs_es::test::TestFramework;

    type Spec = TestFramework<Staff>;

    fn staff_id() -> StaffId {
        StaffId(uuid::Uuid::from_u128(10))
    }

    fn service() -> ServiceId {
        ServiceId(uuid::Uuid::from_u128(20))
    }

    fn booking(n: u128) -> BookingId {
        BookingId(uuid::Uuid::from_u128(1000 + n))
    }

    /// Monday 2030-01-07, Berlin (UTC+1).
    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 7, h, m, 0).unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 6, 12, 0, 0).unwrap()
    }

    fn range(a: DateTime<Utc>, b: DateTime<Utc>) -> TimeRange {
        TimeRange::new(a, b).unwrap()
    }

    fn clock(h: u16) -> ClockTime {
        ClockTime::new(h, 0).unwrap()
    }

    fn schedule() -> WeeklyHours {
        let day = DayHours {
            ranges: vec![ClockRange {
                start: clock(9),
                end: clock(18),
            }],
            breaks: vec![ClockRange {
                start: clock(13),
                end: clock(14),
            }],
        };
        WeeklyHours([(Weekday::Monday, day)].into_iter().collect())
    }

    fn hired() -> Vec<StaffEvent> {
        vec![
            StaffEvent::StaffHired {
                staff_id: staff_id(),
                tenant_id: TenantId(uuid::Uuid::from_u128(1)),
                branch_id: BranchId(uuid::Uuid::from_u128(2)),
                time_zone: chrono_tz::Europe::Berlin,
                name: "Anna".to_owned(),
                email: None,
                phone: None,
                schedule: schedule(),
            },
            StaffEvent::StaffAssignedToService {
                service_id: service(),
                level: SkillLevel::new(3).unwrap(),
            },
        ]
    }

    fn hold(n: u128, start: DateTime<Utc>, minutes: i64) -> StaffCommand {
        StaffCommand::HoldSlot {
            booking_id: booking(n),
            service_id: service(),
            appointment: range(start, start + Duration::minutes(minutes)),
            buffer_before_minutes: 0,
            buffer_after_minutes: 10,
            expires_at: now() + Duration::minutes(5),
            now: now(),
        }
    }

    fn held(n: u128, start: DateTime<Utc>, minutes: i64, expires_at: DateTime<Utc>) -> StaffEvent {
        let appointment = range(start, start + Duration::minutes(minutes));
        StaffEvent::SlotHeld {
            booking_id: booking(n),
            service_id: service(),
            appointment,
            occupied: appointment.widened(0, 10),
            expires_at,
            held_at: now(),
        }
    }

    #[test]
    fn a_free_slot_inside_working_hours_is_held() {
        Spec::with(())
            .given(hired())
            .when(hold(1, at(9, 0), 30))
            .then_expect_events(vec![held(1, at(9, 0), 30, now() + Duration::minutes(5))]);
    }

    #[test]
    fn a_slot_overlapping_a_live_hold_is_refused() {
        let mut given = hired();
        given.push(held(1, at(9, 0), 30, now() + Duration::minutes(5)));
        Spec::with(())
            .given(given)
            .when(hold(2, at(9, 15), 30))
            .then_expect_error(StaffError::SlotUnavailable);
    }

    #[test]
    fn the_buffer_after_a_booking_keeps_the_next_one_out() {
        let mut given = hired();
        given.push(held(1, at(9, 0), 30, now() + Duration::minutes(5)));
        // 09:30 UTC ends the appointment; its 10-minute buffer runs to 09:40.
        Spec::with(())
            .given(given)
            .when(hold(2, at(9, 35), 30))
            .then_expect_error(StaffError::SlotUnavailable);
    }

    #[test]
    fn an_expired_hold_no_longer_blocks_before_anything_releases_it() {
        let mut given = hired();
        given.push(held(1, at(9, 0), 30, now() - Duration::seconds(1)));
        Spec::with(())
            .given(given)
            .when(hold(2, at(9, 0), 30))
            .then_expect_events(vec![held(2, at(9, 0), 30, now() + Duration::minutes(5))]);
    }

    #[test]
    fn a_reservation_keeps_blocking_after_the_hold_time() {
        let mut given = hired();
        given.push(held(1, at(9, 0), 30, now() - Duration::seconds(1)));
        given.push(StaffEvent::ReservationConfirmed {
            booking_id: booking(1),
            appointment: range(at(9, 0), at(9, 30)),
        });
        Spec::with(())
            .given(given)
            .when(hold(2, at(9, 0), 30))
            .then_expect_error(StaffError::SlotUnavailable);
    }

    fn reserve(n: u128, start: DateTime<Utc>, minutes: i64) -> StaffCommand {
        StaffCommand::ReserveSlot {
            booking_id: booking(n),
            service_id: service(),
            appointment: range(start, start + Duration::minutes(minutes)),
            buffer_before_minutes: 0,
            buffer_after_minutes: 10,
            now: now(),
        }
    }

    fn reserved(n: u128, start: DateTime<Utc>, minutes: i64) -> StaffEvent {
        let appointment = range(start, start + Duration::minutes(minutes));
        StaffEvent::SlotReserved {
            booking_id: booking(n),
            service_id: service(),
            appointment,
            occupied: appointment.widened(0, 10),
            reserved_at: now(),
        }
    }

    #[test]
    fn a_free_slot_is_reserved_at_once_in_one_event() {
        Spec::with(())
            .given(hired())
            .when(reserve(1, at(9, 0), 30))
            .then_expect_events(vec![reserved(1, at(9, 0), 30)]);
    }

    #[test]
    fn a_slot_reserved_at_once_blocks_as_a_confirmed_hold_does() {
        let mut at_once = Staff::default();
        let mut in_two = Staff::default();
        for e in hired() {
            at_once.apply(e.clone());
            in_two.apply(e);
        }
        at_once.apply(reserved(1, at(9, 0), 30));
        in_two.apply(held(1, at(9, 0), 30, now() + Duration::minutes(5)));
        in_two.apply(StaffEvent::ReservationConfirmed {
            booking_id: booking(1),
            appointment: range(at(9, 0), at(9, 30)),
        });
        assert_eq!(at_once, in_two);
        let later = now() + Duration::days(1);
        assert!(!at_once.is_free(&range(at(9, 35), at(10, 0)), booking(2), later));
        let mut given = hired();
        given.push(reserved(1, at(9, 0), 30));
        Spec::with(())
            .given(given)
            .when(reserve(2, at(9, 15), 30))
            .then_expect_error(StaffError::SlotUnavailable);
    }

    #[test]
    fn reserving_a_live_hold_of_the_same_booking_confirms_it() {
        let mut given = hired();
        given.push(held(1, at(9, 0), 30, now() + Duration::minutes(5)));
        Spec::with(())
            .given(given.clone())
            .when(reserve(1, at(9, 0), 30))
            .then_expect_events(vec![StaffEvent::ReservationConfirmed {
                booking_id: booking(1),
                appointment: range(at(9, 0), at(9, 30)),
            }]);
        given.push(reserved(2, at(10, 0), 30));
        Spec::with(())
            .given(given)
            .when(reserve(2, at(10, 0), 30))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_reservation_elsewhere_releases_the_bookings_other_entries() {
        let mut given = hired();
        given.push(held(1, at(9, 0), 30, now() + Duration::minutes(5)));
        Spec::with(())
            .given(given)
            .when(reserve(1, at(10, 0), 30))
            .then_expect_events(vec![
                StaffEvent::SlotReleased {
                    booking_id: booking(1),
                    appointment: range(at(9, 0), at(9, 30)),
                },
                reserved(1, at(10, 0), 30),
            ]);
    }

    #[test]
    fn a_slot_over_the_lunch_break_is_outside_the_schedule() {
        // 13:00 Berlin is 12:00 UTC.
        Spec::with(())
            .given(hired())
            .when(hold(1, at(11, 45), 30))
            .then_expect_error(StaffError::OutsideSchedule);
    }

    #[test]
    fn a_slot_before_opening_is_outside_the_schedule() {
        Spec::with(())
            .given(hired())
            .when(hold(1, at(7, 30), 30))
            .then_expect_error(StaffError::OutsideSchedule);
    }

    #[test]
    fn a_day_off_override_closes_a_working_day() {
        let mut given = hired();
        given.push(StaffEvent::ScheduleOverrideSet {
            date: NaiveDate::from_ymd_opt(2030, 1, 7).unwrap(),
            hours: Some(DayHours::default()),
        });
        Spec::with(())
            .given(given)
            .when(hold(1, at(9, 0), 30))
            .then_expect_error(StaffError::OutsideSchedule);
    }

    #[test]
    fn a_staff_member_without_the_skill_cannot_hold_it() {
        let mut given = hired();
        given.push(StaffEvent::StaffUnassignedFromService {
            service_id: service(),
        });
        Spec::with(())
            .given(given)
            .when(hold(1, at(9, 0), 30))
            .then_expect_error(StaffError::NotQualified(service()));
    }

    #[test]
    fn a_blocked_vacation_keeps_holds_out() {
        let mut given = hired();
        given.push(StaffEvent::StaffTimeBlocked {
            block_id: BlockId(uuid::Uuid::from_u128(5)),
            range: range(at(0, 0), at(23, 0)),
            reason: "vacation".to_owned(),
        });
        Spec::with(())
            .given(given)
            .when(hold(1, at(9, 0), 30))
            .then_expect_error(StaffError::SlotUnavailable);
    }

    #[test]
    fn a_block_over_a_reservation_is_refused() {
        let mut given = hired();
        given.push(held(1, at(9, 0), 30, now() + Duration::minutes(5)));
        Spec::with(())
            .given(given)
            .when(StaffCommand::BlockStaffTime {
                block_id: BlockId(uuid::Uuid::from_u128(5)),
                range: range(at(8, 0), at(12, 0)),
                reason: "sick".to_owned(),
                now: now(),
            })
            .then_expect_error(StaffError::BlockOverlapsBookings(vec![booking(1)]));
    }

    #[test]
    fn confirming_a_new_hold_releases_the_old_reservation_of_the_same_booking() {
        let mut given = hired();
        given.push(held(1, at(9, 0), 30, now() + Duration::minutes(5)));
        given.push(StaffEvent::ReservationConfirmed {
            booking_id: booking(1),
            appointment: range(at(9, 0), at(9, 30)),
        });
        given.push(held(1, at(10, 0), 30, now() + Duration::minutes(5)));
        Spec::with(())
            .given(given)
            .when(StaffCommand::ConfirmReservation {
                booking_id: booking(1),
                start: at(10, 0),
                now: now(),
            })
            .then_expect_events(vec![
                StaffEvent::SlotReleased {
                    booking_id: booking(1),
                    appointment: range(at(9, 0), at(9, 30)),
                },
                StaffEvent::ReservationConfirmed {
                    booking_id: booking(1),
                    appointment: range(at(10, 0), at(10, 30)),
                },
            ]);
    }

    #[test]
    fn a_reschedule_may_overlap_the_booking_s_own_slot() {
        let mut given = hired();
        given.push(held(1, at(9, 0), 30, now() + Duration::minutes(5)));
        given.push(StaffEvent::ReservationConfirmed {
            booking_id: booking(1),
            appointment: range(at(9, 0), at(9, 30)),
        });
        Spec::with(())
            .given(given)
            .when(hold(1, at(9, 15), 30))
            .then_expect_events(vec![held(1, at(9, 15), 30, now() + Duration::minutes(5))]);
    }

    #[test]
    fn an_expired_hold_cannot_be_confirmed() {
        let mut given = hired();
        given.push(held(1, at(9, 0), 30, now() - Duration::seconds(1)));
        Spec::with(())
            .given(given)
            .when(StaffCommand::ConfirmReservation {
                booking_id: booking(1),
                start: at(9, 0),
                now: now(),
            })
            .then_expect_error(StaffError::HoldExpired(booking(1)));
    }

    #[test]
    fn hiring_beyond_the_plan_limit_is_refused() {
        Spec::with(())
            .given_no_previous_events()
            .when(StaffCommand::HireStaff {
                staff_id: staff_id(),
                tenant_id: TenantId(uuid::Uuid::from_u128(1)),
                branch_id: BranchId(uuid::Uuid::from_u128(2)),
                time_zone: chrono_tz::Europe::Berlin,
                name: "Ben".to_owned(),
                email: None,
                phone: None,
                schedule: schedule(),
                staff_in_branch: 5,
                limit: Some(5),
            })
            .then_expect_error(StaffError::StaffLimitReached { limit: 5 });
    }

    #[test]
    fn a_staff_member_with_upcoming_bookings_cannot_be_deactivated() {
        let mut given = hired();
        given.push(held(1, at(9, 0), 30, now() + Duration::minutes(5)));
        Spec::with(())
            .given(given)
            .when(StaffCommand::DeactivateStaff { now: now() })
            .then_expect_error(StaffError::HasUpcomingBookings(1));
    }

    #[test]
    fn entries_long_past_are_dropped_from_the_calendar_state() {
        let mut staff = Staff::default();
        for e in hired() {
            staff.apply(e);
        }
        staff.apply(held(1, at(9, 0), 30, now()));
        let later = now() + Duration::days(3);
        let appointment = range(later + Duration::hours(20), later + Duration::hours(21));
        staff.apply(StaffEvent::SlotHeld {
            booking_id: booking(2),
            service_id: service(),
            appointment,
            occupied: appointment,
            expires_at: later,
            held_at: later,
        });
        assert_eq!(staff.calendar.len(), 1);
        assert_eq!(staff.calendar[0].booking_id, booking(2));
    }
}
