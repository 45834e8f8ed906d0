//! The event a queue holds: an `Event` invocation plus what its attempts so far left behind.
//! Both backends store it as JSON, the payload base64-encoded so any bytes survive.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use nimbus_core::{
    Attempt, FunctionName, InvocationRecord, InvocationStatus, InvocationType, RequestId,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::Result;

/// An asynchronous invocation waiting for (another) attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedEvent {
    pub request_id: RequestId,
    pub function_name: FunctionName,
    /// The version to run, e.g. `$LATEST`.
    pub qualifier: String,
    /// The invocation's JSON payload.
    #[serde(with = "base64_bytes")]
    pub payload: Bytes,
    /// When the gateway first accepted the event; the maximum event age counts from here.
    #[serde(with = "time::serde::rfc3339")]
    pub enqueued_at: OffsetDateTime,
    /// Attempts made so far, oldest first, each with its error; empty for a new event.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Throttles and Nimbus failures in a row since the last attempt; they spend no attempt
    /// but grow the back-off.
    #[serde(default)]
    pub system_retries: u32,
    /// For an event redriven from the dead-letter queue: the request id it was redriven from.
    #[serde(default)]
    pub redrive_of: Option<RequestId>,
    /// W3C `traceparent` of the accepting request, so retries join its trace.
    #[serde(default)]
    pub trace_context: Option<String>,
    /// `X-Nimbus-Callback-Url`: where the invocation record is POSTed when it ends.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// The version the qualifier named when this attempt resolved it (an alias may name
    /// another by the next attempt), for the records; not queued, as each attempt resolves
    /// the qualifier again.
    #[serde(skip)]
    pub resolved_version: Option<String>,
}

impl QueuedEvent {
    /// A new event for `function_name:qualifier`, accepted now, with no attempts yet.
    pub fn new(
        request_id: RequestId,
        function_name: FunctionName,
        qualifier: impl Into<String>,
        payload: Bytes,
    ) -> Self {
        Self {
            request_id,
            function_name,
            qualifier: qualifier.into(),
            payload,
            enqueued_at: OffsetDateTime::now_utc(),
            attempts: Vec::new(),
            system_retries: 0,
            redrive_of: None,
            trace_context: None,
            callback_url: None,
            resolved_version: None,
        }
    }

    /// The invocation record of this event as it stands, in `status`: the version it runs
    /// (the qualifier until an attempt has resolved it), its attempts so far, and the error
    /// of the last failed one.
    pub fn record(&self, status: InvocationStatus) -> InvocationRecord {
        let last = self.attempts.last();
        let duration_ms = last
            .map(|attempt| (attempt.finished_at - attempt.started_at).as_seconds_f64() * 1000.0);
        InvocationRecord {
            request_id: self.request_id,
            function_name: self.function_name.clone(),
            function_version: self
                .resolved_version
                .clone()
                .unwrap_or_else(|| self.qualifier.clone()),
            invocation_type: InvocationType::Event,
            status,
            attempts: u32::try_from(self.attempts.len()).unwrap_or(u32::MAX),
            created_at: self.enqueued_at,
            started_at: self.attempts.first().map(|attempt| attempt.started_at),
            finished_at: status.is_terminal().then(OffsetDateTime::now_utc),
            duration_ms,
            error_type: last.and_then(|attempt| attempt.error_type.clone()),
            error_message: last.and_then(|attempt| attempt.error_message.clone()),
            attempt_history: self.attempts.clone(),
            redrive_of: self.redrive_of,
        }
    }

    pub(crate) fn to_json(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(self)?)
    }

    pub(crate) fn from_json(bytes: &[u8]) -> Result<Self> {
        Ok(serde_json::from_slice(bytes)?)
    }
}

mod base64_bytes {
    use super::*;

    pub(super) fn serialize<S: serde::Serializer>(bytes: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map(Bytes::from)
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_json_with_binary_payload_and_errors() {
        let mut event = QueuedEvent::new(
            RequestId::new(),
            FunctionName::parse("f").unwrap(),
            "$LATEST",
            Bytes::from_static(b"\x00\xff{\"a\":1}"),
        );
        event.attempts.push(Attempt {
            started_at: OffsetDateTime::now_utc(),
            finished_at: OffsetDateTime::now_utc(),
            error_type: Some("Unhandled".into()),
            error_message: Some("boom".into()),
        });
        event.system_retries = 3;
        event.redrive_of = Some(RequestId::new());
        event.trace_context =
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        let json = event.to_json().unwrap();
        assert_eq!(QueuedEvent::from_json(&json).unwrap(), event);
    }

    #[test]
    fn records_carry_the_attempts_and_the_last_error() {
        let mut event = QueuedEvent::new(
            RequestId::new(),
            FunctionName::parse("f").unwrap(),
            "$LATEST",
            Bytes::from_static(b"{}"),
        );
        let queued = event.record(InvocationStatus::Queued);
        assert_eq!(queued.function_version, "$LATEST");
        assert_eq!((queued.attempts, queued.error_type), (0, None));
        assert_eq!(queued.created_at, event.enqueued_at);
        assert!(queued.finished_at.is_none());

        let started_at = OffsetDateTime::now_utc();
        event.attempts.push(Attempt {
            started_at,
            finished_at: started_at + time::Duration::milliseconds(5),
            error_type: Some("ValueError".into()),
            error_message: Some("boom".into()),
        });
        event.resolved_version = Some("3".into());
        let failed = event.record(InvocationStatus::DeadLettered);
        assert_eq!(failed.function_version, "3", "the version the alias named");
        assert_eq!(failed.attempts, 1);
        assert_eq!(failed.error_type.as_deref(), Some("ValueError"));
        assert_eq!(failed.duration_ms, Some(5.0));
        assert_eq!(failed.started_at, Some(started_at));
        assert!(failed.finished_at.is_some());
        assert_eq!(failed.attempt_history, event.attempts);
    }

    #[test]
    fn rejects_garbage() {
        assert!(matches!(
            QueuedEvent::from_json(b"{\"nope\":1}"),
            Err(crate::Error::Corrupt(_))
        ));
    }
}
