//! Provisioned concurrency: instances of a published version or an alias kept started and
//! initialised ahead of traffic, so that their invocations start warm.

use time::OffsetDateTime;

use crate::FunctionName;

/// Where the allocation of a configuration stands, as Lambda's
/// `ProvisionedConcurrencyStatusEnum`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionedStatus {
    InProgress,
    Ready,
    Failed,
}

impl ProvisionedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "IN_PROGRESS",
            Self::Ready => "READY",
            Self::Failed => "FAILED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::InProgress, Self::Ready, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == s)
    }
}

/// The provisioned concurrency of `function_name:qualifier`: what was asked for, and what the
/// invoker has allocated so far.
#[derive(Debug, Clone, PartialEq)]
pub struct ProvisionedConcurrencyConfig {
    pub function_name: FunctionName,
    /// A published version or an alias, never `$LATEST`.
    pub qualifier: String,
    pub requested: u32,
    /// Instances started and initialised for it.
    pub allocated: u32,
    pub status: ProvisionedStatus,
    /// Why the allocation failed, when it did.
    pub status_reason: Option<String>,
    /// When the configuration was last put (allocation updates leave it).
    pub last_modified: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_back() {
        for status in [
            ProvisionedStatus::InProgress,
            ProvisionedStatus::Ready,
            ProvisionedStatus::Failed,
        ] {
            assert_eq!(ProvisionedStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(ProvisionedStatus::parse("ready"), None);
    }
}
