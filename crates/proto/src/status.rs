//! A domain [`Error`] as a gRPC [`Status`] and back. The Lambda error name travels in the
//! `x-amzn-errortype` metadata, so an error raised in one service reaches an HTTP caller of
//! another unchanged.

use nimbus_core::Error;
use tonic::{Code, Status};

const ERROR_TYPE_KEY: &str = "x-amzn-errortype";

pub fn to_status(error: Error) -> Status {
    let code = match &error {
        Error::ResourceNotFound(_) => Code::NotFound,
        Error::ResourceConflict(_) => Code::AlreadyExists,
        Error::PreconditionFailed(_) => Code::FailedPrecondition,
        Error::TooManyRequests(_) => Code::ResourceExhausted,
        Error::Service(_) => Code::Internal,
        _ => Code::InvalidArgument,
    };
    let mut status = Status::new(code, error.detail());
    if let Ok(value) = error.lambda_type().parse() {
        status.metadata_mut().insert(ERROR_TYPE_KEY, value);
    }
    status
}

/// A status without the Lambda error name did not come from a Nimbus service (the peer is
/// down, unreachable, or not Nimbus): a [`Error::Service`] naming `peer`.
pub fn from_status(status: Status, peer: &str) -> Error {
    match status
        .metadata()
        .get(ERROR_TYPE_KEY)
        .and_then(|v| v.to_str().ok())
    {
        Some(lambda_type) => Error::from_parts(lambda_type, status.message().to_owned()),
        None if status.code() == Code::Unauthenticated => Error::Service(format!(
            "{peer} refused the call: wrong or missing service token ({})",
            status.message()
        )),
        None => Error::Service(format!("{peer} unreachable: {status}")),
    }
}

#[cfg(test)]
mod tests {
    use nimbus_core::error::ThrottleReason;

    use super::*;

    #[test]
    fn domain_errors_survive_the_wire() {
        for error in [
            Error::ResourceNotFound("nope".into()),
            Error::TooManyRequests(ThrottleReason::NodeConcurrency),
            Error::Service("disk full".into()),
        ] {
            assert_eq!(from_status(to_status(error.clone()), "peer"), error);
        }
        assert_eq!(
            to_status(Error::TooManyRequests(ThrottleReason::NodeConcurrency)).code(),
            Code::ResourceExhausted
        );
    }

    #[test]
    fn a_refused_token_says_so() {
        let error = from_status(Status::unauthenticated("no token"), "invoker");
        assert!(matches!(error, Error::Service(m) if m.contains("service token")));
    }

    #[test]
    fn foreign_statuses_are_service_errors() {
        let error = from_status(Status::unavailable("connection refused"), "invoker");
        assert!(matches!(error, Error::Service(m) if m.contains("invoker unreachable")));
    }
}
