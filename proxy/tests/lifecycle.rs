//! Connection lifecycle and the upstream stack, end to end against the real
//! `bb-egress` binary: the connection limit and shutdown cover tunnels,
//! upstreams that stall get a 504 within their deadline, tokens are checked
//! when a generation loads, `allow_private` is decided by the request's own
//! generation, the machine's own addresses are refused, idle clients and
//! slow bodies are timed out.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use support::{Proxy, Upstream, get, tls_tunnel, via_plain, via_tunnel, write_atomically};

const TOKEN: &str = "upstream-real-token-4f9a8b7c6d5e";

fn routes(port: u16) -> String {
    format!(
        "log: 2\nroutes:\n  - host: localhost\n    allow_private: true\n    ports: [{port}]\n    \
         auth_scheme: Bearer\n    token_env: EGRESS_TOKEN_TEST\n"
    )
}

/// A TLS upstream behind the test CA that answers each request with
/// `answer` (or never, when it sleeps forever). Returns its port.
async fn custom_upstream<F, Fut>(up: &Upstream, answer: F) -> u16
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
{
    support::serve(up.acceptor.clone(), answer).await
}

/// What happened to one connection over the limit.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Tunnel,
    Refused,
    Waiting,
}

async fn try_connect(proxy: SocketAddr, port: u16) -> Outcome {
    let Ok(mut tcp) = TcpStream::connect(proxy).await else {
        return Outcome::Refused;
    };
    let head = format!("CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\n\r\n");
    if tcp.write_all(head.as_bytes()).await.is_err() {
        return Outcome::Refused;
    }
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await {
        Err(_) => Outcome::Waiting,
        Ok(Ok(n)) if n > 0 && buf[..n].starts_with(b"HTTP/1.1 200") => Outcome::Tunnel,
        Ok(_) => Outcome::Refused,
    }
}

/// Bug 1: the permit lives as long as the tunnel. Before the fix the permit
/// was dropped at the upgrade, so all 2 000 extra CONNECTs got a tunnel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_beyond_max_connections_are_refused() {
    let up = Upstream::start().await;
    let proxy = Proxy::start_with_args(
        &routes(up.port),
        &up,
        &[("EGRESS_TOKEN_TEST", TOKEN)],
        &["--max-connections", "20"],
    );
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(tls_tunnel(&proxy, up.port, b"http/1.1").await);
    }
    let mut extra = tokio::task::JoinSet::new();
    for _ in 0..2000 {
        let addr = proxy.addr;
        let port = up.port;
        extra.spawn(async move { try_connect(addr, port).await });
    }
    let mut tunnels = 0;
    let mut waiting = 0;
    while let Some(r) = extra.join_next().await {
        match r.unwrap() {
            Outcome::Tunnel => tunnels += 1,
            Outcome::Waiting => waiting += 1,
            Outcome::Refused => {}
        }
    }
    assert_eq!(tunnels, 0, "tunnels opened beyond max_connections");
    assert_eq!(
        waiting, 0,
        "connections over the limit are answered, not left hanging"
    );
    // A held tunnel still works, and closing one frees its slot.
    let mut first = held.pop().unwrap();
    first
        .write_all(format!("GET /x HTTP/1.1\r\nHost: localhost:{}\r\n\r\n", up.port).as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    first.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if try_connect(proxy.addr, up.port).await == Outcome::Tunnel {
            break;
        }
        assert!(Instant::now() < deadline, "a freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Bug 1: SIGTERM lets a request inside a tunnel finish, closes idle
/// tunnels, and exits. Before the fix the tunnel tasks were untracked and
/// the in-flight request died with the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_open_tunnels() {
    let up = Upstream::start().await;
    let slow = custom_upstream(&up, |_req| async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        http::Response::new(Full::new(Bytes::from_static(b"slow ok")))
    })
    .await;
    let mut proxy = Proxy::start(&routes(slow), &up, &[("EGRESS_TOKEN_TEST", TOKEN)]);
    let mut idle = tls_tunnel(&proxy, slow, b"http/1.1").await;
    let busy = tls_tunnel(&proxy, slow, b"http/1.1").await;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(busy))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = get(slow, "/slow");
    let pending = tokio::spawn(async move { send.send_request(req).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.sigterm();
    let resp = pending
        .await
        .unwrap()
        .expect("the in-flight request finishes");
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"slow ok");
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("the idle tunnel is closed at shutdown")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .expect("bb-egress exits after draining");
    assert!(status.success(), "{status}");
    assert!(proxy.wait_log("shutting down"));
}

/// A GET through a tunnel to `port` that must come back a 504 whose body
/// says `says`, within 10 s. Returns how long it took.
async fn gets_504(proxy: &Proxy, port: u16, h2: bool, says: &str) -> Duration {
    let started = Instant::now();
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        via_tunnel(proxy, "localhost", port, h2, get(port, "/")),
    )
    .await
    .expect("the proxy answers");
    assert_eq!(r.status, 504, "{r:?}");
    assert!(r.body.contains(says), "{}", r.body);
    started.elapsed()
}

/// Bugs 2 and 9: an upstream that accepts and never answers gets a 504
/// within the response timeout; before the fix the client waited forever
/// (and the flag did not exist).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_gets_504_within_the_response_timeout() {
    let up = Upstream::start().await;
    let silent = custom_upstream(&up, |_req| async {
        tokio::time::sleep(Duration::from_hours(1)).await;
        http::Response::new(Full::new(Bytes::new()))
    })
    .await;
    let proxy = Proxy::start_with_args(
        &routes(silent),
        &up,
        &[("EGRESS_TOKEN_TEST", TOKEN)],
        &["--upstream-response-timeout", "2"],
    );
    for h2 in [false, true] {
        let took = gets_504(&proxy, silent, h2, "did not answer").await;
        assert!(
            took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
            "{took:?}"
        );
    }
    assert!(proxy.wait_log("upstream timed out"), "{:?}", proxy.log());
}

/// Bugs 2 and 9: an upstream that takes the TCP connection and never
/// completes TLS gets a 504 within the TLS handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_completes_tls_gets_504() {
    let up = Upstream::start().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let proxy = Proxy::start_with_args(
        &routes(port),
        &up,
        &[("EGRESS_TOKEN_TEST", TOKEN)],
        &["--upstream-tls-timeout", "1"],
    );
    let took = gets_504(&proxy, port, false, "TLS").await;
    assert!(took < Duration::from_secs(5));
}

/// Runs the binary on `routes` with `env` until it exits (or 10 s):
/// its exit code and stderr.
fn run_to_exit(routes: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    assert!(
        Command::new(support::bin())
            .args(["ca", "init"])
            .arg(&ca)
            .status()
            .unwrap()
            .success()
    );
    std::fs::write(dir.path().join("routes.yaml"), routes).unwrap();
    let mut cmd = Command::new(support::bin());
    cmd.arg("--routes")
        .arg(dir.path().join("routes.yaml"))
        .args(["--listen", "127.0.0.1:0", "--ca"])
        .arg(&ca)
        .env_remove("EGRESS_TOKEN_TEST")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Bug 3: a token that cannot be injected (unset, empty, or not a header
/// value) stops the start with exit 64 naming the route and variable, never
/// the value. Before the fix an empty or multi-line token started fine and
/// every request on the route got a 502.
#[tokio::test]
async fn a_token_that_cannot_be_sent_fails_at_load() {
    let routes = "routes:\n  - host: api.example\n    auth_scheme: Bearer\n    \
                  token_env: EGRESS_TOKEN_TEST\n";
    let bad_value = "first-line-secret-9f8e7d\nsecond-line";
    for env in [
        vec![],
        vec![("EGRESS_TOKEN_TEST", "")],
        vec![("EGRESS_TOKEN_TEST", bad_value)],
    ] {
        let (code, stderr) = run_to_exit(routes, &env);
        assert_eq!(code, Some(64), "{env:?}: {stderr}");
        assert!(stderr.contains("routes[0]"), "{stderr}");
        assert!(stderr.contains("api.example"), "{stderr}");
        assert!(stderr.contains("EGRESS_TOKEN_TEST"), "{stderr}");
        assert!(!stderr.contains("first-line-secret"), "{stderr}");
        assert!(!stderr.contains("listening"), "no port is bound: {stderr}");
    }
}

/// Bug 3: a reload whose token is missing is refused and the running
/// generation keeps serving.
#[tokio::test]
async fn a_reload_with_a_missing_token_keeps_the_old_generation() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&routes(up.port), &up, &[("EGRESS_TOKEN_TEST", TOKEN)]);
    let next = format!(
        "{}  - host: other.example\n    auth_scheme: Bearer\n    token_env: EGRESS_TOKEN_EMPTY\n",
        routes(up.port)
    );
    write_atomically(&proxy.routes_path(), &next);
    proxy.sighup();
    assert!(proxy.wait_log("reload refused"), "{:?}", proxy.log());
    assert!(
        proxy
            .log()
            .iter()
            .any(|l| l.contains("routes[1]") && l.contains("EGRESS_TOKEN_EMPTY")),
        "{:?}",
        proxy.log()
    );
    let r = via_tunnel(&proxy, "localhost", up.port, false, get(up.port, "/")).await;
    assert_eq!(r.status, 200, "{r:?}");
}

/// Bug 4: a reload that turns `allow_private` off stops the next request to
/// a private address even though a pooled connection to it is warm. Before
/// the fix the pooled connection was reused and the request got a 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_turning_allow_private_off_stops_a_warm_pool() {
    let up = Upstream::start().await;
    let proxy = Proxy::start(&routes(up.port), &up, &[("EGRESS_TOKEN_TEST", TOKEN)]);
    for h2 in [false, true] {
        let r = via_tunnel(&proxy, "localhost", up.port, h2, get(up.port, "/warm")).await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    let before = up.seen().len();
    write_atomically(
        &proxy.routes_path(),
        &routes(up.port).replace("    allow_private: true\n", ""),
    );
    proxy.sighup();
    assert!(proxy.wait_log("routes reloaded"), "{:?}", proxy.log());
    for h2 in [false, true] {
        let r = via_tunnel(&proxy, "localhost", up.port, h2, get(up.port, "/after")).await;
        assert_eq!(r.status, 502, "{r:?}");
        assert!(r.body.contains("allow_private"), "{}", r.body);
    }
    assert_eq!(
        up.seen().len(),
        before,
        "nothing reached the private upstream"
    );
}

/// The first address of this machine's own interfaces that is not loopback.
fn own_address() -> Option<IpAddr> {
    if_addrs::get_if_addrs()
        .unwrap()
        .into_iter()
        .map(|i| i.ip())
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
}

/// Bug 6: a route whose host is the machine's own interface address is
/// refused without `allow_private`, and nothing connects to it. Before the
/// fix an interface in a documentation range (192.0.2.2 here) was reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_machines_own_address_is_refused() {
    let Some(ip) = own_address() else {
        panic!("this machine has no non-loopback IPv4 interface to test with");
    };
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
        }
    });
    let up = Upstream::start().await;
    let routes = format!("routes:\n  - host: \"{ip}\"\n    ports: [{port}]\n");
    let proxy = Proxy::start(&routes, &up, &[]);
    let req = Request::builder()
        .uri(format!("http://{ip}:{port}/"))
        .header("host", format!("{ip}:{port}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = via_plain(&proxy, req).await;
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.body.contains("allow_private"), "{}", r.body);
    assert_eq!(accepted.load(Ordering::SeqCst), 0, "the proxy connected");
}

/// Bug 12: a bumped connection with nothing in flight is closed after the
/// idle timeout, over HTTP/1.1 and h2. Before the fix it stayed open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_bumped_connections_are_reaped() {
    let up = Upstream::start().await;
    let proxy = Proxy::start_with_args(
        &routes(up.port),
        &up,
        &[("EGRESS_TOKEN_TEST", TOKEN)],
        &["--idle-timeout", "1"],
    );
    for alpn in [&b"http/1.1"[..], b"h2"] {
        let mut tls = tls_tunnel(&proxy, up.port, alpn).await;
        if alpn == b"h2" {
            // The h2 preface and an empty SETTINGS frame.
            tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
                .await
                .unwrap();
        }
        let started = Instant::now();
        let mut buf = vec![0u8; 4096];
        let closed = tokio::time::timeout(Duration::from_secs(6), async {
            loop {
                match tls.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "{alpn:?}: an idle connection stayed open");
        assert!(started.elapsed() >= Duration::from_millis(900));
    }
}

/// Bug 12: a request body that stops arriving is answered 408 after the
/// body timeout. Before the fix the request waited forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_request_body_times_out() {
    let up = Upstream::start().await;
    let proxy = Proxy::start_with_args(
        &routes(up.port),
        &up,
        &[("EGRESS_TOKEN_TEST", TOKEN)],
        &["--body-timeout", "1"],
    );
    let mut tls = tls_tunnel(&proxy, up.port, b"http/1.1").await;
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost:{}\r\ncontent-length: 1000\r\n\r\nfirst bytes",
        up.port
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(6), tls.read_exact(&mut buf))
        .await
        .expect("the proxy answers a stalled body")
        .unwrap();
    assert_eq!(&buf, b"HTTP/1.1 408");
    assert!(up.seen().is_empty(), "nothing reached the upstream");
}

/// Bugs 2 and 9: an upstream whose accept queue is full (SYNs dropped, as
/// for a blackholed address) gets a 504 within the connect timeout. Before
/// the fix the connect waited for the kernel's own timeout (minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_never_accepts_gets_504_within_the_connect_timeout() {
    let up = Upstream::start().await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let port = listener.local_addr().unwrap().port();
    // Fill the accept queue; later SYNs are dropped.
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(300),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        {
            fillers.push(s);
        }
    }
    let proxy = Proxy::start_with_args(
        &routes(port),
        &up,
        &[("EGRESS_TOKEN_TEST", TOKEN)],
        &["--upstream-connect-timeout", "1"],
    );
    let took = gets_504(&proxy, port, false, "TCP").await;
    assert!(took < Duration::from_secs(5));
    drop((listener, fillers));
}

/// Bug 12, the other side: a request waiting on a slow upstream is in
/// flight, not idle, however long the idle timeout is exceeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_is_not_idle() {
    let up = Upstream::start().await;
    let slow = custom_upstream(&up, |_req| async {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        http::Response::new(Full::new(Bytes::from_static(b"thought hard")))
    })
    .await;
    let proxy = Proxy::start_with_args(
        &routes(slow),
        &up,
        &[("EGRESS_TOKEN_TEST", TOKEN)],
        &["--idle-timeout", "1"],
    );
    for h2 in [false, true] {
        let r = via_tunnel(&proxy, "localhost", slow, h2, get(slow, "/think")).await;
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.body, "thought hard");
    }
}

/// Bug 1: a WebSocket relay keeps its client connection's slot. Before the
/// fix the slot was freed at the upgrade and a second connection got a
/// tunnel with `--max-connections 1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_relay_holds_its_connection_slot() {
    let up = Upstream::start().await;
    let proxy = Proxy::start_with_args(
        &routes(up.port),
        &up,
        &[("EGRESS_TOKEN_TEST", TOKEN)],
        &["--max-connections", "1"],
    );
    let (status, ws) = support::websocket(&proxy, up.port, "/ws").await;
    assert_eq!(status, 101);
    let mut ws = ws.unwrap();
    // The relay is up: a message goes through and comes back.
    ws.write_all(&support::frame(1, b"hello", true))
        .await
        .unwrap();
    let (_, echoed) = support::read_frame(&mut ws).await.unwrap();
    assert_eq!(echoed, b"hello");
    assert_eq!(try_connect(proxy.addr, up.port).await, Outcome::Refused);
    drop(ws);
    let deadline = Instant::now() + Duration::from_secs(5);
    while try_connect(proxy.addr, up.port).await != Outcome::Tunnel {
        assert!(
            Instant::now() < deadline,
            "the relay's slot was never freed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Bug 12: a plain client connection that never sends a request is closed
/// after the idle timeout, not the 30 s head timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_plain_connection_is_reaped() {
    let up = Upstream::start().await;
    let proxy = Proxy::start_with_args(
        &routes(up.port),
        &up,
        &[("EGRESS_TOKEN_TEST", TOKEN)],
        &["--idle-timeout", "1"],
    );
    let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(6), tcp.read(&mut buf))
        .await
        .expect("an idle connection is closed")
        .unwrap_or(0);
    assert_eq!(n, 0);
}
