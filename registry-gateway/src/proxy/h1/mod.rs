//! The HTTP/1.1 upstream client for `http://` replicas, run inside the request's own task: a per-worker
//! pool of connections with reusable buffers, request heads written from the client's header bytes in one
//! write, response heads parsed with `httparse`, bodies framed by hand (see [`framing`]). No connection
//! task, no channels, no per-request timers ([`deadline`]).

mod batch;
mod body;
mod chunked;
mod conn;
mod deadline;
mod framing;
mod head;
mod pool;

pub(crate) use batch::COUNTERS as PIPELINE_COUNTERS;
pub(crate) use body::WireBody;
pub(crate) use deadline::Deadline;
pub(crate) use framing::Framing;
pub(crate) use head::{BodyLength, ClientHeaders, RequestHead, ResponseHead};

use std::cell::RefCell;
use std::time::Duration;

use http_body::Body as _;

use crate::policy::{ClientFault, FailureCause, HeadTimer};
use crate::proxy::request_body::RequestBody;
use crate::registry::ReplicaAddress;
use conn::ExchangeError;

thread_local! {
    /// The worker's head buffer, reused by every request.
    static HEAD_BUF: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

/// What one attempt on the wire came to.
pub(crate) enum Exchanged {
    /// A final response head and its body's reader.
    Answered(ResponseHead, WireBody),
    /// No answer; the body comes back when it was never sent.
    Failed(FailureCause, Option<RequestBody>),
    /// The client broke its own upload.
    Client(ClientFault),
}

/// How a request goes to a replica: timeouts, pooling and pipelining.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Wire {
    /// The head (and upload) timers.
    pub(crate) timer: HeadTimer,
    /// TCP connect timeout.
    pub(crate) connect_timeout: Duration,
    /// Idle connections kept per replica.
    pub(crate) max_idle: usize,
    /// Most GET requests written together on one connection ([`batch`]); 1: none.
    pub(crate) pipeline: usize,
    /// The longest a request of a batch should expect to wait behind the answers before it.
    pub(crate) pipeline_budget: Duration,
}

/// Sends one request to `address` and reads its response head. `head` is written with the body's
/// framing; a pooled connection that turns out closed before anything was written is replaced by a
/// fresh one, once. A bodyless GET goes in a pipelined batch when `wire.pipeline` allows.
pub(crate) async fn exchange(
    address: &ReplicaAddress,
    mut head: RequestHead<'_>,
    mut body: RequestBody,
    wire: Wire,
) -> Exchanged {
    let exact = body.size_hint().exact();
    head.length = BodyLength::of(head.method, exact);
    let chunked = head.length == BodyLength::Chunked;
    let head_request = head.method == "HEAD";
    // GET only: a HEAD behind other requests is where servers get pipelining wrong (actix-http 3 sends
    // the HEAD's answer with a body, and can drop a streamed body before it after its Content-Length),
    // and what would be read next is another client's bytes.
    let bodyless_read = matches!(head.method, "GET" | "HEAD")
        && head.length == BodyLength::Empty
        && exact == Some(0);
    // Nor a request with credentials: its answer is one user's, and a replica that frames a pipelined
    // answer wrong would hand it to whoever is next in the batch.
    let batchable = wire.pipeline > 1
        && head.method == "GET"
        && bodyless_read
        && head.client.get("authorization").is_none()
        && head.client.get("cookie").is_none();
    let mut bytes = HEAD_BUF.with(|b| std::mem::take(&mut *b.borrow_mut()));
    head::write_request(&head, &mut bytes);
    let mut result = None;
    if batchable {
        result = match batch::exchange(
            address,
            &bytes,
            wire.timer,
            wire.connect_timeout,
            wire.pipeline,
            wire.pipeline_budget,
        )
        .await
        {
            batch::Batched::Answered(resp, conn, mut ticket) => {
                if matches!(resp.status, 204 | 304) {
                    ticket.stop_after();
                }
                let framing = resp.framing;
                let reusable = resp.reusable;
                let body = WireBody::new(conn, framing, reusable, wire.max_idle, Some(ticket));
                Some(Ok((resp, body)))
            }
            batch::Batched::Failed(e) => Some(Err(e)),
            batch::Batched::Alone => None,
        };
    }
    let result = match result {
        Some(r) => r,
        None => {
            let started = batchable.then(crate::clock::now);
            let r = exchange_on(
                address,
                &bytes,
                &mut body,
                chunked,
                wire.timer,
                head_request,
                bodyless_read,
                wire.connect_timeout,
                wire.max_idle,
            )
            .await;
            // A GET that went alone times its replica's answers too (see `batch::record_alone`).
            if let (Some(started), Ok(_)) = (started, &r) {
                batch::record_alone(address, crate::clock::now() - started);
            }
            r
        }
    };
    HEAD_BUF.with(|b| *b.borrow_mut() = bytes);
    match result {
        Ok(answer) => Exchanged::Answered(answer.0, answer.1),
        Err(ExchangeError::NotSent) => Exchanged::Failed(FailureCause::Transport, Some(body)),
        Err(ExchangeError::Connect(cause)) => Exchanged::Failed(cause, Some(body)),
        Err(ExchangeError::Failed(cause)) => {
            // Whose fault: a client that broke its own upload made the exchange fail.
            match body.upload().and_then(|u| u.client_fault()) {
                Some(fault) => Exchanged::Client(fault),
                None => Exchanged::Failed(cause, None),
            }
        }
        Err(ExchangeError::Client(fault)) => Exchanged::Client(fault),
    }
}

#[allow(clippy::too_many_arguments)]
async fn exchange_on(
    address: &ReplicaAddress,
    head: &[u8],
    body: &mut RequestBody,
    chunked: bool,
    timer: HeadTimer,
    head_request: bool,
    resend_ok: bool,
    connect_timeout: Duration,
    max_idle: usize,
) -> Result<(ResponseHead, WireBody), ExchangeError> {
    let mut conn = match pool::checkout(address.as_str()) {
        Some(c) => c,
        None => conn::connect(address, connect_timeout)
            .await
            .map_err(ExchangeError::Connect)?,
    };
    let mut result = conn
        .exchange(head, body, chunked, timer, head_request)
        .await;
    // A pooled keep-alive connection the replica just closed is not the replica's fault: the request
    // never left, or (a bodyless GET or HEAD, safe to send again) the connection closed before a single
    // byte of an answer came back, as a replica that closes idle connections does.
    let stale = match &result {
        Err(ExchangeError::NotSent) => true,
        Err(ExchangeError::Failed(FailureCause::Transport)) => resend_ok && conn.buf.is_empty(),
        _ => false,
    };
    if conn.reused && stale {
        conn = conn::connect(address, connect_timeout)
            .await
            .map_err(ExchangeError::Connect)?;
        result = conn
            .exchange(head, body, chunked, timer, head_request)
            .await;
    }
    let (resp, sent) = result?;
    let reusable = resp.reusable && sent;
    let framing = resp.framing;
    Ok((resp, WireBody::new(conn, framing, reusable, max_idle, None)))
}
