//! The proxy end to end: the real `bb-egress` binary between a client and a
//! real HTTPS upstream on 127.0.0.1, both sides over real TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use support::{INJECTION, Proxy, Upstream, get, via_plain, via_tunnel, write_atomically};

const TOKEN: &str = "upstream-real-token-4f9a8b7c6d5e";

fn routes(port: u16, extra: &str) -> String {
    format!(
        "log: 2\nroutes:\n  - host: localhost\n    allow_private: true\n    ports: [{port}]\n    \
         auth_scheme: Bearer\n    token_env: EGRESS_TOKEN_TEST\n{extra}"
    )
}

async fn setup(extra: &str) -> (Upstream, Proxy) {
    let up = Upstream::start().await;
    let proxy = Proxy::start(
        &routes(up.port, extra),
        &up,
        &[("EGRESS_TOKEN_TEST", TOKEN)],
    );
    (up, proxy)
}

#[tokio::test]
async fn allowed_host_passes_with_token_injected_over_h1_and_h2() {
    let (up, proxy) = setup("").await;
    for h2 in [false, true] {
        let mut req = get(up.port, "/hello?x=1");
        req.headers_mut().insert(
            "authorization",
            "Bearer egress-placeholder".parse().unwrap(),
        );
        let r = via_tunnel(&proxy, "localhost", up.port, h2, req).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, "ok 0");
        assert!(
            r.headers.get("alt-svc").is_none(),
            "Alt-Svc must be stripped"
        );
        if h2 {
            assert_eq!(r.version, http::Version::HTTP_2);
        }
    }
    let seen = up.seen();
    assert_eq!(seen.len(), 2);
    for s in &seen {
        assert_eq!(s.target, "/hello?x=1");
        let auth: Vec<_> = s.headers.get_all("authorization").iter().collect();
        assert_eq!(auth.len(), 1, "exactly one Authorization upstream");
        assert_eq!(auth[0], &format!("Bearer {TOKEN}"));
    }
    // The upstream speaks h2 when offered (ALPN on both legs).
    assert!(seen.iter().any(|s| s.version == http::Version::HTTP_2));
    // The secret never reaches the logs.
    assert!(!proxy.log().iter().any(|l| l.contains(TOKEN)));
}

#[tokio::test]
async fn unknown_host_is_refused_before_any_certificate_is_minted() {
    let (up, proxy) = setup("").await;
    let r = via_tunnel(&proxy, "example.invalid", 443, false, get(443, "/")).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("not on the egress allowlist"), "{}", r.body);
    // A wrong port on an allowed host is refused the same way.
    let r = via_tunnel(
        &proxy,
        "localhost",
        up.port + 1,
        false,
        get(up.port + 1, "/"),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(
        !proxy.log().iter().any(|l| l.contains("minted leaf")),
        "{:?}",
        proxy.log()
    );
    // The allowed host mints exactly then.
    let r = via_tunnel(&proxy, "localhost", up.port, false, get(up.port, "/")).await;
    assert_eq!(r.status, 200);
    assert!(proxy.wait_log("minted leaf"));
}

#[tokio::test]
async fn matchers_block_what_they_do_not_accept() {
    let extra = "    matches:\n      - paths: [{type: prefix, value: /api/}]\n        methods: [GET]\n      \
                 - paths: [{type: regex, value: \"/v[0-9]+/items\"}]\n        \
                 headers: [{name: x-client, value: agent}]\n";
    let (up, proxy) = setup(extra).await;
    let ok = via_tunnel(&proxy, "localhost", up.port, false, get(up.port, "/api/x")).await;
    assert_eq!(ok.status, 200);
    let post = Request::builder()
        .method("POST")
        .uri(format!("https://localhost:{}/api/x", up.port))
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    assert_eq!(
        via_tunnel(&proxy, "localhost", up.port, false, post)
            .await
            .status,
        403
    );
    let mut hdr = get(up.port, "/v2/items");
    assert_eq!(
        via_tunnel(&proxy, "localhost", up.port, false, hdr)
            .await
            .status,
        403,
        "header rule unmet"
    );
    hdr = get(up.port, "/v2/items");
    hdr.headers_mut()
        .insert("x-client", "agent".parse().unwrap());
    assert_eq!(
        via_tunnel(&proxy, "localhost", up.port, false, hdr)
            .await
            .status,
        200
    );
    let dots = via_tunnel(
        &proxy,
        "localhost",
        up.port,
        false,
        get(up.port, "/api/../admin"),
    )
    .await;
    assert_eq!(dots.status, 403);
}

#[tokio::test]
async fn credentials_in_url_headers_and_body_are_blocked() {
    let (up, proxy) = setup("").await;
    let gh = format!("gh{}_{}", "p", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8");
    // token_patterns in the URL.
    let r = via_tunnel(
        &proxy,
        "localhost",
        up.port,
        false,
        get(up.port, &format!("/q?t={gh}")),
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("github-pat-classic"), "{}", r.body);
    assert!(!r.body.contains(&gh));
    // known_secrets (the route's own token, base64-encoded) in a header.
    let mut req = get(up.port, "/h");
    let b64 = "dXBzdHJlYW0tcmVhbC10b2tlbi00ZjlhOGI3YzZkNWU="; // base64(TOKEN)
    req.headers_mut().insert("x-data", b64.parse().unwrap());
    let r = via_tunnel(&proxy, "localhost", up.port, true, req).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("known_secrets"), "{}", r.body);
    // known_secrets in a body.
    let post = Request::builder()
        .method("POST")
        .uri(format!("https://localhost:{}/b", up.port))
        .body(Full::new(Bytes::from(format!("{{\"k\":\"{TOKEN}\"}}"))))
        .unwrap();
    assert_eq!(
        via_tunnel(&proxy, "localhost", up.port, false, post)
            .await
            .status,
        403
    );
    assert!(
        up.seen().is_empty(),
        "nothing blocked may reach the upstream"
    );
    assert!(
        !proxy
            .log()
            .iter()
            .any(|l| l.contains(&gh) || l.contains(TOKEN))
    );
}

#[tokio::test]
async fn a_secret_split_across_streamed_chunks_never_reaches_the_upstream() {
    let (up, proxy) = setup("").await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let body = ChannelBody(rx);
    let req = Request::builder()
        .method("POST")
        .uri(format!("https://localhost:{}/upload", up.port))
        .body(body)
        .unwrap();
    let sender = tokio::spawn(async move {
        // Past the proxy's 256 KiB hold buffer, so the body really streams.
        tx.send(Bytes::from(vec![b'x'; 300_000])).await.ok();
        tx.send(Bytes::from(&TOKEN.as_bytes()[..10])).await.ok();
        tokio::time::sleep(Duration::from_millis(200)).await;
        tx.send(Bytes::from(&TOKEN.as_bytes()[10..])).await.ok();
        tx.send(Bytes::from_static(b"tail")).await.ok();
    });
    let r = via_tunnel(&proxy, "localhost", up.port, false, req).await;
    sender.await.unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    // Whatever the upstream got (it may have seen a cut-off request), it
    // holds no byte of the secret's first chunk.
    for s in up.seen() {
        assert!(!String::from_utf8_lossy(&s.body).contains(&TOKEN[..10]));
    }
}

/// A request body fed from a channel, frame by frame.
struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        self.get_mut()
            .0
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(http_body::Frame::data(b))))
    }
}

#[tokio::test]
async fn git_push_is_blocked_and_fetch_is_gated() {
    let (up, proxy) = setup("").await;
    let push = get(up.port, "/org/repo.git/info/refs?service=git-receive-pack");
    assert_eq!(
        via_tunnel(&proxy, "localhost", up.port, false, push)
            .await
            .status,
        403
    );
    let fetch = get(up.port, "/org/repo.git/info/refs?service=git-upload-pack");
    let r = via_tunnel(&proxy, "localhost", up.port, false, fetch).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("git fetch"), "{}", r.body);
    drop(proxy);
    let proxy = Proxy::start(
        &routes(up.port, "    git:\n      fetch: true\n"),
        &up,
        &[("EGRESS_TOKEN_TEST", TOKEN)],
    );
    let fetch = get(up.port, "/org/repo.git/info/refs?service=git-upload-pack");
    assert_eq!(
        via_tunnel(&proxy, "localhost", up.port, false, fetch)
            .await
            .status,
        200
    );
    let push = get(up.port, "/org/repo.git/git-receive-pack");
    assert_eq!(
        via_tunnel(&proxy, "localhost", up.port, false, push)
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn dns_over_https_is_blocked_even_on_an_allowed_host() {
    let (up, proxy) = setup("").await;
    let r = via_tunnel(
        &proxy,
        "localhost",
        up.port,
        false,
        get(up.port, "/dns-query?dns=AAAB"),
    )
    .await;
    assert_eq!(r.status, 403);
    let mut req = get(up.port, "/resolve");
    req.headers_mut()
        .insert("accept", "application/dns-json".parse().unwrap());
    assert_eq!(
        via_tunnel(&proxy, "localhost", up.port, true, req)
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn inbound_injection_is_blocked_small_and_cut_when_large() {
    let (up, proxy) = setup("").await;
    let r = via_tunnel(&proxy, "localhost", up.port, false, get(up.port, "/inject")).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(!r.body.contains("PREVIOUS INSTRUCTIONS"));
    assert!(r.body.contains("naive_injection_detection"), "{}", r.body);
    // Past the hold buffer the response streams; the phrase is never delivered.
    let r = via_tunnel(
        &proxy,
        "localhost",
        up.port,
        false,
        get(up.port, "/big-inject"),
    )
    .await;
    assert!(
        !r.body
            .to_ascii_lowercase()
            .contains("previous instructions")
    );
    // Turned off for a route, it passes.
    drop(proxy);
    let proxy = Proxy::start(
        &routes(up.port, "    dlp:\n      inbound_detectors: false\n"),
        &up,
        &[("EGRESS_TOKEN_TEST", TOKEN)],
    );
    let r = via_tunnel(&proxy, "localhost", up.port, false, get(up.port, "/inject")).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains(INJECTION));
}

#[tokio::test]
async fn introspection_serves_the_live_routes() {
    let (up, proxy) = setup("").await;
    let req = Request::builder()
        .uri("http://_egress.local/allowlist")
        .header("host", "_egress.local")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = via_plain(&proxy, req).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("\"host\": \"localhost\""), "{}", r.body);
    assert!(r.body.contains("EGRESS_TOKEN_TEST"));
    assert!(!r.body.contains(TOKEN), "never the secret value");
    assert!(r.body.contains(&format!("{}", up.port)));
}

#[tokio::test]
async fn sighup_reloads_good_files_and_keeps_the_old_policy_on_bad_ones() {
    let (up, mut proxy) = setup("").await;
    assert_eq!(
        via_tunnel(&proxy, "localhost", up.port, false, get(up.port, "/a"))
            .await
            .status,
        200
    );
    // Bad file: refused, old policy keeps serving.
    write_atomically(&proxy.routes_path(), "routes:\n  - host: [oops\n");
    proxy.sighup();
    assert!(proxy.wait_log("reload refused"), "{:?}", proxy.log());
    assert_eq!(
        via_tunnel(&proxy, "localhost", up.port, false, get(up.port, "/a"))
            .await
            .status,
        200
    );
    // Good file narrowing the route: applied.
    write_atomically(
        &proxy.routes_path(),
        &routes(up.port, "    matches:\n      - paths: [{value: /only/}]\n"),
    );
    proxy.sighup();
    assert!(proxy.wait_log("routes reloaded"), "{:?}", proxy.log());
    assert_eq!(
        via_tunnel(&proxy, "localhost", up.port, false, get(up.port, "/a"))
            .await
            .status,
        403
    );
    assert_eq!(
        via_tunnel(&proxy, "localhost", up.port, false, get(up.port, "/only/x"))
            .await
            .status,
        200
    );
    assert!(proxy.is_running());
}

#[tokio::test]
async fn private_addresses_are_refused_without_allow_private() {
    let up = Upstream::start().await;
    let routes = format!("routes:\n  - host: localhost\n    ports: [{}]\n", up.port);
    let proxy = Proxy::start(&routes, &up, &[]);
    let r = via_tunnel(&proxy, "localhost", up.port, false, get(up.port, "/")).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("allow_private"), "{}", r.body);
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn malformed_requests_get_400_and_the_proxy_keeps_serving() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, mut proxy) = setup("").await;
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /no-absolute-form HTTP/1.1\r\nHost: x\r\n\r\n",
        b"CONNECT nohostport HTTP/1.1\r\n\r\n",
    ] {
        let mut tcp = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        tcp.write_all(garbage).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let head = String::from_utf8_lossy(&buf[..n]);
        assert!(head.starts_with("HTTP/1.1 400"), "{head:?}");
    }
    assert!(proxy.is_running());
    assert_eq!(
        via_tunnel(&proxy, "localhost", up.port, false, get(up.port, "/"))
            .await
            .status,
        200
    );
}

#[test]
fn a_missing_token_env_is_a_config_error_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.yaml");
    std::fs::write(
        &routes,
        "routes:\n  - host: api.example.com\n    auth_scheme: Bearer\n    token_env: EGRESS_TOKEN_ABSENT\n",
    )
    .unwrap();
    let ca = dir.path().join("ca");
    assert!(
        std::process::Command::new(support::bin())
            .args(["ca", "init"])
            .arg(&ca)
            .status()
            .unwrap()
            .success()
    );
    let out = std::process::Command::new(support::bin())
        .arg("--routes")
        .arg(&routes)
        .arg("--ca")
        .arg(&ca)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("EGRESS_TOKEN_ABSENT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("EGRESS_TOKEN_ABSENT is not set"), "{err}");
}

#[tokio::test]
async fn websocket_messages_pass_and_a_secret_closes_the_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (up, proxy) = setup("").await;
    let (status, ws) = support::websocket(&proxy, up.port, "/ws").await;
    assert_eq!(status, 101);
    let mut ws = ws.unwrap();
    ws.write_all(&support::frame(1, b"hello upstream", true))
        .await
        .unwrap();
    let (op, echoed) = support::read_frame(&mut ws).await.unwrap();
    assert_eq!((op, echoed.as_slice()), (1, &b"hello upstream"[..]));
    // A message carrying the route's secret is never forwarded; the proxy
    // closes the socket instead.
    let leak = format!("key={TOKEN}");
    ws.write_all(&support::frame(1, leak.as_bytes(), true))
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), ws.read_to_end(&mut rest)).await;
    assert!(!String::from_utf8_lossy(&rest).contains(TOKEN));
    let got = up.ws_seen.lock().unwrap().clone();
    assert_eq!(got, vec![b"hello upstream".to_vec()]);
    // The extension offer was stripped so frames stay readable.
    let seen = up.seen();
    assert!(
        seen.iter()
            .all(|s| s.headers.get("sec-websocket-extensions").is_none())
    );
    assert!(proxy.wait_log("WEBSOCKET"), "{:?}", proxy.log());
}
