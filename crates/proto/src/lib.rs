//! The gRPC contracts of Nimbus' services, generated from the top-level `proto/` folder.
//!
//! Besides the generated code, only what every service needs at the wire boundary: how a
//! domain error travels as a gRPC status ([`status`]), and the service token callers
//! present ([`auth`]). Domain types are in `nimbus-core`, and
//! each service converts its messages itself.

pub mod auth;
pub mod status;

pub mod dlq {
    //! `nimbus.dlq.v1`: store, list, inspect, redrive and purge dead letters.
    #![allow(unreachable_pub, clippy::all)]
    tonic::include_proto!("nimbus.dlq.v1");
}

pub mod invoker {
    //! `nimbus.invoker.v1`: run one invocation of a function.
    #![allow(unreachable_pub, clippy::all)]
    tonic::include_proto!("nimbus.invoker.v1");
}
