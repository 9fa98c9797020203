//! A chunked body decoder (RFC 9112 §7.1) that never copies: it reports where the data lies in the bytes it
//! was given, so the caller can hand those bytes on as they are. Strict: CRLF line ends, bounded lines.

use std::ops::Range;

/// Longest chunk-size line (size and extensions) and longest trailer section, in bytes.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size { size: u64, digits: u8 },
    Extension { size: u64 },
    SizeLf { size: u64 },
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    EndLf,
    Done,
}

/// What one call found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Body data at this range of the input.
    Data(Range<usize>),
    /// The input ran out mid-frame: more bytes are needed.
    NeedMore,
    /// The last chunk and the trailers are read: the body is complete.
    Done,
}

/// A chunked framing the replica got wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body")]
pub(crate) struct ChunkError;

/// Decoder state across reads.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedDecoder {
    state: State,
    /// Bytes in the current size line or trailer section.
    line: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size { size: 0, digits: 0 },
            line: 0,
        }
    }
}

impl ChunkedDecoder {
    /// Whether the whole body has been read.
    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads `input` up to the first piece of data (or its end); returns how many bytes it consumed
    /// (framing bytes and the data it reports) and what it found.
    pub(crate) fn decode(&mut self, input: &[u8]) -> Result<(usize, Decoded), ChunkError> {
        let mut i = 0;
        while i < input.len() {
            if let State::Data(rem) = self.state {
                let n = rem.min((input.len() - i) as u64) as usize;
                self.state = if rem == n as u64 {
                    State::DataCr
                } else {
                    State::Data(rem - n as u64)
                };
                return Ok((i + n, Decoded::Data(i..i + n)));
            }
            let b = input[i];
            i += 1;
            self.state = match self.state {
                State::Size { size, digits } => {
                    self.line += 1;
                    match b {
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                            if digits >= 15 {
                                return Err(ChunkError);
                            }
                            let d = (b as char).to_digit(16).ok_or(ChunkError)? as u64;
                            State::Size {
                                size: size * 16 + d,
                                digits: digits + 1,
                            }
                        }
                        b';' | b' ' | b'\t' if digits > 0 => State::Extension { size },
                        b'\r' if digits > 0 => State::SizeLf { size },
                        _ => return Err(ChunkError),
                    }
                }
                State::Extension { size } => {
                    self.line += 1;
                    if self.line > MAX_LINE || b == b'\n' {
                        return Err(ChunkError);
                    }
                    if b == b'\r' {
                        State::SizeLf { size }
                    } else {
                        State::Extension { size }
                    }
                }
                State::SizeLf { size } => {
                    if b != b'\n' {
                        return Err(ChunkError);
                    }
                    self.line = 0;
                    if size == 0 {
                        State::TrailerStart
                    } else {
                        State::Data(size)
                    }
                }
                State::Data(_) => unreachable!("handled above"),
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => {
                    self.line = 0;
                    State::Size { size: 0, digits: 0 }
                }
                State::DataCr | State::DataLf => return Err(ChunkError),
                State::TrailerStart if b == b'\r' => State::EndLf,
                State::TrailerStart | State::TrailerLine => {
                    self.line += 1;
                    if self.line > MAX_TRAILERS || b == b'\n' {
                        return Err(ChunkError);
                    }
                    if b == b'\r' {
                        State::TrailerLf
                    } else {
                        State::TrailerLine
                    }
                }
                State::TrailerLf if b == b'\n' => State::TrailerStart,
                State::TrailerLf => return Err(ChunkError),
                State::EndLf if b == b'\n' => {
                    self.state = State::Done;
                    return Ok((i, Decoded::Done));
                }
                State::EndLf => return Err(ChunkError),
                // Bytes past the end are not the body's: the caller stops before them.
                State::Done => return Ok((i - 1, Decoded::Done)),
            };
            if self.line > MAX_LINE && matches!(self.state, State::Size { .. }) {
                return Err(ChunkError);
            }
        }
        Ok(match self.state {
            State::Done => (i, Decoded::Done),
            _ => (i, Decoded::NeedMore),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in pieces of `step` bytes; returns the body and whether the end was seen.
    fn run(wire: &[u8], step: usize) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut d = ChunkedDecoder::default();
        let (mut body, mut pending) = (Vec::new(), Vec::new());
        for piece in wire.chunks(step) {
            pending.extend_from_slice(piece);
            loop {
                let (used, found) = d.decode(&pending)?;
                if let Decoded::Data(r) = &found {
                    body.extend_from_slice(&pending[r.clone()]);
                }
                pending.drain(..used);
                match found {
                    Decoded::Done => return Ok((body, true)),
                    Decoded::NeedMore => break,
                    Decoded::Data(_) => {}
                }
            }
        }
        Ok((body, d.is_done()))
    }

    #[test]
    fn chunks_extensions_and_trailers_in_any_split() {
        let wire = b"5\r\nhello\r\n6;name=v\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            assert_eq!(
                run(wire, step).unwrap(),
                (b"hello world".to_vec(), true),
                "step {step}"
            );
        }
        assert_eq!(run(b"A\r\n0123456789\r\n0\r\n\r\n", 4).unwrap().0.len(), 10);
    }

    #[test]
    fn a_body_cut_short_is_not_done() {
        assert_eq!(run(b"5\r\nhel", 64).unwrap(), (b"hel".to_vec(), false));
        assert_eq!(
            run(b"5\r\nhello\r\n0\r\n", 64).unwrap(),
            (b"hello".to_vec(), false)
        );
    }

    #[test]
    fn bytes_past_the_last_chunk_are_left_alone() {
        let mut d = ChunkedDecoder::default();
        assert_eq!(d.decode(b"0\r\n\r\nHTTP/1.1").unwrap(), (5, Decoded::Done));
    }

    #[test]
    fn malformed_framing_is_refused() {
        for bad in [
            &b"\r\n"[..],
            b"x\r\n",
            b"5\nhello",
            b"5\r\nhelloXX",
            b"1ffffffffffffffff\r\n",
            b"5;ext\nhello",
            b"0\r\nbad trailer\n",
        ] {
            assert_eq!(
                run(bad, 64),
                Err(ChunkError),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_ext = [&b"1;"[..], &[b'a'; MAX_LINE]].concat();
        assert_eq!(run(&long_ext, 64), Err(ChunkError));
    }
}
