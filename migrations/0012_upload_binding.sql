-- A presigned upload binds the size and sha256 its client declared: the object must match them
-- to complete. A file whose object changed after it was recorded (a write outside the API) is
-- `altered`: neither served nor used as an input, and its owner is told why.
ALTER TABLE files
    ADD COLUMN expected_size bigint CHECK (expected_size >= 0),
    ADD COLUMN expected_sha256 text CHECK (expected_sha256 ~ '^[0-9a-f]{64}$'),
    ADD COLUMN altered_reason text,
    ADD CONSTRAINT files_altered_reason CHECK ((status = 'altered') = (altered_reason IS NOT NULL));
ALTER TABLE files DROP CONSTRAINT files_status_check;
ALTER TABLE files ADD CONSTRAINT files_status_check CHECK (status IN ('pending', 'available', 'altered'));
