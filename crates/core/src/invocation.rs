//! One invocation of a function: what is asked of the invoker, what comes back, and the
//! record Nimbus keeps of it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::function::{FunctionConfig, FunctionName};

/// Keeps a paged listing's place: the time and request id of the last item returned.
/// Listings are ordered by time, then request id, so the pair is unique and stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: OffsetDateTime,
    pub request_id: RequestId,
}

impl Cursor {
    /// An opaque page token for `NextMarker`-style paging: `<unix micros>_<request id>`.
    pub fn to_token(&self) -> String {
        format!(
            "{}_{}",
            self.at.unix_timestamp_nanos() / 1000,
            self.request_id
        )
    }

    pub fn parse_token(token: &str) -> Result<Self> {
        let invalid = || Error::InvalidParameterValue(format!("Invalid page token: {token}"));
        let (micros, id) = token.split_once('_').ok_or_else(invalid)?;
        let micros: i128 = micros.parse().map_err(|_| invalid())?;
        let at = OffsetDateTime::from_unix_timestamp_nanos(micros * 1000).map_err(|_| invalid())?;
        Ok(Self {
            at,
            request_id: RequestId::parse(id).map_err(|_| invalid())?,
        })
    }
}

/// Names one invocation everywhere: headers, logs, records, traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(Uuid);

impl RequestId {
    /// A new id: a UUIDv7, time-ordered with 74 random bits, so that the records keyed by it
    /// are appended to the end of the stores' primary-key B-trees instead of dirtying a random
    /// page each (measured by `nimbus bench`, README § Benchmark). Clients see an ordinary
    /// UUID, as Lambda's request ids are.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn parse(s: &str) -> Result<Self> {
        Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| Error::InvalidParameterValue(format!("'{s}' is not a request id")))
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for RequestId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl From<Uuid> for RequestId {
    fn from(value: Uuid) -> Self {
        Self(value)
    }
}

/// `X-Amz-Invocation-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvocationType {
    RequestResponse,
    Event,
    DryRun,
}

impl InvocationType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequestResponse => "RequestResponse",
            Self::Event => "Event",
            Self::DryRun => "DryRun",
        }
    }
}

impl FromStr for InvocationType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "RequestResponse" => Ok(Self::RequestResponse),
            "Event" => Ok(Self::Event),
            "DryRun" => Ok(Self::DryRun),
            other => Err(Error::InvalidParameterValue(format!(
                "1 validation error detected: Value '{other}' at 'invocationType' failed to \
                 satisfy constraint: Member must satisfy enum value set: [Event, \
                 RequestResponse, DryRun]"
            ))),
        }
    }
}

/// Where an invocation stands. `Succeeded`, `Failed` and `DeadLettered` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InvocationStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Retrying,
    DeadLettered,
}

impl InvocationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Retrying => "retrying",
            Self::DeadLettered => "dead_lettered",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::DeadLettered)
    }
}

impl FromStr for InvocationStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        [
            Self::Queued,
            Self::Running,
            Self::Succeeded,
            Self::Failed,
            Self::Retrying,
            Self::DeadLettered,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
        .ok_or_else(|| Error::Service(format!("unknown invocation status '{s}'")))
    }
}

/// The record Nimbus keeps of every invocation, looked up by request id.
#[derive(Debug, Clone, PartialEq)]
pub struct InvocationRecord {
    pub request_id: RequestId,
    pub function_name: FunctionName,
    pub function_version: String,
    pub invocation_type: InvocationType,
    pub status: InvocationStatus,
    pub attempts: u32,
    pub created_at: OffsetDateTime,
    pub started_at: Option<OffsetDateTime>,
    pub finished_at: Option<OffsetDateTime>,
    pub duration_ms: Option<f64>,
    /// `errorType` of the failure (`Sandbox.Timedout`, the handler's exception class, ...).
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    /// Each attempt of an asynchronous invocation, oldest first (empty for synchronous ones).
    pub attempt_history: Vec<Attempt>,
    /// For an event re-queued from the dead-letter queue: the request id it was redriven from.
    pub redrive_of: Option<RequestId>,
}

impl InvocationRecord {
    /// Whether this record may replace `stored`, the one already kept for the same request.
    /// Records of one invocation can arrive out of order from different processes (the
    /// gateway's `queued` after a worker's `running`; a duplicate delivery after the end), so
    /// `queued` never replaces anything and nothing but a terminal record replaces one.
    pub fn supersedes(&self, stored: &InvocationRecord) -> bool {
        if self.status == InvocationStatus::Queued {
            return false;
        }
        !stored.status.is_terminal() || self.status.is_terminal()
    }
}

/// One attempt at running an asynchronous invocation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// Unset when the attempt succeeded: `errorType` of the function's error, or
    /// `Sandbox.Timedout`.
    pub error_type: Option<String>,
    pub error_message: Option<String>,
}

/// Which records `ListInvocations` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvocationFilter {
    pub function_name: Option<FunctionName>,
    pub status: Option<InvocationStatus>,
}

/// What the invoker is asked to run. It carries the whole configuration so that the invoker
/// never consults the function table; it fetches only the code, by its hash.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    pub request_id: RequestId,
    pub function: FunctionConfig,
    /// A JSON document, already validated by the gateway.
    pub payload: Bytes,
    /// The decoded `X-Amz-Client-Context` JSON, passed to the function as is.
    pub client_context: Option<String>,
    /// Whether to return the tail of the invocation's log.
    pub want_log_tail: bool,
    /// `Lambda-Runtime-Trace-Id` / `_X_AMZN_TRACE_ID` for the function.
    pub trace_id: Option<String>,
}

/// `X-Amz-Function-Error`: the function failed; the payload holds the error document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionError {
    Unhandled,
}

impl FunctionError {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unhandled => "Unhandled",
        }
    }
}

/// What came back from running the function. A function error is an outcome, not an
/// [`Error`]: Lambda answers it with `200` and `X-Amz-Function-Error`.
#[derive(Debug, Clone)]
pub struct InvokeOutcome {
    /// The function's response, or the error document when `function_error` is set.
    pub payload: Bytes,
    pub function_error: Option<FunctionError>,
    /// The error's `errorType` when known, for the record.
    pub error_type: Option<String>,
    pub executed_version: String,
    pub duration: Duration,
    /// Set on a cold start: how long the instance took to initialise.
    pub init_duration: Option<Duration>,
    pub max_memory_used_mb: u64,
    /// The last bytes of the invocation's log (START..REPORT) when asked for.
    pub log_tail: Option<String>,
}

/// A recorded error message is kept up to this many bytes; the full error document went to
/// the caller or the function's log.
pub const MAX_RECORDED_ERROR_MESSAGE_BYTES: usize = 4 * 1024;

impl InvokeOutcome {
    /// For a function error: the `errorType` (falling back to what the invoker saw) and the
    /// `errorMessage` of the error document, the message cut to
    /// [`MAX_RECORDED_ERROR_MESSAGE_BYTES`] for records. `None`s when the function succeeded.
    pub fn error_details(&self) -> (Option<String>, Option<String>) {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct ErrorDocument {
            error_type: Option<String>,
            error_message: Option<String>,
        }
        if self.function_error.is_none() {
            return (None, None);
        }
        let document = serde_json::from_slice::<ErrorDocument>(&self.payload).ok();
        let (error_type, error_message) = document
            .map(|d| (d.error_type, d.error_message))
            .unwrap_or_default();
        (
            error_type.or_else(|| self.error_type.clone()),
            error_message.map(|m| truncated(m, MAX_RECORDED_ERROR_MESSAGE_BYTES)),
        )
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn truncated(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// Builds Lambda's error document, `{"errorMessage": ..., "errorType": ...}`.
pub fn error_document(error_type: &str, message: &str) -> Bytes {
    let document = serde_json::json!({ "errorMessage": message, "errorType": error_type });
    Bytes::from(document.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for s in [
            "queued",
            "running",
            "succeeded",
            "failed",
            "retrying",
            "dead_lettered",
        ] {
            assert_eq!(s.parse::<InvocationStatus>().unwrap().as_str(), s);
        }
    }

    #[test]
    fn invocation_types_parse() {
        assert_eq!(
            "DryRun".parse::<InvocationType>().unwrap(),
            InvocationType::DryRun
        );
        assert!("Sync".parse::<InvocationType>().is_err());
    }

    fn failed(payload: &str, error_type: Option<&str>) -> InvokeOutcome {
        InvokeOutcome {
            payload: Bytes::from(payload.to_owned()),
            function_error: Some(FunctionError::Unhandled),
            error_type: error_type.map(str::to_owned),
            executed_version: "$LATEST".into(),
            duration: Duration::ZERO,
            init_duration: None,
            max_memory_used_mb: 0,
            log_tail: None,
        }
    }

    #[test]
    fn error_details_come_from_the_error_document() {
        let outcome = failed(r#"{"errorMessage":"boom","errorType":"ValueError"}"#, None);
        assert_eq!(
            outcome.error_details(),
            (Some("ValueError".into()), Some("boom".into()))
        );
        let opaque = failed("not json", Some("Runtime.ExitError"));
        assert_eq!(
            opaque.error_details(),
            (Some("Runtime.ExitError".into()), None)
        );
        let fine = InvokeOutcome {
            function_error: None,
            ..outcome
        };
        assert_eq!(fine.error_details(), (None, None));
    }

    #[test]
    fn long_error_messages_are_cut_on_a_char_boundary() {
        let message = "é".repeat(MAX_RECORDED_ERROR_MESSAGE_BYTES);
        let document = serde_json::json!({ "errorMessage": message }).to_string();
        let (_, cut) = failed(&document, None).error_details();
        let cut = cut.unwrap();
        assert!(cut.len() <= MAX_RECORDED_ERROR_MESSAGE_BYTES);
        assert!(!cut.is_empty() && cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn cursors_round_trip_through_their_token() {
        let cursor = Cursor {
            at: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_000).unwrap(),
            request_id: RequestId::new(),
        };
        assert_eq!(Cursor::parse_token(&cursor.to_token()).unwrap(), cursor);
        for bad in ["", "12", "x_y", "12_nope"] {
            assert!(Cursor::parse_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn late_and_stale_records_do_not_replace_newer_ones() {
        let record = |status| InvocationRecord {
            request_id: RequestId::new(),
            function_name: FunctionName::parse("f").unwrap(),
            function_version: "$LATEST".into(),
            invocation_type: InvocationType::Event,
            status,
            attempts: 0,
            created_at: OffsetDateTime::now_utc(),
            started_at: None,
            finished_at: None,
            duration_ms: None,
            error_type: None,
            error_message: None,
            attempt_history: Vec::new(),
            redrive_of: None,
        };
        use InvocationStatus::*;
        assert!(!record(Queued).supersedes(&record(Running)));
        assert!(record(Running).supersedes(&record(Queued)));
        assert!(record(Retrying).supersedes(&record(Running)));
        assert!(!record(Running).supersedes(&record(Succeeded)));
        assert!(record(DeadLettered).supersedes(&record(Retrying)));
        assert!(record(Succeeded).supersedes(&record(Succeeded)));
    }

    #[test]
    fn request_ids_round_trip() {
        let id = RequestId::new();
        assert_eq!(RequestId::parse(&id.to_string()).unwrap(), id);
        assert!(RequestId::parse("nope").is_err());
    }
}
