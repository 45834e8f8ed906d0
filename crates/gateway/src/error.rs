//! The one error every handler returns, answered in Lambda's shape: the status of the
//! exception, `x-amzn-ErrorType`, and a JSON body with `Type` and the message, so that SDKs
//! raise the exception they model. Each error is logged here, once.

use axum::Json;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nimbus_core::Error;
use serde_json::{Map, Value};

use crate::backlog::QueueFull;

pub(crate) const ERROR_TYPE_HEADER: HeaderName = HeaderName::from_static("x-amzn-errortype");

/// The `Reason` of an [`ApiError::Overloaded`]: of Lambda's throttle reasons, the one for
/// invocations arriving faster than they can be taken.
const OVERLOADED_REASON: &str = "FunctionInvocationRateLimitExceeded";
/// Seconds a refused caller is asked to wait (`Retry-After`, Lambda's `retryAfterSeconds`).
const OVERLOADED_RETRY_AFTER: &str = "1";

#[derive(Debug)]
pub(crate) enum ApiError {
    /// One of Lambda's modelled exceptions.
    Lambda(Error),
    /// The request is not signed, or not signed right (`403`): `error_type` is the name AWS
    /// answers with.
    Unauthenticated {
        error_type: &'static str,
        message: String,
    },
    /// Nimbus sheds load (`429`): the event queue holds its bound of events (see
    /// [`crate::backlog`]), or invocation records can not be written as fast as they come.
    /// The message says which.
    Overloaded(String),
    /// No operation lives at this method and path.
    UnknownOperation {
        status: StatusCode,
        method: Method,
        path: String,
    },
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self::Lambda(error)
    }
}

impl From<QueueFull> for ApiError {
    fn from(QueueFull { backlog, limit }: QueueFull) -> Self {
        Self::Overloaded(format!(
            "The event queue is full (backlog {backlog} of at most {limit} events); try again \
             later"
        ))
    }
}

impl From<nimbus_store::Error> for ApiError {
    fn from(error: nimbus_store::Error) -> Self {
        Self::Lambda(error.into())
    }
}

impl From<nimbus_queue::Error> for ApiError {
    fn from(error: nimbus_queue::Error) -> Self {
        Self::Lambda(error.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Lambda(error) => {
                log(&error);
                let status = StatusCode::from_u16(error.http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let mut body = Map::new();
                body.insert("Type".to_owned(), error.fault().into());
                body.insert(
                    message_member(error.lambda_type()).to_owned(),
                    error.public_message().into(),
                );
                if let Some(reason) = error.throttle_reason() {
                    body.insert("Reason".to_owned(), reason.as_str().into());
                }
                respond(status, error.lambda_type(), body)
            }
            Self::Unauthenticated {
                error_type,
                message,
            } => {
                tracing::info!(error_type, message, "request refused: not authenticated");
                let mut body = Map::new();
                body.insert("Type".to_owned(), "User".into());
                body.insert("message".to_owned(), message.into());
                respond(StatusCode::FORBIDDEN, error_type, body)
            }
            Self::Overloaded(message) => {
                tracing::warn!(message, "request refused: overloaded");
                let mut body = Map::new();
                body.insert("Type".to_owned(), "User".into());
                body.insert("message".to_owned(), message.into());
                body.insert("Reason".to_owned(), OVERLOADED_REASON.into());
                let mut response = respond(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TooManyRequestsException",
                    body,
                );
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(OVERLOADED_RETRY_AFTER),
                );
                response
            }
            Self::UnknownOperation {
                status,
                method,
                path,
            } => {
                tracing::debug!(%method, path, "unknown operation");
                let mut body = Map::new();
                body.insert("Type".to_owned(), "User".into());
                body.insert(
                    "Message".to_owned(),
                    format!("No operation is served at {method} {path}").into(),
                );
                respond(status, "UnknownOperationException", body)
            }
        }
    }
}

fn respond(status: StatusCode, error_type: &'static str, body: Map<String, Value>) -> Response {
    (
        status,
        [(ERROR_TYPE_HEADER, HeaderValue::from_static(error_type))],
        Json(Value::Object(body)),
    )
        .into_response()
}

fn log(error: &Error) {
    match error {
        Error::Service(detail) => tracing::error!(detail, "request failed in Nimbus"),
        other => tracing::debug!(
            error_type = other.lambda_type(),
            message = %other,
            "request refused"
        ),
    }
}

/// The member the service model names for each exception's message. Most say `message`, a
/// few `Message`; the SDKs read the modelled member, so the casing is part of the contract.
fn message_member(lambda_type: &str) -> &'static str {
    match lambda_type {
        "ResourceNotFoundException" | "InvalidZipFileException" | "ServiceException" => "Message",
        _ => "message",
    }
}

#[cfg(test)]
mod tests {
    use nimbus_core::error::ThrottleReason;

    use super::*;

    async fn parts(error: ApiError) -> (StatusCode, String, Value) {
        let response = error.into_response();
        let status = response.status();
        let error_type = response.headers()[ERROR_TYPE_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, error_type, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn not_found_uses_the_modelled_message_member() {
        let (status, error_type, body) =
            parts(Error::ResourceNotFound("Function not found: f".into()).into()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(error_type, "ResourceNotFoundException");
        assert_eq!(
            body,
            serde_json::json!({"Type": "User", "Message": "Function not found: f"})
        );
    }

    #[tokio::test]
    async fn throttles_carry_their_reason() {
        let error = Error::TooManyRequests(ThrottleReason::NodeConcurrency);
        let (status, error_type, body) = parts(error.into()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(error_type, "TooManyRequestsException");
        assert_eq!(body["Reason"], "ConcurrentInvocationLimitExceeded");
        assert_eq!(body["message"], "Rate Exceeded.");
    }

    #[tokio::test]
    async fn a_full_queue_is_a_throttle_that_says_why() {
        let full = QueueFull {
            backlog: 7,
            limit: 5,
        };
        let response = ApiError::from(full).into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let (status, error_type, body) = parts(full.into()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(error_type, "TooManyRequestsException");
        assert_eq!(body["Reason"], OVERLOADED_REASON);
        assert_eq!(
            body["message"],
            "The event queue is full (backlog 7 of at most 5 events); try again later"
        );
    }

    #[tokio::test]
    async fn service_errors_hide_their_detail() {
        let (status, _, body) = parts(Error::Service("db password wrong".into()).into()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["Type"], "Service");
        assert!(!body.to_string().contains("password"));
    }
}
