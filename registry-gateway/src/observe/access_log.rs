//! The access log: one line per proxied HTTP request and per gRPC call, written when it ends, at `info`
//! on the `access` target, with structured fields (`log.access: false` turns it off).

use std::net::SocketAddr;
use std::time::Duration;

use super::code::FinalStatus;

/// What the access log needs of a request that is known when it arrives; taken only while the access
/// log is on.
#[derive(Debug, Clone)]
pub struct AccessInfo {
    /// The request method (`POST` for every gRPC call).
    pub method: http::Method,
    /// The path the client asked for, without the query (which may carry secrets).
    pub path: Box<str>,
    /// The client's address (the peer of the connection).
    pub client: Option<SocketAddr>,
}

/// One finished request, as the access log writes it.
#[derive(Debug)]
pub(super) struct Entry<'a> {
    /// Method, path, client.
    pub(super) info: &'a AccessInfo,
    /// Registry service (empty when unknown).
    pub(super) service: &'a str,
    /// Address of the last replica tried, if any.
    pub(super) replica: Option<&'a str>,
    /// Final status as the client saw it.
    pub(super) status: FinalStatus,
    /// Attempts made on replicas.
    pub(super) attempts: u32,
    /// Arrival to response end.
    pub(super) duration: Duration,
    /// Response body bytes sent to the client.
    pub(super) bytes: u64,
    /// Bytes a tunnel carried from the client (tunnels only: logged as `bytes_in`).
    pub(super) bytes_in: Option<u64>,
    /// The request's `x-request-id`.
    pub(super) request_id: &'a str,
}

/// Whether an access line would be written: `log.access` (`setting`) is on and the log filter lets
/// `access` lines at `info` through. Checked per request, before anything is copied for the line.
pub fn access_log_on(setting: bool) -> bool {
    setting && tracing::enabled!(target: "access", tracing::Level::INFO)
}

/// Milliseconds with microsecond precision, as the line shows them.
pub(super) fn millis(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// Writes `entry` as one `access` line.
pub(super) fn write(entry: &Entry<'_>) {
    let client = DashOr(entry.info.client);
    if let Some(bytes_in) = entry.bytes_in {
        tracing::info!(
            target: "access",
            method = %entry.info.method,
            path = %entry.info.path,
            service = %entry.service,
            replica = %entry.replica.unwrap_or("-"),
            status = %entry.status,
            attempts = entry.attempts,
            duration_ms = millis(entry.duration),
            bytes = entry.bytes,
            bytes_in,
            request_id = %entry.request_id,
            client = %client,
            "access"
        );
        return;
    }
    tracing::info!(
        target: "access",
        method = %entry.info.method,
        path = %entry.info.path,
        service = %entry.service,
        replica = %entry.replica.unwrap_or("-"),
        status = %entry.status,
        attempts = entry.attempts,
        duration_ms = millis(entry.duration),
        bytes = entry.bytes,
        request_id = %entry.request_id,
        client = %client,
        "access"
    );
}

/// `-` for a missing value.
struct DashOr<T>(Option<T>);

impl<T: std::fmt::Display> std::fmt::Display for DashOr<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("-"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_show_as_milliseconds_with_microseconds() {
        assert_eq!(millis(Duration::from_micros(1_234)), 1.234);
        assert_eq!(millis(Duration::from_secs(2)), 2000.0);
        assert_eq!(millis(Duration::from_nanos(999)), 0.0);
    }

    #[test]
    fn a_missing_value_is_a_dash() {
        assert_eq!(DashOr::<u8>(None).to_string(), "-");
        assert_eq!(
            DashOr(Some("127.0.0.1:5000".parse::<SocketAddr>().unwrap())).to_string(),
            "127.0.0.1:5000"
        );
    }
}
