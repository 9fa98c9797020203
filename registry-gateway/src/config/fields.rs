//! What each config key holds, in the words a user writes it ("a positive whole number", "a duration
//! such as 10s or 500ms"), for one-sentence errors that name the field.

use serde_yaml_ng::Value;

/// A whole number of at least 1.
pub(super) const POSITIVE: &str = "a positive whole number";
/// A whole number, 0 included.
pub(super) const WHOLE: &str = "a whole number";
/// A size in bytes.
pub(super) const BYTES: &str = "a whole number of bytes";
/// A share.
pub(super) const RATIO: &str = "a number between 0 and 1";
/// Any number.
pub(super) const NUMBER: &str = "a number";
/// A `humantime` duration.
pub(super) const DURATION: &str = "a duration such as 10s or 500ms";
/// A boolean.
pub(super) const BOOL: &str = "true or false";
/// A listener address.
pub(super) const ADDRESS: &str = "an address such as 127.0.0.1:8080 or localhost:8080";
/// A file path.
pub(super) const FILE: &str = "a file path such as /etc/gateway/cert.pem";
/// Free text (tokens).
pub(super) const TEXT: &str = "a text value";

/// The kind of every key of [`super::keys`], in a user's words (a test checks that none is missing).
const KINDS: &[(&str, &str)] = &[
    ("listen", ADDRESS),
    ("admin_listen", ADDRESS),
    ("grpc_listen", ADDRESS),
    ("workers", POSITIVE),
    ("breaker.failure_threshold", POSITIVE),
    ("breaker.open_timeout", DURATION),
    ("breaker.failure_ratio", RATIO),
    ("breaker.min_requests", POSITIVE),
    ("breaker.window", DURATION),
    ("breaker.half_open_probes", POSITIVE),
    ("eviction.failure_threshold", POSITIVE),
    ("eviction.probation_memory", DURATION),
    ("outlier.enabled", BOOL),
    ("outlier.latency_factor", NUMBER),
    ("outlier.min_requests", POSITIVE),
    ("outlier.interval", DURATION),
    ("lease.ttl", DURATION),
    ("lease.heartbeat_interval", DURATION),
    ("lease.preservation_ratio", RATIO),
    ("lease.preservation_max", DURATION),
    ("retry.max_attempts", POSITIVE),
    ("retry.buffer_body_max", BYTES),
    ("retry.budget.enabled", BOOL),
    ("retry.budget.ratio", RATIO),
    ("retry.budget.min_per_second", WHOLE),
    ("retry.budget.window", DURATION),
    ("upstream.connect_timeout", DURATION),
    ("upstream.request_timeout", DURATION),
    ("upstream.read_timeout", DURATION),
    ("upstream.send_timeout", DURATION),
    ("upstream.max_idle_per_replica", WHOLE),
    ("upstream.pipeline", POSITIVE),
    ("upstream.pipeline_budget", DURATION),
    ("upstream.tls.ca_file", FILE),
    ("upstream.tls.cert_file", FILE),
    ("upstream.tls.key_file", FILE),
    (
        "services",
        "a mapping of service names to lists of replica URLs",
    ),
    ("auth.registration_token", TEXT),
    ("auth.read_token", TEXT),
    ("limits.registration_body_max", BYTES),
    ("limits.max_header_bytes", BYTES),
    ("limits.max_uri_bytes", BYTES),
    ("limits.max_connections", POSITIVE),
    ("client.header_timeout", DURATION),
    ("client.body_timeout", DURATION),
    ("proxy.max_hops", POSITIVE),
    ("proxy.instance_id", "a name such as gw-1"),
    ("proxy.upgrades", BOOL),
    ("proxy.upgrade_idle_timeout", DURATION),
    (
        "forwarded.trusted_proxies",
        "a list of CIDR ranges such as [10.0.0.0/8]",
    ),
    ("store", "memory or a redis:// URL"),
    ("redis.resync_interval", DURATION),
    ("redis.command_timeout", DURATION),
    ("redis.failure_window", DURATION),
    ("log.level", "a log filter such as info or debug"),
    ("log.format", "text or json"),
    ("log.access", BOOL),
    ("tls.cert_file", FILE),
    ("tls.key_file", FILE),
];

/// What `key` (dotted, without list indexes) holds, in a user's words.
pub(super) fn describe(key: &str) -> Option<String> {
    if let Some((_, kind)) = KINDS.iter().find(|(k, _)| *k == key) {
        return Some((*kind).to_owned());
    }
    if key.starts_with("services.") {
        return Some("a list of replica URLs such as [http://127.0.0.1:9001]".to_owned());
    }
    // A section: a mapping of its keys.
    let prefix = format!("{key}.");
    super::keys()
        .iter()
        .find(|k| k.starts_with(&prefix))
        .map(|example| format!("a mapping of {key} settings (such as {example})"))
}

/// What one item of the list at `key` holds.
fn describe_item(key: &str) -> Option<String> {
    if key.starts_with("services.") {
        return Some("a replica URL such as http://127.0.0.1:9001".to_owned());
    }
    (key == "forwarded.trusted_proxies").then(|| "a CIDR range such as 10.0.0.0/8".to_owned())
}

/// Whether `key` takes its environment value as text as it is (not parsed as YAML).
fn is_text(key: &str) -> bool {
    let kind = KINDS.iter().find(|(k, _)| *k == key).map(|(_, kind)| *kind);
    !matches!(kind, Some(k) if [POSITIVE, WHOLE, BYTES, RATIO, NUMBER, BOOL].contains(&k) || k.starts_with("a list") || k.starts_with("a mapping"))
}

/// The value of `key` from an environment variable: text keys take it as it is (an empty one unsets
/// it), others are read as YAML (`3`, `0.5`, `true`, `[10.0.0.0/8]`).
pub(super) fn env_value(key: &str, raw: &str) -> Result<Value, String> {
    if raw.trim().is_empty() {
        return Ok(Value::Null);
    }
    if is_text(key) {
        return Ok(Value::String(raw.to_owned()));
    }
    serde_yaml_ng::from_str(raw).map_err(|_| {
        format!(
            "expected {}, got \"{raw}\"",
            describe(key).unwrap_or_else(|| "a YAML value".into())
        )
    })
}

/// The field (dotted, `None` for the whole file) and the sentence for a deserialization error.
pub(super) fn explain(
    e: &serde_path_to_error::Error<serde_yaml_ng::Error>,
    root: &Value,
) -> (Option<String>, String) {
    use serde_path_to_error::Segment;
    let inner = e.inner().to_string();
    let mut key = Vec::new();
    let mut node = Some(root);
    // Whether the error is about one item of a list.
    let mut item = false;
    for seg in e.path().iter() {
        item = matches!(seg, Segment::Seq { .. });
        match seg {
            Segment::Map { key: k } => {
                key.push(k.clone());
                node = node.and_then(|n| n.get(k.as_str()));
            }
            Segment::Seq { index } => node = node.and_then(|n| n.get(*index)),
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    if key.is_empty() {
        return (None, inner);
    }
    let field = e.path().to_string();
    let key = key.join(".");
    if let Some(rest) = inner.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or_default();
        let known = rest
            .split_once("expected ")
            .map(|(_, k)| k.replace('`', ""))
            .unwrap_or_default();
        // serde_path_to_error names the parent when the key is unknown.
        let field = if key.ends_with(name) {
            field
        } else {
            format!("{field}.{name}")
        };
        return (Some(field), format!("not a config key (expected {known})"));
    }
    // A value's own parse error ("must be ...", as `store:` gives) says more than its kind would.
    if inner.starts_with(super::address::UNRESOLVED)
        || inner.starts_with("expected ")
        || inner.starts_with("must ")
    {
        return (Some(field), inner);
    }
    let kind = if item {
        describe_item(&key)
    } else {
        describe(&key)
    };
    let message = match kind {
        Some(kind) => format!("expected {kind}, got {}", render(node)),
        None => plain_words(&inner),
    };
    (Some(field), message)
}

/// A YAML value as a user wrote it.
pub(crate) fn render(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "nothing".into(),
        Some(Value::String(s)) => format!("\"{s}\""),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Sequence(_)) => "a list".into(),
        Some(Value::Mapping(_)) => "a mapping".into(),
        Some(Value::Tagged(t)) => render(Some(&t.value)),
    }
}

/// serde's type names in a user's words.
fn plain_words(message: &str) -> String {
    let mut out = message.to_owned();
    for (rust, words) in [
        ("expected u8", "expected a whole number"),
        ("expected u16", "expected a whole number"),
        ("expected u32", "expected a whole number"),
        ("expected u64", "expected a whole number"),
        ("expected usize", "expected a whole number"),
        ("expected i64", "expected a whole number"),
        ("expected f64", "expected a number"),
        ("expected a boolean", "expected true or false"),
        ("expected a sequence", "expected a list"),
        ("expected a map", "expected a mapping"),
    ] {
        out = out.replace(rust, words);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_has_a_kind() {
        let keys = super::super::keys();
        for key in keys {
            assert!(KINDS.iter().any(|(k, _)| k == key), "{key} has no kind");
        }
        for (key, _) in KINDS {
            assert!(keys.contains(key), "{key} is no config key");
        }
        // Spot checks of the walk: nested sections, a map-valued key, optional fields.
        for key in [
            "upstream.tls.ca_file",
            "services",
            "admin_listen",
            "retry.budget.ratio",
        ] {
            assert!(keys.contains(&key), "{key}: {keys:?}");
        }
    }

    #[test]
    fn environment_values_are_text_or_yaml_by_kind() {
        assert_eq!(
            env_value("auth.registration_token", "123").unwrap(),
            Value::String("123".into())
        );
        assert_eq!(env_value("workers", "3").unwrap(), Value::from(3));
        assert_eq!(env_value("admin_listen", "").unwrap(), Value::Null);
        assert_eq!(
            env_value("forwarded.trusted_proxies", "[10.0.0.0/8]").unwrap(),
            Value::Sequence(vec![Value::String("10.0.0.0/8".into())])
        );
        let e = env_value("forwarded.trusted_proxies", "[10.0.0.0/8").unwrap_err();
        assert!(e.starts_with("expected a list of CIDR ranges"), "{e}");
    }

    #[test]
    fn serde_words_become_plain_words() {
        assert_eq!(
            plain_words("invalid type: string \"x\", expected u32"),
            "invalid type: string \"x\", expected a whole number"
        );
    }
}
