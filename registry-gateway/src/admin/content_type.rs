//! Which `Content-Type` values count as JSON for the admin API.

use crate::error::GatewayError;

/// Accepts `application/json` and `application/<x>+json` in any case, with or without parameters
/// (`; charset=utf-8`); anything else, or no value at all, is 415 [`GatewayError::UnsupportedMediaType`].
pub(crate) fn require_json(content_type: Option<&[u8]>) -> Result<(), GatewayError> {
    let Some(raw) = content_type else {
        return Err(GatewayError::UnsupportedMediaType("(none)".into()));
    };
    match std::str::from_utf8(raw) {
        Ok(value) if is_json(value) => Ok(()),
        Ok(value) => Err(GatewayError::UnsupportedMediaType(format!(
            "'{}'",
            value.escape_debug()
        ))),
        Err(_) => Err(GatewayError::UnsupportedMediaType("(not text)".into())),
    }
}

/// Whether a `Content-Type` value is a JSON media type.
fn is_json(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    if !kind.eq_ignore_ascii_case("application") || !is_token(subtype) {
        return false;
    }
    if subtype.eq_ignore_ascii_case("json") {
        return true;
    }
    // A structured syntax suffix (RFC 6839): `application/problem+json`, `application/vnd.x+json`.
    let suffix = "+json";
    subtype.len() > suffix.len()
        && subtype
            .get(subtype.len() - suffix.len()..)
            .is_some_and(|s| s.eq_ignore_ascii_case(suffix))
}

/// An RFC 9110 token: the characters a media subtype may have.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_in_any_case_with_parameters_and_suffixes_is_accepted() {
        for ok in [
            "application/json",
            "Application/JSON",
            "APPLICATION/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "  application/json  ; charset=utf-8",
            "application/vnd.registry.v1+json",
            "application/problem+JSON",
            "application/merge-patch+json; charset=utf-8",
        ] {
            assert!(require_json(Some(ok.as_bytes())).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn everything_else_is_415() {
        for bad in [
            "",
            "json",
            "text/plain",
            "text/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonp",
            "application/json5",
            "application/+json",
            "application/",
            "/json",
            "application/ json",
            "application/js on",
            "application/xml+json/extra",
            "application/vnd.x+jsonx",
            "*/*",
        ] {
            let e = require_json(Some(bad.as_bytes())).unwrap_err();
            assert!(
                matches!(e, GatewayError::UnsupportedMediaType(_)),
                "{bad:?}: {e:?}"
            );
        }
        let none = require_json(None).unwrap_err();
        assert_eq!(
            none.to_string(),
            "unsupported content type (none): send application/json"
        );
        let text = require_json(Some(b"text/plain")).unwrap_err();
        assert_eq!(
            text.to_string(),
            "unsupported content type 'text/plain': send application/json"
        );
        assert!(matches!(
            require_json(Some(b"application/json\xff")),
            Err(GatewayError::UnsupportedMediaType(m)) if m == "(not text)"
        ));
    }
}
