-- Provisioned concurrency: per published version or alias, how many instances to keep
-- initialised, and how many the invoker has (status IN_PROGRESS, READY or FAILED).

CREATE TABLE provisioned_concurrency (
    function_name TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
    qualifier     TEXT NOT NULL,
    requested     INTEGER NOT NULL,
    allocated     INTEGER NOT NULL,
    status        TEXT NOT NULL,
    status_reason TEXT,
    last_modified TEXT NOT NULL,
    PRIMARY KEY (function_name, qualifier)
);
