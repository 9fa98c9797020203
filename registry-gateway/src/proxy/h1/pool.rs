//! The worker's idle upstream connections, keyed by replica address: a thread-local (actix workers are
//! single-threaded), so a checkout or checkin is a hash lookup with no lock and no task hand-off.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use tokio::net::TcpStream;

use super::conn::Conn;

thread_local! {
    static IDLE: RefCell<HashMap<Rc<str>, Vec<Conn>>> = RefCell::new(HashMap::new());
}

/// A live idle connection to `address`, if the pool has one; ones the replica closed meanwhile are
/// dropped on the way.
pub(crate) fn checkout(address: &str) -> Option<Conn> {
    loop {
        let mut conn = IDLE.with(|p| p.borrow_mut().get_mut(address)?.pop())?;
        if still_open(&conn.stream) {
            conn.reused = true;
            return Some(conn);
        }
    }
}

/// The pool's shared key for `address` (one allocation per replica, not per connection).
pub(crate) fn key(address: &str) -> Rc<str> {
    IDLE.with(|p| p.borrow().get_key_value(address).map(|(k, _)| Rc::clone(k)))
        .unwrap_or_else(|| Rc::from(address))
}

/// Puts `conn` back, unless its replica already has `max_idle` idle connections.
pub(crate) fn checkin(conn: Conn, max_idle: usize) {
    IDLE.with(|p| {
        let mut p = p.borrow_mut();
        let list = p.entry(Rc::clone(&conn.key)).or_default();
        if list.len() < max_idle {
            list.push(conn);
        }
    });
}

/// An idle connection is open while nothing is readable on it: a readable one was closed or reset by the
/// replica (or carries bytes nobody asked for). The reactor's readiness answers without a system call,
/// except when it is stale, and then one non-blocking read settles it.
fn still_open(stream: &TcpStream) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    match stream.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        Poll::Ready(Ok(())) => {
            let mut probe = [0u8; 1];
            matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
        }
    }
}
