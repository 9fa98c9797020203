//! The gateway's own listeners: binding them, which of them serve registration, and static replicas
//! that would point back at them.

use std::net::SocketAddr;

use crate::config::ConfigError;
use crate::registry::{is_local_ip, Listener, OwnListeners, ReplicaAddress, ServiceName};

/// Binds one listener; the error names it and its address: `cannot listen on 127.0.0.1:8080 (HTTP):
/// address already in use`.
pub(super) fn bind(kind: &str, addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr).map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => "address already in use".to_owned(),
            std::io::ErrorKind::AddrNotAvailable => {
                "no interface of this machine has that address".to_owned()
            }
            std::io::ErrorKind::PermissionDenied => {
                "permission denied (ports below 1024 need privileges)".to_owned()
            }
            _ => e.to_string(),
        };
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({kind}): {why}"))
    })
}

/// Refuses a static replica that is one of the gateway's own listeners, naming `services.<name>`.
pub(super) fn check_static(
    own: &OwnListeners,
    replicas: &[(ServiceName, ReplicaAddress)],
) -> Result<(), ConfigError> {
    for (service, address) in replicas {
        own.check(address, is_local_ip)
            .map_err(|e| ConfigError::Invalid {
                field: format!("services.{service}"),
                message: e.to_string(),
            })?;
    }
    Ok(())
}

/// Every listener, for the own-address check.
pub(super) fn own_listeners(
    http: SocketAddr,
    grpc: SocketAddr,
    admin: Option<SocketAddr>,
) -> Vec<Listener> {
    let mut all = vec![
        Listener {
            kind: "HTTP",
            addr: http,
        },
        Listener {
            kind: "gRPC",
            addr: grpc,
        },
    ];
    all.extend(admin.map(|addr| Listener {
        kind: "admin",
        addr,
    }));
    all
}

/// The listeners that serve the registration API: the admin one when set (else the HTTP one), and gRPC.
pub(super) fn registration_listeners(
    http: SocketAddr,
    grpc: SocketAddr,
    admin: Option<SocketAddr>,
) -> Vec<Listener> {
    let http = match admin {
        Some(addr) => Listener {
            kind: "admin",
            addr,
        },
        None => Listener {
            kind: "HTTP",
            addr: http,
        },
    };
    vec![
        http,
        Listener {
            kind: "gRPC",
            addr: grpc,
        },
    ]
}

/// The registration listeners worth a warning: registration is open and they are not on loopback.
pub(super) fn exposed_registration(open: bool, registration: &[Listener]) -> Vec<Listener> {
    if !open {
        return Vec::new();
    }
    registration
        .iter()
        .copied()
        .filter(|l| !l.addr.ip().to_canonical().is_loopback())
        .collect()
}
