//! The per-bottle certificate authority and the leaf certificates the
//! TLS-bumping proxy presents to the agent.
//!
//! Every bottle gets its own CA ([`BottleCa`]); the agent's container trusts
//! it, and the proxy answers each bumped CONNECT with a leaf for the
//! requested host, minted on demand and cached ([`LeafCache`]). The proxy
//! only asks for a leaf after the policy allowed the host, so a refused
//! host never causes a certificate to exist.
//!
//! # Design decisions
//!
//! **CA.** ECDSA P-256 (small, fast to sign with, accepted by every TLS
//! stack the agents use), subject CN `bot-bottle bottle CA <id>` where
//! `<id>` is 16 hex digits of the key identifier (distinct bottles must not
//! share an issuer name, and the name must be rebuildable from the key),
//! `basicConstraints` CA with `pathLen` 0 (it signs leaves, never another
//! CA), key usage `keyCertSign` + `cRLSign`, random serial. Validity runs
//! from one hour ago (the bottle's clock may lag the host's) to one year
//! from now: bottles are throw-away, so a long-lived CA only widens the
//! window in which a leaked key is useful.
//!
//! **Name constraints.** When [`BottleCa::init`] is given a non-empty
//! `permitted` list, the CA carries a critical X.509 name-constraints
//! extension (RFC 5280 §4.2.1.10) so that even a leaked CA key cannot mint
//! a leaf the agent's TLS stack would accept for any other domain:
//!
//! - each DNS name `d` permits `d` and every name below it (`api.d`), not
//!   `evild` — RFC 5280 adds labels to the left only;
//! - each IP literal permits exactly that address (`/32` or `/128`);
//! - a name form with no entry is excluded entirely (DNS: the empty
//!   constraint, which matches every name; IP: `0.0.0.0/0` and `::/0`).
//!   Without this, RFC 5280 leaves a form with no permitted entry
//!   *unconstrained*, and a DNS-only list would still let the key mint for
//!   any IP address.
//!
//! The constraints are optional because the allowlist is not fixed for a
//! bottle's life: an approved proposal can add a route, and a constrained
//! CA would then have to be re-minted and re-trusted inside the running
//! container, which the agent's already-open TLS clients would not notice.
//! Operators who know the final host list up front pass it; the default
//! is an unconstrained CA whose key never leaves the proxy's state
//! directory (mode 0600). `rustls`/`webpki` enforce these constraints on
//! trust anchors (the tests in `ca/tests.rs` check it with a
//! `WebPkiServerVerifier`), as do OpenSSL and Go.
//!
//! **Files.** `ca.key` (PKCS#8 PEM) is created with mode 0600 by the
//! `open(2)` call itself, so it is never world-readable, not even between
//! create and `chmod`; `ca.crt` is 0644 because it is copied into the
//! bottle's trust store. Neither is ever overwritten. [`BottleCa::load`]
//! refuses a key file readable by group or others and proves the pair
//! usable by minting a probe leaf and verifying it against the loaded
//! certificate: without an X.509 parser (rcgen's `x509-parser` feature is
//! off) the issuer name written into leaves is rebuilt from the key, and
//! the probe catches a `ca.crt` that was not made by [`BottleCa::init`].
//!
//! **Leaves.** ECDSA P-256, one fresh key per leaf, random serial, valid
//! from one hour ago to `now + lifetime`, `basicConstraints` CA:FALSE,
//! key usage `digitalSignature`, EKU `serverAuth`, a single SAN (DNS name or
//! IP address) and an **empty subject** (so the SAN is critical, as RFC 5280
//! requires). The subject is left empty on purpose: OpenSSL checks a CN
//! against DNS name constraints when a leaf has no DNS SAN, so an IP leaf
//! with `CN=10.0.0.1` would trip the excluded-DNS constraint above. The
//! chain handed to rustls is leaf then CA.
//!
//! **Cache.** At most `capacity` leaves, least recently used evicted first;
//! a leaf is reused until half its lifetime is left, so a client never sees
//! one about to expire. Minting (a P-256 key generation and two signatures,
//! well under a millisecond with ring) happens outside the lock, so a slow
//! mint never stalls lookups for other hosts; two simultaneous misses for
//! one host may both mint, and the first to finish is the one cached.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroUsize;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, PKCS_ECDSA_P256_SHA256, PublicKeyData as _, SanType, SerialNumber,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, DnsName, PrivateKeyDer, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, client::verify_server_cert_signed_by_trust_anchor};

/// The CA private key's file name inside the CA directory.
pub const KEY_FILE: &str = "ca.key";
/// The CA certificate's file name inside the CA directory.
pub const CERT_FILE: &str = "ca.crt";

/// The CA subject's common name, before the key-derived suffix (see
/// [`ca_template`]).
const CA_COMMON_NAME: &str = "bot-bottle bottle CA";
/// How long a new CA is valid.
const CA_VALIDITY: Duration = Duration::from_hours(365 * 24);
/// How far in the past certificates start, to tolerate clock skew between
/// the host and the bottle.
const BACKDATE: Duration = Duration::from_hours(1);
/// The longest leaf lifetime [`LeafCache::new`] accepts. Apple platforms
/// refuse TLS leaves valid for longer than 825 days even from private CAs;
/// 397 days is the public-CA limit and far beyond any bottle's life.
pub const MAX_LEAF_LIFETIME: Duration = Duration::from_hours(397 * 24);
/// CA files are a few hundred bytes; a much larger file is not ours.
const MAX_FILE_LEN: u64 = 64 * 1024;
/// Random serial length: 128 bits, comfortably above the 64 bits of
/// CSPRNG output CA/Browser Forum rules ask for.
const SERIAL_LEN: usize = 16;

/// What went wrong creating, loading or using a bottle CA. Messages name the
/// file, host or name at fault and never include key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// The CA directory did not exist and could not be created.
    #[error("cannot create CA directory {}: {source}", dir.display())]
    CreateDir {
        /// The directory.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// [`BottleCa::init`] found a CA file already in place.
    #[error(
        "{} already exists; refusing to overwrite a bottle CA (remove the CA directory to start over)",
        path.display()
    )]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// Writing a CA file failed (the partial files were removed).
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A CA file does not exist.
    #[error("{} does not exist; create the bottle CA first", path.display())]
    Missing {
        /// The missing file.
        path: PathBuf,
    },
    /// A CA file exists but could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The unreadable file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A CA file is far larger than any CA file this module writes.
    #[error("{} is larger than {limit} bytes; it is not a bottle CA file", path.display())]
    TooLarge {
        /// The oversized file.
        path: PathBuf,
        /// The size limit in bytes.
        limit: u64,
    },
    /// The CA key file is readable or writable by group or others.
    #[error(
        "{} has mode {mode:04o}, looser than 0600; the CA key must be private to its owner (chmod 600)",
        path.display()
    )]
    KeyTooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A CA file holds no usable PEM block of the expected kind.
    #[error("{} is not a PEM {expected} file: {reason}", path.display())]
    NotPem {
        /// The file.
        path: PathBuf,
        /// What the file should hold (`private key`, `certificate`).
        expected: &'static str,
        /// What the PEM parser found (never key material).
        reason: String,
    },
    /// The key file holds a key this CA cannot sign with.
    #[error("{} is not a PKCS#8 ECDSA P-256 private key: {reason}", path.display())]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// Why the key was rejected.
        reason: String,
    },
    /// The certificate file holds something other than one valid X.509
    /// certificate.
    #[error("{} does not hold one valid certificate: {reason}", path.display())]
    BadCertificate {
        /// The certificate file.
        path: PathBuf,
        /// Why the certificate was rejected.
        reason: String,
    },
    /// The key is not the one the certificate was issued for.
    #[error("{} does not match the public key in {}", key.display(), cert.display())]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// A probe leaf signed with the key does not chain to the certificate:
    /// the pair was not made by [`BottleCa::init`].
    #[error(
        "a probe leaf signed with {} does not verify under {}: {reason}; was this CA made by bot-bottle?",
        key.display(),
        cert.display()
    )]
    ProbeFailed {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
        /// The verifier's complaint.
        reason: String,
    },
    /// An entry of [`BottleCa::init`]'s `permitted` list is neither a DNS
    /// name nor an IP address.
    #[error("permitted name {name:?} is neither a DNS name nor an IP address")]
    InvalidPermittedName {
        /// The offending entry.
        name: String,
    },
    /// [`LeafCache::get`] was asked for a host that is neither a DNS name
    /// nor an IP address.
    #[error("cannot mint a certificate for host {host:?}: not a DNS name or IP address")]
    InvalidHost {
        /// The offending host.
        host: String,
    },
    /// rcgen could not generate a key or certificate.
    #[error("cannot generate the certificate for {subject}: {source}")]
    Generate {
        /// The host, or `the bottle CA`.
        subject: String,
        /// The underlying error.
        #[source]
        source: rcgen::Error,
    },
    /// rustls rejected a freshly minted key, or the random source failed.
    #[error("cannot prepare the certificate for {subject}: {source}")]
    Tls {
        /// The host, or `the bottle CA`.
        subject: String,
        /// The underlying error.
        #[source]
        source: rustls::Error,
    },
}

/// A bottle's certificate authority: its signing key and self-signed
/// certificate. Shared read-only (behind an [`Arc`]) by every connection.
pub struct BottleCa {
    /// The signing key plus the CA fields rcgen copies into every leaf
    /// (issuer name, key identifier method).
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
    common_name: String,
    provider: Arc<CryptoProvider>,
}

impl fmt::Debug for BottleCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key never appears, not even rcgen's elided form.
        f.debug_struct("BottleCa")
            .field("common_name", &self.common_name)
            .field("cert_der_len", &self.cert_der.len())
            .finish_non_exhaustive()
    }
}

impl BottleCa {
    /// Creates a new CA and writes `DIR/ca.key` (mode 0600, created with
    /// that mode) and `DIR/ca.crt` (mode 0644). Creates `DIR` with mode 0700
    /// if it is missing. Refuses to overwrite either file.
    ///
    /// When `permitted` is non-empty the CA is name-constrained to exactly
    /// those DNS names (and their subdomains) and IP addresses; see the
    /// module docs for why this is optional.
    pub fn init(dir: &Path, permitted: &[String]) -> Result<(), CaError> {
        // Validate before touching the file system, so a typo in the list
        // leaves nothing behind.
        let ca = Self::generate(permitted)?;
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| CaError::CreateDir {
                dir: dir.to_path_buf(),
                source,
            })?;
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        // `create_new` below is what makes refusing atomic; this check only
        // avoids creating the key when the certificate is the file in the way.
        for path in [&key_path, &cert_path] {
            if fs::symlink_metadata(path).is_ok() {
                return Err(CaError::AlreadyExists { path: path.clone() });
            }
        }
        let key_file = create_new(&key_path, 0o600)?;
        let cert_file = match create_new(&cert_path, 0o644) {
            Ok(file) => file,
            Err(error) => {
                remove_quietly(&key_path);
                return Err(error);
            }
        };
        let written = write_synced(
            key_file,
            &key_path,
            ca.issuer.key().serialize_pem().as_bytes(),
        )
        .and_then(|()| {
            // The umask may have narrowed 0644; the certificate is meant
            // to be copied into the bottle, so set it exactly.
            cert_file
                .set_permissions(Permissions::from_mode(0o644))
                .map_err(|source| CaError::Write {
                    path: cert_path.clone(),
                    source,
                })?;
            write_synced(cert_file, &cert_path, ca.cert_pem.as_bytes())
        });
        if let Err(error) = written {
            remove_quietly(&key_path);
            remove_quietly(&cert_path);
            return Err(error);
        }
        tracing::info!(
            dir = %dir.display(),
            constrained = !permitted.is_empty(),
            "created bottle CA"
        );
        Ok(())
    }

    /// Creates a new CA in memory only: what [`BottleCa::init`] writes,
    /// for tests and for callers that hand the certificate out themselves.
    pub fn generate(permitted: &[String]) -> Result<Self, CaError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let subject = || String::from("the bottle CA");
        let constraints = name_constraints(permitted)?;
        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|source| CaError::Generate {
                subject: subject(),
                source,
            })?;
        let (mut params, common_name) = ca_template(&key);
        params.name_constraints = constraints;
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + CA_VALIDITY).into();
        params.serial_number = Some(random_serial(&provider, &subject)?);
        let cert = params
            .self_signed(&key)
            .map_err(|source| CaError::Generate {
                subject: subject(),
                source,
            })?;
        let cert_der = cert.der().clone();
        Ok(Self {
            issuer: Issuer::new(params, key),
            cert_pem: encode_cert_pem(&cert_der),
            cert_der,
            common_name,
            provider,
        })
    }

    /// Loads `DIR/ca.key` and `DIR/ca.crt`, checking that the key file is
    /// private (mode 0600 or stricter), both files are PEM, the key is the
    /// certificate's, and a leaf signed with the key verifies under the
    /// certificate.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        let provider = Arc::new(rustls::crypto::ring::default_provider());

        let (key_bytes, key_mode) = read_bounded(&key_path)?;
        if key_mode & 0o077 != 0 {
            return Err(CaError::KeyTooOpen {
                path: key_path,
                mode: key_mode & 0o7777,
            });
        }
        let key_der =
            PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|error| CaError::NotPem {
                path: key_path.clone(),
                expected: "private key",
                reason: describe_pem_error(&error),
            })?;
        let key = KeyPair::from_der_and_sign_algo(&key_der, &PKCS_ECDSA_P256_SHA256).map_err(
            |error| CaError::BadKey {
                path: key_path.clone(),
                reason: error.to_string(),
            },
        )?;

        let (cert_bytes, _) = read_bounded(&cert_path)?;
        let mut certs = CertificateDer::pem_slice_iter(&cert_bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| CaError::NotPem {
                path: cert_path.clone(),
                expected: "certificate",
                reason: error.to_string(),
            })?;
        let cert_der = match certs.len() {
            1 => certs.remove(0),
            0 => {
                return Err(CaError::NotPem {
                    path: cert_path,
                    expected: "certificate",
                    reason: String::from("no CERTIFICATE block found"),
                });
            }
            n => {
                return Err(CaError::BadCertificate {
                    path: cert_path,
                    reason: format!("found {n} certificates, expected exactly one"),
                });
            }
        };
        let parsed =
            ParsedCertificate::try_from(&cert_der).map_err(|error| CaError::BadCertificate {
                path: cert_path.clone(),
                reason: error.to_string(),
            })?;
        if parsed.subject_public_key_info().as_ref() != key.subject_public_key_info().as_slice() {
            return Err(CaError::KeyMismatch {
                key: key_path,
                cert: cert_path,
            });
        }

        let (template, common_name) = ca_template(&key);
        let ca = Self {
            issuer: Issuer::new(template, key),
            cert_pem: encode_cert_pem(&cert_der),
            cert_der,
            common_name,
            provider,
        };
        ca.probe().map_err(|reason| CaError::ProbeFailed {
            key: key_path,
            cert: cert_path,
            reason,
        })?;
        tracing::debug!(dir = %dir.display(), "loaded bottle CA");
        Ok(ca)
    }

    /// The CA certificate in PEM form, as written to `ca.crt`: what the
    /// bottle's trust store needs.
    #[must_use]
    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER form.
    #[must_use]
    pub fn certificate_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// Signs a leaf for `san` (none for the load probe) valid for
    /// `lifetime`, returning its DER and fresh key pair.
    fn sign_leaf(
        &self,
        san: Option<SanType>,
        lifetime: Duration,
        subject: &dyn Fn() -> String,
    ) -> Result<(CertificateDer<'static>, KeyPair), CaError> {
        let generate = |source| CaError::Generate {
            subject: subject(),
            source,
        };
        let mut params = CertificateParams::default();
        // Empty subject on purpose; see "Leaves" in the module docs.
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = san.into_iter().collect();
        let now = SystemTime::now();
        params.not_before = (now - BACKDATE).into();
        params.not_after = (now + lifetime).into();
        params.serial_number = Some(random_serial(&self.provider, subject)?);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(generate)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(generate)?;
        Ok((cert.der().clone(), key))
    }

    /// Mints a name-less leaf and verifies its chain against this CA's
    /// certificate as a trust anchor. Name-less so that name constraints
    /// (unknown here: the certificate is not parsed) cannot reject it.
    /// Trust anchors carry no validity period in webpki, so an expired CA
    /// passes this check; bottles outliving their one-year CA are not a
    /// case worth an X.509 parser.
    fn probe(&self) -> Result<(), String> {
        let subject = || String::from("the load probe");
        let (leaf_der, _) = self
            .sign_leaf(None, BACKDATE, &subject)
            .map_err(|error| error.to_string())?;
        let mut roots = RootCertStore::empty();
        roots
            .add(self.cert_der.clone())
            .map_err(|error| error.to_string())?;
        let leaf = ParsedCertificate::try_from(&leaf_der).map_err(|error| error.to_string())?;
        verify_server_cert_signed_by_trust_anchor(
            &leaf,
            &roots,
            &[],
            UnixTime::now(),
            self.provider.signature_verification_algorithms.all,
        )
        .map_err(|error| error.to_string())
    }
}

/// Mints, caches and hands out leaf certificates signed by one
/// [`BottleCa`]. Safe to share between connections and threads.
pub struct LeafCache {
    ca: Arc<BottleCa>,
    capacity: usize,
    lifetime: Duration,
    /// Reuse a leaf until this much of its lifetime has passed.
    reuse_for: Duration,
    /// Least recently used first out (the `lru` crate).
    entries: Mutex<lru::LruCache<String, Entry>>,
    minted: AtomicU64,
}

struct Entry {
    leaf: Arc<CertifiedKey>,
    refresh_at: Instant,
}

impl fmt::Debug for LeafCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeafCache")
            .field("capacity", &self.capacity)
            .field("lifetime", &self.lifetime)
            .field("minted", &self.minted())
            .finish_non_exhaustive()
    }
}

impl LeafCache {
    /// A cache holding at most `capacity` leaves (at least one), each valid
    /// for `lifetime` (at most [`MAX_LEAF_LIFETIME`]) and reused until half
    /// of that is left.
    #[must_use]
    pub fn new(ca: Arc<BottleCa>, capacity: usize, lifetime: Duration) -> Self {
        let lifetime = lifetime.min(MAX_LEAF_LIFETIME);
        let capacity = NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN);
        Self {
            ca,
            capacity: capacity.get(),
            lifetime,
            reuse_for: lifetime.saturating_sub(lifetime / 2),
            entries: Mutex::new(lru::LruCache::new(capacity)),
            minted: AtomicU64::new(0),
        }
    }

    /// A leaf for `host` (a DNS name, or an IP literal, optionally in
    /// brackets): ECDSA P-256, SAN = host, signed by the CA, with the chain
    /// leaf then CA. Mints on a miss or when the cached leaf is past half its
    /// life. Only call this for hosts the policy allows.
    ///
    /// Blocks for at most one mint (well under a millisecond); it takes no
    /// lock while minting, so it is fine to call from an async task.
    pub fn get(&self, host: &str) -> Result<Arc<CertifiedKey>, CaError> {
        let (name, san) = parse_host(host).ok_or_else(|| CaError::InvalidHost {
            host: host.to_owned(),
        })?;
        if let Some(leaf) = self.lookup(&name, Instant::now()) {
            return Ok(leaf);
        }
        let leaf = Arc::new(self.mint(&name, san)?);
        let refresh_at = Instant::now() + self.reuse_for;

        let mut entries = self.lock();
        let now = Instant::now();
        let leaf = match entries.get(&name) {
            // Another caller minted this host while we did; keep theirs so
            // every connection for a host shares one leaf.
            Some(entry) if now < entry.refresh_at => Arc::clone(&entry.leaf),
            _ => {
                // Evicts the least recently used entry when full.
                entries.put(
                    name,
                    Entry {
                        leaf: Arc::clone(&leaf),
                        refresh_at,
                    },
                );
                leaf
            }
        };
        Ok(leaf)
    }

    /// How many leaves this cache has minted so far.
    #[must_use]
    pub fn minted(&self) -> u64 {
        self.minted.load(Ordering::Relaxed)
    }

    /// The cached leaf for `name` if it is still fresh at `now`.
    fn lookup(&self, name: &str, now: Instant) -> Option<Arc<CertifiedKey>> {
        let mut entries = self.lock();
        let entry = entries.get(name)?;
        if now >= entry.refresh_at {
            return None;
        }
        Some(Arc::clone(&entry.leaf))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<String, Entry>> {
        // Every critical section leaves the map consistent before it could
        // panic, so a poisoned lock still guards a usable cache.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn mint(&self, name: &str, san: SanType) -> Result<CertifiedKey, CaError> {
        let subject = || name.to_owned();
        let (leaf_der, key) = self.ca.sign_leaf(Some(san), self.lifetime, &subject)?;
        let signing_key = self
            .ca
            .provider
            .key_provider
            .load_private_key(PrivateKeyDer::from(key))
            .map_err(|source| CaError::Tls {
                subject: subject(),
                source,
            })?;
        self.minted.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(host = name, "minted leaf certificate");
        Ok(CertifiedKey::new(
            vec![leaf_der, self.ca.cert_der.clone()],
            signing_key,
        ))
    }
}

/// The fields a loaded CA must share with the one [`BottleCa::init`] wrote
/// for leaves to chain: subject, key usages, key identifier method (the
/// default, SHA-256 of the public key). Returns the common name as well.
///
/// The common name ends in the first 8 bytes of the key identifier, in hex:
/// path builders pick issuers by subject name, so two bottles' CAs must not
/// share one, and deriving it from the key lets [`BottleCa::load`] rebuild
/// it without parsing the certificate.
fn ca_template(key: &KeyPair) -> (CertificateParams, String) {
    let mut params = CertificateParams::default();
    let id = params.key_identifier(key);
    let common_name = id
        .iter()
        .take(8)
        .fold(format!("{CA_COMMON_NAME} "), |mut name, byte| {
            name.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
            name.push(char::from(HEX_DIGITS[usize::from(byte & 0xf)]));
            name
        });
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name.as_str());
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params, common_name)
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Builds the name-constraints extension for `permitted` (module docs,
/// "Name constraints"); `None` when the list is empty.
fn name_constraints(permitted: &[String]) -> Result<Option<NameConstraints>, CaError> {
    if permitted.is_empty() {
        return Ok(None);
    }
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    for entry in permitted {
        match parse_host(entry) {
            Some((_, SanType::IpAddress(ip))) => {
                let prefix = if ip.is_ipv4() { 32 } else { 128 };
                let subtree = GeneralSubtree::IpAddress(CidrSubnet::from_addr_prefix(ip, prefix));
                if !ips.contains(&subtree) {
                    ips.push(subtree);
                }
            }
            Some((name, _)) => {
                let subtree = GeneralSubtree::DnsName(name);
                if !dns.contains(&subtree) {
                    dns.push(subtree);
                }
            }
            None => {
                return Err(CaError::InvalidPermittedName {
                    name: entry.clone(),
                });
            }
        }
    }
    let mut excluded = Vec::new();
    if dns.is_empty() {
        // The empty DNS constraint matches every name (RFC 5280 §4.2.1.10).
        excluded.push(GeneralSubtree::DnsName(String::new()));
    }
    if ips.is_empty() {
        excluded.push(GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])));
        excluded.push(GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])));
    }
    dns.append(&mut ips);
    Ok(Some(NameConstraints {
        permitted_subtrees: dns,
        excluded_subtrees: excluded,
    }))
}

/// Normalises a host for a SAN and the cache key: an IP literal (brackets
/// allowed, as in URLs) or a DNS name, lower-cased, without a trailing dot.
/// `None` when it is neither; wildcards are refused.
fn parse_host(host: &str) -> Option<(String, SanType)> {
    if let Some(inner) = host.strip_prefix('[') {
        // Brackets are only ever IPv6 syntax.
        let ip = inner.strip_suffix(']')?.parse::<Ipv6Addr>().ok()?;
        return Some((ip.to_string(), SanType::IpAddress(IpAddr::V6(ip))));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Some((ip.to_string(), SanType::IpAddress(ip)));
    }
    // `DnsName` validates the syntax and drops one trailing dot.
    let name = DnsName::try_from(host).ok()?.as_ref().to_ascii_lowercase();
    let ia5 = name.clone().try_into().ok()?;
    Some((name, SanType::DnsName(ia5)))
}

/// A positive serial number from the provider's CSPRNG.
fn random_serial(
    provider: &CryptoProvider,
    subject: &dyn Fn() -> String,
) -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; SERIAL_LEN];
    provider
        .secure_random
        .fill(&mut bytes)
        .map_err(|error| CaError::Tls {
            subject: subject(),
            source: error.into(),
        })?;
    // Clear the sign bit (serials must be positive) and set the next one so
    // the encoding never shrinks below 16 bytes nor becomes zero.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The PEM form `ca.crt` holds: the standard 64-column base64 body.
fn encode_cert_pem(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(body.len() + body.len() / 64 + 64);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    // Base64 output is ASCII, so 64-byte chunks are valid UTF-8.
    for line in body.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Describes a PEM error without echoing file contents: the key file's
/// lines are secret.
fn describe_pem_error(error: &pem::Error) -> String {
    match error {
        pem::Error::NoItemsFound => "no PRIVATE KEY block found".to_owned(),
        pem::Error::MissingSectionEnd { .. } => "a PEM block has no END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "malformed BEGIN line".to_owned(),
        pem::Error::Base64Decode(_) => "the PEM body is not valid base64".to_owned(),
        pem::Error::Io(error) => error.to_string(),
        _ => "malformed PEM".to_owned(),
    }
}

/// Reads a whole CA file, at most [`MAX_FILE_LEN`] bytes, returning its
/// contents and the permission bits of the file actually opened (checked
/// on the open handle, so a swap between check and read cannot fool it).
fn read_bounded(path: &Path) -> Result<(Vec<u8>, u32), CaError> {
    let read_error = |source: io::Error| {
        if source.kind() == io::ErrorKind::NotFound {
            CaError::Missing {
                path: path.to_path_buf(),
            }
        } else {
            CaError::Read {
                path: path.to_path_buf(),
                source,
            }
        }
    };
    let file = File::open(path).map_err(read_error)?;
    let mode = file.metadata().map_err(read_error)?.permissions().mode();
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(CaError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_LEN,
        });
    }
    Ok((bytes, mode))
}

/// Creates `path` exclusively with `mode` set by `open(2)` itself.
fn create_new(path: &Path, mode: u32) -> Result<File, CaError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                CaError::AlreadyExists {
                    path: path.to_path_buf(),
                }
            } else {
                CaError::Write {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })
}

fn write_synced(mut file: File, path: &Path, contents: &[u8]) -> Result<(), CaError> {
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|source| CaError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// Cleanup after a failed `init`; the original error is what matters.
fn remove_quietly(path: &Path) {
    if let Err(error) = fs::remove_file(path) {
        tracing::warn!(path = %path.display(), %error, "cannot remove partial CA file");
    }
}

#[cfg(test)]
mod tests;
