//! Domain types of Nimbus, shared by every service and free of I/O.
//!
//! Functions and their limits, invocations and their records, the one error type that every
//! service maps to HTTP (Lambda's error shape) and to gRPC, and the [`Invoker`] trait through
//! which the gateway and the queue-worker reach the invoker, in-process or remote; event invoke
//! configuration and retry policy; dead letters and the [`DeadLetters`] trait of the DLQ
//! service. And what the HTTP servers of the gateway and the invoker share: [`repoll::Repoll`],
//! a future combinator, and [`accept`], what their accept loops do with a failed accept.

pub mod accept;
pub mod alias;
pub mod code;
pub mod cors;
pub mod dead_letter;
pub mod error;
pub mod event_invoke;
pub mod function;
pub mod function_url;
pub mod invocation;
pub mod invoker;
pub mod limits;
pub mod provisioned;
pub mod repoll;
pub mod route;
pub mod sigv4;
pub mod trace;

pub use alias::{Alias, QualifierKind};
pub use cors::Cors;
pub use dead_letter::{
    DeadLetter, DeadLetterFilter, DeadLetterPage, DeadLetterReason, DeadLetters, RedriveMark,
    Redriven, Selection,
};
pub use error::{Error, Result};
pub use event_invoke::{EventInvokeConfig, RetryPolicy};
pub use function::{CodeSha256, FunctionConfig, FunctionName, Runtime};
pub use function_url::{AuthType, FunctionUrlConfig, InvokeMode};
pub use invocation::{
    Attempt, Cursor, FunctionError, InvocationFilter, InvocationRecord, InvocationStatus,
    InvocationType, InvokeOutcome, InvokeRequest, RequestId,
};
pub use invoker::Invoker;
pub use provisioned::{ProvisionedConcurrencyConfig, ProvisionedStatus};
pub use route::{HttpRoute, RouteMatch, RoutePath, RouteTable};
