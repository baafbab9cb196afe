-- Signed webhooks on job end. A job (or the rule that starts it) may name a callback_url; the
-- statement that records the job's final state also records its delivery here (with the
-- CalculationFinished event it sends), so a finished job's webhook exists exactly when its
-- final state was committed. Deliverers claim a due row, POST it, and record the outcome.
ALTER TABLE jobs ADD COLUMN callback_url text;
ALTER TABLE upload_rules ADD COLUMN callback_url text;

CREATE TABLE webhook_deliveries (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    job_id          uuid NOT NULL UNIQUE REFERENCES jobs (id) ON DELETE CASCADE,
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    url             text NOT NULL,
    -- The CalculationFinished event it carries: its id (the webhook-id, the same on every
    -- attempt), its time and the job as the final statement left it.
    event_id        uuid NOT NULL UNIQUE,
    occurred_at     timestamptz NOT NULL,
    snapshot        jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    last_status     integer,
    last_error      text,
    last_attempt_at timestamptz,
    -- While pending: when it is due (a claimed attempt pushes it past the attempt's length).
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at)
    WHERE state = 'pending';
