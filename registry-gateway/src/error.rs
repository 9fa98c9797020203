//! The gateway's errors and their one mapping to HTTP: status, `{"error", "message"}` JSON, headers.

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use crate::policy::FailureCause;
use crate::registry::RegistryError;

/// Everything the gateway answers with an error.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The body is not JSON.
    #[error("request body is not valid JSON: {0}")]
    MalformedJson(String),
    /// A field is missing or invalid.
    #[error("{field}: {message}")]
    InvalidField {
        /// The field, such as `address`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The body is larger than allowed.
    #[error("request body is larger than the {limit} bytes allowed")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The client's body could not be read.
    #[error("could not read the request body: {0}")]
    BadBody(String),
    /// The registration token is missing or wrong.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// Registry lookups.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// No route at this path.
    #[error("no route for {0}")]
    NoRoute(String),
    /// Wrong method on an API path.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path.
        path: String,
    },
    /// The service exists but no replica can take the request now.
    #[error("no replica of service '{service}' can take the request: {reason}")]
    NoReplicaAvailable {
        /// Service name.
        service: String,
        /// "none registered" or "all circuits open".
        reason: &'static str,
        /// When to try again.
        retry_after: Duration,
    },
    /// Every attempt failed.
    #[error("all {attempts} attempt(s) to reach service '{service}' failed; last: {cause}")]
    AllAttemptsFailed {
        /// Service name.
        service: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        cause: FailureCause,
    },
    /// The request body is not JSON-typed where JSON is required.
    #[error("unsupported content type {0}: send application/json")]
    UnsupportedMediaType(String),
    /// The request head is larger than `limits.max_header_bytes`.
    #[error("request headers are larger than the {limit} bytes allowed")]
    HeaderTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request target is longer than `limits.max_uri_bytes`.
    #[error("request target is longer than the {limit} bytes allowed")]
    UriTooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The request already passed through this gateway, or through too many proxies.
    #[error(transparent)]
    Loop(#[from] crate::proxy::HopError),
    /// The path climbs above the service prefix with `..` segments.
    #[error("path {0} climbs above its service with '..' segments")]
    BadPath(String),
    /// The client sent no body bytes for `client.body_timeout`.
    #[error("the request body did not arrive in time (client.body_timeout)")]
    ClientBodyTimeout,
    /// The client's body ended before its announced length, or was malformed.
    #[error("the request body was cut short or malformed: {0}")]
    ClientBody(String),
    /// The last attempt timed out.
    #[error("service '{service}' did not answer in time ({attempts} attempt(s))")]
    UpstreamTimeout {
        /// Service name.
        service: String,
        /// Attempts made.
        attempts: u32,
    },
    /// A protocol upgrade (WebSocket or another protocol) while `proxy.upgrades` is off.
    #[error("protocol upgrades ({0}) are disabled on this gateway (proxy.upgrades)")]
    UpgradeDisabled(String),
}

impl GatewayError {
    /// The stable machine-readable code in the JSON body.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::MalformedJson(_) => "malformed_json",
            GatewayError::InvalidField { .. } => "invalid_request",
            GatewayError::PayloadTooLarge { .. } => "payload_too_large",
            GatewayError::BadBody(_) => "bad_request_body",
            GatewayError::Unauthorized => "unauthorized",
            GatewayError::Registry(RegistryError::UnknownService(_)) => "unknown_service",
            GatewayError::Registry(RegistryError::UnknownReplica { .. }) => "unknown_replica",
            GatewayError::Registry(RegistryError::StaticReplica(_)) => "static_replica",
            GatewayError::NoRoute(_) => "not_found",
            GatewayError::MethodNotAllowed { .. } => "method_not_allowed",
            GatewayError::NoReplicaAvailable { .. } => "no_replica_available",
            GatewayError::AllAttemptsFailed { .. } => "bad_gateway",
            GatewayError::UpstreamTimeout { .. } => "upstream_timeout",
            GatewayError::UnsupportedMediaType(_) => "unsupported_media_type",
            GatewayError::HeaderTooLarge { .. } => "headers_too_large",
            GatewayError::UriTooLong { .. } => "uri_too_long",
            GatewayError::Loop(_) => "loop_detected",
            GatewayError::BadPath(_) => "bad_path",
            GatewayError::ClientBodyTimeout => "client_body_timeout",
            GatewayError::ClientBody(_) => "bad_request_body",
            GatewayError::UpgradeDisabled(_) => "upgrade_disabled",
        }
    }

    /// The field at fault, for validation errors.
    fn field(&self) -> Option<&str> {
        match self {
            GatewayError::InvalidField { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        match self {
            GatewayError::MalformedJson(_)
            | GatewayError::InvalidField { .. }
            | GatewayError::BadBody(_)
            | GatewayError::BadPath(_)
            | GatewayError::ClientBody(_) => StatusCode::BAD_REQUEST,
            GatewayError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GatewayError::HeaderTooLarge { .. } => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::UriTooLong { .. } => StatusCode::URI_TOO_LONG,
            GatewayError::Loop(_) => StatusCode::LOOP_DETECTED,
            GatewayError::ClientBodyTimeout => StatusCode::REQUEST_TIMEOUT,
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::Unauthorized => StatusCode::UNAUTHORIZED,
            GatewayError::Registry(RegistryError::StaticReplica(_)) => StatusCode::CONFLICT,
            GatewayError::Registry(_) | GatewayError::NoRoute(_) => StatusCode::NOT_FOUND,
            GatewayError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::NoReplicaAvailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::AllAttemptsFailed { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            // A policy refusal: the request is well formed and the route exists, but this gateway will
            // not carry it. Retrying cannot help, unlike 503; 426 would ask for an upgrade, not refuse one.
            GatewayError::UpgradeDisabled(_) => StatusCode::FORBIDDEN,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        if let Some(field) = self.field() {
            body["field"] = field.into();
        }
        let mut resp = HttpResponse::build(self.status_code());
        match self {
            GatewayError::NoReplicaAvailable { retry_after, .. } => {
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                resp.insert_header((header::RETRY_AFTER, secs.max(1).to_string()));
            }
            GatewayError::Unauthorized => {
                resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            _ => {}
        }
        resp.json(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let e = GatewayError::NoReplicaAvailable {
            service: "orders".into(),
            reason: "all circuits open",
            retry_after: Duration::from_millis(2_100),
        };
        let resp = e.error_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "3");
    }
}
