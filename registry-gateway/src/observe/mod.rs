//! What operators see of the gateway at run time: metrics (and, next to them, the access log).

mod metrics;

pub use metrics::{
    AttemptLabels, AttemptResult, DurationLabels, EvictionLabels, Metrics, ProtocolLabel,
    ReplicaLabels, RequestLabels, ServiceLabel, Shared, StateLabels, TransitionLabels, STATES,
};
