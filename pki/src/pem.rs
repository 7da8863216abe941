//! Certificates and private keys from PEM files, with errors that name the
//! command-line flag the file came from, so the user knows which to fix.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Every certificate in the PEM file `path` (given as `flag`), in order; an
/// error if it holds none.
pub fn load_certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = read(path, flag)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{flag} {}: not valid PEM", path.display()))?;
    if certs.is_empty() {
        bail!(
            "{flag} {} holds no certificate (expected PEM: -----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(certs)
}

/// The first private key in the PEM file `path` (given as `flag`): PKCS#8,
/// PKCS#1 RSA or SEC1 EC.
pub fn load_key(path: &Path, flag: &str) -> Result<PrivateKeyDer<'static>> {
    let pem = read(path, flag)?;
    PrivateKeyDer::from_pem_slice(&pem).with_context(|| {
        format!(
            "{flag} {} holds no private key (expected PEM: PKCS#8 -----BEGIN PRIVATE KEY-----, PKCS#1 RSA or SEC1 EC)",
            path.display()
        )
    })
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("cannot read {flag} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn errors_name_the_flag_and_what_was_expected() {
        let missing = Path::new("/nonexistent/ca.pem");
        let e = format!("{:#}", load_certs(missing, "--tls-ca").unwrap_err());
        assert!(
            e.starts_with("cannot read --tls-ca /nonexistent/ca.pem"),
            "{e}"
        );

        let empty = file("not pem at all\n");
        let e = format!("{:#}", load_certs(empty.path(), "--tls-cert").unwrap_err());
        assert!(
            e.contains("--tls-cert") && e.contains("holds no certificate"),
            "{e}"
        );
        let e = format!("{:#}", load_key(empty.path(), "--tls-key").unwrap_err());
        assert!(
            e.contains("--tls-key") && e.contains("holds no private key"),
            "{e}"
        );
    }

    #[test]
    fn a_certificate_and_its_key_load_in_order() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![
            "pi.local".to_string(),
            crate::identity::camera_dns_name(7),
        ])
        .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pem = file(&format!("{}{}", cert.pem(), cert.pem()));
        let certs = load_certs(pem.path(), "--tls-cert").unwrap();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0].as_ref(), cert.der().as_ref());
        let key_file = file(&key.serialize_pem());
        let loaded = load_key(key_file.path(), "--tls-key").unwrap();
        assert_eq!(loaded.secret_der(), key.serialize_der().as_slice());
        let ids = crate::identity::certificate_camera_ids(&certs[0]);
        assert_eq!(ids.iter().collect::<Vec<_>>(), [7]);
    }
}
