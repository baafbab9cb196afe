-- Files stored in S3 at `{user_id}/{filename}`. A row is `pending` while its object is being
-- written (direct upload in flight, or presigned URL handed out) and `available` once the
-- object is known to exist; only available files are listed or served.
CREATE TABLE files (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id      uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    filename     text NOT NULL CHECK (length(filename) BETWEEN 1 AND 255),
    s3_key       text NOT NULL UNIQUE,
    content_type text NOT NULL,
    size_bytes   bigint CHECK (size_bytes >= 0),
    sha256       text CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    etag         text,
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'available')),
    -- Changes at every new reservation, so only the latest writer of a name can complete it.
    upload_id    uuid NOT NULL DEFAULT gen_random_uuid(),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    UNIQUE (user_id, filename),
    CHECK (status = 'pending' OR (size_bytes IS NOT NULL AND sha256 IS NOT NULL AND completed_at IS NOT NULL))
);
CREATE INDEX files_user_created_idx ON files (user_id, created_at DESC, id DESC);
