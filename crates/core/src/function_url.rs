//! Function URLs: a dedicated HTTP endpoint for one function (or one of its aliases), as
//! `CreateFunctionUrlConfig` sets it up. The gateway serves it under `/lambda-url/{UrlId}/`
//! and hands each request to the function as an API Gateway payload 2.0 event.

use time::OffsetDateTime;

use crate::cors::Cors;
use crate::{Error, FunctionName, Result};

/// Who may call an HTTP trigger: anyone, or only requests signed with a configured key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthType {
    None,
    AwsIam,
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::AwsIam => "AWS_IAM",
        }
    }

    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "NONE" => Ok(Self::None),
            "AWS_IAM" => Ok(Self::AwsIam),
            other => Err(Error::InvalidParameterValue(format!(
                "1 validation error detected: Value '{other}' at 'authType' failed to satisfy \
                 constraint: Member must satisfy enum value set: [AWS_IAM, NONE]"
            ))),
        }
    }
}

/// How a function URL answers. Nimbus buffers responses; `RESPONSE_STREAM` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvokeMode {
    Buffered,
}

impl InvokeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Buffered => "BUFFERED",
        }
    }

    pub fn parse(value: &str) -> Result<Self> {
        match value {
            "BUFFERED" => Ok(Self::Buffered),
            "RESPONSE_STREAM" => Err(Error::InvalidParameterValue(
                "InvokeMode RESPONSE_STREAM is not supported: Nimbus buffers responses".to_owned(),
            )),
            other => Err(Error::InvalidParameterValue(format!(
                "1 validation error detected: Value '{other}' at 'invokeMode' failed to \
                 satisfy constraint: Member must satisfy enum value set: [BUFFERED, \
                 RESPONSE_STREAM]"
            ))),
        }
    }
}

/// A function URL's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionUrlConfig {
    /// The URL's own id, the last part of its address: 32 lowercase hex characters.
    pub url_id: String,
    pub function_name: FunctionName,
    /// An alias name, or `None` for the unqualified function (`$LATEST`).
    pub qualifier: Option<String>,
    pub auth_type: AuthType,
    pub cors: Option<Cors>,
    pub invoke_mode: InvokeMode,
    pub created_at: OffsetDateTime,
    pub last_modified: OffsetDateTime,
}

impl FunctionUrlConfig {
    /// A fresh URL id: random, so that URLs cannot be guessed from function names.
    pub fn new_url_id() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }

    /// Checks the id has the form [`new_url_id`](Self::new_url_id) gives.
    pub fn is_url_id(candidate: &str) -> bool {
        candidate.len() == 32
            && candidate
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    }
}

/// `Qualifier` of a function URL: an alias name (Lambda refuses version numbers here).
pub fn validate_url_qualifier(qualifier: &str) -> Result<()> {
    let valid = !qualifier.is_empty()
        && qualifier.len() <= 128
        && qualifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && !qualifier.bytes().all(|b| b.is_ascii_digit());
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidParameterValue(format!(
            "1 validation error detected: Value '{qualifier}' at 'qualifier' failed to satisfy \
             constraint: Member must satisfy regular expression pattern: \
             ((?!^\\d+$)^[0-9a-zA-Z-_]+$)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_and_refuse_the_rest() {
        for auth in [AuthType::None, AuthType::AwsIam] {
            assert_eq!(AuthType::parse(auth.as_str()).unwrap(), auth);
        }
        assert!(AuthType::parse("none").is_err());
        assert_eq!(InvokeMode::parse("BUFFERED").unwrap(), InvokeMode::Buffered);
        assert!(InvokeMode::parse("RESPONSE_STREAM").is_err());
    }

    #[test]
    fn url_ids_are_random_hex() {
        let a = FunctionUrlConfig::new_url_id();
        assert!(FunctionUrlConfig::is_url_id(&a));
        assert_ne!(a, FunctionUrlConfig::new_url_id());
        assert!(!FunctionUrlConfig::is_url_id("../etc"));
    }

    #[test]
    fn qualifiers_are_alias_names() {
        assert!(validate_url_qualifier("live").is_ok());
        assert!(validate_url_qualifier("blue_green-2").is_ok());
        assert!(validate_url_qualifier("12").is_err());
        assert!(validate_url_qualifier("$LATEST").is_err());
        assert!(validate_url_qualifier("").is_err());
    }
}
