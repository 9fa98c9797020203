//! Pure failure policy: outcome classification, breaker, lease, eviction, self-preservation, selection,
//! retry decisions, one request's attempts, the retry budget, slow replicas and pipelined batch sizes.
//!
//! Nothing here does IO or reads a clock: every decision takes `now` and the facts it needs, so unit tests
//! drive exact sequences. The proxy (IO) produces [`Outcome`]s; the registry feeds them to these types.

pub mod attempts;
pub mod breaker;
pub mod eviction;
pub mod lease;
pub mod outcome;
pub mod outlier;
pub mod pipeline;
pub mod preservation;
pub mod retry;
pub mod retry_budget;
pub mod selection;
pub mod upload;

pub use attempts::{Attempts, Failure, Next, Report};
pub use breaker::{Admission, Breaker, BreakerConfig, BreakerState, OpenCause, Transition};
pub use eviction::{EvictionPolicy, EvictionReason};
pub use lease::Lease;
pub use outcome::{attribute, ClientFault, FailureCause, Fault, Outcome};
pub use outlier::{OutlierConfig, SlowReason};
pub use pipeline::AnswerTime;
pub use preservation::{Census, Preservation, PreservationPolicy, Verdict};
pub use retry::{BodyReplay, RetryDecision, RetryPolicy};
pub use retry_budget::{RefusalLog, RefusalReport, RetryBudget, RetryBudgetConfig};
pub use selection::RoundRobin;
pub use upload::{HeadTimer, UploadState};
