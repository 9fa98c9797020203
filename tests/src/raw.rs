//! Raw HTTP/1.1 over TCP, for tests where framing matters: a client that writes bytes by hand and reads the
//! response as it comes off the wire, and [`RawReplica`], a replica that misbehaves on purpose.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;
use tokio::time::Instant;

/// A TCP stream with a read buffer: what has been read but not yet consumed stays in `buf`.
struct Wire {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

/// How a read of a body (or of everything up to the close) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The body was complete according to its framing (`Content-Length` or the last chunk).
    Complete,
    /// The peer closed (or reset) the connection.
    Closed,
    /// The deadline passed with the connection still open.
    Timeout,
    /// The bytes did not follow HTTP/1.1 framing (a bad chunk size, for instance).
    Malformed,
}

/// Why no response could be read.
#[derive(Debug)]
pub enum RawError {
    /// The peer closed (or reset) the connection before sending a single byte.
    ClosedWithoutResponse,
    /// The peer closed after sending these bytes, which are not a whole response head.
    ClosedMidHead(Vec<u8>),
    /// The deadline passed; these bytes had arrived (they stay buffered for the next read).
    Timeout(Vec<u8>),
    /// The head could not be parsed.
    Malformed(String),
    /// Another socket error.
    Io(io::Error),
}

fn is_close(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
    )
}

impl Wire {
    fn new(stream: TcpStream) -> Wire {
        Wire {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    /// Reads more bytes into `buf`; `Ok(0)` at the end of the stream (a reset counts as the end).
    async fn fill(&mut self) -> io::Result<usize> {
        if self.eof {
            return Ok(0);
        }
        let mut tmp = [0u8; 16 * 1024];
        match self.stream.read(&mut tmp).await {
            Ok(0) => {
                self.eof = true;
                Ok(0)
            }
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(n)
            }
            Err(e) if is_close(&e) => {
                self.eof = true;
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    /// Fills before `deadline`; `None` when it passed.
    async fn fill_until(&mut self, deadline: Instant) -> Option<io::Result<usize>> {
        tokio::time::timeout_at(deadline, self.fill()).await.ok()
    }

    /// Takes a whole head (up to and including the blank line) off the buffer.
    fn take_head(&mut self) -> Option<Vec<u8>> {
        let end = find(&self.buf, b"\r\n\r\n")? + 4;
        Some(self.buf.drain(..end).collect())
    }

    /// Reads a head before `deadline`.
    async fn read_head(&mut self, deadline: Instant) -> Result<Vec<u8>, RawError> {
        loop {
            if let Some(head) = self.take_head() {
                return Ok(head);
            }
            match self.fill_until(deadline).await {
                None => return Err(RawError::Timeout(self.buf.clone())),
                Some(Err(e)) => return Err(RawError::Io(e)),
                Some(Ok(0)) if self.buf.is_empty() => return Err(RawError::ClosedWithoutResponse),
                Some(Ok(0)) => return Err(RawError::ClosedMidHead(std::mem::take(&mut self.buf))),
                Some(Ok(_)) => {}
            }
        }
    }

    /// Reads a body framed by `framing` before `deadline`; returns what arrived and how it ended.
    async fn read_body(&mut self, framing: Framing, deadline: Instant) -> (Vec<u8>, End) {
        loop {
            let done = match framing {
                Framing::None => Some((Vec::new(), 0, End::Complete)),
                Framing::Length(n) => (self.buf.len() >= n).then(|| {
                    let body = self.buf[..n].to_vec();
                    (body, n, End::Complete)
                }),
                Framing::Chunked => match decode_chunked(&self.buf) {
                    Chunked::Complete(body, used) => Some((body, used, End::Complete)),
                    Chunked::Malformed(body) => Some((body, 0, End::Malformed)),
                    Chunked::Partial(_) => None,
                },
                Framing::Close => None,
            };
            if let Some((body, used, end)) = done {
                self.buf.drain(..used);
                return (body, end);
            }
            let end = match self.fill_until(deadline).await {
                None => End::Timeout,
                Some(Ok(0) | Err(_)) => End::Closed,
                Some(Ok(_)) => continue,
            };
            let body = match framing {
                Framing::Chunked => match decode_chunked(&self.buf) {
                    Chunked::Complete(b, _) | Chunked::Partial(b) | Chunked::Malformed(b) => b,
                },
                _ => self.buf.clone(),
            };
            self.buf.clear();
            return (body, end);
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(usize),
    Chunked,
    Close,
}

enum Chunked {
    /// The decoded body and the bytes it used, trailers included.
    Complete(Vec<u8>, usize),
    /// Decoded so far; more bytes needed.
    Partial(Vec<u8>),
    /// Decoded up to the bad bytes.
    Malformed(Vec<u8>),
}

/// Decodes `chunked` framing from the start of `buf`.
fn decode_chunked(buf: &[u8]) -> Chunked {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let Some(eol) = find(&buf[pos..], b"\r\n") else {
            return Chunked::Partial(body);
        };
        let line = String::from_utf8_lossy(&buf[pos..pos + eol]).into_owned();
        let size_text = line.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return Chunked::Malformed(body);
        };
        pos += eol + 2;
        if size == 0 {
            // Trailers, then the blank line.
            loop {
                let Some(eol) = find(&buf[pos..], b"\r\n") else {
                    return Chunked::Partial(body);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Chunked::Complete(body, pos);
                }
            }
        }
        if buf.len() < pos + size + 2 {
            let have = buf.len().saturating_sub(pos).min(size);
            body.extend_from_slice(&buf[pos..pos + have]);
            return Chunked::Partial(body);
        }
        body.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Chunked::Malformed(body);
        }
        pos += size + 2;
    }
}

/// A parsed head: the first line split in three, and the header fields in order, names lower-cased.
#[derive(Debug, Default)]
struct Head(String, String, String, Vec<(String, String)>);

fn parse_head(head: &[u8]) -> Result<Head, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let first = lines.next().unwrap_or("");
    let mut parts = first.splitn(3, ' ');
    let a = parts.next().unwrap_or("").to_owned();
    let b = parts.next().unwrap_or("").to_owned();
    let c = parts.next().unwrap_or("").to_owned();
    if a.is_empty() || b.is_empty() {
        return Err(format!("bad first line {first:?}"));
    }
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Head(a, b, c, headers))
}

fn all_headers<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .filter(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

fn first_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let name = name.to_ascii_lowercase();
    headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

fn framing_of(headers: &[(String, String)]) -> Option<Framing> {
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return Some(Framing::Chunked);
    }
    first_header(headers, "content-length")
        .map(|v| v.parse().map_or(Framing::Close, Framing::Length))
}

/// A response as read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// Status code (0 when the status line had none).
    pub status: u16,
    /// The status line as sent.
    pub status_line: String,
    /// Header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked; possibly cut short (see `end`).
    pub body: Vec<u8>,
    /// How the body ended.
    pub end: End,
}

impl RawResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// Every header named `name` (case-insensitive).
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        all_headers(&self.headers, name)
    }

    /// The body as JSON (panics with the body when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}): {} {}",
                self.status_line,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The status line and the body (lossy text, at most 300 bytes), for failure messages.
    pub fn summary(&self) -> String {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned();
        format!(
            "{} ({:?}, {} body bytes) {body}",
            self.status_line,
            self.end,
            self.body.len()
        )
    }

    /// Whether the server said it closes the connection after this response.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
    }
}

/// A raw HTTP/1.1 client connection.
pub struct RawClient {
    wire: Wire,
}

impl RawClient {
    /// Connects to `addr` (`127.0.0.1:PORT`); panics when it cannot within 5 s.
    pub async fn connect(addr: &str) -> RawClient {
        let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {addr} timed out"))
            .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        let _ = stream.set_nodelay(true);
        RawClient {
            wire: Wire::new(stream),
        }
    }

    /// Writes `bytes` as they are.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.wire.stream.write_all(bytes).await?;
        self.wire.stream.flush().await
    }

    /// Half-closes: no more bytes from this side, reading still works.
    pub async fn shutdown_write(&mut self) -> io::Result<()> {
        self.wire.stream.shutdown().await
    }

    /// Reads one response (head, then its body by its framing) within `within`.
    pub async fn read_response(&mut self, within: Duration) -> Result<RawResponse, RawError> {
        self.read_response_to(false, within).await
    }

    /// Reads one response to a `HEAD` request, or any other request whose response has no body.
    pub async fn read_bodyless_response(
        &mut self,
        within: Duration,
    ) -> Result<RawResponse, RawError> {
        self.read_response_to(true, within).await
    }

    async fn read_response_to(
        &mut self,
        bodyless: bool,
        within: Duration,
    ) -> Result<RawResponse, RawError> {
        let deadline = Instant::now() + within;
        loop {
            let head = self.wire.read_head(deadline).await?;
            let Head(version, code, reason, headers) =
                parse_head(&head).map_err(RawError::Malformed)?;
            let status: u16 = code.parse().unwrap_or(0);
            if (100..200).contains(&status) && status != 101 {
                continue; // 100 Continue and friends come before the real response
            }
            let framing = if bodyless || status == 204 || status == 304 {
                Framing::None
            } else {
                framing_of(&headers).unwrap_or(Framing::Close)
            };
            let (body, end) = self.wire.read_body(framing, deadline).await;
            return Ok(RawResponse {
                status,
                status_line: format!("{version} {code} {reason}"),
                headers,
                body,
                end,
            });
        }
    }

    /// Reads everything until the peer closes, or `within` passes; returns the bytes and how it ended.
    pub async fn read_to_close(&mut self, within: Duration) -> (Vec<u8>, End) {
        let deadline = Instant::now() + within;
        self.wire.read_body(Framing::Close, deadline).await
    }

    /// Waits up to `within` for the peer to close; returns whatever it sent meanwhile, and whether it closed.
    pub async fn wait_closed(&mut self, within: Duration) -> (Vec<u8>, bool) {
        let (bytes, end) = self.read_to_close(within).await;
        (bytes, end == End::Closed)
    }
}

/// Sends `request` on a new connection to `addr` and reads one response within `within`.
pub async fn exchange(
    addr: &str,
    request: &[u8],
    within: Duration,
) -> Result<RawResponse, RawError> {
    let mut c = RawClient::connect(addr).await;
    c.send(request).await.map_err(RawError::Io)?;
    c.read_response(within).await
}

/// How a [`RawReplica`] treats each connection. Every behaviour first reads the request head and then
/// the body its head announces (`Content-Length` or chunked), recording the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Answers `200` with body `ok` and keeps the connection alive for the next request.
    Ok,
    /// Sends `200` with `Content-Length: content_length` but only `send` body bytes, then closes.
    Truncate {
        /// The announced length.
        content_length: usize,
        /// The bytes actually sent.
        send: usize,
    },
    /// Sends `200` with `Content-Length: content_length` and `send` body bytes, then goes silent without
    /// closing (until the peer does).
    StallAfter {
        /// The announced length.
        content_length: usize,
        /// The bytes sent before the silence.
        send: usize,
    },
    /// Answers with a line that is not an HTTP status line, then closes.
    InvalidStatusLine,
    /// Never answers (until the peer closes).
    Silent,
    /// Answers `200` with the request's target as the body and keeps the connection alive; a target
    /// that contains `/slow` is answered after `slow`.
    EchoTarget {
        /// How long a `/slow` target waits for its answer.
        slow: Duration,
    },
    /// Answers `200` with the request's target as the body, then closes the connection; with
    /// `announce`, the answer says `Connection: close` first.
    EchoTargetThenClose {
        /// Send `Connection: close` with the answer.
        announce: bool,
    },
}

/// A request as a [`RawReplica`] received it.
#[derive(Debug, Clone)]
pub struct RawRequest {
    /// The method.
    pub method: String,
    /// The request target, as sent.
    pub target: String,
    /// Header fields in order, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The head as received, text.
    pub head: String,
    /// The body bytes that arrived (de-chunked).
    pub body_len: usize,
    /// Whether the whole announced body arrived.
    pub body_complete: bool,
}

impl RawRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        first_header(&self.headers, name)
    }

    /// Every header named `name` (case-insensitive).
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        all_headers(&self.headers, name)
    }
}

#[derive(Debug)]
struct ReplicaState {
    behaviour: Mutex<Behaviour>,
    requests: Mutex<Vec<RawRequest>>,
    heads: AtomicUsize,
    connections: AtomicUsize,
    pipelined: AtomicUsize,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// A scripted HTTP/1.1 replica on `127.0.0.1` and an OS-chosen port; stops when dropped.
pub struct RawReplica {
    /// `127.0.0.1:PORT`.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`, the address to register.
    pub url: String,
    state: Arc<ReplicaState>,
}

impl RawReplica {
    /// Starts one that treats every connection with `behaviour`.
    pub async fn start(behaviour: Behaviour) -> RawReplica {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw replica");
        let addr = listener.local_addr().expect("raw replica addr");
        let state = Arc::new(ReplicaState {
            behaviour: Mutex::new(behaviour),
            requests: Mutex::new(Vec::new()),
            heads: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            pipelined: AtomicUsize::new(0),
            tasks: Mutex::new(Vec::new()),
        });
        let st = Arc::clone(&state);
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                st.connections.fetch_add(1, Ordering::SeqCst);
                let st2 = Arc::clone(&st);
                let task = tokio::spawn(async move {
                    let _ = serve(Wire::new(stream), st2).await;
                });
                let mut tasks = st.tasks.lock().unwrap();
                tasks.retain(|t| !t.is_finished());
                tasks.push(task.abort_handle());
            }
        });
        state.tasks.lock().unwrap().push(accept.abort_handle());
        RawReplica {
            addr,
            url: format!("http://{addr}"),
            state,
        }
    }

    /// Changes the behaviour for requests from now on (connections already open included).
    pub fn set(&self, behaviour: Behaviour) {
        *self.state.behaviour.lock().unwrap() = behaviour;
    }

    /// Request heads received so far.
    pub fn seen(&self) -> usize {
        self.state.heads.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Requests that had already arrived, whole or in part, when the answer before them on their
    /// connection was written (HTTP/1.1 pipelining).
    pub fn pipelined(&self) -> usize {
        self.state.pipelined.load(Ordering::SeqCst)
    }

    /// The requests received so far whose body has been read (to its end or to the connection's end).
    pub fn requests(&self) -> Vec<RawRequest> {
        self.state.requests.lock().unwrap().clone()
    }
}

impl Drop for RawReplica {
    fn drop(&mut self) {
        for t in self.state.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

/// Serves one connection until it closes or the behaviour ends it.
async fn serve(mut wire: Wire, st: Arc<ReplicaState>) -> io::Result<()> {
    // No deadline on the replica's side: it waits as long as its peer keeps the connection.
    let forever = Instant::now() + Duration::from_secs(24 * 3600);
    loop {
        let head = match wire.read_head(forever).await {
            Ok(h) => h,
            Err(_) => return Ok(()),
        };
        st.heads.fetch_add(1, Ordering::SeqCst);
        let Head(method, target, _version, headers) = parse_head(&head).unwrap_or_default();
        let framing = framing_of(&headers).unwrap_or(Framing::None);
        let framing = if framing == Framing::Close {
            Framing::None
        } else {
            framing
        };
        let (body, end) = wire.read_body(framing, forever).await;
        st.requests.lock().unwrap().push(RawRequest {
            method,
            target: target.clone(),
            headers,
            head: String::from_utf8_lossy(&head).into_owned(),
            body_len: body.len(),
            body_complete: end == End::Complete,
        });
        if end != End::Complete {
            return Ok(());
        }
        let behaviour = st.behaviour.lock().unwrap().clone();
        // Whatever is buffered now arrived before this answer was written.
        if !wire.buf.is_empty() {
            st.pipelined.fetch_add(1, Ordering::SeqCst);
        }
        let s = &mut wire.stream;
        match behaviour {
            Behaviour::Ok => {
                s.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok",
                )
                .await?;
            }
            Behaviour::Truncate {
                content_length,
                send,
            } => {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {content_length}\r\n\r\n");
                s.write_all(head.as_bytes()).await?;
                s.write_all(&vec![b'x'; send]).await?;
                s.flush().await?;
                return Ok(());
            }
            Behaviour::StallAfter {
                content_length,
                send,
            } => {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {content_length}\r\n\r\n");
                s.write_all(head.as_bytes()).await?;
                s.write_all(&vec![b'x'; send]).await?;
                s.flush().await?;
                return hold_until_peer_closes(&mut wire).await;
            }
            Behaviour::InvalidStatusLine => {
                s.write_all(b"HTPT/1.1 two hundred OK\r\n\r\n").await?;
                s.flush().await?;
                return Ok(());
            }
            Behaviour::Silent => return hold_until_peer_closes(&mut wire).await,
            Behaviour::EchoTarget { slow } => {
                if target.contains("/slow") {
                    tokio::time::sleep(slow).await;
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{target}",
                    target.len()
                );
                s.write_all(answer.as_bytes()).await?;
            }
            Behaviour::EchoTargetThenClose { announce } => {
                let close = if announce {
                    "connection: close\r\n"
                } else {
                    ""
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n{close}content-length: {}\r\n\r\n{target}",
                    target.len()
                );
                s.write_all(answer.as_bytes()).await?;
                s.flush().await?;
                return Ok(());
            }
        }
    }
}

async fn hold_until_peer_closes(wire: &mut Wire) -> io::Result<()> {
    loop {
        wire.buf.clear();
        if wire.fill().await? == 0 {
            return Ok(());
        }
    }
}

/// Polls `check` every 20 ms until it holds (`true`) or `deadline` passes (`false`).
pub async fn poll_until(deadline: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if check() {
            return true;
        }
        if start.elapsed() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 20 ms until it holds, or panics with `what` after `deadline`.
pub async fn wait_until(deadline: Duration, what: &str, check: impl FnMut() -> bool) {
    assert!(
        poll_until(deadline, check).await,
        "timed out after {deadline:?} waiting for: {what}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_decoding() {
        match decode_chunked(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\nrest") {
            Chunked::Complete(b, used) => {
                assert_eq!(b, b"abcde");
                assert_eq!(used, 30);
            }
            _ => panic!("complete expected"),
        }
        assert!(matches!(decode_chunked(b"3\r\nab"), Chunked::Partial(b) if b == b"ab"));
        assert!(matches!(decode_chunked(b"zz\r\nab"), Chunked::Malformed(_)));
    }

    #[test]
    fn heads_parse() {
        let Head(a, b, c, h) =
            parse_head(b"HTTP/1.1 404 Not Found\r\nX-A: 1\r\nx-a: 2\r\n\r\n").unwrap();
        assert_eq!(
            (a.as_str(), b.as_str(), c.as_str()),
            ("HTTP/1.1", "404", "Not Found")
        );
        assert_eq!(h.len(), 2);
        assert_eq!(first_header(&h, "X-a"), Some("1"));
    }
}
