//! The listeners' certificate: loaded at start, replaced by a reload; new handshakes take the new
//! one, established connections keep theirs.

use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

use super::files;
use crate::config::{ConfigError, TlsSection};
use crate::live::Live;

/// The certificate every TLS listener of the gateway serves (`tls.cert_file`, `tls.key_file`).
#[derive(Debug, Clone)]
pub struct ListenerTls {
    key: Live<CertifiedKey>,
}

/// A certificate and key read from the files, checked to match, not yet served.
#[derive(Debug)]
pub struct ListenerCert(CertifiedKey);

impl ListenerTls {
    /// Reads the certificate and key `section` names; `None` when TLS is off.
    pub fn load(section: &TlsSection) -> Result<Option<ListenerTls>, ConfigError> {
        Ok(Self::read(section)?.map(|ListenerCert(key)| ListenerTls {
            key: Live::new(key),
        }))
    }

    /// Reads the files `section` names (again, at a reload); `None` when TLS is off.
    pub fn read(section: &TlsSection) -> Result<Option<ListenerCert>, ConfigError> {
        match (&section.cert_file, &section.key_file) {
            (Some(cert), Some(key)) => {
                files::certified_key("tls", cert, key).map(|k| Some(ListenerCert(k)))
            }
            (Some(_), None) => Err(ConfigError::Invalid {
                field: "tls.key_file".into(),
                message: "must be set with tls.cert_file".into(),
            }),
            _ => Ok(None),
        }
    }

    /// Serves `cert` from now on: new handshakes get it, established connections keep theirs.
    pub fn store(&self, cert: ListenerCert) {
        self.key.store(cert.0);
    }

    /// A rustls server config serving the certificate in force at each handshake, offering `alpn`.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<ServerConfig> {
        let mut config = ServerConfig::builder_with_provider(super::provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.key.clone())));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    }
}

/// Hands every handshake the certificate in force at that moment.
#[derive(Debug)]
struct Resolver(Live<CertifiedKey>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.snapshot())
    }
}
