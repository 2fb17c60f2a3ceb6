-- The event store. `events` and `snapshots` keep postgres-es 0.5's columns, so its repository
-- can read and write them; the extra columns all have defaults or are generated, so an INSERT
-- that lists only postgres-es's columns still fills them.
CREATE TABLE events (
    aggregate_type text   NOT NULL,
    aggregate_id   text   NOT NULL,
    sequence       bigint NOT NULL CHECK (sequence >= 0),
    event_type     text   NOT NULL,
    event_version  text   NOT NULL,
    payload        jsonb  NOT NULL,
    metadata       jsonb  NOT NULL,
    -- Global order of insertion. Assigned before commit, so on its own it is not a safe tail
    -- cursor: a transaction can take a lower position and commit after a higher one.
    position       bigserial NOT NULL,
    -- The writing transaction. The relay reads (tx_id, position) only below the oldest
    -- transaction still running, which closes the gap above.
    tx_id          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    tenant_id      uuid GENERATED ALWAYS AS ((metadata ->> 'tenant_id')::uuid) STORED,
    event_id       uuid GENERATED ALWAYS AS ((metadata ->> 'event_id')::uuid) STORED,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);

CREATE INDEX events_tail ON events (tx_id, position);
CREATE INDEX events_tenant_position ON events (tenant_id, position);
CREATE INDEX events_bookings_created ON events (tenant_id, recorded_at)
    WHERE event_type = 'BookingCreated';
CREATE INDEX events_staff_roster ON events (tenant_id, event_type, aggregate_id)
    WHERE event_type IN ('StaffHired', 'StaffDeactivated');

CREATE TABLE snapshots (
    aggregate_type   text   NOT NULL,
    aggregate_id     text   NOT NULL,
    last_sequence    bigint NOT NULL CHECK (last_sequence >= 0),
    current_snapshot bigint NOT NULL CHECK (current_snapshot >= 0),
    payload          jsonb  NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- Wakes the relay as soon as events commit; the relay also polls, so a lost
-- notification only delays publishing.
CREATE FUNCTION notify_events_appended() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('bookingd_events', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER events_appended AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION notify_events_appended();

-- Where the relay has published up to: every event at or below this (tx_id, position)
-- cursor has a PubAck from JetStream.
CREATE TABLE relay_checkpoint (
    name          text PRIMARY KEY,
    last_tx_id    xid8   NOT NULL,
    last_position bigint NOT NULL,
    published     bigint NOT NULL DEFAULT 0,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
