//! rustls configurations (ring provider) built from PEM files.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The one crypto provider both binaries use: ring, which needs no cmake or
/// NASM for the static build.
#[must_use]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration trusting only the certificates in `roots_pem`
/// (no system store), offering ALPN `http/1.1`.
pub fn client_config(roots_pem: &Path) -> io::Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(roots_pem)? {
        roots
            .add(cert)
            .map_err(|error| invalid(roots_pem, &error))?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A server configuration presenting the chain in `cert_pem` (leaf first)
/// with the key in `key_pem`, selecting ALPN `http/1.1` when offered.
pub fn server_config(cert_pem: &Path, key_pem: &Path) -> io::Result<ServerConfig> {
    let chain = read_certs(cert_pem)?;
    let key = PrivateKeyDer::from_pem_file(key_pem).map_err(|error| invalid(key_pem, &error))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|error| invalid(cert_pem, &error))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn read_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|error| invalid(path, &error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(path, &error))?;
    if certs.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: no PEM certificate in the file", path.display()),
        ));
    }
    Ok(certs)
}

fn invalid(path: &Path, error: &dyn std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {error}", path.display()),
    )
}
