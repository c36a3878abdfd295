//! The pooled upstream stack: hickory DNS (honouring `/etc/hosts`) behind
//! a resolver that drops special-purpose and own-host addresses unless the
//! route allows them ([`super::ssrf`]), hyper-util's `HttpConnector`
//! (connect timeout split across the addresses, happy eyeballs), TLS with
//! its own handshake deadline, verified against the system roots (plus
//! `--upstream-ca`), then the client's own protocol: an h2 client's
//! requests go over h2 when the upstream offers it (ALPN), an HTTP/1.1
//! client's over pooled HTTP/1.1 connections.
//!
//! There are two stacks, one per `allow_private` value, each with its own
//! pool: the request's decision picks one, so a connection opened for a
//! route that allowed private addresses is never reused once a reload has
//! turned that off.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hickory_resolver::TokioResolver;
use http::Uri;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_rustls::MaybeHttpsStream;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::ServerError;
use super::ssrf::{self, LocalAddrs};

/// Errors crossing hyper's boundary.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The body type sent upstream and back to the client.
pub(crate) type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// Upstream deadlines.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadlines {
    /// TCP connect, across every address of the host.
    pub(crate) connect: Duration,
    /// TLS handshake once TCP is up.
    pub(crate) tls: Duration,
}

type Pooled = hyper_util::client::legacy::Client<Connector, ProxyBody>;

/// One stack: a pooled client per upstream protocol choice, and one for
/// upgrades.
struct Stack {
    /// h2 when the upstream offers it, else HTTP/1.1: for h2 clients,
    /// whose streams share one connection on both sides.
    pooled: Pooled,
    /// HTTP/1.1 only, pooled: for HTTP/1.1 clients. Each of their requests
    /// gets an upstream connection of its own, as on the client side, so
    /// concurrent bodies are encrypted, scanned and sent in parallel
    /// rather than queued behind one h2 connection's task (one core, and
    /// one upstream worker, for every body at once).
    http1: Pooled,
    /// HTTP/1.1 only, never pooled: WebSocket upgrades (no h2 extended
    /// CONNECT), whose connections leave with the upgrade.
    upgrade: Pooled,
}

/// The upstream clients shared by all connections.
pub(crate) struct Client {
    /// Index 0: special-purpose addresses refused; 1: allowed.
    stacks: [Stack; 2],
}

impl Client {
    pub(crate) fn new(
        extra_roots: Option<&Path>,
        deadlines: Deadlines,
        local: &Arc<LocalAddrs>,
    ) -> Result<Self, ServerError> {
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
        let (tls, tls1) = (
            TlsConnector::from(Arc::new(tls)),
            TlsConnector::from(Arc::new(tls1)),
        );
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
        let resolver = Arc::new(resolver);
        let stack = |allow_private: bool| {
            let connector = |tls: &TlsConnector| {
                let filter = FilteringResolver {
                    resolver: Arc::clone(&resolver),
                    allow_private,
                    local: Arc::clone(local),
                };
                let mut http = HttpConnector::new_with_resolver(filter);
                http.enforce_http(false);
                http.set_nodelay(true);
                http.set_connect_timeout(Some(deadlines.connect));
                http.set_happy_eyeballs_timeout(Some(Duration::from_millis(300)));
                Connector {
                    http,
                    tls: tls.clone(),
                    allow_private,
                    local: Arc::clone(local),
                    deadlines,
                }
            };
            Stack {
                pooled: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_mins(1))
                    .pool_max_idle_per_host(64)
                    .build(connector(&tls)),
                http1: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(Duration::from_mins(1))
                    .pool_max_idle_per_host(64)
                    .build(connector(&tls1)),
                upgrade: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                    .pool_max_idle_per_host(0)
                    .build(connector(&tls1)),
            }
        };
        Ok(Self {
            stacks: [stack(false), stack(true)],
        })
    }

    /// Sends a request on the stack for `allow_private` (the request's own
    /// decision), over h2 when the client spoke h2 (`client` is its
    /// version) and the upstream offers it, else over HTTP/1.1.
    pub(crate) async fn request(
        &self,
        allow_private: bool,
        client: http::Version,
        req: http::Request<ProxyBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        let stack = &self.stacks[usize::from(allow_private)];
        if client == http::Version::HTTP_2 {
            stack.pooled.request(req).await
        } else {
            stack.http1.request(req).await
        }
    }

    /// Sends a request over a fresh HTTP/1.1 connection (WebSocket
    /// upgrades).
    pub(crate) async fn request_upgrade(
        &self,
        allow_private: bool,
        req: http::Request<ProxyBody>,
    ) -> Result<http::Response<hyper::body::Incoming>, hyper_util::client::legacy::Error> {
        self.stacks[usize::from(allow_private)]
            .upgrade
            .request(req)
            .await
    }
}

/// Why an upstream connection was not made.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("upstream URI has no host")]
    NoHost,
    #[error("resolving {host}: {message}")]
    Resolve { host: String, message: String },
    #[error(
        "{host} resolves only to loopback, private, link-local, special-purpose or own-host \
         addresses ({why}); set allow_private: true on its route to allow that"
    )]
    Private { host: String, why: &'static str },
    #[error("connecting to {host}: {cause}")]
    Io { host: String, cause: String },
    #[error("connecting to {host}: no TCP connection within {after:?}")]
    ConnectTimeout { host: String, after: Duration },
    #[error("connecting to {host}: no TLS handshake within {after:?}")]
    TlsTimeout { host: String, after: Duration },
    #[error("invalid TLS server name {0:?}")]
    Name(String),
}

impl ConnectError {
    /// Whether the upstream was too slow (a 504, not a 502).
    pub(crate) fn is_timeout(&self) -> bool {
        matches!(self, Self::ConnectTimeout { .. } | Self::TlsTimeout { .. })
    }
}

/// hickory, then the SSRF filter.
#[derive(Clone)]
struct FilteringResolver {
    resolver: Arc<TokioResolver>,
    allow_private: bool,
    local: Arc<LocalAddrs>,
}

impl tower_service::Service<Name> for FilteringResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<IpAddr> = this
                .resolver
                .lookup_ip(host.as_str())
                .await
                .map_err(|e| ConnectError::Resolve {
                    host: host.clone(),
                    message: e.to_string(),
                })?
                .iter()
                .collect();
            let allowed = filter(&host, found, this.allow_private, &this.local).await?;
            Ok(allowed
                .into_iter()
                .map(|ip| SocketAddr::new(ip, 0))
                .collect::<Vec<_>>()
                .into_iter())
        })
    }
}

/// The addresses of `host` a request may use: all with `allow_private`,
/// else the globally routable ones that are not this machine's.
async fn filter(
    host: &str,
    found: Vec<IpAddr>,
    allow_private: bool,
    local: &Arc<LocalAddrs>,
) -> Result<Vec<IpAddr>, ConnectError> {
    if allow_private {
        return Ok(found);
    }
    let local = local.current().await;
    let mut why = "no address";
    let allowed: Vec<IpAddr> = found
        .into_iter()
        .filter(|ip| match ssrf::refusal(*ip, &local) {
            Some(reason) => {
                why = reason;
                false
            }
            None => true,
        })
        .collect();
    if allowed.is_empty() {
        return Err(ConnectError::Private {
            host: host.to_owned(),
            why,
        });
    }
    Ok(allowed)
}

/// Filters, connects (TCP, then TLS for `https`), each step on its deadline.
#[derive(Clone)]
pub(crate) struct Connector {
    http: HttpConnector<FilteringResolver>,
    tls: TlsConnector,
    allow_private: bool,
    local: Arc<LocalAddrs>,
    deadlines: Deadlines,
}

type Stream = MaybeHttpsStream<TokioIo<TcpStream>>;

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
    async fn connect(mut self, uri: Uri) -> Result<Stream, ConnectError> {
        use tower_service::Service as _;
        let host = uri
            .host()
            .ok_or(ConnectError::NoHost)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        // HttpConnector takes IP literals without asking the resolver.
        if let Ok(ip) = host.parse::<IpAddr>() {
            filter(&host, vec![ip], self.allow_private, &self.local).await?;
        }
        let tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        // The connector's own timeout is split across the addresses; this
        // one bounds the lookup too.
        let after = self.deadlines.connect;
        let tcp =
            match tokio::time::timeout(after + Duration::from_secs(1), self.http.call(uri)).await {
                Err(_) => return Err(ConnectError::ConnectTimeout { host, after }),
                Ok(Ok(tcp)) => tcp,
                Ok(Err(e)) => return Err(classify(host, after, e)),
            };
        if !tls {
            return Ok(MaybeHttpsStream::Http(tcp));
        }
        let name =
            ServerName::try_from(host.clone()).map_err(|_| ConnectError::Name(host.clone()))?;
        let after = self.deadlines.tls;
        match tokio::time::timeout(after, self.tls.connect(name, TokioIo::new(tcp))).await {
            Err(_) => Err(ConnectError::TlsTimeout { host, after }),
            Ok(Err(e)) => Err(ConnectError::Io {
                host,
                cause: super::error::error_chain(&e),
            }),
            Ok(Ok(stream)) => Ok(MaybeHttpsStream::Https(TokioIo::new(stream))),
        }
    }
}

/// Brings the resolver's own errors back out of `HttpConnector`'s.
fn classify<E>(host: String, after: Duration, e: E) -> ConnectError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cur {
        if let Some(ours) = c.downcast_ref::<ConnectError>() {
            return match ours {
                ConnectError::Private { host, why } => ConnectError::Private {
                    host: host.clone(),
                    why,
                },
                other => other.clone(),
            };
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return ConnectError::ConnectTimeout { host, after };
        }
        cur = c.source();
    }
    ConnectError::Io {
        host,
        cause: super::error::error_chain(&e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[tokio::test]
    async fn mixed_answers_keep_only_global_addresses() {
        let local = Arc::new(LocalAddrs::load());
        let own: Vec<IpAddr> = local.current().await.to_vec();
        // Loopback plus a documentation address: nothing left.
        let e = filter("h", ips(&["127.0.0.1", "192.0.2.2"]), false, &local)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("allow_private"), "{e}");
        // A public address survives next to a private one.
        let kept = filter("h", ips(&["10.0.0.1", "8.8.8.8"]), false, &local)
            .await
            .unwrap();
        assert_eq!(kept, ips(&["8.8.8.8"]));
        // The host's own addresses never pass, whatever their range.
        if !own.is_empty() {
            assert!(filter("h", own.clone(), false, &local).await.is_err());
        }
        // allow_private passes everything.
        let all = ips(&["127.0.0.1", "192.0.2.2"]);
        assert_eq!(filter("h", all.clone(), true, &local).await.unwrap(), all);
    }
}
