//! Route parser (`proxy::route::parse`): no panic; the tail starts with `/`, holds no dot-segment
//! (plain or `%2e`), is a fixed point of the parser, and agrees with a naive model of dot removal.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use crate::proxy::route::{parse, RouteError};

/// Segments that exercise dot handling: the plain and percent-encoded dots, near misses, empties.
const SEGMENTS: &[&str] = &[
    ".",
    "..",
    "%2e",
    "%2E%2e",
    ".%2e",
    "a",
    "",
    "%2f",
    "x.y",
    "%2e%2e%2e",
    "...",
    "%2",
    "%",
    "%2E.",
    ".a",
    "%252e",
    "%2e%",
];

/// Starts of a path: with and without the `/v1/proxy/` alias, with no or an odd service segment.
const PREFIXES: &[&str] = &[
    "/svc",
    "/svc",
    "/svc",
    "/v1/proxy/svc",
    "/v1/proxy",
    "/v1",
    "",
    "/",
    "//",
    "/%2e",
    "/..",
    "/v1/proxy/..",
    "svc",
];

fn structured_path() -> impl Strategy<Value = String> {
    (
        select(PREFIXES),
        vec(select(SEGMENTS), 0..10),
        any::<bool>(),
    )
        .prop_map(|(prefix, segments, trailing_slash)| {
            let mut path = prefix.to_owned();
            for seg in segments {
                path.push('/');
                path.push_str(seg);
            }
            if trailing_slash {
                path.push('/');
            }
            path
        })
}

/// The model's reading of a segment: `%2e` and `%2E` decoded to `.`, nothing else. (A `.` cannot
/// complete a `%2e`, so one pass of each replacement is a full decoding.)
fn decode_dots(seg: &str) -> String {
    seg.replace("%2e", ".").replace("%2E", ".")
}

fn is_dot_segment(seg: &str) -> bool {
    matches!(decode_dots(seg).as_str(), "." | "..")
}

/// Naive reference: split off the service the same way, then replay the tail's segments on a stack,
/// popping on `..` (an empty stack means climbing above the service) and ending in `/` when the last
/// segment was a dot-segment.
fn model(path: &str) -> Result<(String, String), RouteError> {
    let rest = path.strip_prefix('/').ok_or(RouteError::NoService)?;
    if rest == "v1/proxy" {
        return Err(RouteError::NoService);
    }
    let rest = rest.strip_prefix("v1/proxy/").unwrap_or(rest);
    let mut parts = rest.split('/');
    let service = parts.next().unwrap_or_default();
    if service.is_empty() {
        return Err(RouteError::NoService);
    }
    let mut stack: Vec<&str> = Vec::new();
    let mut dot_last = false;
    for seg in parts {
        match decode_dots(seg).as_str() {
            "." => dot_last = true,
            ".." => {
                stack.pop().ok_or(RouteError::Climbs)?;
                dot_last = true;
            }
            _ => {
                stack.push(seg);
                dot_last = false;
            }
        }
    }
    let mut tail: String = stack.iter().flat_map(|seg| ["/", seg]).collect();
    if tail.is_empty() || dot_last {
        tail.push('/');
    }
    Ok((service.to_owned(), tail))
}

fn check(path: &str) -> Result<(), TestCaseError> {
    let got = parse(path).map(|r| (r.service.to_owned(), r.tail.into_owned()));
    // Full agreement, so in particular: the parser says Climbs exactly when the model climbs.
    prop_assert_eq!(&got, &model(path), "path {:?}", path);
    let Ok((service, tail)) = got else {
        return Ok(());
    };
    prop_assert!(!service.is_empty() && !service.contains('/'));
    prop_assert!(tail.starts_with('/'), "tail {:?} of {:?}", tail, path);
    prop_assert!(
        !tail[1..].split('/').any(is_dot_segment),
        "dot-segment left in {:?} of {:?}",
        tail,
        path
    );
    // Resolving is idempotent: the replica would see the same path if the tail were sent again.
    let again = parse(&format!("/svc{tail}")).map(|r| r.tail.into_owned());
    prop_assert_eq!(again, Ok(tail.clone()), "not a fixed point: {:?}", path);
    Ok(())
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn route_parser_on_any_string(path in any::<String>()) {
        check(&path)?;
    }

    #[test]
    fn route_parser_on_any_path_under_a_service(tail in "(/[^/]{0,6}){0,8}/?") {
        check(&format!("/svc{tail}"))?;
    }

    #[test]
    fn route_parser_on_dot_segment_paths(path in structured_path()) {
        check(&path)?;
    }
}
