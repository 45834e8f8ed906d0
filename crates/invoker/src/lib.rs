//! Nimbus' invoker: runs functions the way Lambda's execution environment does.
//!
//! [`LocalInvoker`] keeps pools of warm instances (one OS process each, in its own process
//! group, under resource limits and, when the invoker is root, as a user of its own) per
//! function configuration, serves each instance the Lambda Runtime API on its own loopback
//! port, enforces timeouts, concurrency and node limits, and captures logs. [`grpc`] serves
//! any `Invoker` over gRPC and reaches a remote one.

mod code;
mod config;
pub mod grpc;
mod instance;
mod invoker;
mod isolation;
mod logs;
mod pool;
mod provisioner;
mod run_to_end;
mod runtime_api;
mod runtimes;
mod scratch;
mod sync;

pub use config::{FunctionUids, InvokerConfig};
pub use invoker::{InvokerStats, LocalInvoker};
