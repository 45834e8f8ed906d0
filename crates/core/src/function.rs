//! A function's identity and configuration, with Lambda's validation rules.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use time::OffsetDateTime;

use crate::error::{Error, Result};
use crate::limits;

/// The version every function has and the only one until versions are published.
pub const LATEST: &str = "$LATEST";

/// A validated function name: 1 to 64 of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FunctionName(String);

impl FunctionName {
    pub fn parse(name: &str) -> Result<Self> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(Error::InvalidParameterValue(format!(
                "1 validation error detected: Value '{name}' at 'functionName' failed to satisfy \
                 constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9-_]{{1,64}}"
            )))
        }
    }

    /// Accepts what Lambda accepts in a `FunctionName` path parameter: a name, a full ARN
    /// (`arn:aws:lambda:REGION:ACCOUNT:function:NAME`) or a partial one
    /// (`ACCOUNT:function:NAME`). A qualifier suffix (`:VERSION`) is returned separately.
    pub fn parse_reference(reference: &str) -> Result<(Self, Option<String>)> {
        let parts: Vec<&str> = reference.split(':').collect();
        let (name, qualifier) = match parts.as_slice() {
            [name] => (*name, None),
            [name, qualifier] => (*name, Some(*qualifier)),
            [_, "function", name] => (*name, None),
            [_, "function", name, qualifier] => (*name, Some(*qualifier)),
            ["arn", _, "lambda", _, _, "function", name] => (*name, None),
            ["arn", _, "lambda", _, _, "function", name, qualifier] => (*name, Some(*qualifier)),
            _ => (reference, None),
        };
        Ok((Self::parse(name)?, qualifier.map(str::to_owned)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for FunctionName {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::parse(&value)
    }
}

impl From<FunctionName> for String {
    fn from(value: FunctionName) -> Self {
        value.0
    }
}

/// The language runtime a function runs on. Nimbus runs each on the host's interpreter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Runtime {
    /// `provided`, `provided.al2`, `provided.al2023`: the zip's own `bootstrap`.
    Provided(ProvidedFlavor),
    /// `python3.N`, run by Nimbus' Python bootstrap.
    Python { minor: u8 },
    /// `nodejsN.x`, run by Nimbus' Node.js bootstrap.
    NodeJs { major: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProvidedFlavor {
    Provided,
    Al2,
    Al2023,
}

impl Runtime {
    /// Whether the function needs a `Handler` (custom runtimes may ignore it).
    pub fn requires_handler(self) -> bool {
        !matches!(self, Self::Provided(_))
    }
}

impl FromStr for Runtime {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let unsupported = || {
            Error::InvalidParameterValue(format!(
                "Value {s} at 'runtime' failed to satisfy constraint: Member must satisfy enum \
                 value set: [provided, provided.al2, provided.al2023, python3.8 .. python3.13, \
                 nodejs18.x, nodejs20.x, nodejs22.x]"
            ))
        };
        match s {
            "provided" => return Ok(Self::Provided(ProvidedFlavor::Provided)),
            "provided.al2" => return Ok(Self::Provided(ProvidedFlavor::Al2)),
            "provided.al2023" => return Ok(Self::Provided(ProvidedFlavor::Al2023)),
            _ => {}
        }
        if let Some(minor) = s.strip_prefix("python3.") {
            let minor: u8 = minor.parse().map_err(|_| unsupported())?;
            return (8..=13)
                .contains(&minor)
                .then_some(Self::Python { minor })
                .ok_or_else(unsupported);
        }
        if let Some(major) = s.strip_prefix("nodejs").and_then(|r| r.strip_suffix(".x")) {
            let major: u8 = major.parse().map_err(|_| unsupported())?;
            return [18, 20, 22, 24]
                .contains(&major)
                .then_some(Self::NodeJs { major })
                .ok_or_else(unsupported);
        }
        Err(unsupported())
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Provided(ProvidedFlavor::Provided) => f.write_str("provided"),
            Self::Provided(ProvidedFlavor::Al2) => f.write_str("provided.al2"),
            Self::Provided(ProvidedFlavor::Al2023) => f.write_str("provided.al2023"),
            Self::Python { minor } => write!(f, "python3.{minor}"),
            Self::NodeJs { major } => write!(f, "nodejs{major}.x"),
        }
    }
}

/// The SHA-256 of a function's zip: names the code everywhere (store, unpacked folder).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CodeSha256([u8; 32]);

impl CodeSha256 {
    pub fn of(zip: &[u8]) -> Self {
        Self(sha2::Sha256::digest(zip).into())
    }

    pub fn from_hex(hex: &str) -> Result<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex, &mut bytes)
            .map_err(|_| Error::InvalidParameterValue(format!("'{hex}' is not a SHA-256")))?;
        Ok(Self(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The form Lambda shows in `CodeSha256`.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.0)
    }
}

impl fmt::Debug for CodeSha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CodeSha256({})", self.to_hex())
    }
}

impl fmt::Display for CodeSha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Everything Nimbus keeps about one function (its `$LATEST`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionConfig {
    pub name: FunctionName,
    pub runtime: Runtime,
    /// `module.function` for the managed runtimes; free-form for `provided`.
    pub handler: Option<String>,
    pub role: String,
    pub description: String,
    pub timeout_secs: u32,
    pub memory_mb: u32,
    pub environment: BTreeMap<String, String>,
    /// Reserved concurrency; `None` means the invoker's default per-function limit.
    pub reserved_concurrency: Option<u32>,
    pub code_sha256: CodeSha256,
    pub code_size: u64,
    pub version: String,
    /// Changes on every update; lets a caller update only what it last read.
    pub revision_id: String,
    pub last_modified: OffsetDateTime,
}

impl FunctionConfig {
    /// Checks every field against Lambda's rules; the gateway calls it before any write.
    pub fn validate(&self) -> Result<()> {
        validate_timeout(self.timeout_secs)?;
        validate_memory(self.memory_mb)?;
        validate_handler(self.runtime, self.handler.as_deref())?;
        validate_environment(&self.environment)?;
        if self.description.chars().count() > limits::MAX_DESCRIPTION_CHARS {
            return Err(Error::InvalidParameterValue(format!(
                "Description must be at most {} characters",
                limits::MAX_DESCRIPTION_CHARS
            )));
        }
        Ok(())
    }

    /// `arn:aws:lambda:REGION:ACCOUNT:function:NAME`.
    pub fn arn(&self, region: &str, account: &str) -> String {
        function_arn(region, account, &self.name)
    }
}

pub fn function_arn(region: &str, account: &str, name: &FunctionName) -> String {
    format!("arn:aws:lambda:{region}:{account}:function:{name}")
}

pub fn validate_timeout(secs: u32) -> Result<()> {
    if (limits::MIN_TIMEOUT_SECS..=limits::MAX_TIMEOUT_SECS).contains(&secs) {
        Ok(())
    } else {
        Err(Error::InvalidParameterValue(format!(
            "1 validation error detected: Value '{secs}' at 'timeout' failed to satisfy \
             constraint: Member must have value between {} and {}",
            limits::MIN_TIMEOUT_SECS,
            limits::MAX_TIMEOUT_SECS
        )))
    }
}

pub fn validate_memory(mb: u32) -> Result<()> {
    if (limits::MIN_MEMORY_MB..=limits::MAX_MEMORY_MB).contains(&mb) {
        Ok(())
    } else {
        Err(Error::InvalidParameterValue(format!(
            "1 validation error detected: Value '{mb}' at 'memorySize' failed to satisfy \
             constraint: Member must have value between {} and {}",
            limits::MIN_MEMORY_MB,
            limits::MAX_MEMORY_MB
        )))
    }
}

pub fn validate_handler(runtime: Runtime, handler: Option<&str>) -> Result<()> {
    match handler {
        None if runtime.requires_handler() => Err(Error::InvalidParameterValue(format!(
            "Handler is required for runtime {runtime}"
        ))),
        None => Ok(()),
        Some(h) => {
            let well_formed = !h.is_empty()
                && h.chars().count() <= limits::MAX_HANDLER_CHARS
                && !h.chars().any(char::is_whitespace);
            let has_function = !runtime.requires_handler()
                || h.rsplit_once('.')
                    .is_some_and(|(module, function)| !module.is_empty() && !function.is_empty());
            if well_formed && has_function {
                Ok(())
            } else {
                Err(Error::InvalidParameterValue(format!(
                    "1 validation error detected: Value '{h}' at 'handler' failed to satisfy \
                     constraint: Member must be of the form module.function, at most {} \
                     characters, without whitespace",
                    limits::MAX_HANDLER_CHARS
                )))
            }
        }
    }
}

pub fn validate_environment(env: &BTreeMap<String, String>) -> Result<()> {
    let mut total = 0;
    for (key, value) in env {
        let valid_key = key.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(Error::InvalidParameterValue(format!(
                "Environment variable name '{key}' must match [a-zA-Z]([a-zA-Z0-9_])+"
            )));
        }
        if RESERVED_ENVIRONMENT.contains(&key.as_str()) {
            return Err(Error::InvalidParameterValue(format!(
                "Lambda was unable to configure your environment variables because the \
                 environment variables you have provided contains reserved keys that are \
                 currently not supported for modification. Reserved keys used in this request: \
                 {key}"
            )));
        }
        total += key.len() + value.len();
    }
    if total > limits::MAX_ENVIRONMENT_BYTES {
        return Err(Error::InvalidParameterValue(format!(
            "Lambda was unable to configure your environment variables because the environment \
             variables you have provided exceeded the 4KB limit. String measured: {total}"
        )));
    }
    Ok(())
}

/// Variables the platform sets and a function may not override (as on Lambda).
pub const RESERVED_ENVIRONMENT: &[&str] = &[
    "_HANDLER",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_lambda_rules() {
        assert!(FunctionName::parse("my-fn_1").is_ok());
        assert!(FunctionName::parse("").is_err());
        assert!(FunctionName::parse("a/b").is_err());
        assert!(FunctionName::parse(&"a".repeat(65)).is_err());
    }

    #[test]
    fn references_accept_arns_and_qualifiers() {
        let (name, q) =
            FunctionName::parse_reference("arn:aws:lambda:us-east-1:000000000000:function:f:7")
                .unwrap();
        assert_eq!((name.as_str(), q.as_deref()), ("f", Some("7")));
        let (name, q) = FunctionName::parse_reference("000000000000:function:g").unwrap();
        assert_eq!((name.as_str(), q), ("g", None));
        assert!(FunctionName::parse_reference("arn:aws:s3:::bucket").is_err());
    }

    #[test]
    fn runtimes_round_trip() {
        for r in ["provided", "provided.al2023", "python3.12", "nodejs20.x"] {
            assert_eq!(r.parse::<Runtime>().unwrap().to_string(), r);
        }
        assert!("python2.7".parse::<Runtime>().is_err());
        assert!("nodejs20".parse::<Runtime>().is_err());
        assert!("java21".parse::<Runtime>().is_err());
    }

    #[test]
    fn handlers_need_a_module_and_a_function() {
        let py = Runtime::Python { minor: 12 };
        assert!(validate_handler(py, Some("app.handler")).is_ok());
        assert!(validate_handler(py, Some("app")).is_err());
        assert!(validate_handler(py, Some("app. handler")).is_err());
        assert!(validate_handler(py, None).is_err());
        assert!(validate_handler(Runtime::Provided(ProvidedFlavor::Al2023), None).is_ok());
    }

    #[test]
    fn reserved_environment_is_refused() {
        let env = BTreeMap::from([("AWS_REGION".to_owned(), "x".to_owned())]);
        assert!(validate_environment(&env).is_err());
        let env = BTreeMap::from([("GREETING".to_owned(), "hi".to_owned())]);
        assert!(validate_environment(&env).is_ok());
    }

    #[test]
    fn code_sha_formats() {
        let sha = CodeSha256::of(b"abc");
        assert_eq!(CodeSha256::from_hex(&sha.to_hex()).unwrap(), sha);
        assert_eq!(sha.to_base64().len(), 44);
    }
}
