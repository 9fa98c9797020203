//! Ranges and cross-field rules of a loaded config, each error naming its field.

use std::time::Duration;

use super::{check_pair, invalid, Config, ConfigError};
use crate::registry::{ReplicaAddress, ServiceName};

impl Config {
    /// Checks ranges and cross-field rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.workers == Some(0) {
            return Err(invalid("workers", "must be at least 1"));
        }
        if self.breaker.failure_threshold == 0 {
            return Err(invalid("breaker.failure_threshold", "must be at least 1"));
        }
        if self.breaker.open_timeout.is_zero() {
            return Err(invalid("breaker.open_timeout", "must be longer than 0s"));
        }
        if let Some(r) = self.breaker.failure_ratio {
            if !(r > 0.0 && r <= 1.0) {
                return Err(invalid(
                    "breaker.failure_ratio",
                    "must be a number above 0 and at most 1, such as 0.6",
                ));
            }
        }
        if self.breaker.min_requests == 0 {
            return Err(invalid("breaker.min_requests", "must be at least 1"));
        }
        if self.breaker.window.is_zero() {
            return Err(invalid("breaker.window", "must be longer than 0s"));
        }
        if !(1..=100).contains(&self.breaker.half_open_probes) {
            return Err(invalid(
                "breaker.half_open_probes",
                "must be between 1 and 100",
            ));
        }
        if self.eviction.failure_threshold < self.breaker.failure_threshold {
            return Err(invalid(
                "eviction.failure_threshold",
                format!(
                    "must be at least breaker.failure_threshold ({}), or replicas are evicted before their breaker opens",
                    self.breaker.failure_threshold
                ),
            ));
        }
        // Below 2 the median estimates (each within ±19 %) could call a replica slow that is not slower at
        // all; NaN and infinity fail the comparison too.
        if !(self.outlier.latency_factor >= 2.0 && self.outlier.latency_factor.is_finite()) {
            return Err(invalid(
                "outlier.latency_factor",
                "must be a number of at least 2 (set outlier.enabled: false to turn slow-replica ejection off)",
            ));
        }
        if self.outlier.min_requests == 0 {
            return Err(invalid("outlier.min_requests", "must be at least 1"));
        }
        if self.outlier.interval < Duration::from_millis(10) {
            return Err(invalid("outlier.interval", "must be at least 10ms"));
        }
        if self.lease.ttl.is_zero() {
            return Err(invalid("lease.ttl", "must be longer than 0s"));
        }
        if self.lease.heartbeat_interval.is_zero()
            || self.lease.heartbeat_interval >= self.lease.ttl
        {
            return Err(invalid(
                "lease.heartbeat_interval",
                format!(
                    "must be longer than 0s and shorter than lease.ttl ({})",
                    humantime::format_duration(self.lease.ttl)
                ),
            ));
        }
        // Also refuses NaN.
        if !(0.0..=1.0).contains(&self.lease.preservation_ratio) {
            return Err(invalid(
                "lease.preservation_ratio",
                "must be between 0 and 1 (1 turns self-preservation off)",
            ));
        }
        if !(1..=crate::proxy::MAX_ATTEMPTS as u32).contains(&self.retry.max_attempts) {
            return Err(invalid("retry.max_attempts", "must be between 1 and 10"));
        }
        // Above 1.0 the budget would allow more retries than requests: that is no budget, say so instead.
        if !(0.0..=1.0).contains(&self.retry.budget.ratio) {
            return Err(invalid(
                "retry.budget.ratio",
                "must be between 0.0 and 1.0 (the share of requests that may be retried); \
                 to not limit retries set retry.budget.enabled: false",
            ));
        }
        let window = self.retry.budget.window;
        if !(1..=60).contains(&window.as_secs()) || window.subsec_nanos() != 0 {
            return Err(invalid(
                "retry.budget.window",
                "must be a whole number of seconds from 1s to 60s",
            ));
        }
        if self.upstream.connect_timeout.is_zero() {
            return Err(invalid(
                "upstream.connect_timeout",
                "must be longer than 0s",
            ));
        }
        if self.upstream.request_timeout.is_zero() {
            return Err(invalid(
                "upstream.request_timeout",
                "must be longer than 0s",
            ));
        }
        for (field, d) in [
            ("upstream.read_timeout", self.upstream.read_timeout),
            ("upstream.send_timeout", self.upstream.send_timeout),
            ("client.header_timeout", self.client.header_timeout),
            ("client.body_timeout", self.client.body_timeout),
        ] {
            if d.is_zero() {
                return Err(invalid(field, "must be longer than 0s"));
            }
        }
        for (field, n, min) in [
            (
                "limits.max_header_bytes",
                self.limits.max_header_bytes,
                1024,
            ),
            ("limits.max_uri_bytes", self.limits.max_uri_bytes, 256),
            ("limits.max_connections", self.limits.max_connections, 1),
        ] {
            if n < min {
                return Err(invalid(field, format!("must be at least {min}")));
            }
        }
        if self.proxy.upgrade_idle_timeout.is_zero() {
            return Err(invalid(
                "proxy.upgrade_idle_timeout",
                "must be longer than 0s",
            ));
        }
        if !(1..=MAX_PIPELINE).contains(&self.upstream.pipeline) {
            return Err(invalid(
                "upstream.pipeline",
                "must be between 1 (off) and 64",
            ));
        }
        if self.upstream.pipeline_budget.is_zero()
            || self.upstream.pipeline_budget > std::time::Duration::from_secs(1)
        {
            return Err(invalid(
                "upstream.pipeline_budget",
                "must be more than 0 and at most 1s",
            ));
        }
        if self.proxy.max_hops == 0 {
            return Err(invalid("proxy.max_hops", "must be at least 1"));
        }
        check_pair("tls", &self.tls.cert_file, &self.tls.key_file)?;
        check_pair(
            "upstream.tls",
            &self.upstream.tls.cert_file,
            &self.upstream.tls.key_file,
        )?;
        if self
            .upstream
            .tls
            .ca_file
            .as_deref()
            .is_some_and(|p| p.trim().is_empty())
        {
            return Err(invalid(
                "upstream.tls.ca_file",
                "must not be empty when set",
            ));
        }
        if let Some(id) = &self.proxy.instance_id {
            crate::proxy::InstanceId::parse(id).map_err(|e| invalid("proxy.instance_id", e))?;
        }
        for (i, cidr) in self.forwarded.trusted_proxies.iter().enumerate() {
            cidr.parse::<crate::proxy::Cidr>()
                .map_err(|e| invalid(&format!("forwarded.trusted_proxies[{i}]"), e))?;
        }
        if self
            .auth
            .read_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(invalid("auth.read_token", "must not be empty when set"));
        }
        if self
            .auth
            .registration_token
            .as_deref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err(invalid(
                "auth.registration_token",
                "must not be empty when set",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&self.log.level).map_err(|e| {
            invalid(
                "log.level",
                format!("expected a log filter such as info or debug ({e})"),
            )
        })?;
        for (field, d) in [
            ("redis.resync_interval", self.redis.resync_interval),
            ("redis.command_timeout", self.redis.command_timeout),
            ("redis.failure_window", self.redis.failure_window),
        ] {
            if d.is_zero() {
                return Err(invalid(field, "must be longer than 0s"));
            }
        }
        for (name, urls) in &self.services {
            ServiceName::parse(name)
                .map_err(|e| invalid(&format!("services.{name}"), e.to_string()))?;
            for url in urls {
                ReplicaAddress::parse(url)
                    .map_err(|e| invalid(&format!("services.{name}"), format!("{url}: {e}")))?;
            }
        }
        Ok(())
    }
}

/// Largest `upstream.pipeline`: a batch that long already makes one write of a whole turn's requests.
const MAX_PIPELINE: usize = 64;
