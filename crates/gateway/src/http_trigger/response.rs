//! What a function's result becomes on the wire, as API Gateway maps a payload 2.0 response:
//! an object with `statusCode` gives the status, `headers`, `cookies` and `body` (base64 when
//! `isBase64Encoded`); any other JSON value is a `200` with that JSON as the body. A function
//! error, or a result that is neither, is the gateway's own error, `{"message": ...}`.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::Bytes;
use nimbus_core::InvokeOutcome;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value};

use crate::code::BASE64;

/// The gateway's own answer to a trigger request, in API Gateway's words:
/// `{"message":"Not Found"}` and the like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) status: StatusCode,
    pub(crate) message: &'static str,
}

pub(crate) const fn refusal(status: StatusCode, message: &'static str) -> Refusal {
    Refusal { status, message }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.message }).to_string();
        let content_type = HeaderValue::from_static("application/json");
        (self.status, [(header::CONTENT_TYPE, content_type)], body).into_response()
    }
}

/// A function that failed or answered what cannot be mapped: `502`, as function URLs answer.
pub(crate) fn bad_gateway() -> Response {
    refusal(StatusCode::BAD_GATEWAY, "Internal Server Error").into_response()
}

/// The HTTP response for a function's result.
pub(crate) fn from_outcome(outcome: &InvokeOutcome) -> Response {
    if outcome.function_error.is_some() {
        tracing::info!("the function failed; answering 502");
        return bad_gateway();
    }
    match probe(&outcome.payload) {
        Shape::Structured => serde_json::from_slice::<Map<String, Value>>(&outcome.payload)
            .map_err(|_| "the response is not a JSON object")
            .and_then(structured)
            .unwrap_or_else(|why| {
                tracing::warn!(
                    why,
                    "the function's HTTP response is malformed; answering 502"
                );
                bad_gateway()
            }),
        Shape::NotJson => {
            tracing::warn!("the function's result is not JSON; answering 502");
            bad_gateway()
        }
        Shape::OtherJson => {
            let content_type = HeaderValue::from_static("application/json");
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, content_type)],
                Body::from(outcome.payload.clone()),
            )
                .into_response()
        }
    }
}

/// What a function's result is, as far as the response mapping cares.
enum Shape {
    /// An object with a `statusCode`: an HTTP response to map.
    Structured,
    /// Any other JSON value: the body of a `200`.
    OtherJson,
    NotJson,
}

/// Finds the result's shape in one pass over it, without building the document: most
/// results of a busy route are passed on as they are.
fn probe(payload: &[u8]) -> Shape {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "statusCode")]
        status_code: Option<IgnoredAny>,
    }
    match serde_json::from_slice::<Probe>(payload) {
        Ok(Probe {
            status_code: Some(_),
        }) => Shape::Structured,
        Ok(_) => Shape::OtherJson,
        // Not an object (an array, a string, ...) or not JSON at all.
        Err(_) if serde_json::from_slice::<IgnoredAny>(payload).is_ok() => Shape::OtherJson,
        Err(_) => Shape::NotJson,
    }
}

/// `{"statusCode": 201, "headers": {...}, "cookies": [...], "body": "...",
/// "isBase64Encoded": false}`; `multiValueHeaders` (format 1.0) is taken too.
fn structured(mut object: Map<String, Value>) -> Result<Response, &'static str> {
    let status = object
        .get("statusCode")
        .and_then(Value::as_u64)
        .and_then(|code| u16::try_from(code).ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or("statusCode is not an HTTP status")?;
    let is_base64 = match object.get("isBase64Encoded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(flag)) => *flag,
        Some(_) => return Err("isBase64Encoded is not a boolean"),
    };
    let body = match object.remove("body") {
        None | Some(Value::Null) => Bytes::new(),
        Some(Value::String(text)) if is_base64 => Bytes::from(
            BASE64
                .decode(text.as_bytes())
                .map_err(|_| "body is not base64")?,
        ),
        Some(Value::String(text)) => Bytes::from(text),
        // Not what the format allows, but what a caller would expect.
        Some(other) => Bytes::from(other.to_string()),
    };
    let mut response = Response::new(Body::from(body.clone()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    if let Some(single) = object.get("headers") {
        let single = single.as_object().ok_or("headers is not an object")?;
        for (name, value) in single {
            headers.insert(header_name(name)?, header_value(value)?);
        }
    }
    if let Some(multi) = object.get("multiValueHeaders") {
        let multi = multi
            .as_object()
            .ok_or("multiValueHeaders is not an object")?;
        for (name, values) in multi {
            let name = header_name(name)?;
            for value in values.as_array().ok_or("multiValueHeaders holds no list")? {
                headers.append(name.clone(), header_value(value)?);
            }
        }
    }
    if let Some(cookies) = object.get("cookies") {
        for cookie in cookies.as_array().ok_or("cookies is not a list")? {
            headers.append(header::SET_COOKIE, header_value(cookie)?);
        }
    }
    if !body.is_empty() && !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Ok(response)
}

fn header_name(name: &str) -> Result<HeaderName, &'static str> {
    HeaderName::try_from(name).map_err(|_| "a header name is invalid")
}

/// Strings as they are; numbers and booleans in their JSON form.
fn header_value(value: &Value) -> Result<HeaderValue, &'static str> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(_) | Value::Bool(_) => value.to_string(),
        _ => return Err("a header value is not a string"),
    };
    HeaderValue::try_from(text).map_err(|_| "a header value is invalid")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt as _;
    use nimbus_core::FunctionError;

    use super::*;

    fn outcome(payload: &str, function_error: Option<FunctionError>) -> InvokeOutcome {
        InvokeOutcome {
            payload: Bytes::from(payload.to_owned()),
            function_error,
            error_type: None,
            executed_version: "$LATEST".to_owned(),
            duration: Duration::from_millis(1),
            init_duration: None,
            max_memory_used_mb: 1,
            log_tail: None,
        }
    }

    async fn body(response: Response) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_structured_response_sets_status_headers_cookies_and_body() {
        let response = from_outcome(&outcome(
            r#"{"statusCode":201,"headers":{"x-a":"1","x-n":2},"cookies":["a=1","b=2"],
                "body":"AAEC","isBase64Encoded":true}"#,
            None,
        ));
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers()["x-a"], "1");
        assert_eq!(response.headers()["x-n"], "2");
        let cookies: Vec<_> = response.headers().get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(body(response).await.as_ref(), [0, 1, 2]);
    }

    #[tokio::test]
    async fn any_other_json_is_a_200_with_that_json() {
        let response = from_outcome(&outcome(r#"{"order":42}"#, None));
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(body(response).await, r#"{"order":42}"#);
    }

    #[test]
    fn failures_and_malformed_responses_are_502() {
        let failed = outcome(r#"{"errorMessage":"boom"}"#, Some(FunctionError::Unhandled));
        assert_eq!(from_outcome(&failed).status(), StatusCode::BAD_GATEWAY);
        for malformed in [
            r#"{"statusCode":"ok"}"#,
            r#"{"statusCode":99}"#,
            r#"{"statusCode":200,"headers":["x"]}"#,
            r#"{"statusCode":200,"headers":{"bad name":"x"}}"#,
            r#"{"statusCode":200,"body":"***","isBase64Encoded":true}"#,
            "not json",
        ] {
            assert_eq!(
                from_outcome(&outcome(malformed, None)).status(),
                StatusCode::BAD_GATEWAY,
                "{malformed}"
            );
        }
    }
}
