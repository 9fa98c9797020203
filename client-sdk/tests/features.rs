//! The `grpc` feature stays optional: without it the SDK depends on no gRPC crate.
//!
//! A cheap stand-in for `cargo tree -p client-sdk -e normal | grep -E 'tonic|prost'` (which must print
//! nothing): it reads this crate's manifest, so adding a gRPC crate as a required dependency fails here.

const MANIFEST: &str = include_str!("../Cargo.toml");

/// The lines of the `[name]` table.
fn table(name: &str) -> Vec<&'static str> {
    let header = format!("[{name}]");
    MANIFEST
        .lines()
        .skip_while(|l| l.trim() != header)
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .collect()
}

#[test]
fn grpc_crates_are_optional_and_off_by_default() {
    let deps = table("dependencies");
    assert!(!deps.is_empty(), "no [dependencies] table found");
    let grpc_crates = ["tonic", "prost", "protox", "registry-proto", "tonic-prost"];
    for line in &deps {
        let name = line
            .split(['=', '.', ' '])
            .next()
            .unwrap_or_default()
            .trim();
        if grpc_crates.contains(&name) {
            assert!(
                line.contains("optional = true"),
                "{name} must stay an optional dependency (feature `grpc`): {line}"
            );
        }
    }
    let features = table("features");
    let default = features
        .iter()
        .find(|l| l.trim_start().starts_with("default"))
        .expect("a `default` feature line");
    assert!(
        !default.contains("grpc"),
        "the `grpc` feature must stay off by default: {default}"
    );
    let grpc = features
        .iter()
        .find(|l| l.trim_start().starts_with("grpc"))
        .expect("a `grpc` feature line");
    for dep in ["dep:tonic", "dep:registry-proto"] {
        assert!(
            grpc.contains(dep),
            "feature `grpc` must enable {dep}: {grpc}"
        );
    }
}
