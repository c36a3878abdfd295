//! `bb-hudsucker-peer`: the hudsucker row of the side-by-side harness
//! (`benches/compare-mitmproxy.sh`). Not part of bot-bottle.
//!
//! A TLS-bumping HTTP proxy built on the `hudsucker` crate that does what a
//! DLP-free egress proxy must: it allows `CONNECT` and requests only to one
//! `host:port`, strips the client's `Authorization` header and injects
//! `Bearer <token>` read from an environment variable. No body is scanned,
//! so it is the floor a Rust MITM proxy reaches without DLP.
//!
//! At start it mints a throwaway CA (kept in memory), writes its
//! certificate to `--ca-out`, trusts `--upstream-ca` for upstream TLS, and
//! listens on the loopback address `--listen` until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use hudsucker::certificate_authority::RcgenAuthority;
use hudsucker::hyper::{Method, Request, Response, StatusCode, header};
use hudsucker::{Body, HttpContext, HttpHandler, Proxy, RequestOrResponse};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

#[derive(Parser, Debug)]
#[command(
    name = "bb-hudsucker-peer",
    about = "hudsucker-based bench peer: allowlist + header injection, no DLP"
)]
struct Cli {
    /// Loopback address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Where to write the PEM certificate of the CA that signs bumped leaves.
    #[arg(long)]
    ca_out: PathBuf,
    /// PEM file of the CA the upstream's certificate chains to.
    #[arg(long)]
    upstream_ca: PathBuf,
    /// The one `host:port` allowed (CONNECT target and request authority).
    #[arg(long)]
    allow: String,
    /// Environment variable holding the token to inject as `Bearer <token>`.
    #[arg(long)]
    token_env: String,
}

/// The policy: allowlist and header injection.
#[derive(Clone)]
struct Policy {
    allow: Arc<str>,
    /// `Bearer <token>`.
    authorization: header::HeaderValue,
}

fn forbidden(why: &'static str) -> Response<Body> {
    let mut res = Response::new(Body::from(why));
    *res.status_mut() = StatusCode::FORBIDDEN;
    res
}

impl Policy {
    /// `host:port` of a request: the CONNECT target, or the absolute URI
    /// hudsucker rebuilds for requests inside a bumped tunnel.
    fn allowed(&self, req: &Request<Body>) -> bool {
        let Some(authority) = req.uri().authority() else {
            return false;
        };
        let port = authority
            .port_u16()
            .or_else(|| (req.uri().scheme_str() == Some("https")).then_some(443));
        match port {
            Some(port) => format!("{}:{port}", authority.host()) == *self.allow,
            None => false,
        }
    }
}

impl HttpHandler for Policy {
    async fn handle_request(
        &mut self,
        _ctx: &HttpContext,
        mut req: Request<Body>,
    ) -> RequestOrResponse {
        if !self.allowed(&req) {
            return forbidden("bb-hudsucker-peer: host not allowed\n").into();
        }
        if req.method() != Method::CONNECT {
            req.headers_mut()
                .insert(header::AUTHORIZATION, self.authorization.clone());
        }
        req.into()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bb-hudsucker-peer: error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    if !cli.listen.ip().is_loopback() {
        return Err(format!("--listen {}: loopback addresses only", cli.listen).into());
    }
    let token = std::env::var(&cli.token_env)
        .map_err(|_| format!("--token-env {}: variable not set", cli.token_env))?;
    let mut authorization = header::HeaderValue::try_from(format!("Bearer {token}"))
        .map_err(|_| format!("--token-env {}: not a valid header value", cli.token_env))?;
    authorization.set_sensitive(true);
    let policy = Policy {
        allow: cli.allow.clone().into(),
        authorization,
    };

    // The bumping CA, minted now; only its certificate leaves the process.
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "bb-hudsucker-peer bench CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    std::fs::write(&cli.ca_out, cert.pem())?;
    let ca = RcgenAuthority::new(
        Issuer::new(params, key),
        1_000,
        rustls::crypto::ring::default_provider(),
    );

    // Upstream TLS trusting only the bench upstream's CA.
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&cli.upstream_ca)? {
        roots.add(c?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cli.listen).await?;
        let proxy = Proxy::builder()
            .with_listener(listener)
            .with_ca(ca)
            .with_http_connector(connector)
            .with_http_handler(policy)
            .with_graceful_shutdown(async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .expect("SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            })
            .build()?;
        proxy.start().await?;
        Ok::<(), Box<dyn std::error::Error>>(())
    })
}
