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

mod agent;
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
