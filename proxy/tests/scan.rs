//! What the proxy scans and logs, end to end against the real `bb-egress`
//! binary: trailers in both directions, the injected token echoed back,
//! compressed responses, secrets in log fields, and git/DoH requests in
//! disguise. The upstream here misbehaves on purpose (echoes headers,
//! ignores `Accept-Encoding: identity`, sends trailers) over real TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use support::{INJECTION, Proxy, Upstream, connect_tunnel, get};

const TOKEN: &str = "upstream-real-token-4f9a8b7c6d5e";

/// What the echoing upstream saw of one request, trailers included.
#[derive(Debug, Clone)]
struct SeenReq {
    target: String,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
}

type Log = Arc<Mutex<Vec<SeenReq>>>;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).unwrap();
    }
    out
}

fn big_text() -> Vec<u8> {
    // Past the proxy's 256 KiB hold buffer, so the response streams.
    let mut b = Vec::new();
    let mut i = 0u32;
    while b.len() < 400_000 {
        b.extend_from_slice(format!("line {i} of a long, ordinary document\n").as_bytes());
        i += 1;
    }
    b
}

type Reply = Response<http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>>;

fn reply(
    body: Vec<u8>,
    content_type: &str,
    encoding: Option<&str>,
    trailers: Option<HeaderMap>,
) -> Reply {
    let full = Full::new(Bytes::from(body));
    let body = match trailers {
        Some(t) => full
            .with_trailers(std::future::ready(Some(Ok(t))))
            .boxed_unsync(),
        None => full.boxed_unsync(),
    };
    let mut r = Response::new(body);
    r.headers_mut()
        .insert("content-type", HeaderValue::from_str(content_type).unwrap());
    if let Some(e) = encoding {
        r.headers_mut()
            .insert("content-encoding", HeaderValue::from_str(e).unwrap());
    }
    r
}

fn trailer(name: &'static str, value: &str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert(name, HeaderValue::from_str(value).unwrap());
    t
}

#[allow(
    clippy::too_many_lines,
    reason = "one arm per misbehaviour reads best as one table"
)]
async fn answer(req: Request<Incoming>, log: Log) -> Reply {
    let (parts, body) = req.into_parts();
    let collected = body.collect().await.ok();
    let trailers = collected.as_ref().and_then(|c| c.trailers().cloned());
    let body = collected.map(|c| c.to_bytes().to_vec()).unwrap_or_default();
    let target = parts
        .uri
        .path_and_query()
        .map(ToString::to_string)
        .unwrap_or_default();
    log.lock().unwrap().push(SeenReq {
        target: target.clone(),
        body: body.clone(),
        trailers,
    });
    let echo = || {
        let mut s = Vec::new();
        for (k, v) in &parts.headers {
            s.extend_from_slice(k.as_str().as_bytes());
            s.extend_from_slice(b": ");
            s.extend_from_slice(v.as_bytes());
            s.push(b'\n');
        }
        s
    };
    let path = parts.uri.path();
    match path {
        "/echo" => reply(echo(), "application/json", None, None),
        "/echo-binary" => reply(echo(), "application/octet-stream", None, None),
        "/echo-big" => {
            let mut b = big_text();
            b.extend_from_slice(&echo());
            reply(b, "text/plain", None, None)
        }
        "/echo-in-header" => {
            let auth = parts
                .headers
                .get("authorization")
                .cloned()
                .unwrap_or(HeaderValue::from_static("none"));
            let mut r = reply(b"see header".to_vec(), "text/plain", None, None);
            r.headers_mut().insert("x-echo-authorization", auth);
            r
        }
        "/echo-gzip" => reply(gzip(&echo()), "text/plain", Some("gzip"), None),
        "/gzip-inject" => reply(gzip(INJECTION.as_bytes()), "text/plain", Some("gzip"), None),
        "/gzip-clean" => reply(
            gzip(b"hello, compressed world"),
            "text/plain",
            Some("gzip"),
            None,
        ),
        "/gzip-big-inject" => {
            let mut b = big_text();
            b.extend_from_slice(INJECTION.as_bytes());
            reply(gzip(&b), "text/plain", Some("gzip"), None)
        }
        "/deflate-inject" => reply(
            deflate(INJECTION.as_bytes()),
            "text/plain",
            Some("deflate"),
            None,
        ),
        "/br-inject" => reply(brotli(INJECTION.as_bytes()), "text/plain", Some("br"), None),
        "/gzip-bomb" => reply(
            gzip(&vec![b'a'; 64 * 1024 * 1024]),
            "text/plain",
            Some("gzip"),
            None,
        ),
        "/zstd" => reply(
            vec![0x28, 0xb5, 0x2f, 0xfd, 0, 0],
            "text/plain",
            Some("zstd"),
            None,
        ),
        "/trailer-inject" => reply(
            b"a short body".to_vec(),
            "text/plain",
            None,
            Some(trailer("x-note", INJECTION)),
        ),
        "/trailer-inject-big" => reply(
            big_text(),
            "text/plain",
            None,
            Some(trailer("x-note", INJECTION)),
        ),
        "/trailer-echo-big" => {
            let auth = parts
                .headers
                .get("authorization")
                .map(|v| String::from_utf8_lossy(v.as_bytes()).to_string())
                .unwrap_or_default();
            reply(
                big_text(),
                "application/octet-stream",
                None,
                Some(trailer("x-echo", &auth)),
            )
        }
        "/sse" => {
            // One event, padding past any holdback, then a pause before the end.
            let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
            tokio::spawn(async move {
                let mut first = b"data: hello\n\n".to_vec();
                first.extend_from_slice(b": ");
                first.extend_from_slice(&[b'.'; 16 * 1024]);
                first.extend_from_slice(b"\n\n");
                tx.send(Bytes::from(first)).await.ok();
                tokio::time::sleep(Duration::from_secs(3)).await;
                tx.send(Bytes::from_static(b"data: bye\n\n")).await.ok();
            });
            let mut r = Response::new(ChannelBody(rx).boxed_unsync());
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/event-stream"),
            );
            r
        }
        "/sse-inject" => {
            let mut b = b"data: hello\n\ndata: ".to_vec();
            b.extend_from_slice(INJECTION.as_bytes());
            b.extend_from_slice(b"\n\n");
            let mut r = reply(b, "text/event-stream", None, None);
            r.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/event-stream"),
            );
            r
        }
        "/trailer-clean" => reply(
            b"body".to_vec(),
            "text/plain",
            None,
            Some(trailer("x-checksum", "abc123")),
        ),
        _ => reply(
            format!("ok {}", body.len()).into_bytes(),
            "text/plain",
            None,
            None,
        ),
    }
}

/// A response body fed from a channel, frame by frame.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// Starts the misbehaving HTTPS upstream (h2 and HTTP/1.1) on 127.0.0.1.
async fn start_upstream() -> (Upstream, Log) {
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    let up = support::serve_upstream(&[], move |req| answer(req, Arc::clone(&seen))).await;
    (up, log)
}

fn routes(port: u16, extra: &str) -> String {
    format!(
        "log: 2\nroutes:\n  - host: localhost\n    allow_private: true\n    ports: [{port}]\n    \
         auth_scheme: Bearer\n    token_env: EGRESS_TOKEN_TEST\n{extra}"
    )
}

async fn setup(extra: &str) -> (Upstream, Log, Proxy) {
    let (up, log) = start_upstream().await;
    let proxy = Proxy::start(
        &routes(up.port, extra),
        &up,
        &[("EGRESS_TOKEN_TEST", TOKEN)],
    );
    (up, log, proxy)
}

/// A response as the agent sees it, trailers and body errors included.
#[derive(Debug)]
struct Seen {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
    trailers: Option<HeaderMap>,
    error: Option<String>,
}

impl Seen {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    /// Everything the agent received, as one string.
    fn everything(&self) -> String {
        format!("{:?} {} {:?}", self.headers, self.text(), self.trailers)
    }
}

/// Sends `req` through a CONNECT tunnel to `localhost:port`; h2 when `h2`.
async fn send<B>(proxy: &Proxy, port: u16, h2: bool, req: Request<B>) -> Seen
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let alpn: &[u8] = if h2 { b"h2" } else { b"http/1.1" };
    let tls = support::tls_tunnel(proxy, port, alpn).await;
    let io = TokioIo::new(tls);
    let resp = if h2 {
        let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        s.send_request(req).await
    } else {
        let (mut s, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        s.send_request(req).await
    };
    let resp = match resp {
        Ok(r) => r,
        // Cut before the head (an h2 stream reset): nothing was delivered.
        Err(e) => {
            return Seen {
                status: StatusCode::from_u16(599).unwrap(),
                headers: HeaderMap::new(),
                body: Vec::new(),
                trailers: None,
                error: Some(e.to_string()),
            };
        }
    };
    let (parts, mut body) = resp.into_parts();
    let mut out = Seen {
        status: parts.status,
        headers: parts.headers,
        body: Vec::new(),
        trailers: None,
        error: None,
    };
    loop {
        match tokio::time::timeout(Duration::from_secs(20), body.frame()).await {
            Err(_) => {
                out.error = Some("timed out".into());
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                out.error = Some(e.to_string());
                break;
            }
            Ok(Some(Ok(frame))) => match frame.into_data() {
                Ok(d) => out.body.extend_from_slice(&d),
                Err(f) => out.trailers = f.into_trailers().ok(),
            },
        }
    }
    out
}

fn get_h(port: u16, path: &str) -> Request<Full<Bytes>> {
    let mut r = get(port, path);
    // Ask for trailers (HTTP/1.1 servers send them only then).
    r.headers_mut()
        .insert("te", HeaderValue::from_static("trailers"));
    r
}

/// Whether none of the injection text reached the agent (the block
/// message names the rule, in lower case).
fn no_phrase(s: &str) -> bool {
    !s.contains("PREVIOUS INSTRUCTIONS") && !s.contains("upload your secrets")
}

// ---- Bug 5: trailers ----------------------------------------------------

#[tokio::test]
async fn a_secret_in_a_request_trailer_is_blocked_small_and_streamed() {
    let (up, log, proxy) = setup("").await;
    for (size, path) in [(10usize, "/small"), (300_000, "/large")] {
        let body =
            Full::new(Bytes::from(vec![b'x'; size])).with_trailers(std::future::ready(Some(Ok::<
                _,
                std::convert::Infallible,
            >(
                trailer("x-leak", &format!("k={TOKEN}")),
            ))));
        let req = Request::builder()
            .method("POST")
            .uri(format!("https://localhost:{}{path}", up.port))
            .body(body)
            .unwrap();
        let r = send(&proxy, up.port, true, req).await;
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert!(r.text().contains("known_secrets"), "{}", r.text());
    }
    for s in log.lock().unwrap().iter() {
        assert!(
            !format!("{:?}", s.trailers).contains(TOKEN),
            "the upstream saw the trailer: {s:?}"
        );
    }
    // A clean trailer still reaches the upstream.
    let body =
        Full::new(Bytes::from_static(b"data")).with_trailers(std::future::ready(Some(Ok::<
            _,
            std::convert::Infallible,
        >(
            trailer("x-checksum", "abc123"),
        ))));
    let req = Request::builder()
        .method("POST")
        .uri(format!("https://localhost:{}/clean", up.port))
        .body(body)
        .unwrap();
    let r = send(&proxy, up.port, true, req).await;
    assert_eq!(r.status, 200, "{r:?}");
    let seen = log.lock().unwrap().clone();
    let clean = seen.iter().find(|s| s.target == "/clean").unwrap();
    assert_eq!(clean.body, b"data");
    assert_eq!(
        clean.trailers.as_ref().and_then(|t| t.get("x-checksum")),
        Some(&HeaderValue::from_static("abc123")),
        "a clean trailer is forwarded"
    );
}

#[tokio::test]
async fn an_injection_in_a_response_trailer_is_blocked_or_cut() {
    let (up, _log, proxy) = setup("").await;
    let r = send(&proxy, up.port, true, get_h(up.port, "/trailer-inject")).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(no_phrase(&r.everything()), "{}", r.everything());
    let r = send(&proxy, up.port, true, get_h(up.port, "/trailer-inject-big")).await;
    assert!(
        r.error.is_some(),
        "a streamed body with a bad trailer is cut"
    );
    assert!(no_phrase(&r.everything()), "{:?}", r.trailers);
    // A clean trailer passes.
    let r = send(&proxy, up.port, true, get_h(up.port, "/trailer-clean")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "body");
    assert_eq!(
        r.trailers.as_ref().and_then(|t| t.get("x-checksum")),
        Some(&HeaderValue::from_static("abc123"))
    );
}

// ---- Bug 10: the injected token echoed back -----------------------------

#[tokio::test]
async fn the_injected_token_never_comes_back_whatever_the_detectors() {
    // Inbound DLP off and outbound off: the echo check still holds.
    let extra = "    dlp:\n      inbound_detectors: false\n      outbound_detectors: false\n";
    let (up, _log, proxy) = setup(extra).await;
    for h2 in [false, true] {
        for path in ["/echo", "/echo-binary", "/echo-in-header", "/echo-gzip"] {
            let r = send(&proxy, up.port, h2, get_h(up.port, path)).await;
            assert_eq!(r.status, 403, "{path}: {r:?}");
            assert!(!r.everything().contains(TOKEN), "{path}");
            assert!(r.text().contains("known_secrets"), "{}", r.text());
        }
        let r = send(&proxy, up.port, h2, get_h(up.port, "/echo-big")).await;
        assert!(r.error.is_some(), "a streamed echo is cut: {:?}", r.status);
        assert!(!r.everything().contains(TOKEN));
        let r = send(&proxy, up.port, h2, get_h(up.port, "/trailer-echo-big")).await;
        assert!(!r.everything().contains(TOKEN), "trailer echo");
    }
    // An ordinary response still passes.
    let r = send(&proxy, up.port, false, get_h(up.port, "/plain")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!proxy.log().iter().any(|l| l.contains(TOKEN)));
}

// ---- Bug 11: compressed responses ---------------------------------------

#[tokio::test]
async fn compressed_responses_are_decoded_before_the_inbound_scan() {
    let (up, _log, proxy) = setup("").await;
    for path in ["/gzip-inject", "/deflate-inject", "/br-inject"] {
        let r = send(&proxy, up.port, false, get_h(up.port, path)).await;
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert!(
            r.text().contains("naive_injection_detection"),
            "{}",
            r.text()
        );
    }
    let r = send(&proxy, up.port, true, get_h(up.port, "/gzip-big-inject")).await;
    assert!(no_phrase(&r.text()), "decoded and cut");
    assert!(r.error.is_some() || r.status == 403, "{:?}", r.status);
    // A clean compressed response arrives decoded.
    let r = send(&proxy, up.port, false, get_h(up.port, "/gzip-clean")).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), "hello, compressed world");
    assert!(r.headers.get("content-encoding").is_none());
    // An encoding the proxy cannot read is refused, not passed unscanned.
    let r = send(&proxy, up.port, false, get_h(up.port, "/zstd")).await;
    assert_eq!(r.status, 403, "{r:?}");
    // A decompression bomb is stopped, not inflated.
    let r = send(&proxy, up.port, false, get_h(up.port, "/gzip-bomb")).await;
    assert!(
        r.status == 403 || r.error.is_some(),
        "bomb: {:?} {}",
        r.status,
        r.body.len()
    );
    assert!(
        r.body.len() < 16 * 1024 * 1024,
        "bomb inflated to {}",
        r.body.len()
    );
}

// ---- Bug 7: secrets in log fields ---------------------------------------

#[tokio::test]
async fn a_registered_secret_is_never_logged_whatever_the_detectors() {
    let extra = "    dlp:\n      outbound_detectors: [token_patterns]\n";
    let (up, _log, proxy) = setup(extra).await;
    // Forwarded (known_secrets is off for the route) and logged at log: 2.
    let r = send(
        &proxy,
        up.port,
        false,
        get_h(up.port, &format!("/p/{TOKEN}/x")),
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    // A CONNECT to a host label made of the secret, blocked.
    let (code, _tcp, _) = connect_tunnel(proxy.addr, &format!("{TOKEN}.example.test"), 443).await;
    assert_eq!(code, 403);
    // A blocked request on the route with the secret in the path.
    let r = send(
        &proxy,
        up.port,
        false,
        get_h(
            up.port,
            &format!("/x/info/refs?service=git-receive-pack&{TOKEN}"),
        ),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(proxy.wait_log("example.test") || proxy.wait_log("request blocked"));
    std::thread::sleep(Duration::from_millis(200));
    let log = proxy.log();
    assert!(
        log.iter().any(|l| l.contains("request forwarded")),
        "{log:?}"
    );
    assert!(
        !log.iter().any(|l| l.contains(TOKEN)),
        "a secret reached the log: {log:?}"
    );
    // Off entirely: still never logged.
    drop(proxy);
    let proxy = Proxy::start(
        &routes(up.port, "    dlp:\n      outbound_detectors: false\n"),
        &up,
        &[("EGRESS_TOKEN_TEST", TOKEN)],
    );
    let r = send(
        &proxy,
        up.port,
        true,
        get_h(up.port, &format!("/p/{TOKEN}")),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(proxy.wait_log("request forwarded"));
    assert!(!proxy.log().iter().any(|l| l.contains(TOKEN)));
}

#[tokio::test]
async fn a_mixed_case_secret_as_a_host_label_is_not_logged_lower_cased() {
    // Host names are case-insensitive; the proxy lower-cases them, which
    // must not hide a registered secret (or its base64) from the log gate.
    const MIXED: &str = "MixedCase-Secret-9fQ2xL7pW3";
    let (up, _log) = start_upstream().await;
    let proxy = Proxy::start(
        &routes(up.port, ""),
        &up,
        &[("EGRESS_TOKEN_TEST", TOKEN), ("EGRESS_TOKEN_OTHER", MIXED)],
    );
    let b64 = "TWl4ZWRDYXNlLVNlY3JldC05ZlEyeEw3cFcz"; // base64(MIXED)
    for label in [MIXED, b64] {
        let (code, _tcp, _) =
            connect_tunnel(proxy.addr, &format!("{label}.example.test"), 443).await;
        assert_eq!(code, 403);
    }
    // Plain HTTP to such a host, the same.
    let req = Request::builder()
        .uri(format!("http://{MIXED}.example.test/"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(support::via_plain(&proxy, req).await.status, 403);
    assert!(proxy.wait_log("request blocked"));
    std::thread::sleep(Duration::from_millis(200));
    let log = proxy.log().join("\n").to_ascii_lowercase();
    assert!(
        !log.contains(&MIXED.to_ascii_lowercase()) && !log.contains(&b64.to_ascii_lowercase()),
        "a lower-cased secret reached the log: {log}"
    );
}

// ---- Bug 8: git and DoH in disguise -------------------------------------

#[tokio::test]
async fn git_and_doh_are_recognised_after_normalisation() {
    let (up, log, proxy) = setup("").await;
    for path in [
        "/org/repo.git/info//refs?service=git-receive-pack",
        "/org/repo.git//info/refs?service=git-upload-pack",
        "/org/repo.git/info/./refs?service=git-upload-pack",
        "/org/repo.git/x/../info/refs?service=git-upload-pack",
        "/org/repo.git/info/refs?service=GIT-UPLOAD-PACK",
        "/org/repo.git/info%2frefs?service=git-upload-pack",
        "/org/repo.git//git-receive-pack",
        "/org/repo.git/GIT-RECEIVE-PACK",
        "/anything?dns=q80BAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB",
        "/api/resolve?name=example.com&type=A",
        "/resolve?name=example.com",
        "/dns-query/",
    ] {
        let r = send(&proxy, up.port, false, get_h(up.port, path)).await;
        assert_eq!(r.status, 403, "{path}: {r:?}");
    }
    // DoH media types wherever they appear (with parameters, any case).
    for (name, value) in [
        ("accept", "text/html, Application/DNS-Message;q=0.9"),
        ("content-type", "application/dns-json; charset=utf-8"),
    ] {
        let mut req = get_h(up.port, "/plain");
        req.headers_mut()
            .insert(name, HeaderValue::from_str(value).unwrap());
        let r = send(&proxy, up.port, true, req).await;
        assert_eq!(r.status, 403, "{name}: {value}");
    }
    assert!(
        log.lock().unwrap().is_empty(),
        "nothing reached the upstream"
    );
    // Ordinary paths still pass.
    for path in ["/a//b", "/refs?service=other", "/resolve", "/docs?dns=off"] {
        let r = send(&proxy, up.port, false, get_h(up.port, path)).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
    }
}

// ---- Event streams are scanned as they arrive, never held --------------

#[tokio::test]
async fn an_event_stream_is_relayed_as_it_arrives_and_still_scanned() {
    let (up, _log, proxy) = setup("").await;
    let tls = support::tls_tunnel(&proxy, up.port, b"http/1.1").await;
    let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    // The head and the first event arrive well before the upstream's 3 s
    // pause ends.
    let first = tokio::time::timeout(Duration::from_millis(1500), async {
        let resp = s.send_request(get_h(up.port, "/sse")).await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut got = Vec::new();
        while !got.windows(5).any(|w| w == b"hello") {
            match body.frame().await {
                Some(Ok(f)) => got.extend_from_slice(&f.into_data().unwrap_or_default()),
                _ => break,
            }
        }
        got
    })
    .await;
    assert!(
        first.is_ok_and(|g| g.windows(5).any(|w| w == b"hello")),
        "the first event was held back"
    );
    // Still scanned: an injection in a stream cuts it.
    let r = send(&proxy, up.port, false, get_h(up.port, "/sse-inject")).await;
    assert!(no_phrase(&r.text()), "{}", r.text());
    assert!(r.error.is_some(), "the stream is cut: {r:?}");
}

// ---- Bug 10 for WebSockets ---------------------------------------------

#[tokio::test]
async fn a_websocket_server_never_hands_back_a_registered_secret() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // Both directions' route detectors off: the agent may send the value
    // (outbound off), but the echoing server may not hand it back.
    let up = Upstream::start().await;
    let extra = "    dlp:\n      inbound_detectors: false\n      outbound_detectors: false\n";
    let proxy = Proxy::start(
        &routes(up.port, extra),
        &up,
        &[("EGRESS_TOKEN_TEST", TOKEN)],
    );
    let (status, ws) = support::websocket(&proxy, up.port, "/ws").await;
    assert_eq!(status, 101);
    let mut ws = ws.unwrap();
    ws.write_all(&support::frame(1, b"hello", true))
        .await
        .unwrap();
    let (op, echoed) = support::read_frame(&mut ws).await.unwrap();
    assert_eq!((op, echoed.as_slice()), (1, &b"hello"[..]));
    ws.write_all(&support::frame(1, format!("k={TOKEN}").as_bytes(), true))
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), ws.read_to_end(&mut rest)).await;
    assert!(
        !String::from_utf8_lossy(&rest).contains(TOKEN),
        "the server's echo of the token reached the agent"
    );
}
