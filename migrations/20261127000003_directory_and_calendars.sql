-- Tenants as their events left them: profile, plan, settings, branches and catalog.
CREATE TABLE tenants_view (
    tenant_id uuid   PRIMARY KEY,
    version   bigint NOT NULL,
    position  bigint NOT NULL,
    state     jsonb  NOT NULL
);

-- Staff members as their events left them, without their calendar (that is calendar_entries).
CREATE TABLE staff_view (
    staff_id  uuid    PRIMARY KEY,
    tenant_id uuid    NOT NULL,
    branch_id uuid    NOT NULL,
    name      text    NOT NULL,
    active    boolean NOT NULL,
    version   bigint  NOT NULL,
    position  bigint  NOT NULL,
    state     jsonb   NOT NULL
);
CREATE INDEX staff_view_by_branch ON staff_view (tenant_id, branch_id, name);

-- Holds and reservations on staff calendars: what availability subtracts. A hold carries the
-- moment it lapses; a reservation has none. Released entries are deleted.
CREATE TABLE calendar_entries (
    staff_id      uuid        NOT NULL,
    booking_id    uuid        NOT NULL,
    start_at      timestamptz NOT NULL,
    end_at        timestamptz NOT NULL,
    occupied_from timestamptz NOT NULL,
    occupied_to   timestamptz NOT NULL,
    tenant_id     uuid        NOT NULL,
    service_id    uuid        NOT NULL,
    held_until    timestamptz,
    PRIMARY KEY (staff_id, booking_id, start_at)
);
CREATE INDEX calendar_entries_by_time ON calendar_entries (staff_id, occupied_from);

-- Revenue for dashboards, read from the booking's own state.
ALTER TABLE bookings_view
    ADD COLUMN price_minor bigint GENERATED ALWAYS AS ((state -> 'price' ->> 'amount_minor')::bigint) STORED;
CREATE INDEX bookings_view_by_branch ON bookings_view (tenant_id, branch_id, start_at);
