//! What a reloaded config changes: the keys that take effect at once, and those that need a restart.
//! Pure: compares two validated configs, does nothing.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

use super::{keys, Config};

/// Keys bound when the gateway starts (sockets, threads, the store connection, the `Via` name): a new
/// value in the file is reported and ignored until a restart.
pub const RESTART_KEYS: &[&str] = &[
    "listen",
    "admin_listen",
    "grpc_listen",
    "workers",
    "store",
    "redis.resync_interval",
    "redis.command_timeout",
    "redis.failure_window",
    "limits.max_connections",
    "client.header_timeout",
    "proxy.instance_id",
];

/// Keys whose values are never written to the log.
const SECRET_KEYS: &[&str] = &["auth.registration_token", "auth.read_token"];

/// One changed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Dotted key.
    pub key: &'static str,
    /// The value in force before (`unset` when absent; `(hidden)` for tokens).
    pub old: String,
    /// The value in the new file.
    pub new: String,
}

/// The changes between the running config and a reloaded one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    /// Keys applied at once (`services` among them: see [`Diff::added`] and [`Diff::removed`]).
    pub reloaded: Vec<Change>,
    /// Keys that keep their old value until a restart.
    pub needs_restart: Vec<Change>,
    /// Static replicas (`service`, URL) the new file adds.
    pub added: Vec<(String, String)>,
    /// Static replicas (`service`, URL) the new file drops.
    pub removed: Vec<(String, String)>,
}

impl Diff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.reloaded.is_empty() && self.needs_restart.is_empty()
    }

    /// The applied changes in one line: `breaker.failure_threshold 3 -> 5, services +product=http://…`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for c in &self.reloaded {
            if c.key == "services" {
                let mut s = Vec::new();
                s.extend(self.added.iter().map(|(n, u)| format!("+{n}={u}")));
                s.extend(self.removed.iter().map(|(n, u)| format!("-{n}={u}")));
                parts.push(format!("services {}", s.join(" ")));
            } else if SECRET_KEYS.contains(&c.key) {
                parts.push(format!("{} (changed)", c.key));
            } else {
                parts.push(format!("{} {} -> {}", c.key, c.old, c.new));
            }
        }
        if parts.is_empty() {
            "nothing that applies without a restart changed".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// Compares `old` (running) with `new` (just loaded and validated).
pub fn diff(old: &Config, new: &Config) -> Diff {
    let (a, b) = (as_value(old), as_value(new));
    let mut out = Diff::default();
    for &key in keys() {
        let (va, vb) = (lookup(&a, key), lookup(&b, key));
        if va == vb {
            continue;
        }
        let change = if SECRET_KEYS.contains(&key) {
            Change {
                key,
                old: "(hidden)".into(),
                new: "(hidden)".into(),
            }
        } else {
            Change {
                key,
                old: render(va),
                new: render(vb),
            }
        };
        if RESTART_KEYS.contains(&key) || (key.starts_with("tls.") && tls_switched(old, new)) {
            out.needs_restart.push(change);
        } else {
            out.reloaded.push(change);
        }
    }
    let set = |c: &Config| -> BTreeSet<(String, String)> {
        c.services
            .iter()
            .flat_map(|(n, urls)| urls.iter().map(move |u| (n.clone(), u.clone())))
            .collect()
    };
    let (sa, sb) = (set(old), set(new));
    out.added = sb.difference(&sa).cloned().collect();
    out.removed = sa.difference(&sb).cloned().collect();
    out
}

/// `new` with every key of [`RESTART_KEYS`] set back to its value in `running`: the config a reload puts
/// in force.
pub fn keep_restart_keys(mut new: Config, running: &Config) -> Config {
    new.listen = running.listen;
    new.admin_listen = running.admin_listen;
    new.grpc_listen = running.grpc_listen;
    new.workers = running.workers;
    new.store = running.store.clone();
    new.redis = running.redis.clone();
    new.limits.max_connections = running.limits.max_connections;
    new.client.header_timeout = running.client.header_timeout;
    new.proxy.instance_id = running.proxy.instance_id.clone();
    if tls_switched(running, &new) {
        new.tls = running.tls.clone();
    }
    new
}

/// Whether `new` turns the listeners' TLS on or off: that needs a restart (the listeners are bound
/// plain or TLS at start); a new certificate on a TLS listener does not.
fn tls_switched(old: &Config, new: &Config) -> bool {
    old.tls.enabled() != new.tls.enabled()
}

fn as_value(c: &Config) -> Value {
    serde_yaml_ng::to_value(c).unwrap_or(Value::Null)
}

fn lookup<'a>(root: &'a Value, key: &str) -> Option<&'a Value> {
    key.split('.').try_fold(root, |node, part| node.get(part))
}

/// A value as the log shows it: `10s`, `0.5`, `[10.0.0.0/8]`, `unset`.
fn render(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "unset".into(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Sequence(items)) => format!(
            "[{}]",
            items
                .iter()
                .map(|i| render(Some(i)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(Value::Mapping(m)) => format!("{} entries", m.len()),
        Some(other) => super::fields::render(Some(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> Config {
        let root: Value = serde_yaml_ng::from_str(yaml).unwrap();
        let c: Config = serde_yaml_ng::from_value(root).unwrap();
        c.validate().unwrap();
        c
    }

    #[test]
    fn the_same_config_changes_nothing() {
        let c =
            config("breaker: { failure_threshold: 2 }\nservices: { a: [http://127.0.0.1:1] }\n");
        let d = diff(&c, &c.clone());
        assert!(d.is_empty(), "{d:?}");
        assert!(d.added.is_empty() && d.removed.is_empty());
    }

    #[test]
    fn thresholds_reload_and_listeners_need_a_restart() {
        let old = config("listen: 127.0.0.1:8080\nbreaker: { failure_threshold: 3 }\n");
        let new = config(
            "listen: 127.0.0.1:9090\nbreaker: { failure_threshold: 5, open_timeout: 500ms }\n\
             workers: 4\nretry: { budget: { ratio: 0.5 } }\n",
        );
        let d = diff(&old, &new);
        let keys = |cs: &[Change]| cs.iter().map(|c| c.key).collect::<Vec<_>>();
        assert_eq!(
            keys(&d.reloaded),
            [
                "breaker.failure_threshold",
                "breaker.open_timeout",
                "retry.budget.ratio"
            ]
        );
        assert_eq!(keys(&d.needs_restart), ["listen", "workers"]);
        assert_eq!(d.needs_restart[0].old, "127.0.0.1:8080");
        assert_eq!(d.needs_restart[0].new, "127.0.0.1:9090");
        assert_eq!(d.needs_restart[1].old, "unset");
        assert_eq!(
            d.summary(),
            "breaker.failure_threshold 3 -> 5, breaker.open_timeout 10s -> 500ms, retry.budget.ratio 0.2 -> 0.5"
        );
    }

    #[test]
    fn static_replicas_are_added_and_removed_by_difference() {
        let old = config("services: { a: [http://127.0.0.1:1, http://127.0.0.1:2] }\n");
        let new = config(
            "services: { a: [http://127.0.0.1:2, http://127.0.0.1:3], b: [http://127.0.0.1:4] }\n",
        );
        let d = diff(&old, &new);
        let pairs = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            d.added,
            pairs(&[("a", "http://127.0.0.1:3"), ("b", "http://127.0.0.1:4")])
        );
        assert_eq!(d.removed, pairs(&[("a", "http://127.0.0.1:1")]));
        assert_eq!(
            d.summary(),
            "services +a=http://127.0.0.1:3 +b=http://127.0.0.1:4 -a=http://127.0.0.1:1"
        );
    }

    #[test]
    fn tokens_never_reach_the_log() {
        let old = config("auth: { registration_token: old-secret }\n");
        let new = config("auth: { registration_token: new-secret }\n");
        let d = diff(&old, &new);
        assert_eq!(d.reloaded.len(), 1);
        let shown = format!("{} {:?}", d.summary(), d.reloaded);
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(d.summary(), "auth.registration_token (changed)");
    }

    #[test]
    fn what_is_put_in_force_keeps_the_restart_keys() {
        let running = config("listen: 127.0.0.1:8080\nbreaker: { failure_threshold: 3 }\n");
        let file = config(
            "listen: 127.0.0.1:9\nadmin_listen: 127.0.0.1:10\ngrpc_listen: 127.0.0.1:11\nworkers: 7\n\
             store: redis://127.0.0.1:1/0\nredis: { resync_interval: 1s, command_timeout: 1s, failure_window: 1s }\n\
             limits: { max_connections: 5 }\nclient: { header_timeout: 1s }\nproxy: { instance_id: gw-9 }\n\
             breaker: { failure_threshold: 4 }\n",
        );
        assert_eq!(
            diff(&running, &file).needs_restart.len(),
            RESTART_KEYS.len()
        );
        let next = keep_restart_keys(file, &running);
        let d = diff(&running, &next);
        assert!(d.needs_restart.is_empty(), "{d:?}");
        assert_eq!(d.summary(), "breaker.failure_threshold 3 -> 4");
    }

    #[test]
    fn upgrade_settings_reload_at_once() {
        let old = config("");
        let new = config("proxy: { upgrades: false, upgrade_idle_timeout: 30s }\n");
        let d = diff(&old, &new);
        assert!(d.needs_restart.is_empty(), "{d:?}");
        assert_eq!(
            d.summary(),
            "proxy.upgrades true -> false, proxy.upgrade_idle_timeout 5m -> 30s"
        );
    }

    #[test]
    fn a_new_listener_certificate_reloads_but_turning_tls_on_or_off_needs_a_restart() {
        let plain = config("breaker: { failure_threshold: 3 }\n");
        let tls = config("tls: { cert_file: /a.pem, key_file: /a.key }\n");
        let rotated = config(
            "tls: { cert_file: /b.pem, key_file: /b.key }\nupstream: { tls: { ca_file: /ca.pem } }\n",
        );
        let keys = |cs: &[Change]| cs.iter().map(|c| c.key).collect::<Vec<_>>();

        let d = diff(&tls, &rotated);
        assert_eq!(
            keys(&d.reloaded),
            ["upstream.tls.ca_file", "tls.cert_file", "tls.key_file"]
        );
        assert!(d.needs_restart.is_empty());
        assert_eq!(keep_restart_keys(rotated.clone(), &tls).tls, rotated.tls);

        let on = diff(&plain, &tls);
        assert_eq!(keys(&on.needs_restart), ["tls.cert_file", "tls.key_file"]);
        assert!(!keep_restart_keys(tls.clone(), &plain).tls.enabled());
        let off = diff(&tls, &plain);
        assert_eq!(keys(&off.needs_restart), ["tls.cert_file", "tls.key_file"]);
        assert_eq!(keep_restart_keys(plain, &tls).tls, tls.tls);
    }

    #[test]
    fn every_restart_key_is_a_key() {
        for k in RESTART_KEYS {
            assert!(keys().contains(k), "{k}");
        }
    }
}
