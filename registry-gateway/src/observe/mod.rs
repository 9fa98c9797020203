//! What operators see of the gateway at run time: metrics, cached metric handles for the request path,
//! the access log and request ids.

mod access_log;
mod code;
mod exchange;
mod handles;
mod histogram;
mod metrics;
mod request_id;

pub use access_log::{access_log_on, AccessInfo};
pub use code::{grpc_from_http, grpc_name, FinalStatus, CLIENT_CLOSED};
pub use exchange::Exchange;
pub use handles::{attempt_result, ReplicaHandles, ServiceHandles, UNKNOWN_SERVICE};
pub use metrics::{
    AttemptLabels, AttemptResult, DurationLabels, EvictionLabels, Metrics, ProtocolLabel,
    ReplicaLabels, RequestLabels, ServiceLabel, Shared, StateLabels, TransitionLabels, STATES,
};
pub use request_id::{
    is_acceptable, RequestId, HEADER as REQUEST_ID_HEADER, MAX_LEN as REQUEST_ID_MAX_LEN,
};
