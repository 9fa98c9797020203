//! TLS with rustls on the `ring` provider: the listeners' certificate (reloadable) and the trust and
//! client certificate used towards `https://` replicas.
//!
//! Files are read here and only here; [`crate::config`] checks their presence and pairing without IO.

mod dial;
mod files;
mod listener;
mod stream;
mod upstream;

pub(crate) use dial::{connect_tcp, dial};
pub use listener::{ListenerCert, ListenerTls};
pub use stream::{ClientIo, MaybeTls, ReplicaIo};
pub use upstream::UpstreamTls;

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

use crate::config::{Config, ConfigError};

/// ALPN name of HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// ALPN name of HTTP/2 (gRPC).
pub const ALPN_H2: &[u8] = b"h2";

/// The one crypto provider of the gateway: ring (no C build beyond ring's own, no aws-lc-rs).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every TLS file `config` names (listener certificate and key, upstream CA and client
/// certificate): a missing or unreadable file, PEM without a certificate or key, or a key that does
/// not match its certificate is an error naming the field.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    ListenerTls::load(&config.tls)?;
    UpstreamTls::check(&config.upstream.tls)
}
