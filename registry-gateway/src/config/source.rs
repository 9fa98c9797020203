//! Where a config comes from: the file, `GATEWAY_*` variables (one per key, the keys read from the config
//! structs) and flags, merged and validated.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_yaml_ng::{Mapping, Value};

use super::{address, fields, invalid, Config, ConfigError};
use crate::store::StoreKind;

/// Keys whose value is a mapping of the user's own names (so they have no sub-keys to list).
const MAP_KEYS: &[&str] = &["services"];

/// Every leaf key, dotted, in the order the config structs declare them; each can be set by
/// `GATEWAY_<KEY>` with dots as underscores, upper-cased. Read from the structs themselves (a default
/// config, serialized: a section is a mapping, anything else a key), so a new field is a new key.
pub fn keys() -> &'static [&'static str] {
    static KEYS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        fn walk(v: &Value, prefix: &str, out: &mut Vec<String>) {
            match v {
                Value::Mapping(m) if !MAP_KEYS.contains(&prefix) => {
                    for (k, v) in m {
                        let k = k.as_str().unwrap_or_default();
                        let key = if prefix.is_empty() {
                            k.to_owned()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(v, &key, out);
                    }
                }
                _ => out.push(prefix.to_owned()),
            }
        }
        let mut out = Vec::new();
        // Serializing plain data into a YAML value cannot fail.
        if let Ok(v) = serde_yaml_ng::to_value(Config::default()) {
            walk(&v, "", &mut out);
        }
        // Built once per process: leaking the names gives the `&'static str` every caller keeps.
        out.into_iter()
            .map(|k| &*Box::leak(k.into_boxed_str()))
            .collect()
    })
}

/// `GATEWAY_*` variables that are not config keys: the config file path and the legacy log filter.
pub const NON_CONFIG_VARS: &[&str] = &["GATEWAY_CONFIG", "GATEWAY_LOG"];

/// The environment variable that sets a dotted key.
pub fn env_name(key: &str) -> String {
    format!("GATEWAY_{}", key.replace('.', "_").to_uppercase())
}

/// A loaded config and what loading it noticed.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated config.
    pub config: Config,
    /// The file it was read from; `None`: defaults and environment only.
    pub file: Option<PathBuf>,
    /// `GATEWAY_*` variables that set a key, sorted.
    pub applied_env: Vec<String>,
    /// `GATEWAY_*` variables that name no key (such as the `GATEWAY_PORT=tcp://…` Kubernetes adds for a
    /// Service named `gateway`): ignored, sorted, for one warning once logging is up.
    pub ignored_env: Vec<String>,
}

/// Values given on the command line, applied over the file and the environment (at start and on reload).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen`.
    pub listen: Option<String>,
    /// `--admin-listen`.
    pub admin_listen: Option<String>,
    /// `--grpc-listen`.
    pub grpc_listen: Option<String>,
    /// `--store`.
    pub store: Option<String>,
}

/// Where the config comes from: a file (or `GATEWAY_CONFIG`, or none), the environment, flags. Kept so
/// that a reload reads the same file with the same environment and flags.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    /// `--config`.
    pub file: Option<PathBuf>,
    /// The environment as it was at start.
    pub env: Vec<(String, String)>,
    /// Command-line values.
    pub overrides: Overrides,
}

impl ConfigSource {
    /// Loads and validates the config, flags applied.
    pub fn load(&self) -> Result<Loaded, ConfigError> {
        let mut loaded = Config::load_env(self.file.as_deref(), self.env.iter().cloned())?;
        let c = &mut loaded.config;
        let o = &self.overrides;
        for (flag, value, slot) in [
            ("--listen", &o.listen, &mut c.listen),
            ("--grpc-listen", &o.grpc_listen, &mut c.grpc_listen),
        ] {
            if let Some(v) = value {
                *slot = address::resolve(v).map_err(|e| invalid(flag, e))?;
            }
        }
        if let Some(v) = &o.admin_listen {
            c.admin_listen = Some(address::resolve(v).map_err(|e| invalid("--admin-listen", e))?);
        }
        if let Some(store) = &o.store {
            c.store = StoreKind::parse(store).map_err(|e| invalid("--store", e))?;
        }
        Ok(loaded)
    }
}

impl Config {
    /// Loads the config: `file` (if any), then `GATEWAY_*` variables from `env`, validated.
    /// `GATEWAY_CONFIG` is the file path when `file` is `None`. See [`Config::load_env`] for the variables
    /// that were ignored.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        Config::load_env(file, env).map(|l| l.config)
    }

    /// [`Config::load`], also returning the file read and which `GATEWAY_*` variables were applied and
    /// which were ignored (they name no key). A known key with a bad value is an error naming the variable.
    pub fn load_env(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Loaded, ConfigError> {
        let env: BTreeMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("GATEWAY_"))
            .collect();
        let path = file
            .map(Path::to_path_buf)
            .or_else(|| env.get("GATEWAY_CONFIG").map(PathBuf::from));
        let mut root = match &path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                match serde_yaml_ng::from_str::<Value>(&text)
                    .map_err(|e| ConfigError::Parse(e.to_string()))?
                {
                    Value::Null => Value::Mapping(Mapping::new()),
                    v @ Value::Mapping(_) => v,
                    _ => {
                        return Err(ConfigError::Parse(
                            "the config file must be a YAML mapping".into(),
                        ))
                    }
                }
            }
            None => Value::Mapping(Mapping::new()),
        };
        // Dotted key → the variable that set it, to name the variable in an error.
        let mut from_env: BTreeMap<&str, String> = BTreeMap::new();
        let mut ignored_env = Vec::new();
        for (name, value) in &env {
            if NON_CONFIG_VARS.contains(&name.as_str()) {
                continue;
            }
            let Some(key) = keys().iter().find(|k| env_name(k) == *name) else {
                ignored_env.push(name.clone());
                continue;
            };
            let parsed = fields::env_value(key, value).map_err(|e| ConfigError::Invalid {
                field: name.clone(),
                message: e,
            })?;
            set_path(&mut root, key, parsed);
            from_env.insert(key, name.clone());
        }
        let name_field = |field: String| match from_env.get(field.as_str()) {
            Some(var) => format!("{var} ({field})"),
            None => field,
        };
        let config: Config = serde_path_to_error::deserialize(root.clone()).map_err(|e| {
            let (field, message) = fields::explain(&e, &root);
            match field {
                None => ConfigError::Parse(message),
                Some(field) => ConfigError::Invalid {
                    field: name_field(field),
                    message,
                },
            }
        })?;
        config.validate().map_err(|e| match e {
            ConfigError::Invalid { field, message } => ConfigError::Invalid {
                field: name_field(field),
                message,
            },
            other => other,
        })?;
        Ok(Loaded {
            config,
            file: path,
            applied_env: from_env.into_values().collect(),
            ignored_env,
        })
    }
}

fn set_path(root: &mut Value, dotted: &str, value: Value) {
    let mut node = root;
    let mut parts = dotted.split('.').peekable();
    while let Some(part) = parts.next() {
        let map = match node {
            Value::Mapping(m) => m,
            other => {
                *other = Value::Mapping(Mapping::new());
                match other {
                    Value::Mapping(m) => m,
                    _ => unreachable!("just set to a mapping"),
                }
            }
        };
        let key = Value::String(part.to_owned());
        if parts.peek().is_none() {
            map.insert(key, value);
            return;
        }
        node = map
            .entry(key)
            .or_insert_with(|| Value::Mapping(Mapping::new()));
    }
}
