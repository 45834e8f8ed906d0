-- Asynchronous invocation: each record's attempts and redrive origin, event invoke
-- configurations, and dead letters.

ALTER TABLE invocations ADD COLUMN attempt_history TEXT NOT NULL DEFAULT '[]';
ALTER TABLE invocations ADD COLUMN redrive_of UUID;

CREATE INDEX invocations_by_status ON invocations (status, created_at);

CREATE TABLE event_invoke_configs (
    function_name          TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
    qualifier              TEXT NOT NULL,
    maximum_retry_attempts BIGINT,
    maximum_event_age_secs BIGINT,
    on_success             TEXT,
    on_failure             TEXT,
    last_modified          TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (function_name, qualifier)
);

-- No foreign key to functions: a dead letter outlives its function.
CREATE TABLE dead_letters (
    request_id         UUID PRIMARY KEY,
    function_name      TEXT NOT NULL,
    qualifier          TEXT NOT NULL,
    payload            BYTEA NOT NULL,
    attempts           TEXT NOT NULL,
    reason             TEXT NOT NULL,
    enqueued_at        TIMESTAMPTZ NOT NULL,
    dead_lettered_at   TIMESTAMPTZ NOT NULL,
    redriven_at        TIMESTAMPTZ,
    redrive_request_id UUID
);

CREATE INDEX dead_letters_by_function ON dead_letters (function_name, dead_lettered_at);
CREATE INDEX dead_letters_by_time ON dead_letters (dead_lettered_at);
