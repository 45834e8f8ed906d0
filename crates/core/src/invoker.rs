//! The seam between the services that ask for an invocation (gateway, queue-worker) and the
//! invoker that runs it. In one process the invoker implements it directly; across processes
//! its gRPC client does.

use crate::error::Result;
use crate::invocation::{InvokeOutcome, InvokeRequest};

#[async_trait::async_trait]
pub trait Invoker: Send + Sync + 'static {
    /// Runs one invocation to its end. A function that fails is an `Ok` outcome with
    /// `function_error` set; `Err` means Nimbus could not run it (throttled, no code, down).
    async fn invoke(&self, request: InvokeRequest) -> Result<InvokeOutcome>;
}
