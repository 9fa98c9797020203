//! Splits a proxied path into the service name and the path the replica receives.

/// A proxied request's target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route<'a> {
    /// First path segment (or third, after `/v1/proxy/`).
    pub(crate) service: &'a str,
    /// The rest of the path, starting with `/` (just `/` when empty). Still percent-encoded.
    pub(crate) tail: &'a str,
}

/// Parses `/{service}/{tail}` and the alias `/v1/proxy/{service}/{tail}`. `None` when there is no service.
pub(crate) fn parse(path: &str) -> Option<Route<'_>> {
    let rest = path.strip_prefix('/')?;
    let rest = match rest.strip_prefix("v1/proxy/") {
        Some(r) => r,
        None if rest == "v1/proxy" => return None,
        None => rest,
    };
    let (service, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    (!service.is_empty()).then_some(Route { service, tail })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(p: &str) -> Option<(&str, &str)> {
        parse(p).map(|r| (r.service, r.tail))
    }

    #[test]
    fn splits_service_and_tail() {
        assert_eq!(r("/orders/v2/items/7"), Some(("orders", "/v2/items/7")));
        assert_eq!(r("/orders"), Some(("orders", "/")));
        assert_eq!(r("/orders/"), Some(("orders", "/")));
        assert_eq!(r("/orders/a%2Fb"), Some(("orders", "/a%2Fb")));
        assert_eq!(r("/v1/proxy/orders/x"), Some(("orders", "/x")));
        assert_eq!(r("/v1/proxy/orders"), Some(("orders", "/")));
        assert_eq!(r("/"), None);
        assert_eq!(r("//x"), None);
        assert_eq!(r("/v1/proxy"), None);
        assert_eq!(r("/v1/proxy/"), None);
    }
}
