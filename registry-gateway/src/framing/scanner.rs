//! Where each request of an HTTP/1.1 connection ends, found by reading the bytes the client sends: the
//! head (up to its empty line), then the body its `Content-Length` or chunked coding announces.
//!
//! Pure: fed byte slices, it says how many of them complete the current request, or where its framing
//! breaks. It frames requests the way the server behind it (actix-http) does, and is at least as strict
//! about chunk sizes, so that a malformed chunk is caught here, where it can still be answered.

/// What one call to [`RequestScanner::feed`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Every byte fed belongs to the current request, which is not complete yet (or, once the scanner
    /// gave up framing this connection, simply passes through).
    Within,
    /// The first `n` bytes fed complete the current request; the rest belongs to the next one.
    Complete(usize),
    /// The chunked body is malformed at byte `n` of what was fed.
    Malformed(usize),
}

/// Longest head scanned; past it the server answers 431 and closes anyway.
const MAX_HEAD: usize = 128 * 1024;
/// Headers parsed at most (the server's own limit).
pub const MAX_HEADERS: usize = 96;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// First hex digit of a chunk size.
    SizeFirst,
    /// More hex digits, or what may follow them.
    SizeRest,
    /// Spaces after the size.
    SizeSpace,
    /// `;ext` up to CR.
    Extension,
    /// LF after the size line.
    SizeLf,
    /// Chunk data, bytes left.
    Data(u64),
    /// CR after the data.
    DataCr,
    /// LF after the data.
    DataLf,
    /// After the last chunk: CR of the final empty line, or a trailer field.
    EndCr,
    /// A trailer field, up to its CR.
    Trailer,
    /// LF after a trailer field.
    TrailerLf,
    /// LF of the final empty line.
    EndLf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Reading a head; `partial` holds its bytes from earlier feeds.
    Head { partial: Vec<u8> },
    /// A body of known length: bytes left.
    Length(u64),
    /// A chunked body, with the size being read.
    Chunked { state: Chunk, size: u64 },
    /// Framing this connection is given up (an upgrade, a framing the server will refuse and close on):
    /// everything passes.
    PassThrough,
}

/// Follows the requests of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestScanner {
    state: State,
}

impl Default for RequestScanner {
    fn default() -> Self {
        RequestScanner {
            state: State::Head {
                partial: Vec::new(),
            },
        }
    }
}

/// How the body of a request is framed.
enum Body {
    None,
    Length(u64),
    Chunked,
    /// Not framed here: the server refuses it, or the connection is upgraded.
    Unframed,
}

impl RequestScanner {
    /// Whether the scanner sits between two requests (nothing of the next one seen yet).
    pub fn between_requests(&self) -> bool {
        matches!(&self.state, State::Head { partial } if partial.is_empty())
    }

    /// Feeds the next bytes of the connection.
    pub fn feed(&mut self, bytes: &[u8]) -> Scan {
        let mut at = 0;
        loop {
            match &mut self.state {
                State::PassThrough => return Scan::Within,
                State::Head { partial } => {
                    let Some((used, body)) = head_end(partial, &bytes[at..]) else {
                        if partial.len() + bytes.len() - at > MAX_HEAD {
                            self.state = State::PassThrough;
                        } else {
                            partial.extend_from_slice(&bytes[at..]);
                        }
                        return Scan::Within;
                    };
                    at += used;
                    self.state = match body {
                        Body::None | Body::Length(0) => {
                            self.state = State::Head {
                                partial: Vec::new(),
                            };
                            return Scan::Complete(at);
                        }
                        Body::Length(n) => State::Length(n),
                        Body::Chunked => State::Chunked {
                            state: Chunk::SizeFirst,
                            size: 0,
                        },
                        Body::Unframed => State::PassThrough,
                    };
                }
                State::Length(left) => {
                    let here = (bytes.len() - at) as u64;
                    if here < *left {
                        *left -= here;
                        return Scan::Within;
                    }
                    at += *left as usize;
                    self.state = State::Head {
                        partial: Vec::new(),
                    };
                    return Scan::Complete(at);
                }
                State::Chunked { state, size } => match chunked(state, size, &bytes[at..]) {
                    ChunkScan::More => return Scan::Within,
                    ChunkScan::End(n) => {
                        self.state = State::Head {
                            partial: Vec::new(),
                        };
                        return Scan::Complete(at + n);
                    }
                    ChunkScan::Bad(n) => {
                        self.state = State::PassThrough;
                        return Scan::Malformed(at + n);
                    }
                },
            }
        }
    }
}

/// Finds the end of a head that started with `partial` and goes on in `bytes`; returns how many bytes of
/// `bytes` it used and how its body is framed. `None` while the head is incomplete.
fn head_end(partial: &mut Vec<u8>, bytes: &[u8]) -> Option<(usize, Body)> {
    let joined;
    let view: &[u8] = if partial.is_empty() {
        bytes
    } else {
        joined = [partial.as_slice(), bytes].concat();
        &joined
    };
    // Left uninitialised: zeroing 96 slots per request head was a measurable share of a proxied request.
    let mut slots = [const { std::mem::MaybeUninit::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let (end, body) = match req.parse_with_uninit_headers(view, &mut slots) {
        Ok(httparse::Status::Complete(end)) => (end, body_of(&req)),
        Ok(httparse::Status::Partial) => return None,
        // The server refuses it and closes: nothing more to frame.
        Err(_) => (view.len(), Body::Unframed),
    };
    let used = end - partial.len();
    partial.clear();
    Some((used, body))
}

/// Whether a parsed request head announces no body at all (no `Transfer-Encoding`, no `Content-Length`
/// other than 0), by the same reading of its framing headers that frames every request here.
pub fn bodyless(req: &httparse::Request<'_, '_>) -> bool {
    matches!(body_of(req), Body::None | Body::Length(0))
}

/// How a request whose head was parsed frames its body.
fn body_of(req: &httparse::Request<'_, '_>) -> Body {
    if req.method == Some("CONNECT") {
        return Body::Unframed;
    }
    let (mut length, mut chunked, mut coded, mut websocket) = (None, false, false, false);
    for h in req.headers.iter() {
        // actix-http reads a WebSocket handshake that announces a body as a raw stream up to the end of
        // the connection; every other upgrade request is framed as usual (and when it is tunnelled, the
        // gate hands what follows its head to the tunnel, never to the server).
        if h.name.eq_ignore_ascii_case("upgrade") {
            websocket |= is_websocket_token(h.value);
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            let parsed = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok());
            match (length, parsed) {
                (None, Some(n)) => length = Some(n),
                // Two lengths, or one that is not a number: refused by the server.
                _ => return Body::Unframed,
            }
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            coded = true;
            chunked = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.rsplit(',').next())
                .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
        }
    }
    match (coded, chunked, length) {
        (true, true, None) => Body::Chunked,
        // A coding other than chunked last, or with a Content-Length: refused by the server.
        (true, _, _) => Body::Unframed,
        // The server reads such a WebSocket handshake's bytes to the end of the connection.
        (false, _, Some(n)) if websocket && n > 0 => Body::Unframed,
        (false, _, Some(n)) => Body::Length(n),
        (false, _, None) => Body::None,
    }
}

/// Whether an `Upgrade` value is what actix-http streams: exactly `websocket`, trimmed, any case.
fn is_websocket_token(value: &[u8]) -> bool {
    value.trim_ascii().eq_ignore_ascii_case(b"websocket")
}

enum ChunkScan {
    /// All bytes used, the body goes on.
    More,
    /// The body ends after this many bytes.
    End(usize),
    /// Malformed at this byte.
    Bad(usize),
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

/// Follows a chunked body through `bytes`.
fn chunked(state: &mut Chunk, size: &mut u64, bytes: &[u8]) -> ChunkScan {
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        *state = match *state {
            Chunk::SizeFirst => match hex(b) {
                Some(d) => {
                    *size = d;
                    Chunk::SizeRest
                }
                None => return ChunkScan::Bad(i),
            },
            Chunk::SizeRest => match (b, hex(b)) {
                (_, Some(d)) => match size.checked_mul(16).and_then(|s| s.checked_add(d)) {
                    Some(s) => {
                        *size = s;
                        Chunk::SizeRest
                    }
                    None => return ChunkScan::Bad(i),
                },
                (b' ' | b'\t', _) => Chunk::SizeSpace,
                (b';', _) => Chunk::Extension,
                (b'\r', _) => Chunk::SizeLf,
                _ => return ChunkScan::Bad(i),
            },
            Chunk::SizeSpace => match b {
                b' ' | b'\t' => Chunk::SizeSpace,
                b';' => Chunk::Extension,
                b'\r' => Chunk::SizeLf,
                _ => return ChunkScan::Bad(i),
            },
            Chunk::Extension => match b {
                b'\r' => Chunk::SizeLf,
                0x00..=0x08 | 0x0a..=0x1f | 0x7f => return ChunkScan::Bad(i),
                _ => Chunk::Extension,
            },
            Chunk::SizeLf => match (b, *size) {
                (b'\n', 0) => Chunk::EndCr,
                (b'\n', n) => Chunk::Data(n),
                _ => return ChunkScan::Bad(i),
            },
            Chunk::Data(left) => {
                let here = (bytes.len() - i) as u64;
                if here < left {
                    *state = Chunk::Data(left - here);
                    return ChunkScan::More;
                }
                i += left as usize;
                *state = Chunk::DataCr;
                continue;
            }
            Chunk::DataCr => match b {
                b'\r' => Chunk::DataLf,
                _ => return ChunkScan::Bad(i),
            },
            Chunk::DataLf => match b {
                b'\n' => Chunk::SizeFirst,
                _ => return ChunkScan::Bad(i),
            },
            Chunk::EndCr => match b {
                b'\r' => Chunk::EndLf,
                _ => Chunk::Trailer,
            },
            Chunk::Trailer => match b {
                b'\r' => Chunk::TrailerLf,
                _ => Chunk::Trailer,
            },
            Chunk::TrailerLf => match b {
                b'\n' => Chunk::EndCr,
                _ => return ChunkScan::Bad(i),
            },
            Chunk::EndLf => match b {
                b'\n' => return ChunkScan::End(i + 1),
                _ => return ChunkScan::Bad(i),
            },
        };
        i += 1;
    }
    ChunkScan::More
}

#[cfg(test)]
#[path = "scanner_tests.rs"]
mod tests;
