-- Sagas: per saga and instance its state, the events it has seen and its jobs (timers and
-- pending outbound steps). An event's effect on all three commits in one transaction.
CREATE TABLE saga_instances (
    saga          text        NOT NULL,
    instance_id   text        NOT NULL,
    tenant_id     uuid        NOT NULL,
    state         jsonb       NOT NULL,
    -- The last event of the instance's stream applied: a later one arriving first waits.
    last_sequence bigint      NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (saga, instance_id)
);

CREATE TABLE saga_inbox (
    saga        text        NOT NULL,
    event_id    uuid        NOT NULL,
    instance_id text        NOT NULL,
    seen_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (saga, event_id)
);

-- A job is due at a time (a timer, or a step to take now); setting a job of the same name
-- moves it, and its revision tells a runner that finished an older revision to leave it be.
-- Runners claim due jobs with FOR UPDATE SKIP LOCKED and hold them for a lease: a runner
-- that dies leaves its claim to lapse, and the job runs again on any instance.
CREATE TABLE saga_jobs (
    saga           text        NOT NULL,
    instance_id    text        NOT NULL,
    name           text        NOT NULL,
    tenant_id      uuid        NOT NULL,
    job            jsonb       NOT NULL,
    due_at         timestamptz NOT NULL,
    revision       uuid        NOT NULL,
    attempts       integer     NOT NULL DEFAULT 0,
    claimed_until  timestamptz,
    last_error     text,
    correlation_id uuid        NOT NULL,
    causation_id   uuid        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (saga, instance_id, name)
);
CREATE INDEX saga_jobs_due ON saga_jobs (saga, due_at);

-- Per-tenant credentials for external services, sealed with the server's secret key
-- (XChaCha20-Poly1305; the nonce is stored beside the ciphertext), and their settings.
CREATE TABLE integration_credentials (
    tenant_id   uuid        NOT NULL,
    integration text        NOT NULL,
    nonce       bytea       NOT NULL,
    sealed      bytea       NOT NULL,
    settings    jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, integration)
);

-- Things an operator must look at: a calendar that keeps refusing, a message that cannot be
-- sent on any channel.
CREATE TABLE operator_alerts (
    id          uuid        PRIMARY KEY,
    tenant_id   uuid        NOT NULL,
    source      text        NOT NULL,
    subject     text        NOT NULL,
    message     text        NOT NULL,
    raised_at   timestamptz NOT NULL DEFAULT now(),
    resolved_at timestamptz
);
CREATE INDEX operator_alerts_open ON operator_alerts (tenant_id, raised_at) WHERE resolved_at IS NULL;
