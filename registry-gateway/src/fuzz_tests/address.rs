//! Address parser (`ReplicaAddress::parse`): no panic; an accepted address is in normal form,
//! re-parses to itself, names an explicit decimal port and is safe as a `Host` header.

use proptest::prelude::*;

use super::inputs::{address_like, text, valid_address};
use crate::registry::{InvalidAddress, ReplicaAddress};

fn check(input: &str) -> Result<(), TestCaseError> {
    let Ok(a) = ReplicaAddress::parse(input) else {
        return Ok(());
    };
    let scheme = if a.is_tls() { "https" } else { "http" };
    prop_assert_eq!(a.as_str(), format!("{scheme}://{}", a.authority()));
    prop_assert_eq!(
        ReplicaAddress::parse(a.as_str()),
        Ok(a.clone()),
        "input {:?}",
        input
    );
    prop_assert_eq!(a.to_string(), a.as_str());
    port_is_explicit_decimal_u16(&a, input)?;
    // The authority goes verbatim into `Host` and the connect call: printable ASCII, no delimiter
    // that could change what it means (user info, path, query, fragment, whitespace).
    prop_assert!(
        a.authority()
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"/?#@\\".contains(&b)),
        "authority {:?} of {:?}",
        a.authority(),
        input
    );
    Ok(())
}

/// `host:port` with a non-empty host and a canonical decimal port. Whether port 0 is refused is
/// decided by the parser's own tests; this property holds either way.
fn port_is_explicit_decimal_u16(a: &ReplicaAddress, input: &str) -> Result<(), TestCaseError> {
    let Some((host, port)) = a.authority().rsplit_once(':') else {
        return Err(TestCaseError::fail(format!(
            "no port in {a} from {input:?}"
        )));
    };
    prop_assert!(!host.is_empty(), "no host in {} from {:?}", a, input);
    let n: u16 = port
        .parse()
        .map_err(|_| TestCaseError::fail(format!("port {port:?} of {input:?}")))?;
    prop_assert_eq!(n.to_string(), port);
    Ok(())
}

proptest! {
    #![proptest_config(super::config())]

    #[test]
    fn address_parser_on_any_string(s in any::<String>()) {
        check(&s)?;
    }

    #[test]
    fn address_parser_on_address_like_strings(s in address_like()) {
        check(&s)?;
    }

    #[test]
    fn address_parser_on_url_shaped_text(host in text(), port in text(), suffix in text()) {
        check(&format!("http://{host}:{port}{suffix}"))?;
    }

    #[test]
    fn normal_form_addresses_are_accepted_unchanged(s in valid_address()) {
        let a = ReplicaAddress::parse(&s);
        prop_assert_eq!(a.as_ref().map(ReplicaAddress::as_str), Ok(s.as_str()));
    }

    #[test]
    fn addresses_without_a_port_are_refused(s in valid_address(), slash in any::<bool>()) {
        // Drop the `:port` from a valid address: what remains has no port written anywhere.
        let (without_port, _) = s.rsplit_once(':').unwrap_or((&s, ""));
        let input = if slash { format!("{without_port}/") } else { without_port.to_owned() };
        prop_assert_eq!(ReplicaAddress::parse(&input), Err(InvalidAddress::NoPort), "{:?}", input);
    }
}
