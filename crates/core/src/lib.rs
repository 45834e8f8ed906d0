//! Domain types of Nimbus, shared by every service and free of I/O.
//!
//! Functions and their limits, invocations and their records, the one error type that every
//! service maps to HTTP (Lambda's error shape) and to gRPC, and the [`Invoker`] trait through
//! which the gateway (and later the queue-worker) reaches the invoker, in-process or remote.

pub mod code;
pub mod error;
pub mod function;
pub mod invocation;
pub mod invoker;
pub mod limits;

pub use error::{Error, Result};
pub use function::{CodeSha256, FunctionConfig, FunctionName, Runtime};
pub use invocation::{
    FunctionError, InvocationRecord, InvocationStatus, InvocationType, InvokeOutcome,
    InvokeRequest, RequestId,
};
pub use invoker::Invoker;
