//! The `code` label of `gateway_requests_total`: a final status as text, from a fixed, bounded set.

/// How a request ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalStatus {
    /// An HTTP status (100 to 999, as `http` allows).
    Http(u16),
    /// A gRPC status code (0 to 16; anything else reads as UNKNOWN, as the gRPC spec says).
    Grpc(i32),
}

/// The HTTP code a request gets in the metrics and the access log when the client left before any
/// response (nginx's "client closed request").
pub const CLIENT_CLOSED: u16 = 499;

/// gRPC status names by code, as in the gRPC spec (`grpc/status.rs` holds the codes the gateway sends).
pub(super) const GRPC_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Lowest HTTP status.
pub(super) const HTTP_MIN: u16 = 100;
/// Highest HTTP status `http::StatusCode` accepts.
pub(super) const HTTP_MAX: u16 = 999;
/// Slots of a per-service table of HTTP codes.
pub(super) const HTTP_SLOTS: usize = (HTTP_MAX - HTTP_MIN + 1) as usize;
/// Slots of a per-service table of gRPC codes.
pub(super) const GRPC_SLOTS: usize = GRPC_NAMES.len();

/// A gRPC code as the spec reads it: out of range is UNKNOWN (2).
pub(super) fn grpc_code(code: i32) -> usize {
    match usize::try_from(code) {
        Ok(c) if c < GRPC_SLOTS => c,
        _ => 2,
    }
}

/// The gRPC status name of `code` (`OK`, `UNAVAILABLE`, …).
pub fn grpc_name(code: i32) -> &'static str {
    GRPC_NAMES[grpc_code(code)]
}

/// An HTTP status clamped into the table (`http::StatusCode` never leaves 100..=999).
pub(super) fn http_slot(status: u16) -> usize {
    usize::from(status.clamp(HTTP_MIN, HTTP_MAX) - HTTP_MIN)
}

impl FinalStatus {
    /// The slot of this status in its protocol's table.
    pub fn slot(&self) -> usize {
        match *self {
            FinalStatus::Http(s) => http_slot(s),
            FinalStatus::Grpc(c) => grpc_code(c),
        }
    }

    /// The label text of the status in `slot` (built once per series, when its counter is created).
    pub fn label(&self) -> String {
        match *self {
            FinalStatus::Http(s) => s.clamp(HTTP_MIN, HTTP_MAX).to_string(),
            FinalStatus::Grpc(c) => grpc_name(c).to_owned(),
        }
    }
}

impl std::fmt::Display for FinalStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            FinalStatus::Http(s) => write!(f, "{s}"),
            FinalStatus::Grpc(c) => f.write_str(grpc_name(c)),
        }
    }
}

/// The gRPC status a client derives from a non-200 HTTP status of a gRPC response (the gRPC spec's
/// "HTTP to gRPC status code mapping").
pub fn grpc_from_http(status: u16) -> i32 {
    match status {
        400 => 13,             // INTERNAL
        401 => 16,             // UNAUTHENTICATED
        403 => 7,              // PERMISSION_DENIED
        404 => 12,             // UNIMPLEMENTED
        429 | 502..=504 => 14, // UNAVAILABLE
        _ => 2,                // UNKNOWN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_codes_have_their_spec_names() {
        assert_eq!(grpc_name(0), "OK");
        assert_eq!(grpc_name(1), "CANCELLED");
        assert_eq!(grpc_name(4), "DEADLINE_EXCEEDED");
        assert_eq!(grpc_name(5), "NOT_FOUND");
        assert_eq!(grpc_name(14), "UNAVAILABLE");
        assert_eq!(grpc_name(16), "UNAUTHENTICATED");
        // out of range: UNKNOWN, never a new label value
        for c in [-1, 17, 99, i32::MAX, i32::MIN] {
            assert_eq!(grpc_name(c), "UNKNOWN", "{c}");
            assert_eq!(FinalStatus::Grpc(c).slot(), 2);
        }
    }

    #[test]
    fn http_statuses_map_to_one_slot_each_within_the_table() {
        assert_eq!(FinalStatus::Http(100).slot(), 0);
        assert_eq!(FinalStatus::Http(200).slot(), 100);
        assert_eq!(FinalStatus::Http(999).slot(), HTTP_SLOTS - 1);
        assert_eq!(FinalStatus::Http(200).label(), "200");
        assert_eq!(FinalStatus::Http(CLIENT_CLOSED).label(), "499");
        // never outside the table, whatever a caller passes
        assert_eq!(FinalStatus::Http(0).slot(), 0);
        assert_eq!(FinalStatus::Http(u16::MAX).slot(), HTTP_SLOTS - 1);
        assert_eq!(FinalStatus::Grpc(14).label(), "UNAVAILABLE");
        assert_eq!(FinalStatus::Grpc(0).to_string(), "OK");
    }

    #[test]
    fn non_200_grpc_responses_read_as_the_spec_says() {
        assert_eq!(grpc_from_http(400), 13);
        assert_eq!(grpc_from_http(401), 16);
        assert_eq!(grpc_from_http(403), 7);
        assert_eq!(grpc_from_http(404), 12);
        for s in [429, 502, 503, 504] {
            assert_eq!(grpc_from_http(s), 14, "{s}");
        }
        assert_eq!(grpc_from_http(500), 2);
    }
}
