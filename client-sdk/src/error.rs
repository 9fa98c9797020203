//! The SDK's errors.

/// What can go wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdkError {
    /// A gateway URL is not `http://host:port` or `https://host:port`.
    #[error("invalid gateway URL '{url}': {reason}")]
    InvalidGatewayUrl {
        /// The URL given.
        url: String,
        /// Why it was refused.
        reason: String,
    },
    /// The CA file for `https://` gateways cannot be used.
    #[error("CA file {path}: {reason}")]
    InvalidCaFile {
        /// The file given.
        path: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// No gateway URL was given.
    #[error("at least one gateway URL is needed")]
    NoGateway,
    /// The gateway could not be reached.
    #[error("gateway {gateway} unreachable: {reason}")]
    Unreachable {
        /// The gateway.
        gateway: String,
        /// The transport error.
        reason: String,
    },
    /// The gateway answered with an error status.
    #[error("gateway {gateway} answered {status}: {message}")]
    Rejected {
        /// The gateway.
        gateway: String,
        /// HTTP status.
        status: u16,
        /// The gateway's `message`, or the body.
        message: String,
    },
    /// The gateway's answer could not be understood.
    #[error("gateway {gateway} sent an unexpected answer: {reason}")]
    BadAnswer {
        /// The gateway.
        gateway: String,
        /// What was wrong with it.
        reason: String,
    },
}
