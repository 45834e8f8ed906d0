-- Published versions (immutable snapshots of $LATEST), aliases, and tags.
-- A version row has the columns of a functions row, its version a decimal number as text.

ALTER TABLE functions ADD COLUMN last_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE functions ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';

CREATE TABLE function_versions (
    name                 TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
    runtime              TEXT NOT NULL,
    handler              TEXT,
    role                 TEXT NOT NULL,
    description          TEXT NOT NULL,
    timeout_secs         BIGINT NOT NULL,
    memory_mb            BIGINT NOT NULL,
    environment          TEXT NOT NULL,
    reserved_concurrency BIGINT,
    code_sha256          TEXT NOT NULL REFERENCES function_code (sha256),
    code_size            BIGINT NOT NULL,
    version              TEXT NOT NULL,
    revision_id          TEXT NOT NULL,
    last_modified        TIMESTAMPTZ NOT NULL,
    number               BIGINT NOT NULL,
    PRIMARY KEY (name, number)
);

CREATE TABLE aliases (
    function_name    TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    function_version TEXT NOT NULL,
    description      TEXT NOT NULL,
    -- JSON object: additional version -> weight.
    routing          TEXT NOT NULL,
    revision_id      TEXT NOT NULL,
    PRIMARY KEY (function_name, name)
);
