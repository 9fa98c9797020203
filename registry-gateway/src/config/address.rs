//! Listener addresses as written in the config: `127.0.0.1:8080`, `[::1]:8080` or `localhost:8080`.

use std::net::{SocketAddr, ToSocketAddrs};

use serde::{Deserialize, Deserializer, Serializer};

/// Starts the message of a name that does not resolve (kept as is in config errors).
pub(super) const UNRESOLVED: &str = "cannot resolve";

/// Parses `host:port`, resolving a host name (an IPv4 address is preferred when the name has both);
/// the error is a sentence without the field's name.
pub fn resolve(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let expected = || format!("expected {}, got \"{text}\"", super::fields::ADDRESS);
    let (host, port) = text.rsplit_once(':').ok_or_else(expected)?;
    let port: u16 = port.parse().map_err(|_| expected())?;
    if host.is_empty() || host.contains(['/', ' ', '[', ']']) {
        return Err(expected());
    }
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{UNRESOLVED} host \"{host}\": {e}"))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("{UNRESOLVED} host \"{host}\": it has no address"))
}

pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    resolve(&s).map_err(serde::de::Error::custom)
}

pub(super) fn serialize<S: Serializer>(a: &SocketAddr, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(a)
}

/// `Option<SocketAddr>`: absent or `null` is `None`.
pub(super) mod optional {
    use super::*;

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SocketAddr>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => resolve(&s).map(Some).map_err(serde::de::Error::custom),
        }
    }

    pub(in crate::config) fn serialize<S: Serializer>(
        a: &Option<SocketAddr>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match a {
            Some(a) => s.collect_str(a),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_addresses_and_host_names() {
        assert_eq!(
            resolve("127.0.0.1:8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(resolve("[::1]:80").unwrap().to_string(), "[::1]:80");
        // localhost resolves without DNS (/etc/hosts); IPv4 first.
        let local = resolve("localhost:8080").unwrap();
        assert!(local.ip().is_loopback(), "{local}");
        assert_eq!(local.port(), 8080);
        assert!(local.is_ipv4(), "{local}");
    }

    #[test]
    fn bad_addresses_say_what_is_expected() {
        for bad in [
            "nowhere",
            "localhost",
            "localhost:http",
            "localhost:99999",
            ":80",
            "a b:1",
        ] {
            let e = resolve(bad).unwrap_err();
            assert!(e.starts_with("expected an address such as"), "{bad}: {e}");
        }
        let e = resolve("no-such-host.invalid:80").unwrap_err();
        assert!(
            e.starts_with("cannot resolve host \"no-such-host.invalid\""),
            "{e}"
        );
    }
}
