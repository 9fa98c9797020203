//! HTTP/1.1 pipelining to a replica, in batches (`upstream.pipeline`): the bodyless GET requests a worker
//! sends one replica within one turn of its event loop go out on one connection in one write, and each
//! request's own task reads its answer when its turn comes. One write instead of one per request, and the
//! replica reads them all in one read and may answer them in one write: the kernel crossings that cost a
//! proxied request most of its time on a shared core.
//!
//! A batch takes no request once written, so a slow answer delays only the requests written with it, and
//! a request that waits longer than its head timeout for its turn goes alone. Whenever a batch cannot
//! carry on (the replica closes after an answer, an answer fails, a client goes away mid-batch), the
//! requests behind that point are sent again alone on their own connections: they are GETs, safe to
//! repeat, and the replica is charged for no request it was not seen to fail.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::poll_fn;
use std::rc::Rc;
use std::sync::LazyLock;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use super::conn::{self, Conn, ExchangeError};
use super::deadline::Deadline;
use super::head::ResponseHead;
use crate::clock;
use crate::policy::{AnswerTime, FailureCause, HeadTimer};
use crate::registry::ReplicaAddress;

/// What pipelining did, process-wide (exported by `GET /metrics`).
#[derive(Debug, Default)]
pub(crate) struct PipelineCounters {
    /// Batches of more than one request written to a replica.
    pub(crate) batches: Counter,
    /// Requests written behind another in a batch.
    pub(crate) pipelined: Counter,
    /// Requests sent again alone because their batch could not carry them.
    pub(crate) resent: Counter,
}

/// The process's pipelining counters.
pub(crate) static COUNTERS: LazyLock<PipelineCounters> = LazyLock::new(PipelineCounters::default);

/// One replica, as one worker pipelines to it.
#[derive(Default)]
struct Lane {
    /// The batch still taking requests (its leader has not written it yet).
    open: Option<Rc<Batch>>,
    /// How long its answers take.
    answers: AnswerTime,
}

thread_local! {
    /// The worker's lanes, by replica address.
    static LANES: RefCell<HashMap<Rc<str>, Lane>> = RefCell::new(HashMap::new());
}

/// Forgets `batch` as the one taking requests for its replica.
fn close(st: &mut State, batch: &Rc<Batch>) {
    if std::mem::replace(&mut st.open, false) {
        let _ = LANES.try_with(|l| {
            if let Some(lane) = l.borrow_mut().get_mut(&st.key) {
                if lane.open.as_ref().is_some_and(|b| Rc::ptr_eq(b, batch)) {
                    lane.open = None;
                }
            }
        });
    }
}

/// Times one answer to a bodyless GET sent to `address` alone (`took`: from sending to its head), so
/// that a replica that turned slow and stopped being batched is batched again once it is fast.
pub(crate) fn record_alone(address: &ReplicaAddress, took: Duration) {
    LANES.with(|l| {
        if let Some(lane) = lane(&mut l.borrow_mut(), address) {
            lane.answers.record(took);
        }
    });
}

/// The worker's lane to `address`, made on first use (always `Some`).
fn lane<'m>(
    lanes: &'m mut HashMap<Rc<str>, Lane>,
    address: &ReplicaAddress,
) -> Option<&'m mut Lane> {
    if !lanes.contains_key(address.as_str()) {
        lanes.insert(super::pool::key(address.as_str()), Lane::default());
    }
    lanes.get_mut(address.as_str())
}

/// Requests written together on one connection.
struct Batch {
    st: RefCell<State>,
}

struct State {
    /// The replica's address (its lane in [`LANES`]).
    key: Rc<str>,
    /// Most requests it may hold.
    limit: usize,
    /// When it was written.
    written_at: Option<Instant>,
    /// Request heads not yet written.
    heads: Vec<u8>,
    /// Requests in the batch.
    members: usize,
    /// Still taking requests.
    open: bool,
    /// Members at or past this index get no answer on the connection: they go alone.
    cut: usize,
    /// Whose answer is read next.
    turn: usize,
    /// The connection, between two members' turns.
    conn: Option<Conn>,
    /// Each member's waker, while it waits for its turn.
    wakers: Vec<Option<Waker>>,
}

impl State {
    fn wake_from(&mut self, from: usize) {
        for w in self.wakers.iter_mut().skip(from) {
            if let Some(w) = w.take() {
                w.wake();
            }
        }
    }
}

/// A member's place in its batch. Dropped before its answer was read to the end, it cuts the batch
/// there: nobody behind it can be answered on that connection.
#[derive(Debug)]
pub(crate) struct Ticket {
    batch: Rc<Batch>,
    index: usize,
    done: bool,
    /// No answer after this one is read on the connection.
    stop: bool,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Batch")
    }
}

impl Ticket {
    /// Its answer's head arrived. The last one's times the batch: from its write to now, per request.
    fn answered(&self) {
        let st = self.batch.st.borrow();
        if self.index + 1 != st.members {
            return;
        }
        let Some(written_at) = st.written_at else {
            return;
        };
        let per_answer = (clock::now() - written_at) / st.members as u32;
        let _ = LANES.try_with(|l| {
            if let Some(lane) = l.borrow_mut().get_mut(&st.key) {
                lane.answers.record(per_answer);
            }
        });
    }

    /// Ends the batch after this answer: an answer that has no body by rule (a 204 or a 304) may still be
    /// followed by one from a server that sends it anyway, and the next answer would be read from its
    /// bytes. The requests behind go alone.
    pub(crate) fn stop_after(&mut self) {
        self.stop = true;
    }

    /// The answer was read to its end: the connection goes to the next member, or, after the last, back
    /// to the pool when `reusable`, nothing is left over and the answer was not one to stop after.
    pub(crate) fn hand_on(mut self, conn: Conn, reusable: bool, max_idle: usize) {
        self.done = true;
        let mut st = self.batch.st.borrow_mut();
        let next = self.index + 1;
        if reusable && !self.stop && next < st.cut && next < st.members {
            st.conn = Some(conn);
            st.turn = next;
            if let Some(w) = st.wakers[next].take() {
                w.wake();
            }
            return;
        }
        if reusable && !self.stop && next == st.members && next <= st.cut && conn.buf.is_empty() {
            super::pool::checkin(conn, max_idle);
        }
        st.cut = st.cut.min(next);
        st.wake_from(next);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut st = self.batch.st.borrow_mut();
        st.cut = st.cut.min(self.index);
        close(&mut st, &self.batch);
        let from = st.cut;
        st.wake_from(from);
    }
}

/// Joins the replica's open batch with `head`, or opens one (index 0: this request leads it); `None`:
/// the replica's answers are too slow for `budget` to allow a batch, the request goes alone.
fn join(address: &ReplicaAddress, head: &[u8], max: usize, budget: Duration) -> Option<Ticket> {
    LANES.with(|l| {
        let mut l = l.borrow_mut();
        let lane = lane(&mut l, address)?;
        if let Some(batch) = lane.open.as_ref().map(Rc::clone) {
            let mut st = batch.st.borrow_mut();
            st.heads.extend_from_slice(head);
            let index = st.members;
            st.members += 1;
            st.wakers.push(None);
            if st.members >= st.limit {
                st.open = false;
                lane.open = None;
            }
            drop(st);
            return Some(Ticket {
                batch,
                index,
                done: false,
                stop: false,
            });
        }
        let limit = lane.answers.batch_limit(max, budget);
        if limit < 2 {
            return None;
        }
        let batch = Rc::new(Batch {
            st: RefCell::new(State {
                key: super::pool::key(address.as_str()),
                limit,
                written_at: None,
                heads: head.to_vec(),
                members: 1,
                open: true,
                cut: usize::MAX,
                turn: 0,
                conn: None,
                wakers: vec![None],
            }),
        });
        lane.open = Some(Rc::clone(&batch));
        Some(Ticket {
            batch,
            index: 0,
            done: false,
            stop: false,
        })
    })
}

/// What a batched exchange came to.
pub(crate) enum Batched {
    /// The answer's head, its connection (with the answer's first bytes), and the ticket that hands the
    /// connection on once the body is read.
    Answered(ResponseHead, Conn, Ticket),
    /// The exchange failed, as an unbatched one would have.
    Failed(ExchangeError),
    /// The batch could not carry this request: send it alone.
    Alone,
}

/// Sends the bodyless GET request `head` to `address` in a batch of at most `max`, and reads its answer's
/// head.
pub(crate) async fn exchange(
    address: &ReplicaAddress,
    head: &[u8],
    timer: HeadTimer,
    connect_timeout: Duration,
    max: usize,
    budget: Duration,
) -> Batched {
    let Some(ticket) = join(address, head, max, budget) else {
        return Batched::Alone;
    };
    if ticket.index == 0 {
        // Let the requests this turn of the event loop brings join before the batch is written.
        tokio::task::yield_now().await;
        if let Err(e) = lead(address, &ticket, connect_timeout).await {
            return Batched::Failed(e);
        }
    }
    let Some(mut conn) = wait_turn(&ticket, timer.head_timeout).await else {
        COUNTERS.resent.inc();
        return Batched::Alone;
    };
    match conn::read_head_by(&mut conn, timer.head_timeout, false).await {
        Ok(resp) => {
            ticket.answered();
            Batched::Answered(resp, conn, ticket)
        }
        // Behind another answer, or first on a pooled connection, a replica that closes before a byte of
        // this answer has not seen the request fail: it did what a keep-alive limit does.
        Err(FailureCause::Transport)
            if (ticket.index > 0 || conn.reused) && conn.buf.is_empty() =>
        {
            COUNTERS.resent.inc();
            Batched::Alone
        }
        Err(cause) => Batched::Failed(ExchangeError::Failed(cause)),
    }
}

/// The leader closes the batch and writes it: on a pooled connection, or a fresh one when the pooled one
/// turns out closed before anything was written.
async fn lead(
    address: &ReplicaAddress,
    ticket: &Ticket,
    connect_timeout: Duration,
) -> Result<(), ExchangeError> {
    let heads = {
        let mut st = ticket.batch.st.borrow_mut();
        close(&mut st, &ticket.batch);
        std::mem::take(&mut st.heads)
    };
    let mut conn = match super::pool::checkout(address.as_str()) {
        Some(c) => c,
        None => conn::connect(address, connect_timeout)
            .await
            .map_err(ExchangeError::Connect)?,
    };
    let mut written = conn::write_all2(&mut conn.stream, &heads, &[]).await;
    if conn.reused && written == Err(0) {
        conn = conn::connect(address, connect_timeout)
            .await
            .map_err(ExchangeError::Connect)?;
        written = conn::write_all2(&mut conn.stream, &heads, &[]).await;
    }
    match written {
        Ok(()) => {
            let mut st = ticket.batch.st.borrow_mut();
            if st.members > 1 {
                COUNTERS.batches.inc();
                COUNTERS.pipelined.inc_by(st.members as u64 - 1);
            }
            st.conn = Some(conn);
            st.written_at = Some(clock::now());
            Ok(())
        }
        Err(0) => Err(ExchangeError::NotSent),
        Err(_) => Err(ExchangeError::Failed(FailureCause::Transport)),
    }
}

/// Waits until the connection is this member's, at most `patience`; `None`: it never will be.
async fn wait_turn(ticket: &Ticket, patience: Duration) -> Option<Conn> {
    let mut deadline = Deadline::at(clock::now() + patience);
    poll_fn(|cx| {
        let mut st = ticket.batch.st.borrow_mut();
        if ticket.index >= st.cut {
            return Poll::Ready(None);
        }
        if st.turn == ticket.index {
            if let Some(conn) = st.conn.take() {
                return Poll::Ready(Some(conn));
            }
        }
        st.wakers[ticket.index] = Some(cx.waker().clone());
        drop(st);
        // Too long behind the others: it goes alone (and the batch is cut here when the ticket drops).
        deadline.poll_expired(cx).map(|()| None)
    })
    .await
}
