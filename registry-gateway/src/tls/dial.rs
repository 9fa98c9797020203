//! Dialling a replica, for both wires (the HTTP pool and the gRPC connections): TCP, then TLS for an
//! `https://` replica, under one deadline, each failure classified once as a [`FailureCause`].

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

use super::{MaybeTls, ReplicaIo, UpstreamTls};
use crate::policy::FailureCause;
use crate::registry::ReplicaAddress;

/// A connection to `address` by `deadline`: TCP, then TLS (ALPN `h2` or `http/1.1`) for an `https://`
/// replica. The one connect → [`FailureCause`] mapping of both wires (and of WebSocket upgrades).
pub(crate) async fn dial(
    address: &ReplicaAddress,
    tls: &UpstreamTls,
    h2: bool,
    deadline: Instant,
) -> Result<ReplicaIo, FailureCause> {
    let tcp = connect_tcp(address, deadline).await?;
    if address.is_tls() {
        let stream = connect_tls(tls, tcp, address, h2, deadline).await?;
        Ok(MaybeTls::Tls(Box::new(stream)))
    } else {
        Ok(MaybeTls::Plain(tcp))
    }
}

/// A TCP connection to `address` (no delay set), by `deadline`: `http://` replicas of the in-task HTTP/1
/// client, and the first step of [`dial`].
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
async fn connect_tls(
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
