//! Refusing replica addresses that point back at the gateway's own listeners (a request loop).

use std::net::{IpAddr, SocketAddr};

use super::ReplicaAddress;

/// One of the gateway's listeners, as bound (the real port, even when the config asked for 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// What it serves, for messages: `HTTP`, `gRPC`, `admin`.
    pub kind: &'static str,
    /// The bound address.
    pub addr: SocketAddr,
}

/// The gateway's own listeners.
#[derive(Debug, Clone, Default)]
pub struct OwnListeners(Vec<Listener>);

/// A replica address that is one of the gateway's own listeners. The message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{address} is this gateway's own {} listener ({}): register the replica's own address", .listener.kind, .listener.addr)]
pub struct OwnAddress {
    /// The refused address.
    pub address: String,
    /// The listener it designates.
    pub listener: Listener,
}

/// What a replica's host says about where a connection to it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// `localhost`, a loopback address or `0.0.0.0` / `::`: this machine, whichever listener holds the port.
    ThisMachine,
    /// Another IP literal.
    Ip(IpAddr),
    /// A DNS name: not resolved here.
    Name,
}

fn target(host: &str) -> Target {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        let ip = ip.to_canonical();
        return if ip.is_loopback() || ip.is_unspecified() {
            Target::ThisMachine
        } else {
            Target::Ip(ip)
        };
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    // RFC 6761 §6.3: `localhost` and every name under it are this machine.
    let is_localhost = name.eq_ignore_ascii_case("localhost")
        || name
            .len()
            .checked_sub(".localhost".len())
            .and_then(|i| name.get(i..))
            .is_some_and(|tail| tail.eq_ignore_ascii_case(".localhost"));
    if is_localhost {
        Target::ThisMachine
    } else {
        Target::Name
    }
}

impl OwnListeners {
    /// The listeners, as bound.
    pub fn new(listeners: impl IntoIterator<Item = Listener>) -> Self {
        OwnListeners(listeners.into_iter().collect())
    }

    /// The listener that `address` designates, if any: same port, and a host that is `localhost`, a
    /// loopback address, `0.0.0.0` / `::`, the listener's own IP, or — for a listener bound to `0.0.0.0` /
    /// `::` — any IP for which `is_local` says it belongs to this machine (the only IO, injected).
    ///
    /// DNS names other than `localhost` are not resolved: `http://my-host:8080` is not caught.
    pub fn find(
        &self,
        address: &ReplicaAddress,
        is_local: impl Fn(IpAddr) -> bool,
    ) -> Option<Listener> {
        let port = address.port();
        let target = target(address.host());
        self.0.iter().copied().find(|l| {
            l.addr.port() == port
                && match target {
                    Target::ThisMachine => true,
                    Target::Ip(ip) => {
                        let own = l.addr.ip().to_canonical();
                        ip == own || (own.is_unspecified() && is_local(ip))
                    }
                    Target::Name => false,
                }
        })
    }

    /// [`OwnListeners::find`] as a check.
    pub fn check(
        &self,
        address: &ReplicaAddress,
        is_local: impl Fn(IpAddr) -> bool,
    ) -> Result<(), OwnAddress> {
        match self.find(address, is_local) {
            None => Ok(()),
            Some(listener) => Err(OwnAddress {
                address: address.to_string(),
                listener,
            }),
        }
    }
}

/// Whether `ip` is an address of this machine: binding a UDP socket to it succeeds only then.
pub fn is_local_ip(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind((ip, 0)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listeners(list: &[(&'static str, &str)]) -> OwnListeners {
        OwnListeners::new(list.iter().map(|(kind, a)| Listener {
            kind,
            addr: a.parse().unwrap(),
        }))
    }

    fn addr(s: &str) -> ReplicaAddress {
        ReplicaAddress::parse(s).unwrap()
    }

    /// `10.1.2.3` and `192.168.7.7` are "local" to the test machine; nothing else is.
    fn fake_local(ip: IpAddr) -> bool {
        ["10.1.2.3", "192.168.7.7", "fd00::5"]
            .iter()
            .any(|l| l.parse::<IpAddr>().unwrap() == ip)
    }

    fn never_called(ip: IpAddr) -> bool {
        panic!("the local-address probe was not needed for {ip}")
    }

    #[test]
    fn loopback_names_and_unspecified_hosts_on_a_listener_port_are_refused() {
        let own = listeners(&[
            ("HTTP", "127.0.0.1:8080"),
            ("gRPC", "127.0.0.1:50050"),
            ("admin", "127.0.0.1:9090"),
        ]);
        for (a, kind) in [
            ("http://127.0.0.1:8080", "HTTP"),
            ("http://localhost:8080", "HTTP"),
            ("http://LOCALHOST:8080", "HTTP"),
            ("http://localhost.:8080", "HTTP"),
            ("http://api.localhost:8080", "HTTP"),
            ("http://127.0.0.2:8080", "HTTP"),
            ("http://[::1]:8080", "HTTP"),
            ("http://[::ffff:127.0.0.1]:8080", "HTTP"),
            ("http://0.0.0.0:8080", "HTTP"),
            ("http://[::]:8080", "HTTP"),
            ("http://127.0.0.1:50050", "gRPC"),
            ("http://localhost:9090", "admin"),
        ] {
            let found = own.find(&addr(a), never_called);
            assert_eq!(found.map(|l| l.kind), Some(kind), "{a}");
        }
    }

    #[test]
    fn other_ports_and_other_hosts_are_accepted() {
        let own = listeners(&[("HTTP", "127.0.0.1:8080"), ("gRPC", "127.0.0.1:50050")]);
        for a in [
            "http://127.0.0.1:8081",
            "http://localhost:9",
            "http://10.1.2.3:8080",
            "http://orders.internal:8080",
            "http://notlocalhost:8080",
            "http://localhost.example:8080",
            "http://[fd00::5]:8080",
        ] {
            assert_eq!(own.find(&addr(a), fake_local), None, "{a}");
        }
    }

    #[test]
    fn a_listener_bound_to_one_ip_matches_that_ip_only() {
        let own = listeners(&[("HTTP", "10.1.2.3:8080"), ("gRPC", "[fd00::5]:50050")]);
        assert!(own
            .find(&addr("http://10.1.2.3:8080"), never_called)
            .is_some());
        assert!(own
            .find(&addr("http://[fd00::5]:50050"), never_called)
            .is_some());
        // Another local IP does not reach a listener bound to one IP.
        assert_eq!(own.find(&addr("http://192.168.7.7:8080"), fake_local), None);
        assert_eq!(own.find(&addr("http://10.1.2.3:8081"), fake_local), None);
        // localhost and 0.0.0.0 on its port are refused anyway (they point at this machine).
        assert!(own
            .find(&addr("http://localhost:8080"), never_called)
            .is_some());
    }

    #[test]
    fn a_wildcard_listener_matches_every_local_ip() {
        for wildcard in ["0.0.0.0:8080", "[::]:8080"] {
            let own = listeners(&[("HTTP", wildcard)]);
            for a in [
                "http://10.1.2.3:8080",
                "http://192.168.7.7:8080",
                "http://[fd00::5]:8080",
                "http://[::ffff:10.1.2.3]:8080",
                "http://127.0.0.1:8080",
            ] {
                assert!(own.find(&addr(a), fake_local).is_some(), "{wildcard} {a}");
            }
            for a in [
                "http://10.9.9.9:8080",
                "http://10.1.2.3:8081",
                "http://example.com:8080",
            ] {
                assert_eq!(own.find(&addr(a), fake_local), None, "{wildcard} {a}");
            }
        }
    }

    #[test]
    fn the_refusal_names_the_address_and_the_listener() {
        let own = listeners(&[("gRPC", "127.0.0.1:50050")]);
        let e = own
            .check(&addr("http://localhost:50050"), never_called)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "http://localhost:50050 is this gateway's own gRPC listener (127.0.0.1:50050): \
             register the replica's own address"
        );
        assert!(own
            .check(&addr("http://localhost:50051"), never_called)
            .is_ok());
        assert!(OwnListeners::default()
            .check(&addr("http://127.0.0.1:1"), never_called)
            .is_ok());
    }

    #[test]
    fn the_probe_knows_loopback_and_refuses_a_foreign_address() {
        assert!(is_local_ip("127.0.0.1".parse().unwrap()));
        // TEST-NET-3 (RFC 5737) is never assigned to a host.
        assert!(!is_local_ip("203.0.113.77".parse().unwrap()));
    }
}
