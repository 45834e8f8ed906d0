//! The event a queue holds: an `Event` invocation plus what its attempts so far left behind.
//! Both backends store it as JSON, the payload base64-encoded so any bytes survive.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use nimbus_core::{Attempt, FunctionName, RequestId};
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
    fn rejects_garbage() {
        assert!(matches!(
            QueuedEvent::from_json(b"{\"nope\":1}"),
            Err(crate::Error::Corrupt(_))
        ));
    }
}
