-- Functions, their code (by SHA-256), and one record per invocation.
-- SQLite keeps timestamps as RFC 3339 text and request ids as 16-byte blobs.

CREATE TABLE function_code (
    sha256     TEXT PRIMARY KEY,
    zip        BLOB NOT NULL,
    size       INTEGER NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE functions (
    name                 TEXT PRIMARY KEY,
    runtime              TEXT NOT NULL,
    handler              TEXT,
    role                 TEXT NOT NULL,
    description          TEXT NOT NULL,
    timeout_secs         INTEGER NOT NULL,
    memory_mb            INTEGER NOT NULL,
    environment          TEXT NOT NULL,
    reserved_concurrency INTEGER,
    code_sha256          TEXT NOT NULL REFERENCES function_code (sha256),
    code_size            INTEGER NOT NULL,
    version              TEXT NOT NULL,
    revision_id          TEXT NOT NULL,
    last_modified        TEXT NOT NULL
);

CREATE TABLE invocations (
    request_id       BLOB PRIMARY KEY,
    function_name    TEXT NOT NULL,
    function_version TEXT NOT NULL,
    invocation_type  TEXT NOT NULL,
    status           TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    created_at       TEXT NOT NULL,
    started_at       TEXT,
    finished_at      TEXT,
    duration_ms      REAL,
    error_type       TEXT,
    error_message    TEXT
);

CREATE INDEX invocations_by_function ON invocations (function_name, created_at);
