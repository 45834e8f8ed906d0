//! The DLQ service: where asynchronous invocations go when every attempt failed or they grew
//! too old. It keeps each dead letter in the store with its payload and the error of every
//! attempt, and lets an operator list, inspect, redrive (re-queue as a fresh event) and purge
//! them.
//!
//! [`DeadLetterService`] implements [`nimbus_core::DeadLetters`] in-process; [`grpc`] serves
//! any implementation over gRPC and provides the [`grpc::RemoteDeadLetters`] client, so the
//! queue-worker and the gateway use one trait whether the service is local or remote.

pub mod grpc;
mod service;

pub use service::DeadLetterService;
