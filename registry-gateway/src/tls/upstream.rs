//! TLS towards `https://` replicas: the platform's roots plus `upstream.tls.ca_file`, the optional
//! client certificate, and the handshake itself. A certificate that does not verify fails the
//! connection; it is never trusted anyway.

use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{files, ALPN_H2, ALPN_HTTP1};
use crate::config::{ConfigError, UpstreamTlsSection};

/// Client configs for `https://` replicas: HTTP/1.1 (ALPN `http/1.1`) and gRPC (ALPN `h2`).
/// Built once per start or reload; a connection opened after a reload uses the new one.
#[derive(Clone)]
pub struct UpstreamTls {
    http1: TlsConnector,
    h2: TlsConnector,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls").finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// Trust and client certificate from `section` and the platform's root certificates.
    pub fn load(section: &UpstreamTlsSection) -> Result<UpstreamTls, ConfigError> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!(error = %e, "cannot read some of the platform's root certificates");
        }
        let (added, _ignored) = roots.add_parsable_certificates(native.certs);
        if let Some(path) = &section.ca_file {
            for cert in files::certificates("upstream.tls.ca_file", path)? {
                roots.add(cert).map_err(|e| ConfigError::Invalid {
                    field: "upstream.tls.ca_file".into(),
                    message: format!("{path} holds a certificate that is not a usable CA: {e}"),
                })?;
            }
        }
        tracing::debug!(
            platform_roots = added,
            ca_file = section.ca_file.as_deref().unwrap_or("unset"),
            "upstream TLS trust loaded"
        );
        let client_auth = match (&section.cert_file, &section.key_file) {
            (Some(cert), Some(key)) => Some(files::key_pair("upstream.tls", cert, key)?),
            _ => None,
        };
        let roots = Arc::new(roots);
        let config = |alpn: &[u8]| -> Result<TlsConnector, ConfigError> {
            let builder = ClientConfig::builder_with_provider(super::provider())
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(Arc::clone(&roots));
            let mut config = match &client_auth {
                None => builder.with_no_client_auth(),
                Some((certs, key)) => builder
                    .with_client_auth_cert(certs.clone(), key.clone_key())
                    .map_err(|e| ConfigError::Invalid {
                        field: "upstream.tls.key_file".into(),
                        message: e.to_string(),
                    })?,
            };
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(TlsConnector::from(Arc::new(config)))
        };
        Ok(UpstreamTls {
            http1: config(ALPN_HTTP1)?,
            h2: config(ALPN_H2)?,
        })
    }

    /// Reads the files `section` names, without the platform's roots (`--check-config`).
    pub fn check(section: &UpstreamTlsSection) -> Result<(), ConfigError> {
        if let Some(path) = &section.ca_file {
            files::certificates("upstream.tls.ca_file", path)?;
        }
        if let (Some(cert), Some(key)) = (&section.cert_file, &section.key_file) {
            files::key_pair("upstream.tls", cert, key)?;
        }
        Ok(())
    }

    /// TLS over `tcp` to the replica at `host` (as in its address: a name, an IPv4 address or
    /// `[IPv6]`), for HTTP/1.1 (`h2 == false`) or gRPC. A name is sent as SNI and must be in the
    /// certificate; an IP address is not sent and must be one of the certificate's IP SANs.
    pub async fn connect(
        &self,
        tcp: TcpStream,
        host: &str,
        h2: bool,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = server_name(host)?;
        let connector = if h2 { &self.h2 } else { &self.http1 };
        connector.connect(name, tcp).await
    }
}

/// The name a replica's certificate is checked against: its host without IPv6 brackets.
fn server_name(host: &str) -> std::io::Result<ServerName<'static>> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_owned())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_hosts_are_ip_names_and_the_rest_dns_names() {
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("[::1]").unwrap(),
            ServerName::IpAddress(_)
        ));
        match server_name("orders.local").unwrap() {
            ServerName::DnsName(n) => assert_eq!(n.as_ref(), "orders.local"),
            other => panic!("{other:?}"),
        }
    }
}
