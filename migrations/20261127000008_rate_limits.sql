-- Requests per API key and fixed window, shared by every bookingd instance. Unlogged: a
-- counter needs no WAL (its commits then do not wait for a flush), and a Postgres crash
-- merely restarts the current windows.
CREATE UNLOGGED TABLE rate_limit_windows (
    key_id       uuid        NOT NULL,
    window_start timestamptz NOT NULL,
    requests     integer     NOT NULL,
    PRIMARY KEY (key_id, window_start)
);
