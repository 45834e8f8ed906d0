-- Asynchronous invocation: each record's attempts and redrive origin, event invoke
-- configurations, and dead letters.
-- As in 0001: timestamps are fixed-width RFC 3339 text, request ids 16-byte blobs (how sqlx
-- binds a UUID to SQLite), lists of attempts JSON text.

ALTER TABLE invocations ADD COLUMN attempt_history TEXT NOT NULL DEFAULT '[]';
ALTER TABLE invocations ADD COLUMN redrive_of BLOB;

CREATE INDEX invocations_by_status ON invocations (status, created_at);

CREATE TABLE event_invoke_configs (
    function_name          TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
    qualifier              TEXT NOT NULL,
    maximum_retry_attempts INTEGER,
    maximum_event_age_secs INTEGER,
    on_success             TEXT,
    on_failure             TEXT,
    last_modified          TEXT NOT NULL,
    PRIMARY KEY (function_name, qualifier)
);

-- No foreign key to functions: a dead letter outlives its function.
CREATE TABLE dead_letters (
    request_id         BLOB PRIMARY KEY,
    function_name      TEXT NOT NULL,
    qualifier          TEXT NOT NULL,
    payload            BLOB NOT NULL,
    attempts           TEXT NOT NULL,
    reason             TEXT NOT NULL,
    enqueued_at        TEXT NOT NULL,
    dead_lettered_at   TEXT NOT NULL,
    redriven_at        TEXT,
    redrive_request_id BLOB
);

CREATE INDEX dead_letters_by_function ON dead_letters (function_name, dead_lettered_at);
CREATE INDEX dead_letters_by_time ON dead_letters (dead_lettered_at);
