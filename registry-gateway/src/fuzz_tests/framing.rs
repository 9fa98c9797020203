//! The connection gate's request scanner (`framing::scanner`): no panic on any bytes, and on a stream of
//! well-formed pipelined requests, however it is cut into reads, it finds exactly the requests' ends.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::framing::scanner::{RequestScanner, Scan};

/// One well-formed request: no body, a `Content-Length` body, or a chunked body with extensions and
/// trailers; returns its bytes.
fn request() -> impl Strategy<Value = Vec<u8>> {
    let body = vec(any::<u8>(), 0..40);
    prop_oneof![
        Just(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        Just(b"GET /bare HTTP/1.1\nHost: x\n\n".to_vec()),
        body.clone().prop_map(|b| {
            let mut r =
                format!("POST /p HTTP/1.1\r\nContent-Length: {}\r\n\r\n", b.len()).into_bytes();
            r.extend_from_slice(&b);
            r
        }),
        (vec(body, 0..4), any::<bool>(), any::<bool>()).prop_map(|(chunks, ext, trailer)| {
            let mut r = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for c in chunks.iter().filter(|c| !c.is_empty()) {
                r.extend_from_slice(format!("{:X}", c.len()).as_bytes());
                if ext {
                    r.extend_from_slice(b";name=value");
                }
                r.extend_from_slice(b"\r\n");
                r.extend_from_slice(c);
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"0\r\n");
            if trailer {
                r.extend_from_slice(b"X-Sum: 1\r\n");
            }
            r.extend_from_slice(b"\r\n");
            r
        }),
    ]
}

/// Feeds `stream` to a scanner in reads ending at `cuts`, as the gate does (bytes past a request's end
/// are fed again as the start of the next); returns the stream offsets where requests ended.
fn ends(stream: &[u8], cuts: &[usize]) -> Result<Vec<usize>, TestCaseError> {
    let mut scanner = RequestScanner::default();
    let mut ends = Vec::new();
    let (mut at, mut reads) = (0, cuts.iter().copied().chain(std::iter::once(stream.len())));
    let mut read_end = reads.next().unwrap_or(stream.len());
    while at < stream.len() {
        while read_end <= at {
            read_end = reads.next().unwrap_or(stream.len());
        }
        match scanner.feed(&stream[at..read_end]) {
            Scan::Within => at = read_end,
            Scan::Complete(n) => {
                prop_assert!(n > 0 && at + n <= read_end);
                at += n;
                ends.push(at);
            }
            Scan::Malformed(n) => prop_assert!(false, "well-formed input refused at {}", at + n),
        }
    }
    Ok(ends)
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn the_scanner_never_panics(chunks in vec(vec(any::<u8>(), 0..64), 0..8)) {
        let mut s = RequestScanner::default();
        for c in &chunks {
            if let Scan::Complete(n) | Scan::Malformed(n) = s.feed(c) {
                prop_assert!(n <= c.len());
            }
        }
    }

    #[test]
    fn pipelined_requests_end_where_they_end_however_they_are_read(
        requests in vec(request(), 1..5),
        cuts in vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let stream: Vec<u8> = requests.concat();
        let mut want = Vec::new();
        let mut total = 0;
        for r in &requests {
            total += r.len();
            want.push(total);
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        cuts.sort_unstable();
        prop_assert_eq!(ends(&stream, &cuts)?, want);
    }
}
