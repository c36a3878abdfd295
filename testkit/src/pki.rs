//! A throwaway CA and one server leaf, written as PEM files.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// Where [`mint_test_pki`] wrote its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPki {
    /// `ca.pem`: the test CA certificate, to trust (for example as the
    /// proxy's `--upstream-ca` or a probe's `SSL_CERT_FILE`).
    pub ca_cert: PathBuf,
    /// `server.pem`: the leaf certificate for the requested names.
    pub server_cert: PathBuf,
    /// `server.key`: the leaf's PKCS#8 private key.
    pub server_key: PathBuf,
}

/// Mints a test CA and a server leaf for `names`, signed by that CA, into
/// `dir` (which must exist) as `ca.pem`, `server.pem` and `server.key`.
///
/// A name that parses as an IP address becomes an IP SAN, any other a DNS
/// SAN; the first name is also the leaf's common name. The key file keeps
/// the default mode: containers running as another user must read it, and
/// it protects nothing.
pub fn mint_test_pki(dir: &Path, names: &[&str]) -> io::Result<TestPki> {
    let Some(first) = names.first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "mint_test_pki: at least one server name is needed",
        ));
    };
    let generate = |error: rcgen::Error| io::Error::other(format!("rcgen: {error}"));

    let ca_key = KeyPair::generate().map_err(generate)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(generate)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bb-testkit test CA");
    let ca_cert = ca_params.self_signed(&ca_key).map_err(generate)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().map_err(generate)?;
    let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut leaf_params = CertificateParams::new(sans).map_err(|error| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("mint_test_pki: server names {names:?}: {error}"),
        )
    })?;
    leaf_params
        .distinguished_name
        .push(DnType::CommonName, *first);
    let leaf = leaf_params
        .signed_by(&leaf_key, &issuer)
        .map_err(generate)?;

    let pki = TestPki {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    write(&pki.ca_cert, ca_cert.pem().as_bytes())?;
    write(&pki.server_cert, leaf.pem().as_bytes())?;
    write(&pki.server_key, leaf_key.serialize_pem().as_bytes())?;
    Ok(pki)
}

fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    fs::write(path, contents)
        .map_err(|error| io::Error::new(error.kind(), format!("{}: {error}", path.display())))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;

    #[test]
    fn writes_three_parseable_files() {
        let dir = tempfile::tempdir().unwrap();
        let pki = mint_test_pki(dir.path(), &["localhost", "127.0.0.1"]).unwrap();
        assert_eq!(pki.ca_cert, dir.path().join("ca.pem"));
        let ca = CertificateDer::from_pem_file(&pki.ca_cert).unwrap();
        let leaf = CertificateDer::from_pem_file(&pki.server_cert).unwrap();
        assert_ne!(ca, leaf);
        crate::tls::server_config(&pki.server_cert, &pki.server_key).unwrap();
        crate::tls::client_config(&pki.ca_cert).unwrap();
    }

    #[test]
    fn refuses_no_names() {
        let dir = tempfile::tempdir().unwrap();
        let error = mint_test_pki(dir.path(), &[]).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
