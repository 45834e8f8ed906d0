-- Functions, their code (by SHA-256), and one record per invocation.

CREATE TABLE function_code (
    sha256     TEXT PRIMARY KEY,
    zip        BYTEA NOT NULL,
    size       BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE functions (
    name                 TEXT PRIMARY KEY,
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
    last_modified        TIMESTAMPTZ NOT NULL
);

CREATE TABLE invocations (
    request_id       UUID PRIMARY KEY,
    function_name    TEXT NOT NULL,
    function_version TEXT NOT NULL,
    invocation_type  TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    duration_ms      DOUBLE PRECISION,
    error_type       TEXT,
    error_message    TEXT
);

CREATE INDEX invocations_by_function ON invocations (function_name, created_at);
