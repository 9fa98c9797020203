//! Generated Protocol Buffers types, tonic clients and servers: `registry.v1` (the gateway's registration
//! API) and `demo.v1` (the demo gRPC service).

/// `registry.v1`: the gateway's registration API.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod registry {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("registry.v1");
    }
}

/// `demo.v1`: the demo gRPC service.
#[allow(missing_docs, unreachable_pub, clippy::all)]
pub mod demo {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("demo.v1");
    }
}
