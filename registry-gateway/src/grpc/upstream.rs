//! Upstream h2c connections, one per replica, opened lazily and shared by every call (HTTP/2 multiplexes).

use std::time::Duration;

use dashmap::DashMap;
use hyper::client::conn::http2::{self, SendRequest};
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::client_body::ClientBody;
use crate::policy::FailureCause;

/// The connections of this gateway, by replica authority.
#[derive(Default)]
pub(crate) struct Connections {
    conns: DashMap<String, SendRequest<ClientBody>>,
}

impl Connections {
    /// A connection to `authority` that is ready for a new stream; opened if needed within `connect_timeout`.
    pub(crate) async fn ready(
        &self,
        authority: &str,
        connect_timeout: Duration,
    ) -> Result<SendRequest<ClientBody>, FailureCause> {
        // Never hold the map's guard across an await: clone the sender out.
        let existing = self.conns.get(authority).map(|s| s.clone());
        if let Some(mut sender) = existing {
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Ok(sender);
            }
            self.conns.remove(authority);
        }
        let stream =
            match tokio::time::timeout(connect_timeout, tokio::net::TcpStream::connect(authority))
                .await
            {
                Err(_) => return Err(FailureCause::ConnectTimeout),
                Ok(Err(_)) => return Err(FailureCause::Connect),
                Ok(Ok(s)) => s,
            };
        let _ = stream.set_nodelay(true);
        let handshake = http2::Builder::new(TokioExecutor::new()).handshake(TokioIo::new(stream));
        let (mut sender, conn) = tokio::time::timeout(connect_timeout, handshake)
            .await
            .map_err(|_| FailureCause::ConnectTimeout)?
            .map_err(|_| FailureCause::Connect)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        sender.ready().await.map_err(|_| FailureCause::Connect)?;
        self.conns.insert(authority.to_owned(), sender.clone());
        Ok(sender)
    }

    /// Forgets the connection to `authority` (after it failed).
    pub(crate) fn forget(&self, authority: &str) {
        self.conns.remove(authority);
    }
}
