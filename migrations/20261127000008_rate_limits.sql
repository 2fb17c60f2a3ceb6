-- Requests per API key and fixed window, shared by every bookingd instance.
CREATE TABLE rate_limit_windows (
    key_id       uuid        NOT NULL,
    window_start timestamptz NOT NULL,
    requests     integer     NOT NULL,
    PRIMARY KEY (key_id, window_start)
);
