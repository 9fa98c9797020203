//! The Python client (`client-sdk/python`) against the real gateway binary: runs its unittest suite,
//! with a CA and a gateway certificate made here (rcgen) for its `https://` test.

use std::path::Path;
use std::process::Command;

use e2e::process::{temp_path, TempFile};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A CA, and a server certificate for 127.0.0.1 and localhost it issued: (ca, cert, key) PEM files.
fn certificates() -> [TempFile; 3] {
    let ca_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "python test CA");
    let ca = params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    [
        ("py-ca", ca.pem()),
        ("py-cert", leaf.pem()),
        ("py-key", key.serialize_pem()),
    ]
    .map(|(prefix, pem)| {
        let path = temp_path(prefix, "pem");
        std::fs::write(&path, pem).unwrap();
        TempFile(path)
    })
}

#[test]
fn python_client_suite_passes_against_the_real_gateway() {
    let gateway = e2e::process::bin("registry-gateway");
    let [ca, cert, key] = certificates();
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
        .env("REGISTRY_TEST_TLS_CA", &ca.0)
        .env("REGISTRY_TEST_TLS_CERT", &cert.0)
        .env("REGISTRY_TEST_TLS_KEY", &key.0)
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
    // The https:// test ran (it skips itself without the certificates).
    assert!(
        stderr.contains("test_registers_over_https_with_a_ca_file")
            && !stderr.contains("needs the certificates"),
        "{stderr}"
    );
    assert!(
        ran >= 10,
        "expected the whole suite to run, got {ran} tests:\n{stderr}"
    );
}
