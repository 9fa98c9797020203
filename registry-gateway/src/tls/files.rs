//! Reading PEM certificates and keys from files, each error naming the config field.

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::ConfigError;

fn invalid(field: &str, message: String) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_owned(),
        message,
    }
}

/// The bytes of `path`: `cannot read /x.pem: No such file or directory` when it cannot be read.
fn read(field: &str, path: &str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| invalid(field, format!("cannot read {path}: {}", io_reason(&e))))
}

/// An IO error as a sentence, without the `(os error 2)` tail.
fn io_reason(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.find(" (os error") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

/// Every PEM certificate of `path` (at least one), in file order.
pub(super) fn certificates(
    field: &str,
    path: &str,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read(field, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(field, format!("{path} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(invalid(
            field,
            format!("no PEM certificate (BEGIN CERTIFICATE) in {path}"),
        ));
    }
    Ok(certs)
}

/// The first PEM private key of `path` (PKCS#8, PKCS#1 or SEC1).
pub(super) fn private_key(field: &str, path: &str) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let pem = read(field, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        invalid(
            field,
            format!("no PEM private key in {path} (PKCS#8, PKCS#1 or SEC1): {e}"),
        )
    })
}

/// The certificate chain of `cert_path` with the key of `key_path`, checked to belong together.
/// `section` is the config section (`tls`, `upstream.tls`) whose `cert_file` and `key_file` they are.
pub(super) fn key_pair(
    section: &str,
    cert_path: &str,
    key_path: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), ConfigError> {
    let certs = certificates(&format!("{section}.cert_file"), cert_path)?;
    let key_field = format!("{section}.key_file");
    let key = private_key(&key_field, key_path)?;
    certified(
        &key_field,
        key_path,
        cert_path,
        certs.clone(),
        key.clone_key(),
    )?;
    Ok((certs, key))
}

/// [`key_pair`] as rustls serves it.
pub(super) fn certified_key(
    section: &str,
    cert_path: &str,
    key_path: &str,
) -> Result<CertifiedKey, ConfigError> {
    let (certs, key) = key_pair(section, cert_path, key_path)?;
    certified(
        &format!("{section}.key_file"),
        key_path,
        cert_path,
        certs,
        key,
    )
}

fn certified(
    key_field: &str,
    key_path: &str,
    cert_path: &str,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<CertifiedKey, ConfigError> {
    let signing = super::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| {
            invalid(
                key_field,
                format!("unusable private key in {key_path}: {e}"),
            )
        })?;
    let certified = CertifiedKey::new(certs, signing);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok(certified)
        }
        Err(_) => Err(invalid(
            key_field,
            format!("the key in {key_path} does not match the certificate in {cert_path}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(content: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("gw-tls-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn a_missing_file_is_named_with_its_field_and_the_plain_reason() {
        let e = certificates("tls.cert_file", "/nonexistent/x.pem").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid config: tls.cert_file: cannot read /nonexistent/x.pem: No such file or directory"
        );
        let e = private_key("upstream.tls.key_file", "/nonexistent/k.pem").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "invalid config: upstream.tls.key_file: cannot read /nonexistent/k.pem"
            ),
            "{e}"
        );
    }

    #[test]
    fn a_file_without_pem_is_refused() {
        let path = temp("just text\n");
        let shown = path.display().to_string();
        let e = certificates("upstream.tls.ca_file", &shown).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "invalid config: upstream.tls.ca_file: no PEM certificate (BEGIN CERTIFICATE) in {shown}"
            )
        );
        let e = private_key("tls.key_file", &shown).unwrap_err().to_string();
        assert!(
            e.starts_with("invalid config: tls.key_file: no PEM private key in"),
            "{e}"
        );
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn os_error_numbers_are_left_out() {
        let e = std::io::Error::from_raw_os_error(13);
        assert_eq!(io_reason(&e), "Permission denied");
    }
}
