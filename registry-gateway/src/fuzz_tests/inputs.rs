//! Input generators shared by several properties: addresses, names, metadata and JSON values, each
//! mixing valid values with the near misses a validator has to refuse.

use std::collections::BTreeMap;

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;

use crate::registry::RESERVED_NAMES;

/// Any short string (every Unicode scalar but controls; `any::<String>()` is the same, unbounded).
pub(super) fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,16}",
        // Controls and separators too: they are what sneaks through a sloppy validator.
        "[\\x00-\\x20/:@#?%\\[\\]\\\\.a-z0-9]{0,16}",
    ]
}

/// Strings shaped like addresses: scheme, user info, host, port and suffix each drawn from valid
/// values and near misses, so that both acceptance and every refusal are reached often.
pub(super) fn address_like() -> impl Strategy<Value = String> {
    let scheme = select(
        &[
            "http://",
            "HTTP://",
            "https://",
            "ftp://",
            "http:",
            "http:/",
            "http:\\\\",
            "",
            " http://",
            "http:// ",
            "ht\ttp://",
            "//",
        ][..],
    );
    let user = select(&["", "", "", "", "u@", "u:p@", ":@", "@", "a%40b@"][..]);
    let host = prop_oneof![
        select(
            &[
                "127.0.0.1",
                "[::1]",
                "[::ffff:1.2.3.4]",
                "0x7f.1",
                "2130706433",
                "orders.local",
                "Orders.LOCAL",
                "bücher.example",
                "xn--bcher-kva.example",
                "xn--a",
                "%41.b",
                "",
                "a b",
                "[::1",
                "999.1.1.1",
                "a:b",
                "a..b",
                ".",
                "a%2fb",
                "[v1.x]",
            ][..],
        )
        .prop_map(str::to_owned),
        "[a-z0-9.-]{0,12}",
        text(),
    ];
    let port = prop_oneof![
        select(
            &[
                "",
                ":",
                ":0",
                ":00",
                ":80",
                ":080",
                ":65535",
                ":65536",
                ":99999999999",
                ":-1",
                ":+1",
                ": 80",
                ":8\t0",
                ":8 0",
                "::80",
            ][..],
        )
        .prop_map(str::to_owned),
        (0u32..70_000).prop_map(|p| format!(":{p}")),
    ];
    let suffix = select(
        &[
            "", "", "", "", "/", "//", "/x", "?", "?q", "#", "#f", " ", "\t", "\n", "/.", "/%2e",
            "\\", ":", "@h:1", "/..",
        ][..],
    );
    (scheme, user, host, port, suffix).prop_map(|(s, u, h, p, x)| format!("{s}{u}{h}{p}{x}"))
}

/// Addresses the parser accepts, already in its normal form `http://host:port`.
pub(super) fn valid_address() -> impl Strategy<Value = String> {
    let host = prop_oneof![
        select(
            &[
                "127.0.0.1",
                "10.0.0.5",
                "[::1]",
                "[2001:db8::1]",
                "orders.local",
                "localhost",
                "xn--bcher-kva.example",
            ][..],
        )
        .prop_map(str::to_owned),
        // First letter never `x` (no accidental, invalid `xn--` label); the last label is never
        // numeric, which the URL parser would read as an IPv4 address.
        "[a-wyz][a-z0-9-]{0,10}(\\.[a-z]{1,5}){0,2}",
    ];
    (host, 1..=u16::MAX).prop_map(|(h, p)| format!("http://{h}:{p}"))
}

/// Mostly valid service names, so that a record of several fields gets past this one often.
pub(super) fn mostly_valid_service() -> impl Strategy<Value = String> {
    prop_oneof![3 => valid_service(), 1 => service_like()]
}

/// Mostly valid addresses.
pub(super) fn mostly_valid_address() -> impl Strategy<Value = String> {
    prop_oneof![3 => valid_address(), 1 => address_like()]
}

/// Service names: valid labels, reserved ones, near misses and anything.
pub(super) fn service_like() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => valid_service(),
        1 => select(RESERVED_NAMES).prop_map(str::to_owned),
        1 => select(&["", "-a", "a-", "A", "a_b", "a.b", "ä", " a", "a\n"][..]).prop_map(str::to_owned),
        1 => "[a-z0-9-]{60,66}",
        1 => text(),
    ]
}

/// Service names the parser accepts.
pub(super) fn valid_service() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?"
        .prop_filter("reserved", |s| !RESERVED_NAMES.contains(&s.as_str()))
}

/// gRPC service names the validator accepts; never with a `,` (the Redis hash joins them with one).
pub(super) fn valid_grpc_service() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_]{1,8}(\\.[A-Za-z0-9_]{1,8}){0,3}"
}

/// gRPC service names: valid, near misses and anything.
pub(super) fn grpc_service_like() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => valid_grpc_service(),
        1 => select(&["", ".a", "a.", "a..b", "a/b", "a,b", "a b", "é"][..]).prop_map(str::to_owned),
        1 => "[A-Za-z0-9_]{195,205}",
        1 => text(),
    ]
}

/// A list of gRPC service names, sometimes past the limit of 64.
pub(super) fn grpc_services_like() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        // None: what an HTTP replica must send.
        3 => Just(Vec::new()),
        2 => vec(valid_grpc_service(), 1..4),
        3 => vec(grpc_service_like(), 1..4),
        1 => vec(valid_grpc_service(), 60..70),
    ]
}

/// Metadata: small maps of anything, maps past the 64 entries, keys and values past 1024 bytes.
pub(super) fn metadata_like() -> impl Strategy<Value = BTreeMap<String, String>> {
    prop_oneof![
        8 => btree_map(text(), text(), 0..4),
        1 => btree_map("[a-z]{1,6}", "[a-z]{0,4}", 60..70),
        1 => (1000usize..1100, 1000usize..1100)
            .prop_map(|(k, v)| BTreeMap::from([("k".repeat(k), "v".repeat(v))])),
    ]
}

/// Any JSON value, a few levels deep.
pub(super) fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(text(), inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Arbitrary bytes, and arbitrary UTF-8 text as bytes (which gets further into a text decoder).
pub(super) fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..64),
        any::<String>().prop_map(String::into_bytes),
    ]
}
