//! `bb-loadgen upstream`: the HTTPS origin both proxies forward to.
//!
//! It mints a throwaway CA and a leaf for `localhost` / `127.0.0.1` at start,
//! writes only the CA certificate (the proxies' `--upstream-ca`), and keeps
//! the keys in memory. GET answers a small body; POST streams the whole
//! request body, counting it without keeping it, and answers its length so
//! the load generator can check that every byte went through.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;

use crate::UpstreamArgs;

/// The GET response body.
pub(crate) const GET_BODY: &[u8] = b"hello from the bb-loadgen upstream\n";
/// A POST body larger than this is answered 413 (the bench sends 1 MiB).
const MAX_POST: u64 = 64 << 20;

/// Checks the flags before anything is minted or bound.
pub(crate) fn validate(args: &UpstreamArgs) -> anyhow::Result<()> {
    if !args.listen.ip().is_loopback() {
        bail!(
            "--listen {}: the bench upstream listens on loopback addresses only",
            args.listen
        );
    }
    if let Some(name) = &args.expect_bearer_env {
        std::env::var(name)
            .with_context(|| format!("--expect-bearer-env {name}: variable not set"))?;
    }
    Ok(())
}

/// Serves until SIGINT, SIGTERM or `--max-lifetime`.
pub(crate) async fn run(args: UpstreamArgs) -> anyhow::Result<ExitCode> {
    let tls = Arc::new(server_config(&args.cert_dir)?);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let expect: Option<Arc<str>> = match &args.expect_bearer_env {
        Some(name) => Some(format!("Bearer {}", std::env::var(name)?).into()),
        None => None,
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    // The harness waits for this line before starting a proxy.
    println!("listening {}", listener.local_addr()?);

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let lifetime = tokio::time::sleep(args.max_lifetime);
    tokio::pin!(lifetime);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off rather than spin.
                        eprintln!("upstream: accept: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                tokio::spawn(serve(acceptor.clone(), tcp, peer, expect.clone()));
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            () = &mut lifetime => {
                eprintln!("upstream: --max-lifetime reached, exiting");
                break;
            }
        }
    }
    // Dropping the runtime cancels the connection tasks; nothing here needs
    // a graceful drain.
    Ok(ExitCode::SUCCESS)
}

async fn serve(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    expect: Option<Arc<str>>,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match acceptor.accept(tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("upstream: TLS from {peer}: {e}");
            return;
        }
    };
    let service = service_fn(move |req| handle(req, expect.clone()));
    // A client closing its keep-alive connection mid-way is normal at the
    // end of a run; not worth a line.
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

async fn handle(
    req: Request<Incoming>,
    expect: Option<Arc<str>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(expect) = expect {
        let got = req.headers().get(header::AUTHORIZATION);
        if got.is_none_or(|v| v.as_bytes() != expect.as_bytes()) {
            return Ok(text(
                StatusCode::UNAUTHORIZED,
                "upstream: the proxy did not inject the expected Authorization header\n",
            ));
        }
    }
    Ok(match *req.method() {
        Method::GET => text(StatusCode::OK, GET_BODY),
        Method::POST => {
            let mut body = req.into_body();
            let mut len: u64 = 0;
            while let Some(frame) = body.frame().await {
                let frame = match frame {
                    Ok(f) => f,
                    Err(e) => {
                        return Ok(text(
                            StatusCode::BAD_REQUEST,
                            format!("upstream: reading body: {e}\n"),
                        ));
                    }
                };
                if let Some(data) = frame.data_ref() {
                    len += data.len() as u64;
                    if len > MAX_POST {
                        return Ok(text(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("upstream: body over {MAX_POST} bytes\n"),
                        ));
                    }
                }
            }
            text(StatusCode::OK, len.to_string())
        }
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "GET or POST\n"),
    })
}

/// A freshly minted test CA and a leaf for `localhost` / `127.0.0.1`.
struct Minted {
    ca_pem: String,
    leaf_pem: String,
    leaf_der: CertificateDer<'static>,
    key_pem: String,
    key_der: PrivateKeyDer<'static>,
}

fn mint() -> anyhow::Result<Minted> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };

    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "bb-loadgen upstream test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let mut leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let leaf_key = KeyPair::generate()?;
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer)?;
    Ok(Minted {
        ca_pem: ca_cert.pem(),
        leaf_pem: leaf_cert.pem(),
        leaf_der: leaf_cert.der().clone(),
        key_pem: leaf_key.serialize_pem(),
        key_der: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
    })
}

/// Writes `ca.crt` into `dir` (created if missing).
fn write_ca(dir: &Path, ca_pem: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_path = dir.join("ca.crt");
    std::fs::write(&ca_path, ca_pem).with_context(|| format!("writing {}", ca_path.display()))
}

/// `bb-loadgen cert DIR`: mints the CA and leaf and writes `ca.crt`,
/// `leaf.crt` and `leaf.key` (mode 0600), for another server (the harness's
/// nginx) to serve the same kind of certificate as `upstream`.
pub(crate) fn write_cert_files(dir: &Path) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;

    let m = mint()?;
    write_ca(dir, &m.ca_pem)?;
    let leaf = dir.join("leaf.crt");
    std::fs::write(&leaf, &m.leaf_pem).with_context(|| format!("writing {}", leaf.display()))?;
    let key = dir.join("leaf.key");
    let _ = std::fs::remove_file(&key);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)
        .and_then(|mut f| f.write_all(m.key_pem.as_bytes()))
        .with_context(|| format!("writing {}", key.display()))
}

/// Mints the CA and leaf, writes `ca.crt`, and builds the TLS config.
fn server_config(dir: &Path) -> anyhow::Result<rustls::ServerConfig> {
    let m = mint()?;
    write_ca(dir, &m.ca_pem)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(vec![m.leaf_der], m.key_der)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}
