//! Applies a reloaded config to a running gateway: every setting a request reads is swapped at once
//! (a request in flight keeps the snapshot it took); what is bound at start keeps its running value.

use std::sync::{Arc, Mutex};

use super::{check_static, grpc_settings, head_limits};
use crate::admin::ApiTokens;
use crate::clock;
use crate::config::diff::{self, Diff};
use crate::config::{Config, ConfigError};
use crate::grpc::GrpcSettings;
use crate::head_limits::HeadLimits;
use crate::live::Live;
use crate::proxy::{InstanceId, ProxySettings};
use crate::registry::{AddStatic, OwnListeners, Registry, RemoveStatic};
use crate::tls::{ListenerTls, UpstreamTls};

/// The running gateway's replaceable settings, and the config they came from.
#[derive(Clone)]
pub struct Reloader {
    pub(super) registry: Arc<Registry>,
    pub(super) proxy: Live<ProxySettings>,
    pub(super) grpc: Live<GrpcSettings>,
    pub(super) tokens: Live<ApiTokens>,
    pub(super) registration_body_max: Live<usize>,
    pub(super) head_limits: Live<HeadLimits>,
    pub(super) own_listeners: OwnListeners,
    pub(super) instance_id: InstanceId,
    pub(super) max_connections: usize,
    /// The listeners' certificate, when they speak TLS.
    pub(super) listener_tls: Option<ListenerTls>,
    /// The config in force: the last one applied, restart-only keys as at start.
    pub(super) running: Arc<Mutex<Config>>,
}

impl Reloader {
    /// The config in force.
    pub fn running(&self) -> Config {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Applies `new` (loaded and validated): thresholds, timeouts, limits, tokens and static replicas
    /// change at once; keys of [`diff::RESTART_KEYS`] keep their running value. Returns what changed.
    /// TLS files are read again even when their paths did not change (a renewed certificate): the
    /// listeners' new handshakes and new connections to `https://` replicas use them.
    /// A config the running gateway refuses (a static replica that is one of its own listeners, a
    /// TLS file that cannot be read or a key that does not match) changes nothing and is an error
    /// naming the field.
    pub fn apply(&self, new: Config) -> Result<Diff, ConfigError> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let changes = diff::diff(&running, &new);
        let next = diff::keep_restart_keys(new, &running);
        let (old_static, new_static) = (running.static_replicas(), next.static_replicas());
        let added: Vec<_> = new_static
            .iter()
            .filter(|r| !old_static.contains(r))
            .cloned()
            .collect();
        check_static(&self.own_listeners, &added)?;
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            field: field.to_owned(),
            message,
        };
        let upstream_tls = UpstreamTls::load(&next.upstream.tls)?;
        let listener_cert = match &self.listener_tls {
            Some(_) => ListenerTls::read(&next.tls)?,
            None => None,
        };
        let proxy =
            ProxySettings::from_config(&next, self.instance_id.clone(), upstream_tls.clone())
                .map_err(|e| invalid("forwarded.trusted_proxies", e))?;
        let grpc = grpc_settings(&next, &self.instance_id, self.max_connections, upstream_tls)
            .map_err(|e| invalid("forwarded.trusted_proxies", e))?;

        self.registry.set_policy(next.registry_policy());
        self.proxy.store(proxy);
        self.grpc.store(grpc);
        self.tokens.store(ApiTokens::new(
            next.auth.registration_token.clone(),
            next.auth.read_token.clone(),
        ));
        self.registration_body_max
            .store(next.limits.registration_body_max);
        self.head_limits.store(head_limits(&next));
        if let (Some(tls), Some(cert)) = (&self.listener_tls, listener_cert) {
            tls.store(cert);
            tracing::info!(
                "TLS certificate of the listeners reloaded from {}",
                next.tls.cert_file.as_deref().unwrap_or("")
            );
        }
        let now = clock::now();
        for (service, address) in added {
            self.registry.execute(AddStatic { service, address }, now);
        }
        for (service, address) in old_static.iter().filter(|r| !new_static.contains(r)) {
            let service = service.as_str();
            self.registry
                .execute(RemoveStatic { service, address }, now);
        }
        *running = next;
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Config, Gateway};

    fn config(yaml: &str) -> Config {
        let listen = if yaml.contains("listen:") {
            ""
        } else {
            "listen: 127.0.0.1:0\n"
        };
        let c: Config = serde_yaml_ng::from_str(&format!(
            "{listen}grpc_listen: 127.0.0.1:0\nworkers: 1\n{yaml}"
        ))
        .unwrap();
        c.validate().unwrap();
        c
    }

    fn addresses(gw: &Gateway, service: &str) -> Vec<String> {
        gw.registry()
            .service(service)
            .map(|s| {
                s.replicas()
                    .iter()
                    .map(|r| r.address().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_reload_applies_everything_or_nothing() {
        let gw = Gateway::start(config("services: { a: [\"http://127.0.0.1:1\"] }\n"))
            .await
            .unwrap();
        let reloader = gw.reloader();
        assert_eq!(gw.registry().policy().breaker.failure_threshold, 3);

        // Refused as a whole: one of the new static replicas is the gateway itself.
        let own = format!("http://{}", gw.http_addr());
        let bad = config(&format!(
            "breaker: {{ failure_threshold: 1 }}\nservices: {{ a: [\"http://127.0.0.1:2\", \"{own}\"] }}\n"
        ));
        let e = reloader.apply(bad).unwrap_err().to_string();
        assert!(e.contains("services.a"), "{e}");
        assert_eq!(gw.registry().policy().breaker.failure_threshold, 3);
        assert_eq!(addresses(&gw, "a"), ["http://127.0.0.1:1"]);

        let good = config(
            "listen: 127.0.0.1:9\nbreaker: { failure_threshold: 1 }\nlimits: { max_uri_bytes: 300 }\n\
             services: { a: [\"http://127.0.0.1:2\"] }\n",
        );
        let diff = reloader.apply(good).unwrap();
        assert_eq!(diff.needs_restart.len(), 1, "{diff:?}");
        assert_eq!(gw.registry().policy().breaker.failure_threshold, 1);
        assert_eq!(addresses(&gw, "a"), ["http://127.0.0.1:2"]);
        assert_eq!(reloader.head_limits.load().max_uri_bytes, 300);
        assert_eq!(reloader.proxy.load().max_uri_bytes, 300);
        // The listener stays where it is, and the running config says so.
        assert_eq!(reloader.running().listen, "127.0.0.1:0".parse().unwrap());
    }
}
