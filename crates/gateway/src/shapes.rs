//! The JSON shapes on the wire, named as botocore's Lambda service model names them
//! (PascalCase members), and the `/nimbus/v1` shapes (invocation records, dead letters), which
//! are Nimbus' own and use camelCase throughout.
//!
//! Request members Nimbus does not implement (VPC, layers, ...) are accepted and
//! ignored, as tools such as the CLI and SAM send several of them empty by default.

use std::collections::BTreeMap;

use base64::Engine as _;
use nimbus_core::{Attempt, DeadLetter, Error, FunctionConfig, InvocationRecord, Redriven};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;

use crate::code::BASE64;
use crate::state::GatewayConfig;

/// Lambda's `LastModified`: `2024-01-31T12:34:56.789+0000`, always in UTC.
const LAST_MODIFIED: &[BorrowedFormatItem<'static>] = format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3][offset_hour sign:mandatory][offset_minute]"
);

pub(crate) fn last_modified(at: OffsetDateTime) -> Result<String, Error> {
    at.to_offset(time::UtcOffset::UTC)
        .format(LAST_MODIFIED)
        .map_err(|e| Error::Service(format!("cannot format timestamp {at}: {e}")))
}

// ---- requests ----

/// `Publish` publishes version 1 right after the function is created; `Tags` are kept.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct CreateFunctionRequest {
    pub(crate) function_name: Option<String>,
    pub(crate) runtime: Option<String>,
    pub(crate) role: Option<String>,
    pub(crate) handler: Option<String>,
    pub(crate) code: Option<FunctionCode>,
    pub(crate) description: Option<String>,
    pub(crate) timeout: Option<u32>,
    pub(crate) memory_size: Option<u32>,
    pub(crate) environment: Option<Environment>,
    pub(crate) package_type: Option<String>,
    pub(crate) architectures: Option<Vec<String>>,
    pub(crate) publish: Option<bool>,
    pub(crate) tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct FunctionCode {
    /// Base64, as every SDK sends a blob.
    pub(crate) zip_file: Option<String>,
    pub(crate) s3_bucket: Option<String>,
    pub(crate) s3_key: Option<String>,
    pub(crate) s3_object_version: Option<String>,
    pub(crate) image_uri: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Environment {
    pub(crate) variables: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UpdateFunctionCodeRequest {
    pub(crate) zip_file: Option<String>,
    pub(crate) s3_bucket: Option<String>,
    pub(crate) s3_key: Option<String>,
    pub(crate) s3_object_version: Option<String>,
    pub(crate) image_uri: Option<String>,
    pub(crate) architectures: Option<Vec<String>>,
    pub(crate) dry_run: Option<bool>,
    pub(crate) revision_id: Option<String>,
    pub(crate) publish: Option<bool>,
}

impl UpdateFunctionCodeRequest {
    /// The code members, in the shape `CreateFunction` nests them.
    pub(crate) fn code(&self) -> FunctionCode {
        FunctionCode {
            zip_file: self.zip_file.clone(),
            s3_bucket: self.s3_bucket.clone(),
            s3_key: self.s3_key.clone(),
            s3_object_version: self.s3_object_version.clone(),
            image_uri: self.image_uri.clone(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct UpdateFunctionConfigurationRequest {
    pub(crate) role: Option<String>,
    pub(crate) handler: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) timeout: Option<u32>,
    pub(crate) memory_size: Option<u32>,
    pub(crate) environment: Option<Environment>,
    pub(crate) runtime: Option<String>,
    pub(crate) revision_id: Option<String>,
}

/// `ListFunctions` and `ListFunctionEventInvokeConfigs` page the same way.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListFunctionsQuery {
    pub(crate) marker: Option<String>,
    pub(crate) max_items: Option<u32>,
}

/// The body of `PutFunctionEventInvokeConfig` and `UpdateFunctionEventInvokeConfig`. The
/// numbers are read wide so that a negative one is refused with the model's message.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct EventInvokeConfigRequest {
    pub(crate) maximum_retry_attempts: Option<i64>,
    pub(crate) maximum_event_age_in_seconds: Option<i64>,
    pub(crate) destination_config: Option<DestinationConfigRequest>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DestinationConfigRequest {
    pub(crate) on_success: Option<DestinationRequest>,
    pub(crate) on_failure: Option<DestinationRequest>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DestinationRequest {
    pub(crate) destination: Option<String>,
}

// ---- responses ----

/// `FunctionConfiguration`, the answer of most control operations.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct FunctionConfiguration {
    function_name: String,
    function_arn: String,
    runtime: String,
    role: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    handler: Option<String>,
    code_size: u64,
    description: String,
    timeout: u32,
    memory_size: u32,
    last_modified: String,
    code_sha256: String,
    version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    environment: Option<EnvironmentResponse>,
    tracing_config: TracingConfig,
    revision_id: String,
    state: &'static str,
    last_update_status: &'static str,
    package_type: &'static str,
    architectures: [&'static str; 1],
    ephemeral_storage: EphemeralStorage,
    snap_start: SnapStart,
    logging_config: LoggingConfig,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct EnvironmentResponse {
    variables: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct TracingConfig {
    mode: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct EphemeralStorage {
    size: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct SnapStart {
    apply_on: &'static str,
    optimization_status: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct LoggingConfig {
    log_format: &'static str,
    log_group: String,
}

/// The one architecture Nimbus reports.
pub(crate) const ARCHITECTURE: &str = "x86_64";

impl FunctionConfiguration {
    pub(crate) fn new(function: &FunctionConfig, config: &GatewayConfig) -> Result<Self, Error> {
        Ok(Self {
            function_name: function.name.to_string(),
            // A published version is named by its qualified ARN, $LATEST by the plain one.
            function_arn: if function.version == nimbus_core::function::LATEST {
                config.function_arn(&function.name)
            } else {
                config.qualified_arn(&function.name, &function.version)
            },
            runtime: function.runtime.to_string(),
            role: function.role.clone(),
            handler: function.handler.clone(),
            code_size: function.code_size,
            description: function.description.clone(),
            timeout: function.timeout_secs,
            memory_size: function.memory_mb,
            last_modified: last_modified(function.last_modified)?,
            code_sha256: function.code_sha256.to_base64(),
            version: function.version.clone(),
            environment: (!function.environment.is_empty()).then(|| EnvironmentResponse {
                variables: function.environment.clone(),
            }),
            tracing_config: TracingConfig {
                mode: "PassThrough",
            },
            revision_id: function.revision_id.clone(),
            state: "Active",
            last_update_status: "Successful",
            package_type: "Zip",
            architectures: [ARCHITECTURE],
            ephemeral_storage: EphemeralStorage { size: 512 },
            snap_start: SnapStart {
                apply_on: "None",
                optimization_status: "Off",
            },
            logging_config: LoggingConfig {
                log_format: "Text",
                log_group: format!("/aws/lambda/{}", function.name),
            },
        })
    }
}

/// `GetFunction`'s answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct GetFunctionResponse {
    pub(crate) configuration: FunctionConfiguration,
    pub(crate) code: FunctionCodeLocation,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) tags: Option<BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) concurrency: Option<Concurrency>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct FunctionCodeLocation {
    pub(crate) repository_type: &'static str,
    pub(crate) location: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Concurrency {
    pub(crate) reserved_concurrent_executions: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListFunctionsResponse {
    pub(crate) functions: Vec<FunctionConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_marker: Option<String>,
}

/// `FunctionEventInvokeConfig`. Unset limits are left out (they mean Lambda's defaults);
/// `DestinationConfig` is always there, with empty members when nothing is configured, as
/// Lambda answers.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct FunctionEventInvokeConfig {
    /// Epoch seconds: rest-json's default timestamp format, which the model's `Date` keeps.
    last_modified: f64,
    function_arn: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    maximum_retry_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    maximum_event_age_in_seconds: Option<u32>,
    destination_config: DestinationConfigResponse,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DestinationConfigResponse {
    on_success: DestinationResponse,
    on_failure: DestinationResponse,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct DestinationResponse {
    #[serde(skip_serializing_if = "Option::is_none")]
    destination: Option<String>,
}

impl FunctionEventInvokeConfig {
    pub(crate) fn new(function_arn: String, config: &nimbus_core::EventInvokeConfig) -> Self {
        Self {
            last_modified: epoch_seconds(config.last_modified),
            function_arn,
            maximum_retry_attempts: config.maximum_retry_attempts,
            maximum_event_age_in_seconds: config.maximum_event_age_secs,
            destination_config: DestinationConfigResponse {
                on_success: DestinationResponse {
                    destination: config.on_success.clone(),
                },
                on_failure: DestinationResponse {
                    destination: config.on_failure.clone(),
                },
            },
        }
    }
}

/// Seconds since the epoch with millisecond precision, as Lambda sends `Date` members.
fn epoch_seconds(at: OffsetDateTime) -> f64 {
    let millis = at.unix_timestamp_nanos() / 1_000_000;
    millis as f64 / 1000.0
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListFunctionEventInvokeConfigsResponse {
    pub(crate) function_event_invoke_configs: Vec<FunctionEventInvokeConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_marker: Option<String>,
}

// ---- /nimbus/v1 ----

/// `GET /nimbus/v1/invocations/{id}`: an invocation record, timestamps in RFC 3339.
/// `attempts` counts the attempts; `attemptHistory` has each of an event's attempts.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InvocationRecordView {
    request_id: String,
    function_name: String,
    function_version: String,
    invocation_type: &'static str,
    status: &'static str,
    attempts: u32,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    started_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    finished_at: Option<OffsetDateTime>,
    duration_ms: Option<f64>,
    error_type: Option<String>,
    error_message: Option<String>,
    attempt_history: Vec<AttemptView>,
    /// The dead letter's request id, for an event redriven from the dead-letter queue.
    redrive_of: Option<String>,
}

impl From<InvocationRecord> for InvocationRecordView {
    fn from(record: InvocationRecord) -> Self {
        Self {
            request_id: record.request_id.to_string(),
            function_name: record.function_name.to_string(),
            function_version: record.function_version,
            invocation_type: record.invocation_type.as_str(),
            status: record.status.as_str(),
            attempts: record.attempts,
            created_at: record.created_at,
            started_at: record.started_at,
            finished_at: record.finished_at,
            duration_ms: record.duration_ms,
            error_type: record.error_type,
            error_message: record.error_message,
            attempt_history: record.attempt_history.into_iter().map(Into::into).collect(),
            redrive_of: record.redrive_of.map(|id| id.to_string()),
        }
    }
}

/// One attempt of an asynchronous invocation; the error members are null for a success.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AttemptView {
    #[serde(with = "time::serde::rfc3339")]
    started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    finished_at: OffsetDateTime,
    duration_ms: f64,
    error_type: Option<String>,
    error_message: Option<String>,
}

impl From<Attempt> for AttemptView {
    fn from(attempt: Attempt) -> Self {
        Self {
            duration_ms: (attempt.finished_at - attempt.started_at).as_seconds_f64() * 1000.0,
            started_at: attempt.started_at,
            finished_at: attempt.finished_at,
            error_type: attempt.error_type,
            error_message: attempt.error_message,
        }
    }
}

/// `GET /nimbus/v1/invocations`: newest first; `nextToken` is null on the last page.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InvocationList {
    pub(crate) invocations: Vec<InvocationRecordView>,
    pub(crate) next_token: Option<String>,
}

/// A dead letter. The payload is there only when one letter is asked for: as JSON in
/// `payload` when it parses (it always should: the gateway accepted only JSON), else as
/// base64 in `payloadBase64`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeadLetterView {
    request_id: String,
    function_name: String,
    qualifier: String,
    reason: &'static str,
    attempts: usize,
    attempt_history: Vec<AttemptView>,
    #[serde(with = "time::serde::rfc3339")]
    enqueued_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    dead_lettered_at: OffsetDateTime,
    /// Null until the letter is redriven.
    redrive: Option<RedriveView>,
    payload_bytes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RedriveView {
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    /// The request id of the invocation the redrive started.
    request_id: String,
}

impl DeadLetterView {
    /// Without the payload, for listings.
    pub(crate) fn summary(letter: DeadLetter) -> Self {
        Self {
            request_id: letter.request_id.to_string(),
            function_name: letter.function_name.to_string(),
            qualifier: letter.qualifier,
            reason: letter.reason.as_str(),
            attempts: letter.attempts.len(),
            attempt_history: letter.attempts.into_iter().map(Into::into).collect(),
            enqueued_at: letter.enqueued_at,
            dead_lettered_at: letter.dead_lettered_at,
            redrive: letter.redrive.map(|mark| RedriveView {
                at: mark.at,
                request_id: mark.request_id.to_string(),
            }),
            payload_bytes: letter.payload.len(),
            payload: None,
            payload_base64: None,
        }
    }

    /// With the payload, verbatim when it is JSON.
    pub(crate) fn full(letter: DeadLetter) -> Self {
        let payload = letter.payload.clone();
        let mut view = Self::summary(letter);
        let json = String::from_utf8(payload.to_vec())
            .ok()
            .and_then(|text| RawValue::from_string(text).ok());
        match json {
            Some(json) => view.payload = Some(json),
            None => view.payload_base64 = Some(BASE64.encode(&payload)),
        }
        view
    }
}

/// `GET /nimbus/v1/dead-letters`: oldest first; `nextToken` is null on the last page.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeadLetterList {
    pub(crate) dead_letters: Vec<DeadLetterView>,
    pub(crate) next_token: Option<String>,
}

/// What a redrive did: one entry per letter re-queued.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RedriveResult {
    pub(crate) redriven: Vec<RedrivenView>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RedrivenView {
    original_request_id: String,
    /// The new invocation's id: its record is at `/nimbus/v1/invocations/{requestId}`.
    request_id: String,
}

impl From<Redriven> for RedrivenView {
    fn from(redriven: Redriven) -> Self {
        Self {
            original_request_id: redriven.original.to_string(),
            request_id: redriven.request_id.to_string(),
        }
    }
}

/// What a purge by filter did.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PurgeResult {
    pub(crate) purged: u64,
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn last_modified_looks_like_lambdas() {
        let at = datetime!(2024-01-31 14:34:56.789123 +02:00);
        assert_eq!(last_modified(at).unwrap(), "2024-01-31T12:34:56.789+0000");
    }
}

// ---- versions, aliases, concurrency, tags, account ----

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct PublishVersionRequest {
    /// Base64, as `FunctionConfiguration.CodeSha256` shows it.
    pub(crate) code_sha256: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) revision_id: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListVersionsResponse {
    pub(crate) versions: Vec<FunctionConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_marker: Option<String>,
}

/// The body of `CreateAlias` (all members) and `UpdateAlias` (no `Name`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AliasRequest {
    pub(crate) name: Option<String>,
    pub(crate) function_version: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) routing_config: Option<AliasRoutingConfig>,
    pub(crate) revision_id: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AliasRoutingConfig {
    #[serde(default)]
    pub(crate) additional_version_weights: BTreeMap<String, f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListAliasesQuery {
    pub(crate) function_version: Option<String>,
    pub(crate) marker: Option<String>,
    pub(crate) max_items: Option<u32>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AliasConfiguration {
    alias_arn: String,
    name: String,
    function_version: String,
    description: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    routing_config: Option<AliasRoutingConfig>,
    revision_id: String,
}

impl AliasConfiguration {
    pub(crate) fn new(alias: &nimbus_core::Alias, config: &GatewayConfig) -> Self {
        Self {
            alias_arn: config.qualified_arn(&alias.function_name, &alias.name),
            name: alias.name.clone(),
            function_version: alias.function_version.clone(),
            description: alias.description.clone(),
            routing_config: (!alias.routing.is_empty()).then(|| AliasRoutingConfig {
                additional_version_weights: alias.routing.clone(),
            }),
            revision_id: alias.revision_id.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListAliasesResponse {
    pub(crate) aliases: Vec<AliasConfiguration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_marker: Option<String>,
}

/// `PutFunctionConcurrency`'s body and answer, and `GetFunctionConcurrency`'s answer (empty
/// when the function has no reserved concurrency). Read wide so that a negative number is
/// refused with a clear message.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ConcurrencyBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reserved_concurrent_executions: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct TagResourceRequest {
    pub(crate) tags: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListTagsResponse {
    pub(crate) tags: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AccountSettings {
    pub(crate) account_limit: AccountLimit,
    pub(crate) account_usage: AccountUsage,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AccountLimit {
    pub(crate) total_code_size: u64,
    pub(crate) code_size_unzipped: u64,
    pub(crate) code_size_zipped: u64,
    pub(crate) concurrent_executions: u32,
    pub(crate) unreserved_concurrent_executions: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct AccountUsage {
    pub(crate) total_code_size: u64,
    pub(crate) function_count: u64,
}
