-- Upload rules: "when I upload a file matching this, run this". A job started by a rule records
-- the rule and the upload (the file) that started it; one job per (rule, upload), however often
-- the upload's event is delivered.
CREATE TABLE upload_rules (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id         uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    filename_glob   text NOT NULL CHECK (length(filename_glob) BETWEEN 1 AND 255),
    content_type    text,
    tool_id         uuid NOT NULL REFERENCES tools (id),
    code            text,
    code_file_id    uuid,
    args            jsonb NOT NULL DEFAULT '[]'::jsonb,
    enabled         boolean NOT NULL DEFAULT true,
    disabled_reason text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((code IS NULL) <> (code_file_id IS NULL)),
    CHECK (enabled OR disabled_reason IS NOT NULL)
);
CREATE INDEX upload_rules_user_idx ON upload_rules (user_id, created_at, id);

ALTER TABLE jobs
    ADD COLUMN rule_id uuid REFERENCES upload_rules (id) ON DELETE SET NULL,
    ADD COLUMN upload_file_id uuid;
CREATE UNIQUE INDEX jobs_rule_upload_idx ON jobs (rule_id, upload_file_id)
    WHERE rule_id IS NOT NULL;
