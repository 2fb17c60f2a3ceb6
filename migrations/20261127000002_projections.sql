-- The projection runner's bookkeeping. Per projection and aggregate, the last event applied:
-- it commits in the same transaction as the read model's rows, so an event redelivered by
-- JetStream is recognised and skipped (exactly-once effect), and an event that arrives before
-- its predecessor (two workers, a redelivery) is handed back until the predecessor is in.
CREATE TABLE projection_offsets (
    projection     text   NOT NULL,
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    last_sequence  bigint NOT NULL,
    last_position  bigint NOT NULL,
    PRIMARY KEY (projection, aggregate_type, aggregate_id)
);
CREATE INDEX projection_offsets_position ON projection_offsets (projection, last_position);

-- Read-your-writes looks up the command behind a position, then all of that command's events
-- (one request's events share its correlation id, across the transactions it took).
CREATE UNIQUE INDEX events_position ON events (position);
CREATE INDEX events_correlation ON events ((metadata ->> 'correlation_id'));

-- Events a projection could not apply after its delivery limit, parked so that the other
-- aggregates flow on; `bookingd deadletters retry | skip` resolves them.
CREATE TABLE dead_letters (
    projection     text        NOT NULL,
    event_id       text        NOT NULL,
    position       bigint      NOT NULL,
    tenant_id      text        NOT NULL,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    sequence       bigint      NOT NULL,
    event_type     text        NOT NULL,
    envelope       jsonb       NOT NULL,
    error          text        NOT NULL,
    attempts       integer     NOT NULL,
    parked_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, event_id)
);
CREATE INDEX dead_letters_order ON dead_letters (projection, position);

-- The bookings read model: one row per booking, the aggregate's state beside the columns that
-- queries filter and sort on.
CREATE TABLE bookings_view (
    booking_id     uuid        PRIMARY KEY,
    tenant_id      uuid        NOT NULL,
    branch_id      uuid        NOT NULL,
    service_id     uuid        NOT NULL,
    staff_id       uuid        NOT NULL,
    customer_phone text        NOT NULL,
    status         text        NOT NULL,
    source         text        NOT NULL,
    start_at       timestamptz NOT NULL,
    end_at         timestamptz NOT NULL,
    version        bigint      NOT NULL,
    position       bigint      NOT NULL,
    state          jsonb       NOT NULL
);
CREATE INDEX bookings_view_by_start ON bookings_view (tenant_id, start_at, booking_id);
CREATE INDEX bookings_view_by_staff ON bookings_view (tenant_id, staff_id, start_at);
CREATE INDEX bookings_view_by_phone ON bookings_view (tenant_id, customer_phone, start_at);
