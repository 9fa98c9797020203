//! Self-registering service-registry gateway.
//!
//! - [`policy`]: pure decisions (outcomes, breaker, lease, eviction, selection, retry), driven by `now`.
//! - [`registry`]: the in-process model of services and replicas that the policy acts on.

pub mod policy;
pub mod registry;
