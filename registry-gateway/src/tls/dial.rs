//! Dialling a replica, for both wires (the HTTP pool and the gRPC connections): TCP, then TLS for an
//! `https://` replica, under one deadline, each failure classified once as a [`FailureCause`].

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::UpstreamTls;
use crate::policy::FailureCause;
use crate::registry::ReplicaAddress;

/// A TCP connection to `address` (no delay set), by `deadline`.
pub(crate) async fn connect_tcp(
    address: &ReplicaAddress,
    deadline: Instant,
) -> Result<TcpStream, FailureCause> {
    match tokio::time::timeout_at(deadline, TcpStream::connect(address.authority())).await {
        Err(_) => Err(FailureCause::ConnectTimeout),
        Ok(Err(_)) => Err(FailureCause::Connect),
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
    }
}

/// The TLS handshake with `address` over `tcp` by `deadline`, offering ALPN `h2` or `http/1.1`. A
/// certificate that does not verify (or any other handshake failure) is [`FailureCause::Connect`],
/// logged with the reason: it is usually a trust or name mismatch an operator must fix.
pub(crate) async fn connect_tls(
    tls: &UpstreamTls,
    tcp: TcpStream,
    address: &ReplicaAddress,
    h2: bool,
    deadline: Instant,
) -> Result<TlsStream<TcpStream>, FailureCause> {
    match tokio::time::timeout_at(deadline, tls.connect(tcp, address.host(), h2)).await {
        Err(_) => Err(FailureCause::ConnectTimeout),
        Ok(Err(e)) => {
            tracing::warn!(replica = %address, error = %e, "TLS handshake with replica failed");
            Err(FailureCause::Connect)
        }
        Ok(Ok(s)) => Ok(s),
    }
}
