//! Process managers driven by the event stream (calendar sync, notifications, payments,
//! compensations) and the ports they call. There are none yet.
