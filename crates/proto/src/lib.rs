//! The gRPC contracts of Nimbus' services, generated from the top-level `proto/` folder.
//!
//! Nothing else lives here: domain types are in `nimbus-core`, and each service converts at
//! its boundary.

pub mod invoker {
    //! `nimbus.invoker.v1`: run one invocation of a function.
    #![allow(unreachable_pub, clippy::all)]
    tonic::include_proto!("nimbus.invoker.v1");
}
