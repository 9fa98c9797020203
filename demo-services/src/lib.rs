//! Demo backends for the registry gateway, with failure injection: `demo-http` and `demo-grpc`.

pub mod faults;
pub mod grpc_app;
pub mod http_app;
pub mod registration;
pub mod websocket;
