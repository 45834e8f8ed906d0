//! How a function's asynchronous invocations are retried and where their results go:
//! Lambda's event invoke configuration, and the retry policy the queue-worker derives from it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{Error, Result};

/// Retries after the first attempt when nothing is configured (Lambda: 2).
pub const DEFAULT_MAXIMUM_RETRY_ATTEMPTS: u32 = 2;
pub const MAX_MAXIMUM_RETRY_ATTEMPTS: u32 = 2;
/// How long an event may wait for a successful attempt when nothing is configured (6 hours).
pub const DEFAULT_MAXIMUM_EVENT_AGE_SECS: u32 = 21_600;
pub const MIN_MAXIMUM_EVENT_AGE_SECS: u32 = 60;
pub const MAX_MAXIMUM_EVENT_AGE_SECS: u32 = 21_600;

/// `FunctionEventInvokeConfig`: unset members mean Lambda's defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventInvokeConfig {
    pub maximum_retry_attempts: Option<u32>,
    pub maximum_event_age_secs: Option<u32>,
    /// ARN of the function that receives the record of a successful invocation.
    pub on_success: Option<String>,
    /// ARN of the function that receives the record of an invocation that failed for good.
    pub on_failure: Option<String>,
    pub last_modified: OffsetDateTime,
}

impl EventInvokeConfig {
    /// A configuration with every member at its default, modified now.
    pub fn empty() -> Self {
        Self {
            maximum_retry_attempts: None,
            maximum_event_age_secs: None,
            on_success: None,
            on_failure: None,
            last_modified: OffsetDateTime::now_utc(),
        }
    }

    /// Checks the members against Lambda's bounds; destinations are checked by the caller,
    /// which knows which functions exist.
    pub fn validate(&self) -> Result<()> {
        if let Some(attempts) = self.maximum_retry_attempts
            && attempts > MAX_MAXIMUM_RETRY_ATTEMPTS
        {
            return Err(Error::InvalidParameterValue(format!(
                "1 validation error detected: Value '{attempts}' at 'maximumRetryAttempts' \
                 failed to satisfy constraint: Member must have value less than or equal to \
                 {MAX_MAXIMUM_RETRY_ATTEMPTS}"
            )));
        }
        if let Some(age) = self.maximum_event_age_secs
            && !(MIN_MAXIMUM_EVENT_AGE_SECS..=MAX_MAXIMUM_EVENT_AGE_SECS).contains(&age)
        {
            let bound = if age < MIN_MAXIMUM_EVENT_AGE_SECS {
                format!("greater than or equal to {MIN_MAXIMUM_EVENT_AGE_SECS}")
            } else {
                format!("less than or equal to {MAX_MAXIMUM_EVENT_AGE_SECS}")
            };
            return Err(Error::InvalidParameterValue(format!(
                "1 validation error detected: Value '{age}' at 'maximumEventAgeInSeconds' \
                 failed to satisfy constraint: Member must have value {bound}"
            )));
        }
        Ok(())
    }

    pub fn retry_attempts(&self) -> u32 {
        self.maximum_retry_attempts
            .unwrap_or(DEFAULT_MAXIMUM_RETRY_ATTEMPTS)
    }

    pub fn maximum_event_age(&self) -> Duration {
        Duration::from_secs(u64::from(
            self.maximum_event_age_secs
                .unwrap_or(DEFAULT_MAXIMUM_EVENT_AGE_SECS),
        ))
    }
}

/// When the queue-worker tries an event again.
///
/// A function error or timeout spends one of the event's attempts; the n-th retry waits
/// `function_error_base * 2^(n-1)` plus up to a quarter of that as jitter, so each wait is
/// longer than the last (Lambda waits about one, then two minutes). A throttle or a Nimbus
/// failure spends no attempt; it backs off from `system_error_base`, doubling up to
/// `system_error_max`, until the event is too old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub function_error_base: Duration,
    pub system_error_base: Duration,
    pub system_error_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            function_error_base: Duration::from_secs(60),
            system_error_base: Duration::from_secs(1),
            system_error_max: Duration::from_secs(300),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based) after a function error; `jitter` in
    /// `[0, 1)` picks where in the jitter window it falls.
    pub fn function_error_delay(&self, retry: u32, jitter: f64) -> Duration {
        let exponent = retry.saturating_sub(1).min(16);
        let base = self.function_error_base.saturating_mul(1 << exponent);
        // Saturating: the base is configurable, and a NaN jitter counts as none.
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        base.saturating_add(base.mul_f64(jitter / 4.0))
    }

    /// The wait after the `consecutive`-th (1-based) throttle or system error in a row.
    pub fn system_error_delay(&self, consecutive: u32) -> Duration {
        let exponent = consecutive.saturating_sub(1).min(20);
        self.system_error_base
            .saturating_mul(1 << exponent)
            .min(self.system_error_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_lambdas() {
        let config = EventInvokeConfig::empty();
        assert_eq!(config.retry_attempts(), 2);
        assert_eq!(config.maximum_event_age(), Duration::from_secs(21_600));
        config.validate().unwrap();
    }

    #[test]
    fn out_of_range_values_are_refused() {
        for (attempts, age) in [(Some(3), None), (None, Some(59)), (None, Some(21_601))] {
            let config = EventInvokeConfig {
                maximum_retry_attempts: attempts,
                maximum_event_age_secs: age,
                ..EventInvokeConfig::empty()
            };
            assert!(
                matches!(config.validate(), Err(Error::InvalidParameterValue(_))),
                "{attempts:?} {age:?}"
            );
        }
        let edges = EventInvokeConfig {
            maximum_retry_attempts: Some(0),
            maximum_event_age_secs: Some(60),
            ..EventInvokeConfig::empty()
        };
        edges.validate().unwrap();
    }

    #[test]
    fn each_function_error_wait_is_longer_than_the_last() {
        let policy = RetryPolicy {
            function_error_base: Duration::from_millis(200),
            ..RetryPolicy::default()
        };
        // The longest first wait is still shorter than the shortest second one.
        assert_eq!(
            policy.function_error_delay(1, 0.0),
            Duration::from_millis(200)
        );
        assert!(policy.function_error_delay(1, 0.999) < policy.function_error_delay(2, 0.0));
        assert_eq!(
            policy.function_error_delay(2, 0.0),
            Duration::from_millis(400)
        );
    }

    #[test]
    fn system_error_back_off_doubles_up_to_its_cap() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.system_error_delay(1), Duration::from_secs(1));
        assert_eq!(policy.system_error_delay(4), Duration::from_secs(8));
        assert_eq!(policy.system_error_delay(50), Duration::from_secs(300));
    }
}
