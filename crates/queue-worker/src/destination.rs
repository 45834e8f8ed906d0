//! Lambda's invocation record, the document an `OnSuccess` / `OnFailure` destination and a
//! callback URL receive when an asynchronous invocation ends.

use bytes::Bytes;
use nimbus_core::InvokeOutcome;
use nimbus_queue::QueuedEvent;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How the invocation ended, as the record's `requestContext.condition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    fn as_str(self) -> &'static str {
        match self {
            Self::Success => "Success",
            Self::RetriesExhausted => "RetriesExhausted",
            Self::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

/// The record of `event`, which ended in `condition`; `outcome` is its last attempt's, if
/// the function ran at all.
pub(crate) fn invocation_record(
    event: &QueuedEvent,
    function_arn: &str,
    condition: Condition,
    outcome: Option<&InvokeOutcome>,
) -> Bytes {
    let mut record = json!({
        "version": "1.0",
        "timestamp": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        "requestContext": {
            "requestId": event.request_id.to_string(),
            "functionArn": format!("{function_arn}:{}", event.qualifier),
            "condition": condition.as_str(),
            "approximateInvokeCount": event.attempts.len(),
        },
        "requestPayload": document(&event.payload),
    });
    if let Some(outcome) = outcome {
        let mut response = json!({
            "statusCode": 200,
            "executedVersion": outcome.executed_version,
        });
        if let Some(error) = outcome.function_error {
            response["functionError"] = Value::from(error.as_str());
        }
        record["responseContext"] = response;
        record["responsePayload"] = document(&outcome.payload);
    }
    Bytes::from(record.to_string())
}

/// A payload as JSON where it is JSON (it nearly always is), else as a string.
fn document(payload: &[u8]) -> Value {
    serde_json::from_slice(payload)
        .unwrap_or_else(|_| Value::from(String::from_utf8_lossy(payload).into_owned()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use nimbus_core::{Attempt, FunctionError, FunctionName, RequestId};

    use super::*;

    #[test]
    fn failure_records_carry_the_request_and_the_error() {
        let mut event = QueuedEvent::new(
            RequestId::new(),
            FunctionName::parse("f").unwrap(),
            "$LATEST",
            Bytes::from_static(br#"{"order":7}"#),
        );
        let now = OffsetDateTime::now_utc();
        for _ in 0..3 {
            event.attempts.push(Attempt {
                started_at: now,
                finished_at: now,
                error_type: Some("ValueError".into()),
                error_message: Some("boom".into()),
            });
        }
        let outcome = InvokeOutcome {
            payload: Bytes::from_static(br#"{"errorMessage":"boom","errorType":"ValueError"}"#),
            function_error: Some(FunctionError::Unhandled),
            error_type: None,
            executed_version: "$LATEST".into(),
            duration: Duration::from_millis(3),
            init_duration: None,
            max_memory_used_mb: 0,
            log_tail: None,
        };
        let arn = "arn:aws:lambda:us-east-1:000000000000:function:f";
        let record = invocation_record(&event, arn, Condition::RetriesExhausted, Some(&outcome));
        let record: Value = serde_json::from_slice(&record).unwrap();
        assert_eq!(record["version"], "1.0");
        let context = &record["requestContext"];
        assert_eq!(context["requestId"], event.request_id.to_string());
        assert_eq!(context["functionArn"], format!("{arn}:$LATEST"));
        assert_eq!(context["condition"], "RetriesExhausted");
        assert_eq!(context["approximateInvokeCount"], 3);
        assert_eq!(record["requestPayload"]["order"], 7);
        assert_eq!(record["responseContext"]["statusCode"], 200);
        assert_eq!(record["responseContext"]["functionError"], "Unhandled");
        assert_eq!(record["responsePayload"]["errorType"], "ValueError");
        OffsetDateTime::parse(record["timestamp"].as_str().unwrap(), &Rfc3339).unwrap();
    }

    #[test]
    fn a_record_without_an_attempt_has_no_response() {
        let event = QueuedEvent::new(
            RequestId::new(),
            FunctionName::parse("f").unwrap(),
            "$LATEST",
            Bytes::from_static(b"{}"),
        );
        let record = invocation_record(&event, "arn", Condition::EventAgeExceeded, None);
        let record: Value = serde_json::from_slice(&record).unwrap();
        assert!(record.get("responseContext").is_none());
        assert_eq!(record["requestContext"]["approximateInvokeCount"], 0);
    }
}
