//! The Staff aggregate: a staff member's profile, skills, schedule, time blocks, and the
//! calendar of holds and reservations that keeps them from being booked twice.

mod aggregate;
mod calendar;
mod command;
mod error;
mod event;

pub use aggregate::{SkillLevel, Staff, TimeBlock};
pub use calendar::{CalendarEntry, EntryState};
pub use command::StaffCommand;
pub use error::StaffError;
pub use event::StaffEvent;
