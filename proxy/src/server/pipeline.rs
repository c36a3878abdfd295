//! Client connections and the request pipeline of SPEC §3.
//!
//! A client connection speaks HTTP/1.1 to the proxy: absolute-form plain
//! HTTP requests are handled directly; `CONNECT host:port` is checked
//! against the policy *before* a leaf certificate exists, then the tunnel is
//! bumped with a leaf for that host and served as HTTP/1.1 or h2 (ALPN).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::body::{self as scan_body, DecodedBody, HitSlot, ScannedBody};
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

/// A held body as a message body again, trailers included.
fn held_body(bytes: Vec<u8>, trailers: Option<HeaderMap>) -> ProxyBody {
    match trailers {
        None => full(bytes),
        Some(t) => Full::new(Bytes::from(bytes))
            .map_err(|never: Infallible| match never {})
            .with_trailers(std::future::ready(Some(Ok(t))))
            .boxed_unsync(),
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

fn full(body: impl Into<Bytes>) -> ProxyBody {
    Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn empty() -> ProxyBody {
    Empty::<Bytes>::new()
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

fn text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Where a request goes.
#[derive(Debug, Clone)]
struct Target {
    via: Via,
    host: String,
    port: u16,
}

/// Serves one client TCP connection until it closes or shutdown.
pub(crate) async fn serve_client(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) {
    let svc_shared = Arc::clone(&shared);
    let svc_shutdown = shutdown.clone();
    let svc = service_fn(move |req| {
        let shared = Arc::clone(&svc_shared);
        let shutdown = svc_shutdown.clone();
        async move { Ok::<_, Infallible>(front(req, shared, shutdown).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_timeout)
        .max_buf_size(shared.limits.max_header_bytes.max(8192));
    let conn = builder
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "client connection ended with an error");
            }
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// A request on the client connection: CONNECT, plain HTTP, or a mistake.
async fn front(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Response<ProxyBody> {
    if req.method() == Method::CONNECT {
        return connect(req, shared, shutdown);
    }
    let uri = req.uri().clone();
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(host)) => {
            let target = Target {
                via: Via::PlainHttp,
                host: host.to_ascii_lowercase(),
                port: uri.port_u16().unwrap_or(80),
            };
            handle(req, target, &shared).await
        }
        (Some(_), Some(_)) => text(
            StatusCode::BAD_REQUEST,
            "bb-egress: use CONNECT for https:// URLs\n".into(),
        ),
        _ => text(
            StatusCode::BAD_REQUEST,
            "bb-egress is a forward proxy: send absolute-form requests or CONNECT\n".into(),
        ),
    }
}

fn connect(
    req: Request<Incoming>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Response<ProxyBody> {
    let Some(authority) = req.uri().authority().cloned() else {
        return text(
            StatusCode::BAD_REQUEST,
            "bb-egress: CONNECT needs host:port\n".into(),
        );
    };
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let Some(port) = authority.port_u16() else {
        return text(
            StatusCode::BAD_REQUEST,
            "bb-egress: CONNECT needs host:port\n".into(),
        );
    };
    let generation = shared.current();
    if let Err(mut block) = generation.policy.check_connect(&host, port) {
        // The gate sees the host as the agent spelled it: lower-casing must
        // not hide a secret (or its base64) used as a label.
        if log_field(&generation.engine, authority.host()) != authority.host() {
            crate::redact::REDACTED_FIELD.clone_into(&mut block.host);
        }
        log_block(&generation, &block, "CONNECT", "");
        return text(StatusCode::FORBIDDEN, block.agent_message());
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
            return text(
                StatusCode::BAD_GATEWAY,
                "bb-egress: could not mint a certificate\n".into(),
            );
        }
    };
    let target = Target {
        via: Via::Connect,
        host,
        port,
    };
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => bump(upgraded, target, leaf, shared, shutdown).await,
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    Response::new(empty())
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
    let config = match rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    {
        Ok(b) => {
            let mut c = b
                .with_no_client_auth()
                .with_cert_resolver(Arc::new(FixedCert(leaf)));
            c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            c
        }
        Err(e) => {
            tracing::error!(error = %e, "TLS configuration failed");
            return;
        }
    };
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
    let svc_shared = Arc::clone(&shared);
    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = Arc::clone(&svc_shared);
        let target = target.clone();
        async move { Ok::<_, Infallible>(handle(req, target, &shared).await) }
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(shared.limits.header_timeout)
        .max_buf_size(shared.limits.max_header_bytes.max(8192));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), svc);
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "bumped connection ended with an error");
            }
        }
        () = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Headers never forwarded in either direction (hop-by-hop, RFC 9110 §7.6.1,
/// plus the proxy's own and QUIC advertisements).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
];

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

fn log_block(generation: &super::Generation, block: &Block, method: &str, path: &str) {
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
    log_block(generation, &block, method, path);
    text(StatusCode::FORBIDDEN, block.agent_message())
}

/// The SPEC §3 pipeline for one request.
#[allow(
    clippy::too_many_lines,
    reason = "the pipeline reads best as one sequence of steps"
)]
async fn handle(req: Request<Incoming>, target: Target, shared: &Shared) -> Response<ProxyBody> {
    let generation = shared.current();
    let method = req.method().as_str().to_owned();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let refuse = |reason| blocked(&generation, &target.host, reason, &method, &path);

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
        method: &method,
        path: &path,
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
            return r;
        }
        Decision::Block(mut b) => {
            // As for CONNECT: the gate sees the host as the agent spelled it.
            if let Some(raw) = req.uri().host()
                && log_field(&generation.engine, raw) != raw
            {
                crate::redact::REDACTED_FIELD.clone_into(&mut b.host);
            }
            log_block(&generation, &b, &method, &path);
            return text(StatusCode::FORBIDDEN, b.agent_message());
        }
        Decision::Forward(f) => f,
    };
    let injects = forward.auth().is_some();

    // Outbound DLP over the URL and headers (the agent's Authorization is
    // skipped when the route replaces it: clients put placeholders there).
    if !forward.outbound.is_empty() {
        let url = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
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
        return websocket(req, &target, &forward, &generation, shared, &method, &path).await;
    }

    // Build the upstream request.
    let (parts, body) = req.into_parts();
    let Some(uri) = upstream_uri(&target, &parts.uri) else {
        return text(
            StatusCode::BAD_REQUEST,
            "bb-egress: unusable request target\n".into(),
        );
    };
    let mut headers = parts.headers;
    if let Err(refusal) = prepare_headers(&mut headers, &forward, &generation) {
        return *refusal;
    }
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
        body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync()
    } else {
        match hold(
            body,
            generation.engine.scanner(forward.outbound),
            content_length,
        )
        .await
        {
            Held::Whole(bytes, trailers) => held_body(bytes, trailers),
            Held::Partial(partial) => {
                let (cleared, scanner, rest) = *partial;
                ScannedBody::new(rest, scanner, Arc::clone(&slot))
                    .with_prefix(Bytes::from(cleared))
                    .with_len(content_length)
                    .boxed_unsync()
            }
            Held::Hit(hit) => {
                return refuse(BlockReason::Dlp(hit));
            }
            Held::Failed(e) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("bb-egress: reading the request body failed: {e}\n"),
                );
            }
        }
    };
    let mut up = Request::new(up_body);
    *up.method_mut() = parts.method;
    *up.uri_mut() = uri;
    *up.version_mut() = Version::HTTP_11;
    *up.headers_mut() = headers;

    let response = match shared.client.request(up).await {
        Ok(r) => r,
        Err(e) => {
            let hit = slot.lock().ok().and_then(|mut s| s.take());
            if let Some(hit) = hit {
                return refuse(BlockReason::Dlp(hit));
            }
            return upstream_failed(&target.host, &e);
        }
    };
    if generation.policy.config().log >= LogLevel::All {
        // Logged whatever the route's detectors: the gate scans for every
        // registered secret.
        let (host, path) = (
            log_field(&generation.engine, &target.host),
            log_field(&generation.engine, &path),
        );
        tracing::info!(
            host = %host, method, path = %path, route = forward.route_index,
            action = "forward", status = response.status().as_u16(), "request forwarded"
        );
    }
    inbound(response, &forward, &generation, &target, &method, &path).await
}

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
) -> Result<(), Box<Response<ProxyBody>>> {
    strip_hop_by_hop(headers);
    headers.remove(header::HOST);
    headers.remove(header::AUTHORIZATION);
    if let Some(auth) = forward.auth() {
        let value = generation.token(auth.token_env).and_then(|t| {
            HeaderValue::from_str(&format!("{} {}", auth.scheme.as_str(), t.expose())).ok()
        });
        let Some(mut value) = value else {
            return Err(Box::new(text(
                StatusCode::BAD_GATEWAY,
                "bb-egress: the route's token is missing or not a valid header value\n".into(),
            )));
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
async fn websocket(
    mut req: Request<Incoming>,
    target: &Target,
    forward: &Forward<'_>,
    generation: &Arc<super::Generation>,
    shared: &Shared,
    method: &str,
    path: &str,
) -> Response<ProxyBody> {
    let client_upgrade = hyper::upgrade::on(&mut req);
    let (parts, _body) = req.into_parts();
    let Some(uri) = upstream_uri(target, &parts.uri) else {
        return text(
            StatusCode::BAD_REQUEST,
            "bb-egress: unusable request target\n".into(),
        );
    };
    let mut headers = parts.headers;
    if let Err(refusal) = prepare_headers(&mut headers, forward, generation) {
        return *refusal;
    }
    // Extensions (permessage-deflate) would make frames unreadable to DLP.
    headers.remove(header::SEC_WEBSOCKET_EXTENSIONS);
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let mut up = Request::new(empty());
    *up.method_mut() = Method::GET;
    *up.uri_mut() = uri;
    *up.version_mut() = Version::HTTP_11;
    *up.headers_mut() = headers;
    let mut response = match shared.client.request_http1(up).await {
        Ok(r) => r,
        Err(e) => return upstream_failed(&target.host, &e),
    };
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return inbound(response, forward, generation, target, method, path).await;
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
    tokio::spawn(async move {
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
        let ended = tokio::select! { r = to_upstream => r, r = to_client => r };
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
    });
    out
}

/// The 502 for a failed upstream request, logged once.
fn upstream_failed(host: &str, e: &dyn std::error::Error) -> Response<ProxyBody> {
    let cause = error_chain(e);
    tracing::warn!(%host, error = %cause, "upstream request failed");
    text(
        StatusCode::BAD_GATEWAY,
        format!("bb-egress: upstream {host} failed: {cause}\n"),
    )
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
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

async fn inbound(
    response: Response<Incoming>,
    forward: &Forward<'_>,
    generation: &super::Generation,
    target: &Target,
    method: &str,
    path: &str,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    // Never let a client leave the proxied path for QUIC.
    parts.headers.remove(header::ALT_SVC);
    let set = response_detectors(forward, generation, &parts.headers);
    if set.is_empty() {
        let body = body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync();
        return Response::from_parts(parts, body);
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
        Ok(None) => body.map_err(|e| -> BoxError { Box::new(e) }).boxed_unsync(),
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
    let (cleared, scanner, body) = match hold(body, generation.engine.scanner(set), content_length)
        .await
    {
        Held::Whole(bytes, trailers) => {
            return Response::from_parts(parts, held_body(bytes, trailers));
        }
        Held::Partial(partial) => *partial,
        Held::Hit(hit) => return refuse(BlockReason::Dlp(hit)),
        Held::Failed(e) if e.is::<scan_body::DecodeError>() => {
            return refuse(BlockReason::UnscannableBody);
        }
        Held::Failed(e) => {
            tracing::warn!(host = %log_field(&generation.engine, &target.host), error = %e, "upstream body failed");
            return text(
                StatusCode::BAD_GATEWAY,
                format!("bb-egress: upstream {} body failed\n", target.host),
            );
        }
    };
    // Large: stream the rest; a later hit cuts the body short.
    let slot: HitSlot = Arc::new(Mutex::new(None));
    let rest = ScannedBody::new(body, scanner, slot)
        .with_prefix(Bytes::from(cleared))
        .with_len(content_length)
        .boxed_unsync();
    Response::from_parts(parts, rest)
}
