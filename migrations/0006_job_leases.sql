-- A claimed job holds a lease: until lease_expires_at (its own wall-clock limit, the sandbox's
-- grace and the dispatcher's staging margin after the claim) nobody else may claim it; past it,
-- the dispatcher that claimed it is taken for dead and the job is finished or run again.
ALTER TABLE jobs ADD COLUMN lease_expires_at timestamptz;
UPDATE jobs SET lease_expires_at = started_at + interval '180 seconds' WHERE status = 'running';
ALTER TABLE jobs ADD CONSTRAINT jobs_running_has_lease
    CHECK (status <> 'running' OR lease_expires_at IS NOT NULL);
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX jobs_queued_idx ON jobs (updated_at) WHERE status = 'queued';
