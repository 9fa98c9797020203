//! The client's request stream of a gRPC call, passed to the replica frame by frame; it remembers when the
//! client broke it, so that the call's failure is the client's and never the replica's, and when it ended,
//! so that the replica's latency is not the client's pace.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::clock;

#[derive(Debug, Default)]
struct Seen {
    broke: AtomicBool,
    ended_at: OnceLock<Instant>,
}

/// What the client did with its request stream, shared with the call's proxy (one allocation per call).
#[derive(Debug, Default, Clone)]
pub(crate) struct ClientBroke(Arc<Seen>);

impl ClientBroke {
    /// Whether the client broke its request stream.
    pub(crate) fn get(&self) -> bool {
        self.0.broke.load(Ordering::Relaxed)
    }

    /// When the client's request stream ended, if it did.
    pub(crate) fn ended_at(&self) -> Option<Instant> {
        self.0.ended_at.get().copied()
    }

    fn end(&self) {
        if self.0.ended_at.get().is_none() {
            let _ = self.0.ended_at.set(clock::now());
        }
    }
}

/// The client's request body, observed.
pub(crate) struct ClientBody {
    inner: Incoming,
    broke: ClientBroke,
}

impl ClientBody {
    /// Wraps the client's body; `broke` turns true if it fails, and notes when it ends.
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
        match &polled {
            Poll::Ready(Some(Err(_))) => this.broke.0.broke.store(true, Ordering::Relaxed),
            Poll::Ready(None) => this.broke.end(),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => this.broke.end(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let end = self.inner.is_end_stream();
        if end {
            // hyper may ask before polling at all (a request without a body).
            self.broke.end();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
