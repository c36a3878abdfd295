//! The pooled upstream client: hickory DNS (honouring `/etc/hosts`),
//! refusal of private addresses unless the route allows them, TLS verified
//! against the system roots (plus `--upstream-ca`), HTTP/1.1 or h2 by ALPN.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use bytes::Bytes;
use hickory_resolver::TokioResolver;
use http::Uri;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::ServerError;

/// Errors crossing hyper's boundary.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type sent upstream and back to the client.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Whether a host's route allows private addresses.
type AllowPrivate = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// The upstream client shared by all connections.
pub(crate) struct Client {
    inner: hyper_util::client::legacy::Client<Connector, ProxyBody>,
    /// HTTP/1.1 only: WebSocket upgrades need it (no h2 extended CONNECT).
    http1: hyper_util::client::legacy::Client<Connector, ProxyBody>,
    policy: Arc<OnceLock<AllowPrivate>>,
}

impl Client {
    pub(crate) fn new(extra_roots: Option<&Path>) -> Result<Self, ServerError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A malformed system certificate is skipped, as every TLS
            // client does; the rest still verify.
            let _ = roots.add(cert);
        }
        if let Some(path) = extra_roots {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| ServerError::Roots(format!("{}: {e}", path.display())))?
                .collect::<Result<_, _>>()
                .map_err(|e| ServerError::Roots(format!("{}: {e}", path.display())))?;
            if certs.is_empty() {
                return Err(ServerError::Roots(format!(
                    "{}: no certificate in the file",
                    path.display()
                )));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| ServerError::Roots(format!("{}: {e}", path.display())))?;
            }
        }
        if roots.is_empty() {
            return Err(ServerError::Roots(
                "no trusted roots: the system store is empty and --upstream-ca was not given"
                    .into(),
            ));
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| ServerError::Roots(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut tls1 = tls.clone();
        tls1.alpn_protocols = vec![b"http/1.1".to_vec()];
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let resolver = match TokioResolver::builder_tokio() {
            Ok(b) => b.build(),
            // No resolv.conf: names resolve from /etc/hosts only.
            Err(_) => TokioResolver::builder_with_config(
                hickory_resolver::config::ResolverConfig::default(),
                hickory_resolver::net::runtime::TokioRuntimeProvider::default(),
            )
            .build(),
        }
        .map_err(|e| ServerError::Roots(format!("DNS resolver: {e}")))?;
        let policy: Arc<OnceLock<AllowPrivate>> = Arc::new(OnceLock::new());
        let resolver = Arc::new(resolver);
        let connector = Connector {
            tls: TlsConnector::from(Arc::new(tls)),
            resolver: Arc::clone(&resolver),
            policy: Arc::clone(&policy),
        };
        let connector1 = Connector {
            tls: TlsConnector::from(Arc::new(tls1)),
            resolver,
            policy: Arc::clone(&policy),
        };
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(std::time::Duration::from_mins(1))
            .pool_max_idle_per_host(64)
            .build(connector);
        let http1 = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(connector1);
        Ok(Self {
            inner,
            http1,
            policy,
        })
    }

    pub(crate) fn set_policy(&self, f: AllowPrivate) {
        let _ = self.policy.set(f);
    }

    pub(crate) async fn request(
        &self,
        req: http::Request<ProxyBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.inner.request(req).await
    }

    /// Sends a request over HTTP/1.1 only (WebSocket upgrades).
    pub(crate) async fn request_http1(
        &self,
        req: http::Request<ProxyBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.http1.request(req).await
    }
}

/// Resolves, filters and connects.
#[derive(Clone)]
struct Connector {
    tls: TlsConnector,
    resolver: Arc<TokioResolver>,
    policy: Arc<OnceLock<AllowPrivate>>,
}

/// Why an upstream connection was not made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("upstream URI has no host")]
    NoHost,
    #[error("resolving {host}: {message}")]
    Resolve { host: String, message: String },
    #[error(
        "{host} resolves only to loopback, private, link-local or metadata addresses; \
         set allow_private: true on its route to allow that"
    )]
    Private { host: String },
    #[error("connecting to {host}: {source}")]
    Io {
        host: String,
        source: std::io::Error,
    },
    #[error("invalid TLS server name {0:?}")]
    Name(String),
}

/// Addresses an allowlisted name must not lead to unless the route says so.
pub(crate) fn is_restricted(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                // 100.64.0.0/10 carrier-grade NAT
                || (o[0] == 100 && (o[1] & 0xC0) == 64)
                // 198.18.0.0/15 benchmarking
                || (o[0] == 198 && (o[1] & 0xFE) == 18)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_restricted(IpAddr::V4(v4));
            }
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // fc00::/7 unique local
                || (s[0] & 0xFE00) == 0xFC00
                // fe80::/10 link local
                || (s[0] & 0xFFC0) == 0xFE80
                // 64:ff9b::/96 NAT64 could reach private v4
                || (s[0] == 0x64 && s[1] == 0xFF9B)
        }
    }
}

/// A plain or TLS upstream stream.
pub(crate) enum Stream {
    Plain(TokioIo<TcpStream>),
    // Boxed: the TLS state is large and connections move through the pool.
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Self::Plain(_) => Connected::new(),
            Self::Tls(s) => {
                if s.inner().get_ref().1.alpn_protocol() == Some(b"h2") {
                    Connected::new().negotiated_h2()
                } else {
                    Connected::new()
                }
            }
        }
    }
}

impl hyper::rt::Read for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = Stream;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Stream, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect(uri).await })
    }
}

impl Connector {
    async fn connect(&self, uri: Uri) -> Result<Stream, ConnectError> {
        let host = uri.host().ok_or(ConnectError::NoHost)?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let allow_private = self.policy.get().is_some_and(|f| f(&host));
        let candidates: Vec<IpAddr> = if let Ok(ip) = host.parse::<IpAddr>() {
            vec![ip]
        } else {
            self.resolver
                .lookup_ip(host.as_str())
                .await
                .map_err(|e| ConnectError::Resolve {
                    host: host.clone(),
                    message: e.to_string(),
                })?
                .iter()
                .collect()
        };
        let allowed: Vec<IpAddr> = candidates
            .into_iter()
            .filter(|ip| allow_private || !is_restricted(*ip))
            .collect();
        if allowed.is_empty() {
            return Err(ConnectError::Private { host });
        }
        let mut last = None;
        let mut tcp = None;
        for ip in allowed {
            match TcpStream::connect(SocketAddr::new(ip, port)).await {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = tcp.ok_or_else(|| ConnectError::Io {
            host: host.clone(),
            source: last.unwrap_or_else(|| std::io::Error::other("no address")),
        })?;
        let _ = tcp.set_nodelay(true);
        if !tls {
            return Ok(Stream::Plain(TokioIo::new(tcp)));
        }
        let name =
            ServerName::try_from(host.clone()).map_err(|_| ConnectError::Name(host.clone()))?;
        let stream = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|source| ConnectError::Io { host, source })?;
        Ok(Stream::Tls(Box::new(TokioIo::new(stream))))
    }
}
