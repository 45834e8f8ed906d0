-- Provisioned concurrency: per published version or alias, how many instances to keep
-- initialised, and how many the invoker has (status IN_PROGRESS, READY or FAILED).

CREATE TABLE provisioned_concurrency (
    function_name TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
    qualifier     TEXT NOT NULL,
    requested     BIGINT NOT NULL,
    allocated     BIGINT NOT NULL,
    status        TEXT NOT NULL,
    status_reason TEXT,
    last_modified TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (function_name, qualifier)
);
