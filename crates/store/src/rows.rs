//! The rows both backends read and write, and their conversion to domain types. The SQL is
//! shared too: SQLite accepts the `$N` placeholders and `ON CONFLICT` clauses Postgres uses.

use std::collections::BTreeMap;

use nimbus_core::{
    CodeSha256, FunctionConfig, FunctionName, InvocationRecord, InvocationStatus, InvocationType,
    RequestId,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{Error, Result};

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
    error_type, error_message";

pub(crate) const UPSERT_INVOCATION_SUFFIX: &str = " ON CONFLICT (request_id) DO UPDATE SET \
    function_name = excluded.function_name, function_version = excluded.function_version, \
    invocation_type = excluded.invocation_type, status = excluded.status, \
    attempts = excluded.attempts, created_at = excluded.created_at, \
    started_at = excluded.started_at, finished_at = excluded.finished_at, \
    duration_ms = excluded.duration_ms, error_type = excluded.error_type, \
    error_message = excluded.error_message";

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
    pub(crate) environment: String,
    pub(crate) reserved_concurrency: Option<i64>,
    pub code_sha256: String,
    pub(crate) code_size: i64,
    pub(crate) version: String,
    pub(crate) revision_id: String,
    pub(crate) last_modified: OffsetDateTime,
}

impl FunctionRow {
    pub(crate) fn from_config(f: &FunctionConfig) -> Result<Self> {
        Ok(Self {
            name: f.name.to_string(),
            runtime: f.runtime.to_string(),
            handler: f.handler.clone(),
            role: f.role.clone(),
            description: f.description.clone(),
            timeout_secs: i64::from(f.timeout_secs),
            memory_mb: i64::from(f.memory_mb),
            environment: serde_json::to_string(&f.environment)
                .map_err(|e| Error::Corrupt(e.to_string()))?,
            reserved_concurrency: f.reserved_concurrency.map(i64::from),
            code_sha256: f.code_sha256.to_hex(),
            code_size: to_i64(f.code_size)?,
            version: f.version.clone(),
            revision_id: f.revision_id.clone(),
            last_modified: to_stored_time(f.last_modified),
        })
    }

    pub(crate) fn into_config(self) -> Result<FunctionConfig> {
        let corrupt = |what: &str| Error::Corrupt(format!("function {}: {what}", self.name));
        let environment: BTreeMap<String, String> = serde_json::from_str(&self.environment)
            .map_err(|_| corrupt("environment is not a JSON object of strings"))?;
        Ok(FunctionConfig {
            name: FunctionName::parse(&self.name).map_err(|_| corrupt("name"))?,
            runtime: self.runtime.parse().map_err(|_| corrupt("runtime"))?,
            handler: self.handler.clone(),
            role: self.role.clone(),
            description: self.description.clone(),
            timeout_secs: u32::try_from(self.timeout_secs).map_err(|_| corrupt("timeout"))?,
            memory_mb: u32::try_from(self.memory_mb).map_err(|_| corrupt("memory"))?,
            environment,
            reserved_concurrency: self
                .reserved_concurrency
                .map(u32::try_from)
                .transpose()
                .map_err(|_| corrupt("reserved concurrency"))?,
            code_sha256: CodeSha256::from_hex(&self.code_sha256)
                .map_err(|_| corrupt("code sha256"))?,
            code_size: u64::try_from(self.code_size).map_err(|_| corrupt("code size"))?,
            version: self.version.clone(),
            revision_id: self.revision_id.clone(),
            last_modified: self.last_modified,
        })
    }
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
    pub(crate) created_at: OffsetDateTime,
    pub(crate) started_at: Option<OffsetDateTime>,
    pub(crate) finished_at: Option<OffsetDateTime>,
    pub(crate) duration_ms: Option<f64>,
    pub(crate) error_type: Option<String>,
    pub(crate) error_message: Option<String>,
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
            created_at: to_stored_time(r.created_at),
            started_at: r.started_at.map(to_stored_time),
            finished_at: r.finished_at.map(to_stored_time),
            duration_ms: r.duration_ms,
            error_type: r.error_type.clone(),
            error_message: r.error_message.clone(),
        }
    }

    pub(crate) fn into_record(self) -> Result<InvocationRecord> {
        let corrupt =
            |what: &str| Error::Corrupt(format!("invocation {}: {what}", self.request_id));
        Ok(InvocationRecord {
            request_id: RequestId::from(self.request_id),
            function_name: FunctionName::parse(&self.function_name)
                .map_err(|_| corrupt("function name"))?,
            function_version: self.function_version.clone(),
            invocation_type: self
                .invocation_type
                .parse::<InvocationType>()
                .map_err(|_| corrupt("invocation type"))?,
            status: self
                .status
                .parse::<InvocationStatus>()
                .map_err(|_| corrupt("status"))?,
            attempts: u32::try_from(self.attempts).map_err(|_| corrupt("attempts"))?,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            duration_ms: self.duration_ms,
            error_type: self.error_type.clone(),
            error_message: self.error_message.clone(),
        })
    }
}

/// Timestamps are stored with microsecond precision, in UTC: what Postgres keeps, so both
/// backends give back exactly what they were given after this rounding.
pub(crate) fn to_stored_time(t: OffsetDateTime) -> OffsetDateTime {
    let t = t.to_offset(time::UtcOffset::UTC);
    let micros = t.nanosecond() / 1_000 * 1_000;
    t.replace_nanosecond(micros).unwrap_or(t)
}

fn to_i64(n: u64) -> Result<i64> {
    i64::try_from(n).map_err(|_| Error::Corrupt(format!("{n} does not fit a BIGINT")))
}
