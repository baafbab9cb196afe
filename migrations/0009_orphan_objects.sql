-- Objects found in the upload bucket with no row of theirs (written to the bucket directly, not
-- through the API): recorded here when their S3 event arrives, then removed from the bucket, so
-- nothing is ever served that the platform did not record.
CREATE TABLE orphan_objects (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    s3_key      text NOT NULL,
    size_bytes  bigint,
    etag        text,
    found_at    timestamptz NOT NULL DEFAULT now(),
    removed_at  timestamptz
);
CREATE INDEX orphan_objects_key_idx ON orphan_objects (s3_key);
