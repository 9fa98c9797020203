//! Upstream HTTP/1.1 client: a per-worker pool of keep-alive hyper connections, keyed by replica address
//! (`http://` plain, `https://` over TLS with ALPN `http/1.1`: both pooled alike).
//!
//! Each actix worker is a single thread, so the pool is a thread-local with no locks; connection tasks are
//! spawned on the worker's own local task set. A pooled connection goes back to the pool only once its
//! response body has been read to the end.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::request_body::{RequestBody, Upload};
use crate::clock;
use crate::policy::upload::TimerDecision;
use crate::policy::{FailureCause, HeadTimer, UploadState};
use crate::registry::ReplicaAddress;
use crate::tls::UpstreamTls;

/// A connection to one replica, ready to send one request.
pub(crate) struct Conn {
    sender: SendRequest<RequestBody>,
    /// The replica's address (`http(s)://host:port`): its pool.
    key: Rc<str>,
    /// It came from the pool: a failure to even send on it may be a stale keep-alive, not the replica.
    pub(crate) reused: bool,
}

/// What a failed send tells the caller.
pub(crate) enum SendError {
    /// The request never left: it is given back, untouched, and the connection is unusable.
    NotSent(Box<hyper::Request<RequestBody>>),
    /// The request (or part of it) was sent, then the exchange failed.
    Failed(FailureCause),
}

struct Pool {
    idle: HashMap<Rc<str>, Vec<SendRequest<RequestBody>>>,
}

thread_local! {
    static POOL: RefCell<Pool> = RefCell::new(Pool { idle: HashMap::new() });
}

/// Takes a live pooled connection to `address`, or opens a new one within `connect_timeout`.
pub(crate) async fn checkout(
    address: &ReplicaAddress,
    tls: &UpstreamTls,
    connect_timeout: Duration,
) -> Result<Conn, FailureCause> {
    let pool_key = address.as_str();
    loop {
        let pooled = POOL.with(|p| {
            let mut p = p.borrow_mut();
            let key = Rc::clone(p.idle.get_key_value(pool_key)?.0);
            p.idle.get_mut(pool_key)?.pop().map(|s| (key, s))
        });
        let Some((key, mut sender)) = pooled else {
            break;
        };
        if sender.is_closed() {
            continue;
        }
        // An idle connection that the replica closed reports it here rather than on send.
        if sender.ready().await.is_ok() {
            return Ok(Conn {
                sender,
                key,
                reused: true,
            });
        }
    }
    connect(address, tls, connect_timeout).await
}

/// Opens a fresh connection (never from the pool): TCP, then TLS for an `https://` replica, both
/// within `connect_timeout`. A certificate that does not verify is a connect failure.
pub(crate) async fn connect(
    address: &ReplicaAddress,
    tls: &UpstreamTls,
    connect_timeout: Duration,
) -> Result<Conn, FailureCause> {
    let deadline = crate::clock::deadline(connect_timeout);
    let sender = handshake(crate::tls::dial(address, tls, false, deadline).await?).await?;
    let pool_key = address.as_str();
    let key = POOL.with(|p| {
        p.borrow()
            .idle
            .get_key_value(pool_key)
            .map(|(k, _)| Rc::clone(k))
    });
    Ok(Conn {
        sender,
        key: key.unwrap_or_else(|| Rc::from(pool_key)),
        reused: false,
    })
}

/// HTTP/1.1 over `io`; the connection runs on this worker's task set.
async fn handshake<T>(io: T) -> Result<SendRequest<RequestBody>, FailureCause>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|_| FailureCause::Connect)?;
    tokio::task::spawn_local(async move {
        // Errors here are reported to the request that was in flight.
        let _ = conn.await;
    });
    Ok(sender)
}

impl Conn {
    /// Sends `req` and waits for the response head. A buffered body is sent at once, so the head timeout
    /// runs from now; a streamed body's `upload` tells when its last byte went out, and whether the
    /// replica stopped reading it.
    pub(crate) async fn send(
        &mut self,
        req: hyper::Request<RequestBody>,
        timer: HeadTimer,
        upload: Option<&Upload>,
    ) -> Result<hyper::Response<hyper::body::Incoming>, SendError> {
        let fut = self.sender.try_send_request(req);
        let result = match upload {
            None => match tokio::time::timeout(timer.head_timeout, fut).await {
                Err(_) => return Err(SendError::Failed(FailureCause::Timeout)),
                Ok(r) => r,
            },
            Some(upload) => {
                tokio::pin!(fut);
                let first = crate::clock::deadline(timer.head_timeout.min(timer.send_timeout));
                let sleep = tokio::time::sleep_until(first);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        biased;
                        r = &mut fut => break r,
                        () = &mut sleep => {
                            let state: UploadState = upload.state();
                            match timer.decide(state, clock::now()) {
                                TimerDecision::Expired(cause) => return Err(SendError::Failed(cause)),
                                TimerDecision::WaitUntil(t) => {
                                    sleep.as_mut().reset(tokio::time::Instant::from_std(t));
                                }
                            }
                        }
                    }
                }
            }
        };
        match result {
            Ok(resp) => Ok(resp),
            Err(mut e) => match e.take_message() {
                Some(req) => Err(SendError::NotSent(Box::new(req))),
                None => Err(SendError::Failed(FailureCause::Transport)),
            },
        }
    }

    /// Returns the connection to this worker's pool, unless the pool for its replica is full.
    pub(crate) fn checkin(self, max_idle: usize) {
        if self.sender.is_closed() {
            return;
        }
        POOL.with(|p| {
            let mut p = p.borrow_mut();
            let list = p.idle.entry(self.key).or_default();
            if list.len() < max_idle {
                list.push(self.sender);
            }
        });
    }
}
