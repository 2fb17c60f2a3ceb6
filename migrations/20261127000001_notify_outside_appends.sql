-- Appends no longer NOTIFY from inside their own transaction. Postgres serializes the commits
-- of all transactions that issued NOTIFY (a database-wide lock held through the commit's WAL
-- flush), so a per-statement trigger capped appends at one disk flush each and defeated group
-- commit. bookingd now announces its appends from a separate connection after they commit
-- (see adapters/src/appends.rs); the relay's polling tail still finds every event without it.
DROP TRIGGER events_appended ON events;
DROP FUNCTION notify_events_appended();
