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
use crate::registry::{OwnListeners, Registry};

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
    /// A config the running gateway refuses (a static replica that is one of its own listeners)
    /// changes nothing and is an error naming the field.
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
        let proxy = ProxySettings::from_config(&next, self.instance_id.clone())
            .map_err(|e| invalid("forwarded.trusted_proxies", e))?;
        let grpc = grpc_settings(&next, &self.instance_id, self.max_connections)
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
        let now = clock::now();
        for (service, address) in added {
            self.registry.add_static(service, address, now);
        }
        for (service, address) in old_static.iter().filter(|r| !new_static.contains(r)) {
            self.registry.remove_static(service.as_str(), address, now);
        }
        *running = next;
        Ok(changes)
    }
}
