-- The voice agent's front door: routing rules per tenant, the call log fed by Retell's call
-- webhooks (deduplicated in webhook_receipts), callback tasks for calls that could not end in
-- a booking, and the bookings each call made.

-- How calls are routed: agents by language, a fallback branch, how far a call may be sent.
CREATE TABLE routing_rules (
    tenant_id  uuid        PRIMARY KEY,
    rules      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- One row per voice call, merged from every webhook about it (they may arrive out of order).
CREATE TABLE calls (
    tenant_id            uuid        NOT NULL,
    call_id              text        NOT NULL,
    branch_id            uuid,
    agent_id             text,
    direction            text,
    from_number          text,
    to_number            text,
    status               text        NOT NULL,
    started_at           timestamptz,
    ended_at             timestamptz,
    duration_ms          bigint,
    disconnection_reason text,
    summary              text,
    sentiment            text,
    successful           boolean,
    analysis             jsonb,
    outcome              text,
    booking_id           uuid,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, call_id)
);
CREATE INDEX calls_by_branch_and_start ON calls (tenant_id, branch_id, started_at);
CREATE INDEX calls_ongoing ON calls (tenant_id, branch_id) WHERE status = 'ongoing';

-- A caller to ring back: the details were incomplete or the slot was gone.
CREATE TABLE callback_tasks (
    id           uuid        PRIMARY KEY,
    tenant_id    uuid        NOT NULL,
    call_id      text        NOT NULL,
    branch_id    uuid,
    phone        text,
    name         text,
    reason       text        NOT NULL,
    details      jsonb       NOT NULL,
    status       text        NOT NULL DEFAULT 'open',
    created_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at  timestamptz,
    UNIQUE (tenant_id, call_id)
);
CREATE INDEX callback_tasks_open ON callback_tasks (tenant_id, created_at) WHERE status = 'open';

-- Bookings and holds made during a call; holds still unconfirmed when it ends are released.
CREATE TABLE call_holds (
    tenant_id   uuid        NOT NULL,
    call_id     text        NOT NULL,
    booking_id  uuid        NOT NULL,
    held_at     timestamptz NOT NULL DEFAULT now(),
    released_at timestamptz,
    PRIMARY KEY (tenant_id, call_id, booking_id)
);
