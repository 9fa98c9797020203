//! Self-registering service-registry gateway.
//!
//! Request path: [`admin`] and [`proxy`] are the actix-web edges; both act on the [`registry`] by
//! executing its commands, whose decisions come from the pure [`policy`] code. [`config`] is validated at start (and again at each
//! SIGHUP), [`server`] wires it all; settings a reload replaces are [`live`] values, and [`logging`]
//! writes every line as text or JSON.
//!
//! - [`policy`]: outcome classification, breaker, lease, eviction, self-preservation, selection, retry,
//!   one request's attempts (pick again / answer / fail, for both wires), retry budget, slow replicas.
//!   No IO, no clock.
//! - [`registry`]: services and replicas, the state the policy acts on. Every change is a command value
//!   (register, heartbeat, an attempt's outcome, the lease sweep, a peer's change...): `apply(command, now)`
//!   returns its reply and the events it produced, and `execute` hands those to the log, the watchers and
//!   the store's bounded queue, in one place.
//! - [`proxy`]: pick → forward one attempt (in-task HTTP/1.1 client, per-worker pool) → classify → record → ask
//!   the attempt machine whether to pick the next; upgrades (WebSocket or any protocol) tunnelled after
//!   the replica's 101.
//! - [`framing`]: the HTTP listener's connections (HTTP/1.1, and h2 by ALPN over TLS), each behind a gate
//!   that follows HTTP/1 framing and hands a switched connection's bytes to its tunnel.
//! - [`admin`]: `POST /register`, heartbeats, deregistration, `GET /registry`, health.
//! - [`grpc`]: the gRPC listener (hyper h2c): registration API, health, transparent proxy (the same
//!   attempt machine, classification table and attempt record as [`proxy`], over one HTTP/2
//!   connection per replica).
//! - [`store`]: sharing the registry between gateways (Redis), off the proxy path: a writer draining the
//!   registry's queue, a pub/sub subscriber, a resync, each in its own file; the rules are pure.
//! - [`observe`]: metrics (`GET /metrics`), the access log, request ids.
//! - [`tls`]: rustls (ring) for the listeners and `https://` replicas; certificates reload on SIGHUP.
//! - [`error`]: every error and its one mapping to HTTP.

// Tests drive the policy code with instants of their own (clippy.toml forbids reading the clock elsewhere).
#![cfg_attr(test, allow(clippy::disallowed_methods))]

pub mod admin;
pub mod banner;
pub mod clock;
pub mod config;
pub mod error;
pub mod framing;
pub mod grpc;
pub mod head_limits;
pub mod live;
pub mod logging;
pub mod observe;
pub mod policy;
pub mod proxy;
pub mod registry;
pub mod server;
pub mod store;
pub mod tls;

#[cfg(test)]
mod fuzz_tests;

pub use config::Config;
pub use server::Gateway;
