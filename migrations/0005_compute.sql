-- What the compute flow records about a run, so a result can be reproduced and explained; and
-- the `python` tool the compute image provides (the seed's limits).
ALTER TABLE jobs
    ADD COLUMN duration_ms       bigint CHECK (duration_ms >= 0),
    ADD COLUMN stdout_truncated  boolean NOT NULL DEFAULT false,
    ADD COLUMN stderr_truncated  boolean NOT NULL DEFAULT false,
    ADD COLUMN outputs           jsonb NOT NULL DEFAULT '[]'::jsonb,
    ADD COLUMN outputs_truncated boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT jobs_final_has_finish CHECK (
        status IN ('queued', 'running') OR finished_at IS NOT NULL
    );

INSERT INTO tools (name, description, image, memory_mb, cpus, timeout_seconds, pids_limit)
VALUES ('python', 'Python 3 with numpy and scipy', 'mecapy-python:bookworm', 256, 0.5, 30, 64)
ON CONFLICT (name) DO NOTHING;

-- The sandbox needs room for the engine's own start-up inside the job's limits.
ALTER TABLE tools
    DROP CONSTRAINT tools_memory_mb_check,
    ADD CONSTRAINT tools_memory_mb_check CHECK (memory_mb BETWEEN 32 AND 65536),
    DROP CONSTRAINT tools_pids_limit_check,
    ADD CONSTRAINT tools_pids_limit_check CHECK (pids_limit BETWEEN 16 AND 4096);
