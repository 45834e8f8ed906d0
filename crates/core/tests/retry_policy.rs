//! Property tests of the asynchronous retry schedule: the waits `RetryPolicy` gives after
//! function errors and after throttles or system errors, and the bounds of the event invoke
//! configuration that caps how many attempts an event gets and how old it may grow.

use std::time::Duration;

use nimbus_core::event_invoke::{
    MAX_MAXIMUM_EVENT_AGE_SECS, MAX_MAXIMUM_RETRY_ATTEMPTS, MIN_MAXIMUM_EVENT_AGE_SECS,
};
use nimbus_core::{EventInvokeConfig, RetryPolicy};
use proptest::prelude::*;

/// Retries the exponent still doubles for (the policy stops doubling after 2^16).
const DOUBLING_RETRIES: u32 = 17;

fn duration(max_ms: u64) -> impl Strategy<Value = Duration> {
    (1..=max_ms).prop_map(Duration::from_millis)
}

/// Policies from a millisecond to well past anything sensible, so saturation is exercised.
fn policy() -> impl Strategy<Value = RetryPolicy> {
    (
        prop_oneof![duration(600_000), Just(Duration::MAX)],
        duration(600_000),
        duration(3_600_000),
    )
        .prop_map(
            |(function_error_base, system_error_base, system_error_max)| RetryPolicy {
                function_error_base,
                system_error_base,
                system_error_max,
            },
        )
}

/// Any jitter the worker could pass, and some it never should.
fn jitter() -> impl Strategy<Value = f64> {
    prop_oneof![
        0.0..1.0f64,
        Just(0.0),
        Just(0.999_999),
        Just(-1.0),
        Just(7.0),
        Just(f64::NAN),
        Just(f64::INFINITY),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The n-th wait is the base doubled n-1 times, plus at most a quarter of that.
    #[test]
    fn function_error_jitter_is_bounded(policy in policy(), retry in 0..u32::MAX, jitter in jitter()) {
        let delay = policy.function_error_delay(retry, jitter);
        let exponent = retry.saturating_sub(1).min(16);
        let floor = policy.function_error_base.saturating_mul(1 << exponent);
        prop_assert!(delay >= floor, "{delay:?} < {floor:?}");
        // The jitter goes through an f64: allow for its rounding.
        let rounding = floor / 1_000_000 + Duration::from_micros(1);
        let ceiling = floor.saturating_add(floor / 4).saturating_add(rounding);
        prop_assert!(delay <= ceiling, "{delay:?} > {floor:?} + 25%");
    }

    /// Whatever the jitter, each wait after a function error is longer than the one before.
    #[test]
    fn each_function_error_wait_is_longer(
        base in duration(600_000),
        retry in 1..DOUBLING_RETRIES,
        earlier in jitter(),
        later in jitter(),
    ) {
        let policy = RetryPolicy { function_error_base: base, ..RetryPolicy::default() };
        let this = policy.function_error_delay(retry, earlier);
        let next = policy.function_error_delay(retry + 1, later);
        prop_assert!(this < next, "retry {retry}: {this:?} then {next:?}");
    }

    /// Throttle and system back-off doubles and never passes its cap, which is five minutes
    /// unless configured otherwise.
    #[test]
    fn system_back_off_is_capped(policy in policy(), consecutive in 0..u32::MAX) {
        let delay = policy.system_error_delay(consecutive);
        prop_assert!(delay <= policy.system_error_max);
        prop_assert!(delay >= policy.system_error_base.min(policy.system_error_max));
        prop_assert!(policy.system_error_delay(consecutive.saturating_add(1)) >= delay);
        let default = RetryPolicy::default().system_error_delay(consecutive);
        prop_assert!(default <= Duration::from_secs(300));
    }

    /// A configuration is accepted exactly when Lambda's bounds hold, and an accepted one
    /// allows at most three attempts and six hours.
    #[test]
    fn configurations_bound_attempts_and_age(
        attempts in proptest::option::of(0..10u32),
        age in proptest::option::of(0..30_000u32),
    ) {
        let config = EventInvokeConfig {
            maximum_retry_attempts: attempts,
            maximum_event_age_secs: age,
            ..EventInvokeConfig::empty()
        };
        let in_bounds = attempts.is_none_or(|a| a <= MAX_MAXIMUM_RETRY_ATTEMPTS)
            && age.is_none_or(|a| (MIN_MAXIMUM_EVENT_AGE_SECS..=MAX_MAXIMUM_EVENT_AGE_SECS).contains(&a));
        prop_assert_eq!(config.validate().is_ok(), in_bounds);
        if in_bounds {
            prop_assert!(config.retry_attempts() <= MAX_MAXIMUM_RETRY_ATTEMPTS);
            prop_assert!(config.maximum_event_age() >= Duration::from_secs(MIN_MAXIMUM_EVENT_AGE_SECS.into()));
            prop_assert!(config.maximum_event_age() <= Duration::from_secs(MAX_MAXIMUM_EVENT_AGE_SECS.into()));
        }
    }
}
