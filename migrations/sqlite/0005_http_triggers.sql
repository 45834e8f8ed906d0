-- HTTP triggers: function URLs (one per function or alias, served under /lambda-url/{url_id})
-- and API-Gateway-style routes (a method and a path template mapped to a function).

CREATE TABLE function_urls (
    function_name TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
    -- An alias name, or '' for the unqualified function.
    qualifier     TEXT NOT NULL,
    url_id        TEXT NOT NULL UNIQUE,
    auth_type     TEXT NOT NULL,
    invoke_mode   TEXT NOT NULL,
    -- The Cors shape of the Lambda model, as JSON.
    cors          TEXT,
    created_at    TEXT NOT NULL,
    last_modified TEXT NOT NULL,
    PRIMARY KEY (function_name, qualifier)
);

-- No foreign key to functions: a route outlives its function and answers 500 until it is
-- pointed elsewhere or removed, as an API Gateway route does.
CREATE TABLE http_routes (
    route_id            TEXT PRIMARY KEY,
    method              TEXT NOT NULL,
    path                TEXT NOT NULL,
    -- The path with parameter names erased: routes with the same method and key conflict.
    conflict_key        TEXT NOT NULL,
    function_name       TEXT NOT NULL,
    qualifier           TEXT,
    invocation_type     TEXT NOT NULL,
    integration_timeout_ms INTEGER NOT NULL,
    auth_type           TEXT NOT NULL,
    cors                TEXT,
    created_at          TEXT NOT NULL,
    UNIQUE (method, conflict_key)
);
