//! The rows both backends read and write, and their conversion to domain types. The SQL is
//! shared too: SQLite accepts the `$N` placeholders and `ON CONFLICT` clauses Postgres uses.
//! Lists of attempts are kept as JSON text.

use std::collections::{BTreeMap, HashMap};

use nimbus_core::{
    Attempt, CodeSha256, DeadLetter, DeadLetterReason, EventInvokeConfig, FunctionConfig,
    FunctionName, InvocationRecord, InvocationStatus, InvocationType, RedriveMark, RequestId,
};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::timestamp::Timestamp;

pub(crate) const FUNCTION_COLUMNS: &str = "name, runtime, handler, role, description, \
    timeout_secs, memory_mb, environment, reserved_concurrency, code_sha256, code_size, \
    version, revision_id, last_modified";

pub(crate) const INSERT_FUNCTION: &str = "INSERT INTO functions (name, runtime, handler, \
    role, description, timeout_secs, memory_mb, environment, reserved_concurrency, \
    code_sha256, code_size, version, revision_id, last_modified) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";

pub(crate) const UPDATE_FUNCTION: &str = "UPDATE functions SET runtime = $2, handler = $3, \
    role = $4, description = $5, timeout_secs = $6, memory_mb = $7, environment = $8, \
    reserved_concurrency = $9, code_sha256 = $10, code_size = $11, version = $12, \
    revision_id = $13, last_modified = $14 WHERE name = $1 AND revision_id = $15";

pub(crate) const INVOCATION_COLUMNS: &str = "request_id, function_name, function_version, \
    invocation_type, status, attempts, created_at, started_at, finished_at, duration_ms, \
    error_type, error_message, attempt_history, redrive_of";

/// Replaces a stored record only with one that supersedes it: the rule of
/// [`InvocationRecord::supersedes`], in SQL. Keep the two in step.
pub(crate) const UPSERT_INVOCATION_SUFFIX: &str = " ON CONFLICT (request_id) DO UPDATE SET \
    function_name = excluded.function_name, function_version = excluded.function_version, \
    invocation_type = excluded.invocation_type, status = excluded.status, \
    attempts = excluded.attempts, created_at = excluded.created_at, \
    started_at = excluded.started_at, finished_at = excluded.finished_at, \
    duration_ms = excluded.duration_ms, error_type = excluded.error_type, \
    error_message = excluded.error_message, attempt_history = excluded.attempt_history, \
    redrive_of = excluded.redrive_of \
    WHERE excluded.status <> 'queued' \
    AND (invocations.status NOT IN ('succeeded', 'failed', 'dead_lettered') \
    OR excluded.status IN ('succeeded', 'failed', 'dead_lettered'))";

pub(crate) const EVENT_INVOKE_CONFIG_COLUMNS: &str = "qualifier, maximum_retry_attempts, \
    maximum_event_age_secs, on_success, on_failure, last_modified";

pub(crate) const UPSERT_EVENT_INVOKE_CONFIG: &str = "INSERT INTO event_invoke_configs \
    (function_name, qualifier, maximum_retry_attempts, maximum_event_age_secs, on_success, \
    on_failure, last_modified) VALUES ($1, $2, $3, $4, $5, $6, $7) \
    ON CONFLICT (function_name, qualifier) DO UPDATE SET \
    maximum_retry_attempts = excluded.maximum_retry_attempts, \
    maximum_event_age_secs = excluded.maximum_event_age_secs, \
    on_success = excluded.on_success, on_failure = excluded.on_failure, \
    last_modified = excluded.last_modified";

pub(crate) const DEAD_LETTER_COLUMNS: &str = "request_id, function_name, qualifier, payload, \
    attempts, reason, enqueued_at, dead_lettered_at, redriven_at, redrive_request_id";

pub(crate) const INSERT_DEAD_LETTER: &str = "INSERT INTO dead_letters (request_id, \
    function_name, qualifier, payload, attempts, reason, enqueued_at, dead_lettered_at, \
    redriven_at, redrive_request_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
    ON CONFLICT (request_id) DO NOTHING";

/// A `functions` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct FunctionRow {
    pub(crate) name: String,
    pub(crate) runtime: String,
    pub(crate) handler: Option<String>,
    pub(crate) role: String,
    pub(crate) description: String,
    pub(crate) timeout_secs: i64,
    pub(crate) memory_mb: i64,
    /// A JSON object of strings.
    pub(crate) environment: String,
    pub(crate) reserved_concurrency: Option<i64>,
    /// Lowercase hex.
    pub(crate) code_sha256: String,
    pub(crate) code_size: i64,
    pub(crate) version: String,
    pub(crate) revision_id: String,
    pub(crate) last_modified: Timestamp,
}

impl FunctionRow {
    pub(crate) fn from_config(f: &FunctionConfig) -> Result<Self> {
        let code_size = i64::try_from(f.code_size)
            .map_err(|_| Error::Config(format!("code size {} is out of range", f.code_size)))?;
        Ok(Self {
            name: f.name.to_string(),
            runtime: f.runtime.to_string(),
            handler: f.handler.clone(),
            role: f.role.clone(),
            description: f.description.clone(),
            timeout_secs: i64::from(f.timeout_secs),
            memory_mb: i64::from(f.memory_mb),
            environment: environment_json(&f.environment),
            reserved_concurrency: f.reserved_concurrency.map(i64::from),
            code_sha256: f.code_sha256.to_hex(),
            code_size,
            version: f.version.clone(),
            revision_id: f.revision_id.clone(),
            last_modified: Timestamp::new(f.last_modified),
        })
    }

    pub(crate) fn into_config(self) -> Result<FunctionConfig> {
        let Self {
            name,
            runtime,
            handler,
            role,
            description,
            timeout_secs,
            memory_mb,
            environment,
            reserved_concurrency,
            code_sha256,
            code_size,
            version,
            revision_id,
            last_modified,
        } = self;
        let corrupt = |what: &str| Error::Corrupt(format!("function {name}: {what}"));
        Ok(FunctionConfig {
            runtime: runtime.parse().map_err(|_| corrupt("runtime"))?,
            handler,
            role,
            description,
            timeout_secs: u32::try_from(timeout_secs).map_err(|_| corrupt("timeout"))?,
            memory_mb: u32::try_from(memory_mb).map_err(|_| corrupt("memory"))?,
            environment: serde_json::from_str(&environment)
                .map_err(|_| corrupt("environment is not a JSON object of strings"))?,
            reserved_concurrency: reserved_concurrency
                .map(u32::try_from)
                .transpose()
                .map_err(|_| corrupt("reserved concurrency"))?,
            code_sha256: CodeSha256::from_hex(&code_sha256).map_err(|_| corrupt("code sha256"))?,
            code_size: u64::try_from(code_size).map_err(|_| corrupt("code size"))?,
            version,
            revision_id,
            last_modified: last_modified.get(),
            name: FunctionName::parse(&name).map_err(|_| corrupt("name"))?,
        })
    }
}

fn environment_json(environment: &BTreeMap<String, String>) -> String {
    // A map of strings to strings always serializes; the fallback is never taken.
    serde_json::to_string(environment).unwrap_or_else(|_| "{}".to_owned())
}

/// An `invocations` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct InvocationRow {
    pub(crate) request_id: Uuid,
    pub(crate) function_name: String,
    pub(crate) function_version: String,
    pub(crate) invocation_type: String,
    pub(crate) status: String,
    pub(crate) attempts: i64,
    pub(crate) created_at: Timestamp,
    pub(crate) started_at: Option<Timestamp>,
    pub(crate) finished_at: Option<Timestamp>,
    pub(crate) duration_ms: Option<f64>,
    pub(crate) error_type: Option<String>,
    pub(crate) error_message: Option<String>,
    /// A JSON array of [`Attempt`]s.
    pub(crate) attempt_history: String,
    pub(crate) redrive_of: Option<Uuid>,
}

impl InvocationRow {
    pub(crate) fn from_record(r: &InvocationRecord) -> Self {
        Self {
            request_id: r.request_id.as_uuid(),
            function_name: r.function_name.to_string(),
            function_version: r.function_version.clone(),
            invocation_type: r.invocation_type.as_str().to_owned(),
            status: r.status.as_str().to_owned(),
            attempts: i64::from(r.attempts),
            created_at: Timestamp::new(r.created_at),
            started_at: r.started_at.map(Timestamp::new),
            finished_at: r.finished_at.map(Timestamp::new),
            duration_ms: r.duration_ms,
            error_type: r.error_type.clone(),
            error_message: r.error_message.clone(),
            attempt_history: attempts_json(&r.attempt_history),
            redrive_of: r.redrive_of.map(|id| id.as_uuid()),
        }
    }

    pub(crate) fn into_record(self) -> Result<InvocationRecord> {
        let Self {
            request_id,
            function_name,
            function_version,
            invocation_type,
            status,
            attempts,
            created_at,
            started_at,
            finished_at,
            duration_ms,
            error_type,
            error_message,
            attempt_history,
            redrive_of,
        } = self;
        let corrupt = |what: &str| Error::Corrupt(format!("invocation {request_id}: {what}"));
        Ok(InvocationRecord {
            request_id: RequestId::from(request_id),
            function_name: FunctionName::parse(&function_name)
                .map_err(|_| corrupt("function name"))?,
            function_version,
            invocation_type: invocation_type
                .parse::<InvocationType>()
                .map_err(|_| corrupt("invocation type"))?,
            status: status
                .parse::<InvocationStatus>()
                .map_err(|_| corrupt("status"))?,
            attempts: u32::try_from(attempts).map_err(|_| corrupt("attempts"))?,
            created_at: created_at.get(),
            started_at: started_at.map(Timestamp::get),
            finished_at: finished_at.map(Timestamp::get),
            duration_ms,
            error_type,
            error_message,
            attempt_history: serde_json::from_str(&attempt_history)
                .map_err(|_| corrupt("attempt history is not a JSON array of attempts"))?,
            redrive_of: redrive_of.map(RequestId::from),
        })
    }
}

fn attempts_json(attempts: &[Attempt]) -> String {
    // Times and strings always serialize; the fallback is never taken.
    serde_json::to_string(attempts).unwrap_or_else(|_| "[]".to_owned())
}

/// One record per request id, in the order each id first appears: what is left after
/// applying the records one after the other, each replacing the previous one only if it
/// [supersedes](InvocationRecord::supersedes) it. One upsert statement may not touch a row
/// twice (Postgres refuses).
pub(crate) fn kept_per_request(records: &[InvocationRecord]) -> Vec<&InvocationRecord> {
    let mut kept: Vec<&InvocationRecord> = Vec::new();
    let mut index: HashMap<RequestId, usize> = HashMap::new();
    for record in records {
        match index.get(&record.request_id) {
            Some(&at) => {
                if record.supersedes(kept[at]) {
                    kept[at] = record;
                }
            }
            None => {
                index.insert(record.request_id, kept.len());
                kept.push(record);
            }
        }
    }
    kept
}

/// An `event_invoke_configs` row as read (the function name is known to the caller).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EventInvokeConfigRow {
    pub(crate) qualifier: String,
    pub(crate) maximum_retry_attempts: Option<i64>,
    pub(crate) maximum_event_age_secs: Option<i64>,
    pub(crate) on_success: Option<String>,
    pub(crate) on_failure: Option<String>,
    pub(crate) last_modified: Timestamp,
}

impl EventInvokeConfigRow {
    pub(crate) fn from_config(qualifier: &str, c: &EventInvokeConfig) -> Self {
        Self {
            qualifier: qualifier.to_owned(),
            maximum_retry_attempts: c.maximum_retry_attempts.map(i64::from),
            maximum_event_age_secs: c.maximum_event_age_secs.map(i64::from),
            on_success: c.on_success.clone(),
            on_failure: c.on_failure.clone(),
            last_modified: Timestamp::new(c.last_modified),
        }
    }

    pub(crate) fn into_config(
        self,
        function: &FunctionName,
    ) -> Result<(String, EventInvokeConfig)> {
        let Self {
            qualifier,
            maximum_retry_attempts,
            maximum_event_age_secs,
            on_success,
            on_failure,
            last_modified,
        } = self;
        let corrupt = |what: &str| {
            Error::Corrupt(format!(
                "event invoke config {function}:{qualifier}: {what}"
            ))
        };
        let config = EventInvokeConfig {
            maximum_retry_attempts: maximum_retry_attempts
                .map(u32::try_from)
                .transpose()
                .map_err(|_| corrupt("maximum retry attempts"))?,
            maximum_event_age_secs: maximum_event_age_secs
                .map(u32::try_from)
                .transpose()
                .map_err(|_| corrupt("maximum event age"))?,
            on_success,
            on_failure,
            last_modified: last_modified.get(),
        };
        Ok((qualifier, config))
    }
}

/// A `dead_letters` row as stored.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DeadLetterRow {
    pub(crate) request_id: Uuid,
    pub(crate) function_name: String,
    pub(crate) qualifier: String,
    pub(crate) payload: Vec<u8>,
    /// A JSON array of [`Attempt`]s.
    pub(crate) attempts: String,
    pub(crate) reason: String,
    pub(crate) enqueued_at: Timestamp,
    pub(crate) dead_lettered_at: Timestamp,
    /// Set together with `redrive_request_id`, or not at all.
    pub(crate) redriven_at: Option<Timestamp>,
    pub(crate) redrive_request_id: Option<Uuid>,
}

impl DeadLetterRow {
    pub(crate) fn from_letter(l: &DeadLetter) -> Self {
        Self {
            request_id: l.request_id.as_uuid(),
            function_name: l.function_name.to_string(),
            qualifier: l.qualifier.clone(),
            payload: l.payload.to_vec(),
            attempts: attempts_json(&l.attempts),
            reason: l.reason.as_str().to_owned(),
            enqueued_at: Timestamp::new(l.enqueued_at),
            dead_lettered_at: Timestamp::new(l.dead_lettered_at),
            redriven_at: l.redrive.map(|mark| Timestamp::new(mark.at)),
            redrive_request_id: l.redrive.map(|mark| mark.request_id.as_uuid()),
        }
    }

    pub(crate) fn into_letter(self) -> Result<DeadLetter> {
        let Self {
            request_id,
            function_name,
            qualifier,
            payload,
            attempts,
            reason,
            enqueued_at,
            dead_lettered_at,
            redriven_at,
            redrive_request_id,
        } = self;
        let corrupt = |what: &str| Error::Corrupt(format!("dead letter {request_id}: {what}"));
        let redrive = match (redriven_at, redrive_request_id) {
            (Some(at), Some(id)) => Some(RedriveMark {
                at: at.get(),
                request_id: RequestId::from(id),
            }),
            (None, None) => None,
            _ => return Err(corrupt("half a redrive mark")),
        };
        Ok(DeadLetter {
            request_id: RequestId::from(request_id),
            function_name: FunctionName::parse(&function_name)
                .map_err(|_| corrupt("function name"))?,
            qualifier,
            payload: payload.into(),
            attempts: serde_json::from_str(&attempts)
                .map_err(|_| corrupt("attempts are not a JSON array of attempts"))?,
            reason: reason
                .parse::<DeadLetterReason>()
                .map_err(|_| corrupt("reason"))?,
            enqueued_at: enqueued_at.get(),
            dead_lettered_at: dead_lettered_at.get(),
            redrive,
        })
    }
}
