//! Upstream HTTP/2 connections, one per replica, opened lazily and shared by every call (HTTP/2
//! multiplexes): h2c to `http://` replicas, TLS with ALPN `h2` to `https://` ones.

use std::time::Duration;

use dashmap::DashMap;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::client_body::ClientBody;
use crate::policy::FailureCause;
use crate::registry::ReplicaAddress;
use crate::tls::UpstreamTls;

/// The connections of this gateway, by replica address (`http(s)://host:port`).
#[derive(Default)]
pub(crate) struct Connections {
    conns: DashMap<String, SendRequest<ClientBody>>,
}

impl Connections {
    /// A connection to `address` that is ready for a new stream; opened if needed within
    /// `connect_timeout` (TCP, TLS for `https://`, and the HTTP/2 handshake).
    pub(crate) async fn ready(
        &self,
        address: &ReplicaAddress,
        tls: &UpstreamTls,
        connect_timeout: Duration,
    ) -> Result<SendRequest<ClientBody>, FailureCause> {
        let key = address.as_str();
        // Never hold the map's guard across an await: clone the sender out.
        let existing = self.conns.get(key).map(|s| s.clone());
        if let Some(mut sender) = existing {
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Ok(sender);
            }
            self.conns.remove(key);
        }
        let deadline = crate::clock::deadline(connect_timeout);
        let stream = crate::tls::dial(address, tls, true, deadline).await?;
        let mut sender = handshake(stream, deadline).await?;
        sender.ready().await.map_err(|_| FailureCause::Connect)?;
        self.conns.insert(key.to_owned(), sender.clone());
        Ok(sender)
    }

    /// Forgets the connection to `address` (after it failed).
    pub(crate) fn forget(&self, address: &ReplicaAddress) {
        self.conns.remove(address.as_str());
    }
}

/// The HTTP/2 handshake over `io` by `deadline`; the connection runs on its own task.
async fn handshake<T>(
    io: T,
    deadline: tokio::time::Instant,
) -> Result<SendRequest<ClientBody>, FailureCause>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let handshake = http2::Builder::new(TokioExecutor::new()).handshake(TokioIo::new(io));
    let (sender, conn) = tokio::time::timeout_at(deadline, handshake)
        .await
        .map_err(|_| FailureCause::ConnectTimeout)?
        .map_err(|_| FailureCause::Connect)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
