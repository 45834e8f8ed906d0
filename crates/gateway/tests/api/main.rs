//! The gateway over real HTTP: a real router on a loopback port, a real SQLite store, and an
//! in-test invoker (the real invoker has its own tests).

// The harness is test code outside `#[test]` functions: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used)]

mod auth;
mod backpressure;
mod control;
mod dead_letters;
mod event_invoke;
mod event_invoke_config;
mod harness;
mod invocation_list;
mod invoke;
mod provisioned;
mod serve;
mod triggers;
mod versions;
