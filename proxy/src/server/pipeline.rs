//! Client connections and the request pipeline of SPEC §3.
//!
//! A client connection speaks HTTP/1.1 to the proxy: absolute-form plain
//! HTTP requests are handled directly; `CONNECT host:port` is checked
//! against the policy *before* a leaf certificate exists, then the tunnel is
//! bumped with a leaf for that host and served as HTTP/1.1 or h2 (ALPN).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::Shared;
use super::body::{self as scan_body, DecodedBody, HitSlot, ScannedBody};
use super::conn::{Activity, Progress, Watched};
use super::error::{ClientError, ProxyError, UpstreamError, rescue};
use super::upstream::{BoxError, ProxyBody};
use crate::dlp::{DetectorSet, Hit, StreamScanner};
use crate::policy::{self, Block, BlockReason, Decision, Forward, LogLevel, Via};
use crate::redact::log_field;

/// Bodies are held whole while scanned up to this size: a request body that
/// hits never reaches the upstream at all, and a response that hits is
/// replaced by a block. Larger bodies stream, and a hit cuts them short.
const HOLD_LIMIT: usize = 256 * 1024;

/// A body read through a scanner up to [`HOLD_LIMIT`].
enum Held<B> {
    /// The whole body and its trailers, scanned and clean.
    Whole(Vec<u8>, Option<HeaderMap>),
    /// The cleared start of a larger body, and the rest still to stream.
    Partial(Box<(Vec<u8>, StreamScanner, B)>),
    /// The scanner fired.
    Hit(Hit),
    /// Reading (or decoding) the body failed.
    Failed(BoxError),
}

/// A held body as a message body again, trailers included; `headers` (the
/// message's) are made to carry them: an HTTP/1.1 peer sends trailers only
/// in a chunked body and only for the fields `Trailer` names.
fn held_body(bytes: Vec<u8>, trailers: Option<HeaderMap>, headers: &mut HeaderMap) -> ProxyBody {
    match trailers {
        None => full(bytes),
        Some(t) => {
            declare_trailers(headers, Some(&t));
            scan_body::Trailed::new(Bytes::from(bytes), t).boxed_unsync()
        }
    }
}

/// Makes a message whose body ends in trailers go chunked on HTTP/1.1:
/// no `Content-Length`, and `Trailer` naming `known` when the trailers are
/// already known (a held body), else the sender's own `Trailer` kept.
/// Returns whether the body may carry trailers (its length then stays
/// undeclared).
fn declare_trailers(headers: &mut HeaderMap, known: Option<&HeaderMap>) -> bool {
    if let Some(t) = known {
        let names: Vec<&str> = t.keys().map(HeaderName::as_str).collect();
        if let Ok(v) = HeaderValue::from_str(&names.join(", ")) {
            headers.insert(header::TRAILER, v);
        }
    }
    if !headers.contains_key(header::TRAILER) {
        return false;
    }
    headers.remove(header::CONTENT_LENGTH);
    true
}

/// The length a streamed body declares: its `Content-Length`, unless the
/// sender declared trailers (the body then goes chunked, see
/// [`declare_trailers`]).
fn streamed_len(headers: &mut HeaderMap, declared: Option<u64>) -> Option<u64> {
    if declare_trailers(headers, None) {
        None
    } else {
        declared
    }
}

async fn hold<B>(mut body: B, mut scanner: StreamScanner, length: Option<u64>) -> Held<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    // Sized once from Content-Length: doubling a 64 KiB body's buffer held
    // twice its size per connection.
    let capacity = length.map_or(0, |n| {
        usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(HOLD_LIMIT + 64 * 1024)
    });
    let mut cleared = Vec::with_capacity(capacity);
    loop {
        let trailers = match body.frame().await {
            None => None,
            Some(Err(e)) => return Held::Failed(e.into()),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    if let Err(hit) = scanner.feed(&data, &mut cleared) {
                        return Held::Hit(hit);
                    }
                    if cleared.len() >= HOLD_LIMIT {
                        return Held::Partial(Box::new((cleared, scanner, body)));
                    }
                    continue;
                }
                Err(frame) => frame.into_trailers().ok(),
            },
        };
        // The end, or trailers (which end the body): finish the scan, then
        // scan the trailers as header fields before keeping them.
        if let Err(hit) = scanner.finish(&mut cleared) {
            return Held::Hit(hit);
        }
        if let Some(hit) = trailers
            .as_ref()
            .and_then(|t| scan_body::scan_trailers(&scanner, t))
        {
            return Held::Hit(hit);
        }
        return Held::Whole(cleared, trailers);
    }
}

impl policy::Headers for HeaderMap {
    fn any_value(&self, name: &str, pred: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        self.get_all(name).iter().any(|v| pred(v.as_bytes()))
    }
}

pub(super) fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

/// Where a request goes, and the connection slot its tunnel holds.
#[derive(Debug, Clone)]
struct Target {
    via: Via,
    host: String,
    port: u16,
    /// The client connection's slot: held by every task the connection
    /// spawns (tunnel, WebSocket relay), released when the last ends.
    permit: Arc<OwnedSemaphorePermit>,
}

/// Serves one client TCP connection until it closes, idles out or shutdown.
pub(crate) async fn serve_client(
    stream: TcpStream,
    permit: Arc<OwnedSemaphorePermit>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let activity = Activity::new();
    let svc_shared = Arc::clone(&shared);
    let svc_shutdown = shutdown.clone();
    let svc_activity = Arc::clone(&activity);
    let svc = service_fn(move |req| {
        let shared = Arc::clone(&svc_shared);
        let shutdown = svc_shutdown.clone();
        let permit = Arc::clone(&permit);
        let busy = svc_activity.busy();
        async move {
            let r = front(req, permit, shared, shutdown).await;
            Ok::<_, Infallible>(busy.until_sent(r))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_timeout)
        .max_buf_size(shared.limits.max_header_bytes.max(8192));
    let io = Watched::new(stream, Arc::clone(&activity));
    let conn = builder
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
            return;
        }
        () = shutdown.cancelled() => {}
        () = activity.idle(shared.limits.idle_timeout) => {
            tracing::debug!("idle client connection closed");
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(IDLE_CLOSE, conn).await;
            return;
        }
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// How long an idle connection's graceful close may take: nothing is in
/// flight, and an h2 peer that never acknowledges the GOAWAY's PING must
/// not keep it open.
const IDLE_CLOSE: std::time::Duration = std::time::Duration::from_secs(2);

/// A request on the client connection: CONNECT, plain HTTP, or a mistake.
async fn front(
    req: Request<Incoming>,
    permit: Arc<OwnedSemaphorePermit>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Response<ProxyBody> {
    if req.method() == Method::CONNECT {
        let g = shared.current();
        return connect(req, permit, shared, shutdown)
            .unwrap_or_else(|e| rescue(e, &g, "CONNECT", ""));
    }
    let uri = req.uri().clone();
    let unusable = |why| {
        let g = shared.current();
        rescue(
            ProxyError::Client(ClientError::Unusable(why)),
            &g,
            req.method().as_str(),
            uri.path(),
        )
    };
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(host)) => {
            let target = Target {
                via: Via::PlainHttp,
                host: host.to_ascii_lowercase(),
                port: uri.port_u16().unwrap_or(80),
                permit,
            };
            handle(req, target, &shared).await
        }
        (Some(_), Some(_)) => unusable("use CONNECT for https:// URLs"),
        _ => unusable("bb-egress is a forward proxy: send absolute-form requests or CONNECT"),
    }
}

fn connect(
    req: Request<Incoming>,
    permit: Arc<OwnedSemaphorePermit>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<Response<ProxyBody>, ProxyError> {
    let needs = ProxyError::Client(ClientError::Unusable("CONNECT needs host:port"));
    let Some(authority) = req.uri().authority().cloned() else {
        return Err(needs);
    };
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let Some(port) = authority.port_u16() else {
        return Err(needs);
    };
    let generation = shared.current();
    if let Err(mut block) = generation.policy.check_connect(&host, port) {
        // The gate sees the host as the agent spelled it: lower-casing must
        // not hide a secret (or its base64) used as a label.
        if log_field(&generation.engine, authority.host()) != authority.host() {
            crate::redact::REDACTED_FIELD.clone_into(&mut block.host);
        }
        return Err(ProxyError::Policy(block));
    }
    // Minted only now: a host the policy refuses never gets a certificate.
    let before = shared.leaves.minted();
    let leaf = match shared.leaves.get(&host) {
        Ok(l) => {
            if shared.leaves.minted() > before {
                tracing::debug!(%host, "minted leaf certificate");
            }
            l
        }
        Err(e) => {
            tracing::error!(%host, error = %e, "minting a leaf certificate failed");
            return Err(ProxyError::Internal("could not mint a certificate"));
        }
    };
    let span = tracing::info_span!("tunnel", %host, port);
    let target = Target {
        via: Via::Connect,
        host,
        port,
        permit,
    };
    let tasks = shared.tasks.clone();
    tasks.spawn(
        async move {
            match hyper::upgrade::on(req).await {
                Ok(upgraded) => bump(upgraded, target, leaf, shared, shutdown).await,
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        }
        .instrument(span),
    );
    Ok(Response::new(empty()))
}

/// The bumped side's TLS settings without a certificate: built once at
/// start (provider and protocol versions checked once), cloned per tunnel.
pub(super) fn bump_tls_config() -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let mut c = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_cert_resolver(Arc::new(NoCert));
    c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(c))
}

/// The template's resolver: replaced in every tunnel's copy.
#[derive(Debug)]
struct NoCert;

impl rustls::server::ResolvesServerCert for NoCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
}

#[derive(Debug)]
struct FixedCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for FixedCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

async fn bump(
    upgraded: hyper::upgrade::Upgraded,
    target: Target,
    leaf: Arc<rustls::sign::CertifiedKey>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let mut config = (*shared.tls).clone();
    config.cert_resolver = Arc::new(FixedCert(leaf));
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let handshake = acceptor.accept(TokioIo::new(upgraded));
    let tls = match tokio::time::timeout(shared.limits.handshake_timeout, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(host = %target.host, error = %e, "client TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(host = %target.host, "client TLS handshake timed out");
            return;
        }
    };
    let activity = Activity::new();
    let svc_shared = Arc::clone(&shared);
    let svc_activity = Arc::clone(&activity);
    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = Arc::clone(&svc_shared);
        let target = target.clone();
        let busy = svc_activity.busy();
        async move {
            let r = handle(req, target, &shared).await;
            Ok::<_, Infallible>(busy.until_sent(r))
        }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_timeout)
        .max_buf_size(shared.limits.max_header_bytes.max(8192));
    let io = Watched::new(tls, Arc::clone(&activity));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "bumped connection ended with an error");
            }
            return;
        }
        () = shutdown.cancelled() => {}
        () = activity.idle(shared.limits.idle_timeout) => {
            tracing::debug!("idle bumped connection closed");
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(IDLE_CLOSE, conn).await;
            return;
        }
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Headers never forwarded in either direction (hop-by-hop, RFC 9110 §7.6.1,
/// plus the proxy's own and QUIC advertisements). `Trailer` is not one: it
/// is end to end (RFC 9110 §6.6.2), and HTTP/1.1 peers send only the
/// trailers it names.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

/// Whether a request's `TE` accepts trailers (RFC 9110 §10.1.4).
fn accepts_trailers(headers: &HeaderMap) -> bool {
    headers.get_all(header::TE).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|t| {
                t.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("trailers")
            })
        })
    })
}

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

pub(super) fn log_block(generation: &super::Generation, block: &Block, method: &str, path: &str) {
    if generation.policy.config().log >= LogLevel::Blocked {
        // Every field through the one gate: a CONNECT to `<secret>.example`
        // or a secret in a refused path never reaches the log.
        let host = log_field(&generation.engine, &block.host);
        let path = log_field(&generation.engine, path);
        let method = log_field(&generation.engine, method);
        if let BlockReason::Dlp(hit) = &block.reason {
            tracing::info!(
                host = %host, method = %method, path = %path, action = "block",
                reason = block.reason.tag(), detector = hit.detector.name(), rule = %hit.rule,
                "request blocked"
            );
        } else {
            tracing::info!(
                host = %host, method = %method, path = %path, action = "block",
                reason = block.reason.tag(), "request blocked"
            );
        }
    }
}

fn blocked(
    generation: &super::Generation,
    host: &str,
    reason: BlockReason,
    method: &str,
    path: &str,
) -> Response<ProxyBody> {
    let block = Block {
        host: host.to_owned(),
        reason,
    };
    rescue(ProxyError::Policy(block), generation, method, path)
}

/// One request: the pipeline, and [`rescue`] for whatever stopped it.
async fn handle(req: Request<Incoming>, target: Target, shared: &Shared) -> Response<ProxyBody> {
    // The generation current now decides everything about this request,
    // the upstream stack (`allow_private`) included.
    let generation = shared.current();
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    match pipeline(req, &target, shared, &generation, &method, &path).await {
        Ok(r) => r,
        Err(e) => rescue(e, &generation, &method, &path),
    }
}

/// The SPEC §3 pipeline for one request.
#[allow(
    clippy::too_many_lines,
    reason = "the pipeline reads best as one sequence of steps"
)]
async fn pipeline(
    req: Request<Incoming>,
    target: &Target,
    shared: &Shared,
    generation: &Arc<super::Generation>,
    method: &str,
    path: &str,
) -> Result<Response<ProxyBody>, ProxyError> {
    let query = req.uri().query().map(str::to_owned);
    let refuse = |reason| {
        Err(ProxyError::Policy(Block {
            host: target.host.clone(),
            reason,
        }))
    };

    // Inside a tunnel, the request must be for the tunnel's host.
    if target.via == Via::Connect {
        let named = req.uri().host().map(str::to_owned).or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| h.rsplit_once(':').map_or(h, |(h, _)| h).to_owned())
        });
        if let Some(named) = named
            && !named
                .trim_start_matches('[')
                .trim_end_matches(']')
                .eq_ignore_ascii_case(&target.host)
        {
            return refuse(BlockReason::HostMismatch);
        }
    }

    let decision = generation.policy.decide(&policy::Request {
        via: target.via,
        host: &target.host,
        port: target.port,
        method,
        path,
        query: query.as_deref(),
        headers: req.headers(),
    });
    let forward: Forward<'_> = match decision {
        Decision::Introspect => {
            let mut r = Response::new(full(generation.policy.introspection_json()));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return Ok(r);
        }
        Decision::Block(mut b) => {
            // As for CONNECT: the gate sees the host as the agent spelled it.
            if let Some(raw) = req.uri().host()
                && log_field(&generation.engine, raw) != raw
            {
                crate::redact::REDACTED_FIELD.clone_into(&mut b.host);
            }
            return Err(ProxyError::Policy(b));
        }
        Decision::Forward(f) => f,
    };
    let injects = forward.auth().is_some();

    // Outbound DLP over the URL and headers (the agent's Authorization is
    // skipped when the route replaces it: clients put placeholders there).
    if !forward.outbound.is_empty() {
        let url = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        let mut hit: Option<Hit> = generation.engine.scan(forward.outbound, url.as_bytes());
        if hit.is_none() {
            for (name, value) in req.headers() {
                if injects && name == header::AUTHORIZATION {
                    continue;
                }
                let mut field = Vec::with_capacity(name.as_str().len() + 2 + value.len());
                field.extend_from_slice(name.as_str().as_bytes());
                field.extend_from_slice(b": ");
                field.extend_from_slice(value.as_bytes());
                if let Some(h) = generation.engine.scan(forward.outbound, &field) {
                    hit = Some(h);
                    break;
                }
            }
        }
        if let Some(h) = hit {
            return refuse(BlockReason::Dlp(h));
        }
        let encoded = req
            .headers()
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        if encoded {
            return refuse(BlockReason::UnscannableBody);
        }
    }

    if is_websocket(&req) {
        return websocket(req, target, &forward, generation, shared, method, path).await;
    }

    // Build the upstream request.
    let (parts, body) = req.into_parts();
    let client_version = parts.version;
    let body = Progress::new(body, shared.limits.body_timeout);
    let uri = upstream_uri(target, &parts.uri).ok_or(UNUSABLE_TARGET)?;
    let mut headers = parts.headers;
    prepare_headers(&mut headers, &forward, generation)?;
    if !forward.inbound.is_empty() {
        // Responses must arrive readable for inbound DLP.
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let slot: HitSlot = Arc::new(Mutex::new(None));
    let up_body: ProxyBody = if forward.outbound.is_empty() {
        declare_trailers(&mut headers, None);
        body.boxed_unsync()
    } else {
        match hold(
            body,
            generation.engine.scanner(forward.outbound),
            content_length,
        )
        .await
        {
            Held::Whole(bytes, trailers) => held_body(bytes, trailers, &mut headers),
            Held::Partial(partial) => {
                let (cleared, scanner, rest) = *partial;
                ScannedBody::new(rest, scanner, Arc::clone(&slot))
                    .with_prefix(Bytes::from(cleared))
                    .with_len(streamed_len(&mut headers, content_length))
                    .boxed_unsync()
            }
            Held::Hit(hit) => {
                return refuse(BlockReason::Dlp(hit));
            }
            Held::Failed(e) => {
                return Err(match e.downcast_ref::<super::error::BodyTimeout>() {
                    Some(t) => ProxyError::Client(ClientError::BodyTimeout(t.0)),
                    None => ProxyError::Client(ClientError::Body(e.to_string())),
                });
            }
        }
    };
    let mut up = Request::new(up_body);
    *up.method_mut() = parts.method;
    *up.uri_mut() = uri;
    *up.version_mut() = Version::HTTP_11;
    *up.headers_mut() = headers;

    let after = shared.limits.upstream_response_timeout;
    let sent = shared
        .client
        .request(forward.route.allow_private, client_version, up);
    let response = match tokio::time::timeout(after, sent).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let hit = slot.lock().ok().and_then(|mut s| s.take());
            if let Some(hit) = hit {
                return refuse(BlockReason::Dlp(hit));
            }
            return Err(ProxyError::upstream(&target.host, &e));
        }
        Err(_) => {
            return Err(ProxyError::Upstream(UpstreamError::NoResponse {
                host: target.host.clone(),
                after,
            }));
        }
    };
    if generation.policy.config().log >= LogLevel::All {
        // Logged whatever the route's detectors: the gate scans for every
        // registered secret.
        let (host, path) = (
            log_field(&generation.engine, &target.host),
            log_field(&generation.engine, path),
        );
        tracing::info!(
            host = %host, method, path = %path, route = forward.route_index,
            action = "forward", status = response.status().as_u16(), "request forwarded"
        );
    }
    let body_timeout = shared.limits.body_timeout;
    Ok(inbound(
        response,
        &forward,
        generation,
        target,
        (method, path),
        body_timeout,
    )
    .await)
}

const UNUSABLE_TARGET: ProxyError =
    ProxyError::Client(ClientError::Unusable("unusable request target"));

/// The upstream URI: the tunnel's (or absolute-form request's) host and
/// port, the request's path and query.
fn upstream_uri(target: &Target, uri: &Uri) -> Option<Uri> {
    let scheme = if target.via == Via::Connect {
        "https"
    } else {
        "http"
    };
    let pq = uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let host = if target.host.contains(':') {
        format!("[{}]", target.host)
    } else {
        target.host.clone()
    };
    format!("{scheme}://{host}:{}{pq}", target.port)
        .parse()
        .ok()
}

/// SPEC §3 step 7 plus hygiene: drop hop-by-hop headers, `Host` (the
/// client sets it from the URI) and the agent's `Authorization`; inject
/// the route's token.
fn prepare_headers(
    headers: &mut HeaderMap,
    forward: &Forward<'_>,
    generation: &super::Generation,
) -> Result<(), ProxyError> {
    // The proxy reads trailers both ways: an agent that takes them still
    // gets them from an HTTP/1.1 upstream, which sends them only then.
    let trailers_ok = accepts_trailers(headers);
    strip_hop_by_hop(headers);
    if trailers_ok {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    headers.remove(header::HOST);
    headers.remove(header::AUTHORIZATION);
    if let Some(auth) = forward.auth() {
        let value = generation.token(auth.token_env).and_then(|t| {
            HeaderValue::from_str(&format!("{} {}", auth.scheme.as_str(), t.expose())).ok()
        });
        // `Generation::load` refuses a token that is unset or not a header
        // value, so this is a bug if it happens.
        let Some(mut value) = value else {
            return Err(ProxyError::Internal(
                "the route's token is missing or not a valid header value",
            ));
        };
        value.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, value);
    }
    Ok(())
}

/// Largest WebSocket message relayed; bigger ones close the connection
/// rather than pass unscanned.
const WS_MAX_MESSAGE: usize = 4 * 1024 * 1024;

fn is_websocket(req: &Request<Incoming>) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    req.version() == Version::HTTP_11
        && req.method() == Method::GET
        && has_token(header::CONNECTION, "upgrade")
        && has_token(header::UPGRADE, "websocket")
}

/// Why a WebSocket relay stopped early.
#[derive(Debug)]
enum RelayEnd {
    Hit(Hit),
    Protocol(crate::ws::WsError),
    Io(std::io::Error),
}

/// Copies one direction of a WebSocket, a whole message at a time: each
/// message's payload is scanned before any of its frames is forwarded.
async fn relay<R, W>(
    mut from: R,
    mut to: W,
    mut decoder: crate::ws::FrameDecoder,
    engine: &Arc<crate::dlp::DlpEngine>,
    set: DetectorSet,
) -> Result<(), RelayEnd>
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    let mut events = Vec::new();
    loop {
        let n = from.read(&mut buf).await.map_err(RelayEnd::Io)?;
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        decoder
            .push(&buf[..n], &mut events)
            .map_err(RelayEnd::Protocol)?;
        for event in events.drain(..) {
            let (raw, payload) = match event {
                crate::ws::WsEvent::Message { raw, payload, .. }
                | crate::ws::WsEvent::Control { raw, payload, .. } => (raw, payload),
            };
            if !set.is_empty()
                && let Some(hit) = engine.scan(set, &payload)
            {
                return Err(RelayEnd::Hit(hit));
            }
            to.write_all(&raw).await.map_err(RelayEnd::Io)?;
        }
        to.flush().await.map_err(RelayEnd::Io)?;
    }
}

/// A WebSocket upgrade after the policy check: forwarded over HTTP/1.1
/// without extensions (frames must stay readable), then relayed with the
/// route's outbound detectors on client messages and inbound detectors on
/// server messages. A hit closes both sides.
#[allow(
    clippy::too_many_lines,
    reason = "the upgrade reads best as one sequence: request, answer, relay"
)]
async fn websocket(
    mut req: Request<Incoming>,
    target: &Target,
    forward: &Forward<'_>,
    generation: &Arc<super::Generation>,
    shared: &Shared,
    method: &str,
    path: &str,
) -> Result<Response<ProxyBody>, ProxyError> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _body) = req.into_parts();
    let uri = upstream_uri(target, &parts.uri).ok_or(UNUSABLE_TARGET)?;
    let mut headers = parts.headers;
    prepare_headers(&mut headers, forward, generation)?;
    // Extensions (permessage-deflate) would make frames unreadable to DLP.
    headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let mut up = Request::new(empty());
    *up.method_mut() = Method::GET;
    *up.uri_mut() = uri;
    *up.version_mut() = Version::HTTP_11;
    *up.headers_mut() = headers;
    let after = shared.limits.upstream_response_timeout;
    let sent = shared
        .client
        .request_upgrade(forward.route.allow_private, up);
    let mut response = match tokio::time::timeout(after, sent).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(ProxyError::upstream(&target.host, &e)),
        Err(_) => {
            return Err(ProxyError::Upstream(UpstreamError::NoResponse {
                host: target.host.clone(),
                after,
            }));
        }
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        let body_timeout = shared.limits.body_timeout;
        return Ok(inbound(
            response,
            forward,
            generation,
            target,
            (method, path),
            body_timeout,
        )
        .await);
    }
    let upstream_upgrade = hyper::upgrade::on(&mut response);
    let mut out = Response::new(empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for name in [
        header::UPGRADE,
        header::CONNECTION,
        header::SEC_WEBSOCKET_ACCEPT,
        header::SEC_WEBSOCKET_PROTOCOL,
    ] {
        if let Some(v) = response.headers().get(&name) {
            out.headers_mut().insert(name, v.clone());
        }
    }
    let generation = Arc::clone(generation);
    let outbound_set = forward.outbound;
    let inbound_set = if generation.engine.has_known_secrets() {
        forward.inbound.with(crate::dlp::Detector::KnownSecrets)
    } else {
        forward.inbound
    };
    let host = target.host.clone();
    let path = path.to_owned();
    // The relay keeps the client connection's slot, is tracked, and ends
    // at shutdown like every other task.
    let permit = Arc::clone(&target.permit);
    let shutdown = shared.shutdown.clone();
    shared.tasks.spawn(
        async move {
            let _permit = permit;
            let (Ok(client), Ok(upstream)) = tokio::join!(client_upgrade, upstream_upgrade) else {
                return;
            };
            let (client_r, client_w) = tokio::io::split(TokioIo::new(client));
            let (up_r, up_w) = tokio::io::split(TokioIo::new(upstream));
            let engine = &generation.engine;
            let to_upstream = relay(
                client_r,
                up_w,
                crate::ws::FrameDecoder::new(true, WS_MAX_MESSAGE),
                engine,
                outbound_set,
            );
            let to_client = relay(
                up_r,
                client_w,
                crate::ws::FrameDecoder::new(false, WS_MAX_MESSAGE),
                engine,
                inbound_set,
            );
            let ended = tokio::select! {
                r = to_upstream => r,
                r = to_client => r,
                () = shutdown.cancelled() => Ok(()),
            };
            match ended {
                Err(RelayEnd::Hit(hit)) => {
                    let block = Block {
                        host,
                        reason: BlockReason::Dlp(hit),
                    };
                    log_block(&generation, &block, "WEBSOCKET", &path);
                }
                Err(RelayEnd::Protocol(e)) => {
                    tracing::info!(%host, error = %e, "WebSocket closed: protocol error");
                }
                Err(RelayEnd::Io(e)) => tracing::debug!(%host, error = %e, "WebSocket ended"),
                Ok(()) => {}
            }
        }
        .in_current_span(),
    );
    Ok(out)
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        v.as_bytes()
            .to_ascii_lowercase()
            .starts_with(b"text/event-stream")
    })
}

/// Media types inbound DLP reads; anything else (images, archives, binary
/// downloads) passes unscanned, as phrase matching on it means nothing.
fn is_textual(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return true;
    };
    let ct = ct.to_ascii_lowercase();
    ct.starts_with("text/")
        || ct.contains("json")
        || ct.contains("xml")
        || ct.contains("javascript")
        || ct.contains("yaml")
        || ct.contains("x-www-form-urlencoded")
        || ct.contains("event-stream")
        || ct.contains("markdown")
}

/// The detectors a response is scanned with: the route's inbound set on
/// textual bodies, and always `known_secrets` while the engine holds any,
/// so a response never carries back a registered secret (above all the
/// token egress itself injected, which an echoing upstream returns).
fn response_detectors(
    forward: &Forward<'_>,
    generation: &super::Generation,
    headers: &HeaderMap,
) -> DetectorSet {
    let mut set = if is_textual(headers) {
        forward.inbound
    } else {
        DetectorSet::NONE
    };
    if generation.engine.has_known_secrets() {
        set = set.with(crate::dlp::Detector::KnownSecrets);
    }
    set
}

/// The response: its headers cleaned and scanned, its body held or
/// streamed through the inbound scanner, and ended if the upstream stops
/// sending it for `body_timeout`.
async fn inbound(
    response: Response<Incoming>,
    forward: &Forward<'_>,
    generation: &super::Generation,
    target: &Target,
    (method, path): (&str, &str),
    body_timeout: std::time::Duration,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    let body = Progress::upstream(body, body_timeout);
    strip_hop_by_hop(&mut parts.headers);
    // Never let a client leave the proxied path for QUIC.
    parts.headers.remove(header::ALT_SVC);
    let set = response_detectors(forward, generation, &parts.headers);
    if set.is_empty() {
        return Response::from_parts(parts, body.boxed_unsync());
    }
    let refuse = |reason| blocked(generation, &target.host, reason, method, path);
    for (name, value) in &parts.headers {
        let mut field = Vec::with_capacity(name.as_str().len() + 2 + value.len());
        field.extend_from_slice(name.as_str().as_bytes());
        field.extend_from_slice(b": ");
        field.extend_from_slice(value.as_bytes());
        if let Some(hit) = generation.engine.scan(set, &field) {
            return refuse(BlockReason::Dlp(hit));
        }
    }
    // The scanner reads what the agent will: a compressed body is decoded
    // first (bounded), and one that cannot be decoded is refused.
    let body: ProxyBody = match scan_body::content_coding(&parts.headers) {
        Err(()) => return refuse(BlockReason::UnscannableBody),
        Ok(None) => body.boxed_unsync(),
        Ok(Some(coding)) => {
            parts.headers.remove(header::CONTENT_ENCODING);
            parts.headers.remove(header::CONTENT_LENGTH);
            DecodedBody::new(body, coding).boxed_unsync()
        }
    };
    // An event stream (model APIs stream their answers as one) is relayed
    // as it arrives, never held: a hit cuts it instead of replacing it.
    if is_event_stream(&parts.headers) {
        let slot: HitSlot = Arc::new(Mutex::new(None));
        let body = ScannedBody::new(body, generation.engine.scanner(set), slot).boxed_unsync();
        return Response::from_parts(parts, body);
    }
    let content_length = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let (cleared, scanner, body) =
        match hold(body, generation.engine.scanner(set), content_length).await {
            Held::Whole(bytes, trailers) => {
                let body = held_body(bytes, trailers, &mut parts.headers);
                return Response::from_parts(parts, body);
            }
            Held::Partial(partial) => *partial,
            Held::Hit(hit) => return refuse(BlockReason::Dlp(hit)),
            Held::Failed(e) if e.is::<scan_body::DecodeError>() => {
                return refuse(BlockReason::UnscannableBody);
            }
            Held::Failed(e) if e.is::<super::error::UpstreamBodyTimeout>() => {
                let host = target.host.clone();
                let after = body_timeout;
                let stalled = ProxyError::Upstream(UpstreamError::BodyStalled { host, after });
                return rescue(stalled, generation, method, path);
            }
            Held::Failed(e) => {
                let cause = format!("reading its body: {}", super::error::error_chain(&*e));
                let host = target.host.clone();
                let failed = ProxyError::Upstream(UpstreamError::Failed { host, cause });
                return rescue(failed, generation, method, path);
            }
        };
    // Large: stream the rest; a later hit cuts the body short.
    let slot: HitSlot = Arc::new(Mutex::new(None));
    let rest = ScannedBody::new(body, scanner, slot)
        .with_prefix(Bytes::from(cleared))
        .with_len(streamed_len(&mut parts.headers, content_length))
        .boxed_unsync();
    Response::from_parts(parts, rest)
}
