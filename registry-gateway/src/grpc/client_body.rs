//! The client's request stream of a gRPC call, passed to the replica frame by frame; it remembers when the
//! client broke it, so that the call's failure is the client's and never the replica's.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Set when the client's request stream failed (reset, cut connection).
#[derive(Debug, Default, Clone)]
pub(crate) struct ClientBroke(Arc<AtomicBool>);

impl ClientBroke {
    /// Whether the client broke its request stream.
    pub(crate) fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The client's request body, observed.
pub(crate) struct ClientBody {
    inner: Incoming,
    broke: ClientBroke,
}

impl ClientBody {
    /// Wraps the client's body; `broke` turns true if it fails.
    pub(crate) fn new(inner: Incoming, broke: ClientBroke) -> Self {
        ClientBody { inner, broke }
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Err(_))) = &polled {
            this.broke.0.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
