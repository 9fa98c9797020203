//! Demo backends for the registry gateway: an HTTP service with failure injection (`demo-http`).

pub mod faults;
pub mod http_app;
