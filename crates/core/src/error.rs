//! The domain error every Nimbus service speaks.
//!
//! Each variant is one of Lambda's modelled exceptions. This is the one place that knows, for
//! each, its `x-amzn-ErrorType` name and HTTP status; the gRPC mapping travels by that name, so
//! an error raised in the invoker reaches an HTTP caller unchanged.

use std::fmt;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why an invocation was throttled, as Lambda's `TooManyRequestsException.Reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleReason {
    /// The function's own (reserved or default) concurrency is in use.
    FunctionConcurrency,
    /// The node-wide instance limit is reached.
    NodeConcurrency,
}

impl ThrottleReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FunctionConcurrency => "ReservedFunctionConcurrentInvocationLimitExceeded",
            Self::NodeConcurrency => "ConcurrentInvocationLimitExceeded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::FunctionConcurrency, Self::NodeConcurrency]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for ThrottleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    #[error("{0}")]
    ResourceNotFound(String),
    #[error("{0}")]
    ResourceConflict(String),
    /// No provisioned concurrency configuration for that version or alias.
    #[error("{0}")]
    ProvisionedConcurrencyConfigNotFound(String),
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("{0}")]
    InvalidRequestContent(String),
    #[error("{0}")]
    RequestTooLarge(String),
    #[error("{0}")]
    InvalidZipFile(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("Rate Exceeded.")]
    TooManyRequests(ThrottleReason),
    /// A failure of Nimbus itself (store unreachable, invoker down). The message is for logs;
    /// callers see a generic text.
    #[error("{0}")]
    Service(String),
}

impl Error {
    /// The Lambda exception name, sent as `x-amzn-ErrorType`.
    pub fn lambda_type(&self) -> &'static str {
        match self {
            Self::ResourceNotFound(_) => "ResourceNotFoundException",
            Self::ResourceConflict(_) => "ResourceConflictException",
            Self::ProvisionedConcurrencyConfigNotFound(_) => {
                "ProvisionedConcurrencyConfigNotFoundException"
            }
            Self::InvalidParameterValue(_) => "InvalidParameterValueException",
            Self::InvalidRequestContent(_) => "InvalidRequestContentException",
            Self::RequestTooLarge(_) => "RequestTooLargeException",
            Self::InvalidZipFile(_) => "InvalidZipFileException",
            Self::PreconditionFailed(_) => "PreconditionFailedException",
            Self::UnsupportedMediaType(_) => "UnsupportedMediaTypeException",
            Self::TooManyRequests(_) => "TooManyRequestsException",
            Self::Service(_) => "ServiceException",
        }
    }

    /// The HTTP status Lambda answers with for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::ResourceNotFound(_) | Self::ProvisionedConcurrencyConfigNotFound(_) => 404,
            Self::ResourceConflict(_) => 409,
            Self::InvalidParameterValue(_)
            | Self::InvalidRequestContent(_)
            | Self::InvalidZipFile(_) => 400,
            Self::RequestTooLarge(_) => 413,
            Self::PreconditionFailed(_) => 412,
            Self::UnsupportedMediaType(_) => 415,
            Self::TooManyRequests(_) => 429,
            Self::Service(_) => 500,
        }
    }

    /// `"User"` for the caller's mistakes, `"Service"` for ours (Lambda's `Type` member).
    pub fn fault(&self) -> &'static str {
        match self {
            Self::Service(_) => "Service",
            _ => "User",
        }
    }

    /// The message a caller may see; internal details stay in the logs.
    pub fn public_message(&self) -> String {
        match self {
            Self::Service(_) => "An internal error occurred in Nimbus.".to_owned(),
            other => other.to_string(),
        }
    }

    /// The detail that travels with the error across a process boundary: the message, or for
    /// a throttle its reason.
    pub fn detail(&self) -> String {
        match self {
            Self::TooManyRequests(reason) => reason.as_str().to_owned(),
            Self::ResourceNotFound(m)
            | Self::ResourceConflict(m)
            | Self::ProvisionedConcurrencyConfigNotFound(m)
            | Self::InvalidParameterValue(m)
            | Self::InvalidRequestContent(m)
            | Self::RequestTooLarge(m)
            | Self::InvalidZipFile(m)
            | Self::PreconditionFailed(m)
            | Self::UnsupportedMediaType(m)
            | Self::Service(m) => m.clone(),
        }
    }

    /// Rebuilds an error from its [`lambda_type`](Self::lambda_type) and
    /// [`detail`](Self::detail), as received from another service.
    pub fn from_parts(lambda_type: &str, detail: String) -> Self {
        match lambda_type {
            "ResourceNotFoundException" => Self::ResourceNotFound(detail),
            "ResourceConflictException" => Self::ResourceConflict(detail),
            "ProvisionedConcurrencyConfigNotFoundException" => {
                Self::ProvisionedConcurrencyConfigNotFound(detail)
            }
            "InvalidParameterValueException" => Self::InvalidParameterValue(detail),
            "InvalidRequestContentException" => Self::InvalidRequestContent(detail),
            "RequestTooLargeException" => Self::RequestTooLarge(detail),
            "InvalidZipFileException" => Self::InvalidZipFile(detail),
            "PreconditionFailedException" => Self::PreconditionFailed(detail),
            "UnsupportedMediaTypeException" => Self::UnsupportedMediaType(detail),
            "TooManyRequestsException" => Self::TooManyRequests(
                ThrottleReason::parse(&detail).unwrap_or(ThrottleReason::FunctionConcurrency),
            ),
            _ => Self::Service(detail),
        }
    }

    /// The throttle reason, for `TooManyRequestsException.Reason`.
    pub fn throttle_reason(&self) -> Option<ThrottleReason> {
        match self {
            Self::TooManyRequests(reason) => Some(*reason),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_survives_a_round_trip_through_its_parts() {
        let errors = [
            Error::ResourceNotFound("f".into()),
            Error::ResourceConflict("f".into()),
            Error::ProvisionedConcurrencyConfigNotFound("f".into()),
            Error::InvalidParameterValue("f".into()),
            Error::InvalidRequestContent("f".into()),
            Error::RequestTooLarge("f".into()),
            Error::InvalidZipFile("f".into()),
            Error::PreconditionFailed("f".into()),
            Error::UnsupportedMediaType("f".into()),
            Error::TooManyRequests(ThrottleReason::NodeConcurrency),
            Error::TooManyRequests(ThrottleReason::FunctionConcurrency),
            Error::Service("boom".into()),
        ];
        for error in errors {
            let back = Error::from_parts(error.lambda_type(), error.detail());
            assert_eq!(back, error);
        }
    }

    #[test]
    fn service_errors_do_not_leak_their_message() {
        let error = Error::Service("password=hunter2".into());
        assert!(!error.public_message().contains("hunter2"));
        assert_eq!(error.http_status(), 500);
    }
}
