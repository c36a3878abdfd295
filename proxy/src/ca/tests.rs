//! Tests for the bottle CA and leaf cache, with real keys, real files and
//! rustls' own verifier; nothing is mocked.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rcgen::{CertificateParams, DistinguishedName, DnType, IsCa, KeyPair};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

use super::{BottleCa, CERT_FILE, CaError, KEY_FILE, LeafCache};

const HOUR: Duration = Duration::from_hours(1);

/// A fresh directory under the system temp dir, removed on drop. (The
/// crate has no `tempfile` dev-dependency; this is all the tests need.)
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "bb-egress-ca-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|&name| name.to_owned()).collect()
}

fn init_dir(permitted: &[&str]) -> TempDir {
    let dir = TempDir::new();
    BottleCa::init(dir.path(), &strings(permitted)).expect("init");
    dir
}

fn cache(ca: BottleCa) -> LeafCache {
    LeafCache::new(Arc::new(ca), 16, HOUR)
}

/// Verifies `leaf` for `host` the way a rustls client trusting only
/// `ca_der` would, intermediates and all.
fn verify(
    ca_der: &CertificateDer<'static>,
    leaf: &CertifiedKey,
    host: &str,
) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca_der.clone())
        .expect("CA is a valid trust anchor");
    let verifier = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .expect("verifier");
    let name = ServerName::try_from(host.to_owned()).expect("host is a server name");
    verifier
        .verify_server_cert(&leaf.cert[0], &leaf.cert[1..], &name, &[], UnixTime::now())
        .map(|_| ())
}

fn is_name_constraint_violation(error: &rustls::Error) -> bool {
    format!("{error:?}").contains("NameConstraintViolation")
}

#[test]
fn init_writes_private_key_public_cert_and_private_dir() {
    let parent = TempDir::new();
    let dir = parent.path().join("state/ca");
    BottleCa::init(&dir, &[]).expect("init");

    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
    assert_eq!(mode(&dir.join(CERT_FILE)), 0o644);
    let key = fs::read_to_string(dir.join(KEY_FILE)).expect("read key");
    let cert = fs::read_to_string(dir.join(CERT_FILE)).expect("read cert");
    assert!(
        key.starts_with("-----BEGIN PRIVATE KEY-----\n"),
        "{key:.40}"
    );
    assert!(
        cert.starts_with("-----BEGIN CERTIFICATE-----\n"),
        "{cert:.40}"
    );
}

#[test]
fn second_init_refuses_and_leaves_files_alone() {
    let dir = init_dir(&[]);
    let key_before = fs::read(dir.path().join(KEY_FILE)).expect("read key");
    let cert_before = fs::read(dir.path().join(CERT_FILE)).expect("read cert");

    let error = BottleCa::init(dir.path(), &[]).expect_err("second init must refuse");
    assert!(
        matches!(&error, CaError::AlreadyExists { path } if path.ends_with(KEY_FILE)),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("ca.key already exists"), "{message}");
    assert!(message.contains("refusing to overwrite"), "{message}");
    assert_eq!(
        fs::read(dir.path().join(KEY_FILE)).expect("read key"),
        key_before
    );
    assert_eq!(
        fs::read(dir.path().join(CERT_FILE)).expect("read cert"),
        cert_before
    );
}

#[test]
fn init_refuses_a_stray_cert_without_creating_a_key() {
    let dir = TempDir::new();
    fs::write(dir.path().join(CERT_FILE), "stray").expect("write");
    let error = BottleCa::init(dir.path(), &[]).expect_err("must refuse");
    assert!(
        error.to_string().contains("ca.crt already exists"),
        "{error}"
    );
    assert!(!dir.path().join(KEY_FILE).exists());
}

#[test]
fn init_rejects_bad_permitted_names_before_writing_anything() {
    for bad in [
        "",
        "*.example.com",
        "exa mple.com",
        "example..com",
        "[example.com]",
    ] {
        let dir = TempDir::new();
        let error = BottleCa::init(dir.path(), &strings(&["ok.example", bad]))
            .expect_err("bad permitted name must be rejected");
        assert!(
            matches!(&error, CaError::InvalidPermittedName { name } if name == bad),
            "{bad:?}: {error:?}"
        );
        assert!(error.to_string().contains(&format!("{bad:?}")), "{error}");
        assert!(!dir.path().join(KEY_FILE).exists());
        assert!(!dir.path().join(CERT_FILE).exists());
    }
}

#[test]
fn load_round_trips_and_mints_leaves_the_written_cert_verifies() {
    let dir = init_dir(&[]);
    let ca = BottleCa::load(dir.path()).expect("load");
    let on_disk = fs::read_to_string(dir.path().join(CERT_FILE)).expect("read cert");
    assert_eq!(ca.certificate_pem(), on_disk);

    let written_der = CertificateDer::from_pem_slice(on_disk.as_bytes()).expect("PEM certificate");
    assert_eq!(ca.certificate_der(), &written_der);
    let leaves = cache(ca);
    let leaf = leaves.get("api.example.com").expect("mint");
    verify(&written_der, &leaf, "api.example.com").expect("leaf from a loaded CA verifies");
}

#[test]
fn load_names_a_missing_file() {
    let dir = init_dir(&[]);
    fs::remove_file(dir.path().join(CERT_FILE)).expect("rm");
    let error = BottleCa::load(dir.path()).expect_err("missing cert");
    assert!(matches!(error, CaError::Missing { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.ends_with("ca.crt does not exist; create the bottle CA first"),
        "{message}"
    );

    let empty = TempDir::new();
    let error = BottleCa::load(empty.path()).expect_err("missing key");
    assert!(
        error.to_string().contains("ca.key does not exist"),
        "{error}"
    );
}

#[test]
fn load_names_a_file_that_is_not_pem() {
    let dir = init_dir(&[]);
    fs::write(dir.path().join(CERT_FILE), "this is not a certificate\n").expect("write");
    let error = BottleCa::load(dir.path()).expect_err("garbage cert");
    assert!(matches!(error, CaError::NotPem { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("ca.crt is not a PEM certificate file"),
        "{message}"
    );
    assert!(message.contains("no CERTIFICATE block found"), "{message}");

    let dir = init_dir(&[]);
    fs::write(
        dir.path().join(KEY_FILE),
        "-----BEGIN PRIVATE KEY-----\nsecret!!\n",
    )
    .expect("write");
    let error = BottleCa::load(dir.path()).expect_err("garbage key");
    let message = error.to_string();
    assert!(
        message.contains("ca.key is not a PEM private key file"),
        "{message}"
    );
    assert!(
        !message.contains("secret"),
        "key file contents leaked: {message}"
    );
}

#[test]
fn load_rejects_a_key_of_the_wrong_kind() {
    let dir = init_dir(&[]);
    let ed25519 = KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("keygen");
    fs::write(dir.path().join(KEY_FILE), ed25519.serialize_pem()).expect("write");
    let error = BottleCa::load(dir.path()).expect_err("wrong key type");
    assert!(matches!(error, CaError::BadKey { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains("ca.key is not a PKCS#8 ECDSA P-256 private key"),
        "{error}"
    );
}

#[test]
fn load_names_a_key_that_does_not_match_the_cert() {
    let dir = init_dir(&[]);
    let other = init_dir(&[]);
    fs::copy(other.path().join(KEY_FILE), dir.path().join(KEY_FILE)).expect("copy");
    let error = BottleCa::load(dir.path()).expect_err("mismatch");
    assert!(matches!(error, CaError::KeyMismatch { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.contains("ca.key does not match the public key in"),
        "{message}"
    );
    assert!(message.ends_with("ca.crt"), "{message}");
}

#[test]
fn load_refuses_a_key_readable_by_others() {
    for loose in [0o644, 0o640, 0o604, 0o660] {
        let dir = init_dir(&[]);
        let key = dir.path().join(KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(loose)).expect("chmod");
        let error = BottleCa::load(dir.path()).expect_err("loose key mode");
        assert!(
            matches!(error, CaError::KeyTooOpen { mode, .. } if mode == loose),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&format!("ca.key has mode {loose:04o}, looser than 0600")),
            "{message}"
        );
    }
    // Stricter than 0600 is fine.
    let dir = init_dir(&[]);
    fs::set_permissions(dir.path().join(KEY_FILE), fs::Permissions::from_mode(0o400))
        .expect("chmod");
    BottleCa::load(dir.path()).expect("0400 key loads");
}

#[test]
fn load_refuses_a_cert_bundle() {
    let dir = init_dir(&[]);
    let other = init_dir(&[]);
    let mut bundle = fs::read_to_string(dir.path().join(CERT_FILE)).expect("read");
    bundle.push_str(&fs::read_to_string(other.path().join(CERT_FILE)).expect("read"));
    fs::write(dir.path().join(CERT_FILE), bundle).expect("write");
    let error = BottleCa::load(dir.path()).expect_err("two certs");
    assert!(
        error
            .to_string()
            .contains("found 2 certificates, expected exactly one"),
        "{error}"
    );
}

#[test]
fn load_refuses_a_foreign_cert_for_the_same_key() {
    // Same key, different subject: the key matches, but leaves named after
    // bot-bottle's CA subject would not chain. The probe catches it.
    let dir = init_dir(&[]);
    let key_pem = fs::read_to_string(dir.path().join(KEY_FILE)).expect("read key");
    let key = KeyPair::from_pem(&key_pem).expect("parse key");
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "somebody else's CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let foreign = params.self_signed(&key).expect("self-sign");
    fs::write(dir.path().join(CERT_FILE), foreign.pem()).expect("write");

    let error = BottleCa::load(dir.path()).expect_err("foreign cert");
    assert!(matches!(error, CaError::ProbeFailed { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("a probe leaf signed with"), "{message}");
    assert!(message.contains("UnknownIssuer"), "{message}");
}

#[test]
fn leaf_verifies_for_its_host_and_not_another() {
    let ca = BottleCa::generate(&[]).expect("ca");
    let ca_der = ca.certificate_der().clone();
    let leaves = cache(ca);
    let leaf = leaves.get("api.example.com").expect("mint");

    assert_eq!(leaf.cert.len(), 2, "chain is leaf then CA");
    assert_eq!(leaf.cert[1], ca_der);
    leaf.keys_match().expect("key belongs to the leaf");
    verify(&ca_der, &leaf, "api.example.com").expect("valid for its host");
    let error = verify(&ca_der, &leaf, "www.example.com").expect_err("wrong host");
    assert!(
        format!("{error:?}").contains("NotValidForName"),
        "{error:?}"
    );

    // A different bottle's CA does not vouch for this leaf.
    let stranger = BottleCa::generate(&[]).expect("ca");
    let error = verify(stranger.certificate_der(), &leaf, "api.example.com").expect_err("other CA");
    assert!(format!("{error:?}").contains("UnknownIssuer"), "{error:?}");
}

#[test]
fn ip_literal_hosts_get_ip_sans() {
    let ca = BottleCa::generate(&[]).expect("ca");
    let ca_der = ca.certificate_der().clone();
    let leaves = cache(ca);

    let v4 = leaves.get("192.0.2.7").expect("mint v4");
    verify(&ca_der, &v4, "192.0.2.7").expect("v4 leaf valid for its address");
    verify(&ca_der, &v4, "192.0.2.8").expect_err("v4 leaf not valid for another");

    let v6 = leaves.get("[2001:db8::1]").expect("mint v6");
    verify(&ca_der, &v6, "2001:db8::1").expect("v6 leaf valid for its address");
    // Bracketed and bare spellings are the same host.
    assert!(Arc::ptr_eq(&v6, &leaves.get("2001:db8::1").expect("hit")));
}

#[test]
fn invalid_hosts_are_refused_without_minting() {
    let leaves = cache(BottleCa::generate(&[]).expect("ca"));
    for bad in [
        "",
        "exa mple.com",
        "*.example.com",
        "a..b",
        "[::1",
        "ex/ample",
    ] {
        let error = leaves.get(bad).expect_err("invalid host");
        assert!(
            matches!(&error, CaError::InvalidHost { host } if host == bad),
            "{error:?}"
        );
    }
    assert_eq!(leaves.minted(), 0);
}

#[test]
fn cache_hit_returns_the_same_leaf_without_minting() {
    let leaves = cache(BottleCa::generate(&[]).expect("ca"));
    assert_eq!(leaves.minted(), 0);
    let first = leaves.get("api.example.com").expect("mint");
    assert_eq!(leaves.minted(), 1);
    let second = leaves.get("api.example.com").expect("hit");
    // Case and a trailing dot do not make a different host.
    let third = leaves.get("API.Example.com.").expect("hit");
    assert!(Arc::ptr_eq(&first, &second));
    assert!(Arc::ptr_eq(&first, &third));
    assert_eq!(leaves.minted(), 1);

    let other = leaves.get("other.example.com").expect("mint");
    assert!(!Arc::ptr_eq(&first, &other));
    assert_eq!(leaves.minted(), 2);
}

#[test]
fn capacity_evicts_the_least_recently_used_leaf() {
    let leaves = LeafCache::new(Arc::new(BottleCa::generate(&[]).expect("ca")), 2, HOUR);
    let a = leaves.get("a.example").expect("mint a");
    leaves.get("b.example").expect("mint b");
    // Touch a, so b is now the least recently used.
    assert!(Arc::ptr_eq(&a, &leaves.get("a.example").expect("hit a")));
    leaves.get("c.example").expect("mint c, evicting b");
    assert_eq!(leaves.minted(), 3);

    assert!(Arc::ptr_eq(
        &a,
        &leaves.get("a.example").expect("a survived")
    ));
    assert_eq!(leaves.minted(), 3);
    leaves.get("b.example").expect("b re-minted");
    assert_eq!(leaves.minted(), 4);
}

#[test]
fn a_leaf_past_half_its_life_is_reminted() {
    let lifetime = Duration::from_millis(400);
    let leaves = LeafCache::new(Arc::new(BottleCa::generate(&[]).expect("ca")), 16, lifetime);
    let first = leaves.get("api.example.com").expect("mint");
    assert!(Arc::ptr_eq(
        &first,
        &leaves.get("api.example.com").expect("still fresh")
    ));
    std::thread::sleep(lifetime / 2 + Duration::from_millis(10));
    let second = leaves.get("api.example.com").expect("re-mint");
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(leaves.minted(), 2);
}

#[test]
fn name_constraints_limit_what_the_ca_can_vouch_for() {
    let ca = BottleCa::generate(&strings(&["Example.com", "10.1.2.3"])).expect("ca");
    let ca_der = ca.certificate_der().clone();
    let leaves = cache(ca);

    for allowed in [
        "example.com",
        "api.example.com",
        "deep.api.example.com",
        "10.1.2.3",
    ] {
        let leaf = leaves.get(allowed).expect("mint");
        verify(&ca_der, &leaf, allowed).unwrap_or_else(|error| panic!("{allowed}: {error:?}"));
    }
    // A leaked key can still sign these, but no client trusting the CA
    // accepts them.
    for refused in [
        "evil.com",
        "badexample.com",
        "example.com.evil.com",
        "10.1.2.4",
        "2001:db8::1",
    ] {
        let leaf = leaves.get(refused).expect("mint");
        let error = verify(&ca_der, &leaf, refused).expect_err(refused);
        assert!(is_name_constraint_violation(&error), "{refused}: {error:?}");
    }
}

#[test]
fn dns_only_constraints_exclude_every_ip_address() {
    let ca = BottleCa::generate(&strings(&["example.com"])).expect("ca");
    let ca_der = ca.certificate_der().clone();
    let leaves = cache(ca);
    for ip in ["192.0.2.1", "127.0.0.1", "::1"] {
        let error = verify(&ca_der, &leaves.get(ip).expect("mint"), ip).expect_err(ip);
        assert!(is_name_constraint_violation(&error), "{ip}: {error:?}");
    }
}

#[test]
fn ip_only_constraints_exclude_every_dns_name() {
    let ca = BottleCa::generate(&strings(&["192.0.2.1"])).expect("ca");
    let ca_der = ca.certificate_der().clone();
    let leaves = cache(ca);
    verify(
        &ca_der,
        &leaves.get("192.0.2.1").expect("mint"),
        "192.0.2.1",
    )
    .expect("permitted IP");
    for host in ["example.com", "localhost"] {
        let error = verify(&ca_der, &leaves.get(host).expect("mint"), host).expect_err(host);
        assert!(is_name_constraint_violation(&error), "{host}: {error:?}");
    }
}

#[test]
fn constrained_ca_survives_a_round_trip_through_files() {
    let dir = init_dir(&["example.com"]);
    let ca = BottleCa::load(dir.path()).expect("load constrained CA");
    let ca_der = ca.certificate_der().clone();
    let leaves = cache(ca);
    verify(
        &ca_der,
        &leaves.get("api.example.com").expect("mint"),
        "api.example.com",
    )
    .expect("permitted host");
    let error = verify(&ca_der, &leaves.get("evil.com").expect("mint"), "evil.com")
        .expect_err("constraint kept across load");
    assert!(is_name_constraint_violation(&error), "{error:?}");
}

/// Serves leaves from the cache by SNI, as the proxy does.
#[derive(Debug)]
struct BySni(LeafCache);

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.get(hello.server_name()?).ok()
    }
}

#[test]
fn a_rustls_client_completes_a_handshake_against_a_minted_leaf() {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let ca = BottleCa::generate(&[]).expect("ca");
    let mut roots = RootCertStore::empty();
    roots.add(ca.certificate_der().clone()).expect("anchor");
    let resolver = Arc::new(BySni(cache(ca)));

    let server_config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
    let client_config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();

    let name = ServerName::try_from("api.example.com").expect("name");
    let mut client = ClientConnection::new(Arc::new(client_config), name).expect("client");
    let mut server = ServerConnection::new(Arc::new(server_config)).expect("server");
    let mut rounds = 0;
    while client.is_handshaking() || server.is_handshaking() {
        rounds += 1;
        assert!(rounds < 10, "handshake did not converge");
        let mut wire = Vec::new();
        client.write_tls(&mut wire).expect("client write");
        server.read_tls(&mut wire.as_slice()).expect("server read");
        server.process_new_packets().expect("server accepts client");
        wire.clear();
        server.write_tls(&mut wire).expect("server write");
        client.read_tls(&mut wire.as_slice()).expect("client read");
        client
            .process_new_packets()
            .expect("client accepts the minted leaf");
    }
    assert_eq!(resolver.0.minted(), 1);
}
