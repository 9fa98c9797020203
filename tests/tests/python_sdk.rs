//! The Python client (`client-sdk/python`) against the real gateway binary: runs its unittest suite.

use std::path::Path;
use std::process::Command;

#[test]
fn python_client_suite_passes_against_the_real_gateway() {
    let gateway = e2e::process::bin("registry-gateway");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    let out = Command::new("python3")
        .args([
            "-W",
            "error::ResourceWarning",
            "-m",
            "unittest",
            "discover",
            "-s",
            "client-sdk/python/tests",
            "-v",
        ])
        .current_dir(root)
        .env("REGISTRY_GATEWAY_BIN", &gateway)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run python3 (the Python client's tests need python3 >= 3.8 on PATH)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python3 -m unittest failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // unittest prints its verdict on stderr: make sure the suite ran and was not empty.
    let ran = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("Ran ")?
                .split_whitespace()
                .next()?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(0);
    assert!(
        ran >= 10,
        "expected the whole suite to run, got {ran} tests:\n{stderr}"
    );
}
