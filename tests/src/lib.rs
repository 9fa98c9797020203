//! End-to-end harness: starts real gateway and demo processes on ports the OS chooses, and talks HTTP to them.
//!
//! Binaries come from the workspace's target directory; the test command (`scripts/test.sh`) builds them
//! before running the tests.

pub mod browser;
pub mod http;
pub mod process;
pub mod raw;
pub mod sse;
pub mod traffic;
pub mod websocket;

pub use http::{Client, Response};
pub use process::{demo, gateway, Proc};
pub use traffic::Traffic;

use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Seconds since midnight of a log line's RFC 3339 timestamp (`2026-11-22T13:20:33.194339Z ...`).
pub fn log_time(line: &str) -> f64 {
    let t = line
        .split('T')
        .nth(1)
        .and_then(|r| r.split('Z').next())
        .expect("timestamp");
    let mut parts = t.split(':');
    let h: f64 = parts.next().unwrap().parse().unwrap();
    let m: f64 = parts.next().unwrap().parse().unwrap();
    let s: f64 = parts.next().unwrap().parse().unwrap();
    h * 3600.0 + m * 60.0 + s
}

/// A gRPC channel to `url` (`http://127.0.0.1:PORT`), connected; panics naming the address otherwise.
pub async fn channel(url: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}
