-- Inbound webhooks already handled, per sender and its own key for the delivery (Cal.com:
-- trigger and booking uid), so a replayed or retried delivery changes nothing.
CREATE TABLE webhook_receipts (
    source      text        NOT NULL,
    tenant_id   uuid        NOT NULL,
    key         text        NOT NULL,
    outcome     text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, tenant_id, key)
);
