-- Computations submitted by users. The compute issue fills the lifecycle; the states and their
-- invariants are fixed here so that no job can be lost between them.
CREATE TABLE jobs (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id       uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tool_id       uuid NOT NULL REFERENCES tools (id),
    status        text NOT NULL DEFAULT 'queued' CHECK (status IN
                    ('queued', 'running', 'succeeded', 'failed', 'timeout', 'oom', 'error', 'cancelled')),
    image         text NOT NULL,
    limits        jsonb NOT NULL,
    args          jsonb NOT NULL DEFAULT '[]'::jsonb,
    code_sha256   text,
    inputs        jsonb NOT NULL DEFAULT '[]'::jsonb,
    exit_code     integer,
    error         text,
    image_digest  text,
    attempts      integer NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz
);
CREATE INDEX jobs_user_created_idx ON jobs (user_id, created_at DESC, id DESC);
CREATE INDEX jobs_status_idx ON jobs (status) WHERE status IN ('queued', 'running');
