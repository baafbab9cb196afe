-- The scientific tools a job can run ("Outils"): an image and the sandbox limits it runs under.
-- The defaults are the seed's: no network, 256 MB, 0.5 CPU, 30 s.
CREATE TABLE tools (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name            text NOT NULL UNIQUE CHECK (name ~ '^[a-z][a-z0-9_-]{0,62}$'),
    description     text NOT NULL DEFAULT '',
    image           text NOT NULL,
    memory_mb       integer NOT NULL DEFAULT 256 CHECK (memory_mb BETWEEN 16 AND 65536),
    cpus            numeric(5, 2) NOT NULL DEFAULT 0.5 CHECK (cpus > 0 AND cpus <= 64),
    timeout_seconds integer NOT NULL DEFAULT 30 CHECK (timeout_seconds BETWEEN 1 AND 900),
    pids_limit      integer NOT NULL DEFAULT 64 CHECK (pids_limit BETWEEN 1 AND 4096),
    network         boolean NOT NULL DEFAULT false,
    allowed_imports text[] NOT NULL DEFAULT ARRAY[]::text[],
    enabled         boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
