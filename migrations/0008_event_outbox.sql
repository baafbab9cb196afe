-- The transactional outbox of the event bus: each state change that is an event inserts its row
-- here in the same statement as the change, so an event exists exactly when its state was
-- committed. Publishers (after each request, and the dispatcher's sweep) send the unpublished
-- rows to EventBridge and stamp them; a failed send is retried later with backoff.
CREATE TABLE event_outbox (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    kind            text NOT NULL CHECK (kind IN ('FileUploaded', 'CalculationQueued',
                        'CalculationStarted', 'CalculationFinished', 'UserLogin')),
    subject_id      uuid NOT NULL,
    -- The changed row as the statement returned it: the event's detail is built from it.
    snapshot        jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at    timestamptz,
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_error      text
);
CREATE INDEX event_outbox_pending_idx ON event_outbox (next_attempt_at, created_at)
    WHERE published_at IS NULL;
CREATE INDEX event_outbox_subject_idx ON event_outbox (subject_id);
