//! How a replica's response body is delimited (RFC 9112 §6.3), and whether its connection may carry
//! another request: pure decisions over the head's framing headers.

/// How the response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body: a HEAD's answer, 1xx, 204, 304.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`: up to the last chunk.
    Chunked,
    /// No length: the body runs until the replica closes (the connection is not reused).
    UntilClose,
}

/// A response head whose framing cannot be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FramingError {
    /// A `Content-Length` that is not a number.
    #[error("invalid Content-Length")]
    InvalidLength,
    /// Two `Content-Length` values that disagree.
    #[error("conflicting Content-Length values")]
    ConflictingLength,
}

/// What the framing headers of a head said, gathered line by line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Signals {
    /// The (agreed) `Content-Length`.
    pub(crate) content_length: Option<u64>,
    /// A `Transfer-Encoding` was sent; `Some(true)` when its last coding is `chunked`.
    pub(crate) chunked_last: Option<bool>,
    /// `Connection: close`.
    pub(crate) close: bool,
    /// `Connection: keep-alive` (what an HTTP/1.0 replica must say to keep the connection).
    pub(crate) keep_alive: bool,
}

impl Signals {
    /// Takes in one header line.
    pub(crate) fn observe(&mut self, name: &[u8], value: &[u8]) -> Result<(), FramingError> {
        if name.eq_ignore_ascii_case(b"content-length") {
            // `5, 5` is allowed (a list of equal values); anything else that disagrees is not.
            for part in value.split(|&b| b == b',') {
                let part = part.trim_ascii();
                if part.is_empty() || !part.iter().all(u8::is_ascii_digit) || part.len() > 19 {
                    return Err(FramingError::InvalidLength);
                }
                let n: u64 = std::str::from_utf8(part)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or(FramingError::InvalidLength)?;
                match self.content_length {
                    Some(m) if m != n => return Err(FramingError::ConflictingLength),
                    _ => self.content_length = Some(n),
                }
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if let Some(last) = value
                .split(|&b| b == b',')
                .map(<[u8]>::trim_ascii)
                .next_back()
            {
                self.chunked_last = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for t in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                self.close |= t.eq_ignore_ascii_case(b"close");
                self.keep_alive |= t.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        Ok(())
    }
}

/// The framing of a response and whether its connection may be reused after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Decision {
    /// How the body ends.
    pub(crate) framing: Framing,
    /// The connection may carry another request once the body is read to its end.
    pub(crate) reusable: bool,
}

/// Decides for a response with `status` and HTTP/1.`minor`, to a HEAD request when `head_request`.
pub(crate) fn decide(
    head_request: bool,
    status: u16,
    minor: u8,
    s: &Signals,
) -> Result<Decision, FramingError> {
    let keep = !s.close && (minor >= 1 || s.keep_alive);
    let (framing, reusable) =
        if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
            (Framing::None, keep)
        } else {
            match (s.chunked_last, s.content_length) {
                // Transfer-Encoding wins over Content-Length; a message with both is suspect: never reused.
                (Some(true), cl) => (Framing::Chunked, keep && cl.is_none()),
                // A coding that does not end in chunked: the body runs to the close.
                (Some(false), _) => (Framing::UntilClose, false),
                (None, Some(n)) => (Framing::Length(n), keep),
                (None, None) => (Framing::UntilClose, false),
            }
        };
    Ok(Decision { framing, reusable })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signals(lines: &[(&str, &str)]) -> Result<Signals, FramingError> {
        let mut s = Signals::default();
        for (n, v) in lines {
            s.observe(n.as_bytes(), v.as_bytes())?;
        }
        Ok(s)
    }

    fn d(head: bool, status: u16, minor: u8, lines: &[(&str, &str)]) -> (Framing, bool) {
        let x = decide(head, status, minor, &signals(lines).unwrap()).unwrap();
        (x.framing, x.reusable)
    }

    #[test]
    fn length_chunked_and_close_delimited_bodies() {
        assert_eq!(
            d(false, 200, 1, &[("Content-Length", "5")]),
            (Framing::Length(5), true)
        );
        assert_eq!(
            d(false, 200, 1, &[("content-length", "5, 5")]),
            (Framing::Length(5), true)
        );
        assert_eq!(
            d(false, 200, 1, &[("Transfer-Encoding", "chunked")]),
            (Framing::Chunked, true)
        );
        assert_eq!(
            d(false, 200, 1, &[("transfer-encoding", "gzip, Chunked")]),
            (Framing::Chunked, true)
        );
        // no length at all: read to EOF, never reuse
        assert_eq!(d(false, 200, 1, &[]), (Framing::UntilClose, false));
        assert_eq!(
            d(false, 200, 1, &[("transfer-encoding", "gzip")]),
            (Framing::UntilClose, false)
        );
    }

    #[test]
    fn heads_204_304_and_interim_answers_have_no_body() {
        for (head, status) in [(true, 200), (false, 204), (false, 304), (false, 100)] {
            assert_eq!(
                d(head, status, 1, &[("content-length", "10")]),
                (Framing::None, true)
            );
        }
        assert_eq!(
            d(true, 200, 1, &[("transfer-encoding", "chunked")]).0,
            Framing::None
        );
    }

    #[test]
    fn smuggling_shapes_are_refused_or_never_reused() {
        assert_eq!(
            signals(&[("content-length", "5"), ("content-length", "6")]),
            Err(FramingError::ConflictingLength)
        );
        assert_eq!(
            signals(&[("content-length", "5, 6")]),
            Err(FramingError::ConflictingLength)
        );
        for bad in ["-1", "+5", "0x10", "", "5 5", "99999999999999999999"] {
            assert_eq!(
                signals(&[("content-length", bad)]),
                Err(FramingError::InvalidLength),
                "{bad:?}"
            );
        }
        // both: chunked wins, and the connection goes away after
        assert_eq!(
            d(
                false,
                200,
                1,
                &[("content-length", "5"), ("transfer-encoding", "chunked")]
            ),
            (Framing::Chunked, false)
        );
    }

    #[test]
    fn connection_close_and_http_1_0_keep_alive() {
        assert_eq!(
            d(
                false,
                200,
                1,
                &[("content-length", "1"), ("connection", "close")]
            ),
            (Framing::Length(1), false)
        );
        assert_eq!(
            d(false, 200, 0, &[("content-length", "1")]),
            (Framing::Length(1), false)
        );
        assert_eq!(
            d(
                false,
                200,
                0,
                &[("content-length", "1"), ("connection", "Keep-Alive")]
            ),
            (Framing::Length(1), true)
        );
    }
}
