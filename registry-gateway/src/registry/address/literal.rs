//! The quick reading of the commonest replica address, `http(s)://a.b.c.d:port` as a client writes it
//! when it registers itself: no URL parser, no formatting, the text kept as it came.

/// What a canonical IPv4 address text says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Literal {
    /// `https`.
    pub(super) tls: bool,
    /// Never 0.
    pub(super) port: u16,
    /// The length of the text without its trailing `/`.
    pub(super) len: usize,
}

/// `s` read as `http://` or `https://`, four decimal octets (0 to 255, no leading zero), `:` and a port
/// (1 to 65535, no leading zero), then at most one `/`: exactly the texts the general parser accepts and
/// gives back unchanged (less the `/`). `None` for any other text, which the general parser then reads.
pub(super) fn canonical_ipv4(s: &str) -> Option<Literal> {
    let (tls, rest) = match s.strip_prefix("http://") {
        Some(rest) => (false, rest),
        None => (true, s.strip_prefix("https://")?),
    };
    let (rest, slash) = match rest.strip_suffix('/') {
        Some(rest) => (rest, 1),
        None => (rest, 0),
    };
    let (host, port) = rest.split_once(':')?;
    let mut octets = 0;
    for octet in host.split('.') {
        decimal(octet).filter(|n| *n <= 255)?;
        octets += 1;
    }
    let port = u16::try_from(decimal(port)?).ok().filter(|p| *p != 0)?;
    (octets == 4).then_some(Literal {
        tls,
        port,
        len: s.len() - slash,
    })
}

/// A number of 1 to 5 decimal digits without a leading zero (`0` itself is one).
fn decimal(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 5 || (b.len() > 1 && b[0] == b'0') {
        return None;
    }
    b.iter().try_fold(0u32, |n, d| {
        d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
    })
}
