//! Client SDK for the registry gateway: a service registers itself on start, heartbeats in the background,
//! registers again when the gateway forgets it, and deregisters on shutdown.
//!
//! ```no_run
//! # async fn run() -> Result<(), client_sdk::SdkError> {
//! use client_sdk::Registration;
//! let registration = Registration::builder("http://127.0.0.1:8080", "orders", "http://127.0.0.1:9001")
//!     .metadata("version", "1.4.2")
//!     .start()
//!     .await?; // registers (or keeps trying in the background), then heartbeats
//! client_sdk::shutdown_signal().await; // Ctrl-C or SIGTERM
//! registration.deregister().await?; // before the server stops
//! # Ok(()) }
//! ```
//!
//! On each failure: the gateway unreachable at start → retries with capped exponential backoff and jitter
//! (100 ms doubling to 5 s) while the service starts anyway; `429`/`503` → waits `Retry-After`; a heartbeat
//! answered `404` (gateway restarted or evicted the replica) → registers again at once, and the new id
//! replaces the old; a heartbeat that fails → retried on backoff, never slower than the heartbeat interval;
//! `400` → gives up ([`RegistrationState::Failed`]): retrying cannot fix a bad name or address.
//!
//! # Cargo features
//!
//! - `grpc` (off by default): `RegistrationBuilder::via_grpc`, registration over the gateways' gRPC
//!   registration API, which brings in tonic, prost and (to build the protocol) protox.
//!
//! Off by default because the HTTP registration API is always there and serves every replica: a gRPC
//! replica registers over HTTP just as well ([`RegistrationBuilder::protocol`] and
//! [`RegistrationBuilder::grpc_service`] need no feature). Most users of the SDK are HTTP services, and
//! with the feature on by default each would compile a gRPC stack it never calls unless it remembered
//! `default-features = false` (and a single dependent that forgot would turn it back on for the whole
//! build). The few that want gRPC registration, such as `demo-grpc --via-grpc`, ask for it:
//! `client-sdk = { ..., features = ["grpc"] }`. Without it, `cargo tree -p client-sdk -e normal` lists
//! neither tonic nor prost.

mod agent;
#[cfg(test)]
mod agent_tests;
mod api;
pub mod backoff;
mod error;
mod registration;
mod shutdown;
mod state;

pub use backoff::Backoff;
pub use error::SdkError;
pub use registration::{Protocol, Registration, RegistrationBuilder};
pub use shutdown::shutdown_signal;
pub use state::RegistrationState;
