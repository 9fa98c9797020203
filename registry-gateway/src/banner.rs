//! The start banner: what runs, from which config, where it listens, with which main thresholds.

use std::net::SocketAddr;
use std::path::Path;

use crate::Config;

/// Where the config came from: `config /etc/gateway.yaml + GATEWAY_LISTEN`, or `defaults + environment`.
pub fn source(file: Option<&Path>, applied_env: &[String]) -> String {
    let env = if applied_env.is_empty() {
        String::new()
    } else {
        format!(" + {}", applied_env.join(", "))
    };
    match file {
        Some(f) => format!("config {}{env}", f.display()),
        None if applied_env.is_empty() => {
            "defaults (no config file, no GATEWAY_* variable)".to_owned()
        }
        None => format!("defaults + environment ({})", applied_env.join(", ")),
    }
}

/// `registry-gateway listening on http://… grpc=http://… admin=http://…` (the end-to-end tests wait for it).
pub fn listening(http: SocketAddr, grpc: SocketAddr, admin: Option<SocketAddr>) -> String {
    let admin = admin
        .map(|a| format!(" admin=http://{a}"))
        .unwrap_or_default();
    format!("registry-gateway listening on http://{http} grpc=http://{grpc}{admin}")
}

/// The main thresholds in one sentence.
pub fn thresholds(c: &Config) -> String {
    let d = |d| humantime::format_duration(d).to_string();
    let ratio = c
        .breaker
        .failure_ratio
        .map(|r| format!(" or {}% of {}+ requests", r * 100.0, c.breaker.min_requests))
        .unwrap_or_default();
    let budget = match c.retry_budget() {
        Some(b) => format!(
            "budget {}% + {}/s over {}",
            b.ratio * 100.0,
            b.min_per_second,
            d(b.window)
        ),
        None => "no budget".to_owned(),
    };
    let outlier = if c.outlier.enabled {
        format!(
            "slow replicas ejected at {}x their peers' median",
            c.outlier.latency_factor
        )
    } else {
        "slow-replica ejection off".to_owned()
    };
    format!(
        "thresholds: breaker opens after {} failures{ratio} for {}; eviction after {} failures; \
         lease ttl {} (heartbeat {}); retry up to {} attempts, {budget}; {outlier}",
        c.breaker.failure_threshold,
        d(c.breaker.open_timeout),
        c.eviction.failure_threshold,
        d(c.lease.ttl),
        d(c.lease.heartbeat_interval),
        c.retry.max_attempts,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_banner_reads_as_sentences() {
        let c = Config::default();
        assert_eq!(
            thresholds(&c),
            "thresholds: breaker opens after 3 failures for 10s; eviction after 5 failures; \
             lease ttl 15s (heartbeat 5s); retry up to 3 attempts, budget 20% + 3/s over 10s; \
             slow replicas ejected at 10x their peers' median"
        );
        assert_eq!(
            source(Some(Path::new("/etc/gw.yaml")), &["GATEWAY_LISTEN".into()]),
            "config /etc/gw.yaml + GATEWAY_LISTEN"
        );
        assert_eq!(
            source(None, &["GATEWAY_LISTEN".into()]),
            "defaults + environment (GATEWAY_LISTEN)"
        );
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert_eq!(
            listening(a("127.0.0.1:1"), a("127.0.0.1:2"), Some(a("127.0.0.1:3"))),
            "registry-gateway listening on http://127.0.0.1:1 grpc=http://127.0.0.1:2 admin=http://127.0.0.1:3"
        );
    }
}
