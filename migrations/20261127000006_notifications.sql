-- Messages to customers, one row per logical message (booking, notice, revision) and
-- channel, claimed before the send: a claimed message is never sent again (at most once).
CREATE TABLE notifications (
    key             text        NOT NULL,
    channel         text        NOT NULL,
    tenant_id       uuid        NOT NULL,
    booking_id      text        NOT NULL,
    notice          text        NOT NULL,
    recipient       text        NOT NULL,
    -- sending (claimed; if it stays so, the send's fate is unknown), sent, failed
    status          text        NOT NULL,
    provider_id     text,
    error           text,
    -- What the provider later reported (Twilio status callbacks).
    delivery_status text,
    delivery_error  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    delivered_at    timestamptz,
    PRIMARY KEY (key, channel)
);
CREATE INDEX notifications_booking ON notifications (tenant_id, booking_id);
CREATE UNIQUE INDEX notifications_provider ON notifications (channel, provider_id);

-- Every failed send, kept for operators; the message went to the other channel if it could.
CREATE TABLE failed_notifications (
    id         uuid        PRIMARY KEY,
    tenant_id  uuid        NOT NULL,
    booking_id text        NOT NULL,
    key        text        NOT NULL,
    channel    text        NOT NULL,
    recipient  text        NOT NULL,
    error      text        NOT NULL,
    failed_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX failed_notifications_tenant ON failed_notifications (tenant_id, failed_at);
