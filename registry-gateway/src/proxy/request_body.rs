//! The client's request body on its way to a replica: streamed as it arrives, timed while the gateway waits
//! for the client (`client.body_timeout`), and reporting where the upload stands so that neither a slow
//! client nor an aborted upload is ever charged to the replica.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::error::PayloadError;
use actix_web::web::{Bytes, BytesMut, Payload};
use futures_util::{Stream, StreamExt};
use http_body::{Frame, SizeHint};
use hyper::body::Body;
use tokio::time::Sleep;

use crate::clock;
use crate::policy::{ClientFault, UploadState};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What the body adapter tells the attempt about its upload (one per streamed attempt).
#[derive(Debug)]
pub(crate) struct Upload {
    state: Cell<UploadState>,
    client_fault: Cell<Option<ClientFault>>,
    touched: Cell<bool>,
}

impl Upload {
    fn new() -> Rc<Upload> {
        Rc::new(Upload {
            state: Cell::new(UploadState::WaitingOnClient),
            client_fault: Cell::new(None),
            touched: Cell::new(false),
        })
    }

    /// Where the upload stands.
    pub(crate) fn state(&self) -> UploadState {
        self.state.get()
    }

    /// How the client broke the upload, if it did.
    pub(crate) fn client_fault(&self) -> Option<ClientFault> {
        self.client_fault.get()
    }

    /// When the last byte was handed to the connection, if it was.
    pub(crate) fn sent_at(&self) -> Option<std::time::Instant> {
        match self.state.get() {
            UploadState::Sent(at) => Some(at),
            UploadState::WaitingOnReplica(_) | UploadState::WaitingOnClient => None,
        }
    }
}

/// The body sent to a replica.
pub(crate) enum RequestBody {
    /// Empty, or buffered in full: can be sent again.
    Full(Option<Bytes>),
    /// The client's body, streamed as it arrives.
    Stream(Box<StreamBody>),
}

/// The client's streamed body and its timers.
pub(crate) struct StreamBody {
    payload: Payload,
    /// Bytes still announced by `Content-Length` (`None`: chunked).
    remaining: Option<u64>,
    upload: Rc<Upload>,
    body_timeout: Duration,
    /// Armed while waiting for the client.
    idle: Option<Pin<Box<Sleep>>>,
}

impl RequestBody {
    /// Streams `payload` (`length` from `Content-Length`, `None` when chunked).
    pub(crate) fn stream(payload: Payload, length: Option<u64>, body_timeout: Duration) -> Self {
        RequestBody::Stream(Box::new(StreamBody {
            payload,
            remaining: length,
            upload: Upload::new(),
            body_timeout,
            idle: None,
        }))
    }

    /// The upload's progress, for a streamed body.
    pub(crate) fn upload(&self) -> Option<Rc<Upload>> {
        match self {
            RequestBody::Full(_) => None,
            RequestBody::Stream(s) => Some(Rc::clone(&s.upload)),
        }
    }

    /// Whether a streamed body has started to be read (and so cannot be sent elsewhere).
    pub(crate) fn is_touched(&self) -> bool {
        match self {
            RequestBody::Full(_) => false,
            RequestBody::Stream(s) => s.upload.touched.get(),
        }
    }
}

/// How an actix payload error reads: the client's fault in every case.
pub(crate) fn client_fault_of(e: &PayloadError) -> ClientFault {
    match e {
        PayloadError::EncodingCorrupted | PayloadError::Overflow | PayloadError::UnknownLength => {
            ClientFault::MalformedBody
        }
        _ => ClientFault::Aborted,
    }
}

/// The error the body hands hyper when the client broke the upload.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ClientBodyError(ClientFault);

impl StreamBody {
    fn fail(&mut self, fault: ClientFault) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.upload.client_fault.set(Some(fault));
        Poll::Ready(Some(Err(Box::new(ClientBodyError(fault)))))
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let s = match self.get_mut() {
            RequestBody::Full(bytes) => {
                return Poll::Ready(
                    bytes
                        .take()
                        .filter(|b| !b.is_empty())
                        .map(|b| Ok(Frame::data(b))),
                )
            }
            RequestBody::Stream(s) => &mut **s,
        };
        s.upload.touched.set(true);
        if s.remaining == Some(0) {
            s.upload.state.set(UploadState::Sent(clock::now()));
            return Poll::Ready(None);
        }
        // Asked for more: the replica side is keeping up; whatever wait follows is the client's.
        let was_waiting_on_client = s.upload.state.get() == UploadState::WaitingOnClient;
        s.upload.state.set(UploadState::WaitingOnClient);
        match Pin::new(&mut s.payload).poll_next(cx) {
            Poll::Pending => {
                let timeout = s.body_timeout;
                let idle = match &mut s.idle {
                    // The client's clock starts when the gateway starts waiting for it.
                    Some(idle) if !was_waiting_on_client => {
                        let deadline = clock::now() + timeout;
                        idle.as_mut()
                            .reset(tokio::time::Instant::from_std(deadline));
                        idle
                    }
                    Some(idle) => idle,
                    None => s.idle.insert(Box::pin(tokio::time::sleep(timeout))),
                };
                if idle.as_mut().poll(cx).is_ready() {
                    return s.fail(ClientFault::BodyTimeout);
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(b))) => {
                let now = clock::now();
                if let Some(rem) = s.remaining.as_mut() {
                    *rem = rem.saturating_sub(b.len() as u64);
                }
                s.upload.state.set(if s.remaining == Some(0) {
                    UploadState::Sent(now)
                } else {
                    UploadState::WaitingOnReplica(now)
                });
                Poll::Ready(Some(Ok(Frame::data(b))))
            }
            Poll::Ready(None) => {
                if s.remaining.is_some_and(|r| r > 0) {
                    return s.fail(ClientFault::Aborted);
                }
                s.upload.state.set(UploadState::Sent(clock::now()));
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => s.fail(client_fault_of(&e)),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Full(b) => b.as_ref().is_none_or(|b| b.is_empty()),
            RequestBody::Stream(s) => s.remaining == Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RequestBody::Stream(s) => match s.remaining {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
        }
    }
}

/// Reads a whole body of at most `limit` bytes (the caller checked the announced length), waiting at most
/// `body_timeout` for each piece. Memory grows with the bytes that arrive, never with what was announced.
pub(crate) async fn read_to_end(
    payload: &mut Payload,
    limit: usize,
    body_timeout: Duration,
) -> Result<Option<Bytes>, ReadError> {
    let mut first: Option<Bytes> = None;
    let mut buf: Option<BytesMut> = None;
    loop {
        let next = match tokio::time::timeout(body_timeout, payload.next()).await {
            Err(_) => return Err(ReadError::Client(ClientFault::BodyTimeout)),
            Ok(next) => next,
        };
        let chunk = match next {
            None => break,
            Some(Err(e)) => return Err(ReadError::Client(client_fault_of(&e))),
            Some(Ok(c)) => c,
        };
        let have = first.as_ref().map_or(0, Bytes::len) + buf.as_ref().map_or(0, BytesMut::len);
        if have + chunk.len() > limit {
            return Err(ReadError::TooLarge);
        }
        // The usual body arrives in one piece: keep it as it is, copy only when a second piece comes.
        match (&mut first, &mut buf) {
            (None, None) => first = Some(chunk),
            (Some(f), None) => {
                let mut b = BytesMut::with_capacity(f.len() + chunk.len());
                b.extend_from_slice(f);
                b.extend_from_slice(&chunk);
                first = None;
                buf = Some(b);
            }
            (_, Some(b)) => b.extend_from_slice(&chunk),
        }
    }
    Ok(match buf {
        Some(b) => Some(b.freeze()),
        None => first,
    })
}

/// Why a buffered body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadError {
    /// The client broke or stalled the upload.
    Client(ClientFault),
    /// More bytes than allowed.
    TooLarge,
}
