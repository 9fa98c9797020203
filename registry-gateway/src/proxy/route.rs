//! Splits a proxied path into the service name and the path the replica receives, resolving dot-segments.

use std::borrow::Cow;

/// A proxied request's target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route<'a> {
    /// First path segment (or third, after `/v1/proxy/`).
    pub service: &'a str,
    /// The rest of the path, starting with `/` (just `/` when empty), with `.` and `..` segments
    /// resolved (RFC 3986 §5.2.4; `%2e` counts as a dot). Otherwise still percent-encoded.
    pub tail: Cow<'a, str>,
}

/// Why a path has no route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// No service segment.
    #[error("no service in the path")]
    NoService,
    /// `..` segments climb above the service prefix.
    #[error("the path climbs above its service")]
    Climbs,
}

/// Parses `/{service}/{tail}` and the alias `/v1/proxy/{service}/{tail}`.
pub fn parse(path: &str) -> Result<Route<'_>, RouteError> {
    let rest = path.strip_prefix('/').ok_or(RouteError::NoService)?;
    let rest = match rest.strip_prefix("v1/proxy/") {
        Some(r) => r,
        None if rest == "v1/proxy" => return Err(RouteError::NoService),
        None => rest,
    };
    let (service, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if service.is_empty() {
        return Err(RouteError::NoService);
    }
    Ok(Route {
        service,
        tail: resolve_dots(tail)?,
    })
}

/// What a path segment is, with `%2e` read as `.`.
#[derive(PartialEq)]
enum Segment {
    Dot,
    DotDot,
    Other,
}

fn classify(seg: &str) -> Segment {
    let b = seg.as_bytes();
    let (first, rest) = match dot_at(b, 0) {
        Some(n) => (n, &b[n..]),
        None => return Segment::Other,
    };
    if rest.is_empty() {
        return Segment::Dot;
    }
    match dot_at(b, first) {
        Some(n) if first + n == b.len() => Segment::DotDot,
        _ => Segment::Other,
    }
}

/// Length of a dot (`.` or `%2e`/`%2E`) at `i`, if there is one.
fn dot_at(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'.' => Some(1),
        b'%' if b.get(i + 1) == Some(&b'2') && matches!(b.get(i + 2), Some(b'e' | b'E')) => Some(3),
        _ => None,
    }
}

/// Resolves `.` and `..` in `tail` (which starts with `/`); `..` above the root is an error.
fn resolve_dots(tail: &str) -> Result<Cow<'_, str>, RouteError> {
    // Fast path: no segment can be a dot-segment.
    if !tail
        .as_bytes()
        .windows(2)
        .any(|w| w[0] == b'/' && (w[1] == b'.' || w[1] == b'%'))
    {
        return Ok(Cow::Borrowed(tail));
    }
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = tail[1..].split('/').collect();
    let last = segments.len() - 1;
    let mut ends_with_slash = false;
    for (i, seg) in segments.iter().enumerate() {
        match classify(seg) {
            Segment::Dot => ends_with_slash = i == last,
            Segment::DotDot => {
                out.pop().ok_or(RouteError::Climbs)?;
                ends_with_slash = i == last;
            }
            Segment::Other => {
                out.push(seg);
                ends_with_slash = false;
            }
        }
    }
    if out.is_empty() {
        return Ok(Cow::Borrowed("/"));
    }
    let mut s = String::with_capacity(tail.len());
    for seg in &out {
        s.push('/');
        s.push_str(seg);
    }
    if ends_with_slash {
        s.push('/');
    }
    Ok(Cow::Owned(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(p: &str) -> Result<(&str, String), RouteError> {
        parse(p).map(|r| (r.service, r.tail.into_owned()))
    }

    fn ok(service: &str, tail: &str) -> Result<(&'static str, String), RouteError> {
        // leak: test-only convenience to compare borrowed service names
        Ok((
            Box::leak(service.to_owned().into_boxed_str()),
            tail.to_owned(),
        ))
    }

    #[test]
    fn splits_service_and_tail() {
        assert_eq!(r("/orders/v2/items/7"), ok("orders", "/v2/items/7"));
        assert_eq!(r("/orders"), ok("orders", "/"));
        assert_eq!(r("/orders/"), ok("orders", "/"));
        assert_eq!(r("/orders/a%2Fb"), ok("orders", "/a%2Fb"));
        assert_eq!(r("/v1/proxy/orders/x"), ok("orders", "/x"));
        assert_eq!(r("/v1/proxy/orders"), ok("orders", "/"));
        assert_eq!(r("/"), Err(RouteError::NoService));
        assert_eq!(r("//x"), Err(RouteError::NoService));
        assert_eq!(r("/v1/proxy"), Err(RouteError::NoService));
        assert_eq!(r("/v1/proxy/"), Err(RouteError::NoService));
    }

    #[test]
    fn resolves_dot_segments_like_rfc_3986() {
        assert_eq!(r("/svc/a/./b"), ok("svc", "/a/b"));
        assert_eq!(r("/svc/a/b/../c"), ok("svc", "/a/c"));
        assert_eq!(r("/svc/a/b/.."), ok("svc", "/a/"));
        assert_eq!(r("/svc/a/."), ok("svc", "/a/"));
        assert_eq!(r("/svc/a/.."), ok("svc", "/"));
        assert_eq!(r("/svc/."), ok("svc", "/"));
        assert_eq!(r("/svc/%2e/a/%2E%2e/b"), ok("svc", "/b"));
        assert_eq!(r("/svc/a/.%2e/b"), ok("svc", "/b"));
        // names that merely contain dots are ordinary segments
        assert_eq!(r("/svc/.well-known/x"), ok("svc", "/.well-known/x"));
        assert_eq!(
            r("/svc/a.../..b/%2e%2e%2e"),
            ok("svc", "/a.../..b/%2e%2e%2e")
        );
        assert_eq!(r("/svc/%2f/x"), ok("svc", "/%2f/x"));
    }

    #[test]
    fn refuses_to_climb_above_the_service() {
        assert_eq!(r("/svc/../registry"), Err(RouteError::Climbs));
        assert_eq!(r("/svc/%2e%2e/registry"), Err(RouteError::Climbs));
        assert_eq!(r("/svc/%2E%2E"), Err(RouteError::Climbs));
        assert_eq!(r("/svc/a/../../b"), Err(RouteError::Climbs));
        assert_eq!(r("/v1/proxy/svc/.."), Err(RouteError::Climbs));
    }
}
