//! A small WebSocket client (RFC 6455) written here rather than taken from a crate, so that the tests do
//! not share a frame codec with the demo server they talk to: the handshake by hand, masked client
//! frames, unmasked server frames read off the wire.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The sample key of RFC 6455 §1.3, and the `Sec-WebSocket-Accept` a server must answer it with.
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// `Sec-WebSocket-Accept` for [`SAMPLE_KEY`].
pub const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Frame opcodes (RFC 6455 §5.2).
pub mod op {
    /// A continuation of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// UTF-8 text.
    pub const TEXT: u8 = 0x1;
    /// Binary data.
    pub const BINARY: u8 = 0x2;
    /// Close.
    pub const CLOSE: u8 = 0x8;
    /// Ping.
    pub const PING: u8 = 0x9;
    /// Pong.
    pub const PONG: u8 = 0xA;
}

/// One frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Last fragment of its message.
    pub fin: bool,
    /// Its opcode ([`op`]).
    pub opcode: u8,
    /// Its (unmasked) payload.
    pub payload: Vec<u8>,
}

/// The response to a handshake.
#[derive(Debug)]
pub struct Handshake {
    /// Status code.
    pub status: u16,
    /// The head, as text (status line and headers).
    pub head: String,
    /// Bytes after the head (a body, or the first frames).
    pub rest: Vec<u8>,
}

impl Handshake {
    /// A header's value (the first one; names compared without case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// A client connection after its handshake.
#[derive(Debug)]
pub struct WebSocket {
    stream: TcpStream,
    buf: Vec<u8>,
    masks: u32,
}

/// Sends a WebSocket handshake for `path` to `addr` (with `extra` header lines, each ending in CRLF) and
/// reads the response head. On a 101 the connection is returned, ready for frames.
pub async fn connect(
    addr: &str,
    path: &str,
    extra: &str,
) -> io::Result<(Handshake, Option<WebSocket>)> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {SAMPLE_KEY}\r\n{extra}\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "closed before a whole head: {:?}",
                    String::from_utf8_lossy(&buf)
                ),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..end - 4]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let rest = buf[end..].to_vec();
    let socket = (status == 101).then(|| WebSocket {
        stream,
        buf: rest.clone(),
        masks: 0,
    });
    Ok((Handshake { status, head, rest }, socket))
}

impl WebSocket {
    /// Sends one frame, masked as a client must (RFC 6455 §5.3).
    pub async fn send(&mut self, opcode: u8, fin: bool, payload: &[u8]) -> io::Result<()> {
        let mut frame = vec![(u8::from(fin) << 7) | opcode];
        let len = payload.len();
        if len < 126 {
            frame.push(0x80 | len as u8);
        } else if len <= usize::from(u16::MAX) {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(len as u64).to_be_bytes());
        }
        // A different key per frame; predictability does not matter to a test.
        self.masks = self.masks.wrapping_add(0x9E37_79B9);
        let key = self.masks.to_be_bytes();
        frame.extend_from_slice(&key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        self.stream.write_all(&frame).await
    }

    /// Sends a text message in one frame.
    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        self.send(op::TEXT, true, text.as_bytes()).await
    }

    /// Sends a binary message in one frame.
    pub async fn send_binary(&mut self, data: &[u8]) -> io::Result<()> {
        self.send(op::BINARY, true, data).await
    }

    /// Half-closes the connection (the client will send nothing more).
    pub async fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown().await
    }

    async fn fill(&mut self, at_least: usize) -> io::Result<bool> {
        while self.buf.len() < at_least {
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(false);
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok(true)
    }

    /// The next frame; `Ok(None)` when the connection ended (cleanly or not) between frames.
    pub async fn recv(&mut self) -> io::Result<Option<Frame>> {
        let more = |e: io::Error| match e.kind() {
            io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => Ok(false),
            _ => Err(e),
        };
        if !self.fill(2).await.or_else(more)? {
            return if self.buf.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        let (fin, opcode) = (self.buf[0] & 0x80 != 0, self.buf[0] & 0x0F);
        if self.buf[1] & 0x80 != 0 {
            return Err(io::Error::other("a server frame must not be masked"));
        }
        let (len, head) = match self.buf[1] & 0x7F {
            126 => {
                if !self.fill(4).await? {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                (
                    usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                    4,
                )
            }
            127 => {
                if !self.fill(10).await? {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                let mut n = [0u8; 8];
                n.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            n => (usize::from(n), 2),
        };
        if !self.fill(head + len).await? {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let payload = self.buf[head..head + len].to_vec();
        self.buf.drain(..head + len);
        Ok(Some(Frame {
            fin,
            opcode,
            payload,
        }))
    }

    /// The next frame within `deadline` (`Err` on a timeout).
    pub async fn recv_within(&mut self, deadline: Duration) -> io::Result<Option<Frame>> {
        tokio::time::timeout(deadline, self.recv())
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no frame in time"))?
    }

    /// Reads until the connection ends, within `deadline`: the frames that came first. `Err` on a
    /// timeout.
    pub async fn until_closed(&mut self, deadline: Duration) -> io::Result<Vec<Frame>> {
        let mut frames = Vec::new();
        tokio::time::timeout(deadline, async {
            loop {
                match self.recv().await {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => return Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        })
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the connection stayed open"))??;
        Ok(frames)
    }
}
