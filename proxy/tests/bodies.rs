//! Bodies end to end against the real `bb-egress` binary, over HTTP/1.1 on
//! both sides: request trailers reach an HTTP/1.1 upstream (held and
//! streamed bodies), a secret in one is still blocked, and a response body
//! that stops arriving is ended within the body timeout instead of holding
//! the client forever.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod support;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::Frame;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use support::{Proxy, Upstream};

const TOKEN: &str = "upstream-real-token-4f9a8b7c6d5e";

fn routes(port: u16) -> String {
    format!(
        "log: 2\nroutes:\n  - host: localhost\n    allow_private: true\n    ports: [{port}]\n    \
         auth_scheme: Bearer\n    token_env: EGRESS_TOKEN_TEST\n"
    )
}

/// A body of the given frames, of unknown length (so HTTP/1.1 sends it
/// chunked, and trailers can follow).
struct Frames(VecDeque<Frame<Bytes>>);

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(Ok))
    }
}

/// A body that yields `first`, then nothing ever again.
struct Stalls(Option<Bytes>);

impl http_body::Body for Stalls {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut().0.take() {
            Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
            None => Poll::Pending,
        }
    }
}

fn trailer(name: &'static str, value: &str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert(name, HeaderValue::from_str(value).unwrap());
    t
}

/// What the HTTP/1.1-only upstream saw of one request.
#[derive(Debug, Clone)]
struct Got {
    path: String,
    body_len: usize,
    trailers: Option<HeaderMap>,
}

type Log = Arc<Mutex<Vec<Got>>>;

type Answer = Response<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>>;

/// An HTTPS upstream behind the test CA that speaks HTTP/1.1 only (ALPN
/// `http/1.1`): `/stall-small` and `/stall-large` send a head and part of
/// the body, then nothing; every other path reads the request in full and
/// answers `ok`.
async fn http1_upstream() -> (Upstream, Log) {
    let log: Log = Arc::default();
    let seen = Arc::clone(&log);
    let up =
        support::serve_upstream(&[b"http/1.1"], move |req| answer(req, Arc::clone(&seen))).await;
    (up, log)
}

async fn answer(req: Request<Incoming>, log: Log) -> Answer {
    let path = req.uri().path().to_owned();
    let stalled = |len: usize, sent: usize| {
        Response::builder()
            .header("content-type", "text/plain")
            .header("content-length", len)
            .body(Stalls(Some(Bytes::from(vec![b'a'; sent]))).boxed())
            .unwrap()
    };
    match path.as_str() {
        "/stall-small" => return stalled(1000, 10),
        "/stall-large" => return stalled(2_000_000, 400_000),
        _ => {}
    }
    // A request the proxy cut short is not logged: only what arrived whole.
    if let Ok(collected) = req.into_body().collect().await {
        let trailers = collected.trailers().cloned();
        let body_len = collected.to_bytes().len();
        log.lock().unwrap().push(Got {
            path,
            body_len,
            trailers,
        });
    }
    Response::new(
        http_body_util::Full::new(Bytes::from_static(b"ok"))
            .map_err(|never| match never {})
            .boxed(),
    )
}

/// The start of a response as the agent sees it, and how its body ended.
#[derive(Debug)]
struct Outcome {
    status: u16,
    body_len: usize,
    body_error: Option<String>,
}

/// Sends `req` over HTTP/1.1 through a CONNECT tunnel to `localhost:port`;
/// `None` when nothing came back within `limit`.
async fn send<B>(proxy: &Proxy, port: u16, req: Request<B>, limit: Duration) -> Option<Outcome>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let exchange = async {
        let tls = support::tls_tunnel(proxy, port, b"http/1.1").await;
        let (mut s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let resp = s.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut out = Outcome {
            status,
            body_len: 0,
            body_error: None,
        };
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => out.body_len += f.data_ref().map_or(0, Bytes::len),
                Err(e) => {
                    out.body_error = Some(e.to_string());
                    break;
                }
            }
        }
        out
    };
    tokio::time::timeout(limit, exchange).await.ok()
}

fn post_with_trailers(port: u16, path: &str, size: usize, trailers: HeaderMap) -> Request<Frames> {
    let names = trailers
        .keys()
        .map(http::HeaderName::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    let mut frames = VecDeque::new();
    // Several frames, so a streamed body really streams.
    for chunk in vec![b'x'; size].chunks(64 * 1024) {
        frames.push_back(Frame::data(Bytes::copy_from_slice(chunk)));
    }
    frames.push_back(Frame::trailers(trailers));
    Request::builder()
        .method("POST")
        .uri(format!("https://localhost:{port}{path}"))
        .header("host", format!("localhost:{port}"))
        .header("trailer", names)
        .body(Frames(frames))
        .unwrap()
}

/// HTTP/1.1 request trailers reach an HTTP/1.1 upstream, whether the body
/// was held (small) or streamed (past the hold limit). Before the fix the
/// proxy dropped the `Trailer` field as hop-by-hop and sent the body with a
/// Content-Length, so the upstream never saw the trailers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_request_trailers_reach_an_http1_upstream() {
    let (up, log) = http1_upstream().await;
    let proxy = Proxy::start(&routes(up.port), &up, &[("EGRESS_TOKEN_TEST", TOKEN)]);
    for (size, path) in [(10usize, "/small"), (300_000, "/large")] {
        let req = post_with_trailers(up.port, path, size, trailer("x-checksum", "abc123"));
        let r = send(&proxy, up.port, req, Duration::from_secs(20))
            .await
            .expect("an answer");
        assert_eq!(r.status, 200, "{path}: {r:?}");
        let got = log.lock().unwrap().clone();
        let got = got.iter().find(|g| g.path == path).expect("forwarded");
        assert_eq!(got.body_len, size, "{path}");
        assert_eq!(
            got.trailers.as_ref().and_then(|t| t.get("x-checksum")),
            Some(&HeaderValue::from_static("abc123")),
            "{path}: the trailer is forwarded: {got:?}"
        );
    }
}

/// A secret in an HTTP/1.1 request trailer is still blocked before the
/// upstream sees it (held body) or cut (streamed body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_in_an_http1_request_trailer_never_reaches_the_upstream() {
    let (up, log) = http1_upstream().await;
    let proxy = Proxy::start(&routes(up.port), &up, &[("EGRESS_TOKEN_TEST", TOKEN)]);
    for (size, path) in [(10usize, "/small"), (300_000, "/large")] {
        let req = post_with_trailers(
            up.port,
            path,
            size,
            trailer("x-leak", &format!("k={TOKEN}")),
        );
        let r = send(&proxy, up.port, req, Duration::from_secs(20))
            .await
            .expect("an answer");
        assert_eq!(r.status, 403, "{path}: {r:?}");
    }
    for g in log.lock().unwrap().iter() {
        assert!(
            !format!("{:?}", g.trailers).contains(TOKEN),
            "the upstream saw the trailer: {g:?}"
        );
    }
}

/// A response body that stops arriving ends within the body timeout: a
/// held (small) one is answered 504, a streamed (large) one is cut after
/// what was cleared. Before the fix both held the client forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_response_body_ends_within_the_body_timeout() {
    let (up, _log) = http1_upstream().await;
    let proxy = Proxy::start_with_args(
        &routes(up.port),
        &up,
        &[("EGRESS_TOKEN_TEST", TOKEN)],
        &["--body-timeout", "1"],
    );
    let get = |path: &str| {
        Request::builder()
            .uri(format!("https://localhost:{}{path}", up.port))
            .header("host", format!("localhost:{}", up.port))
            .body(http_body_util::Empty::<Bytes>::new())
            .unwrap()
    };
    let started = Instant::now();
    let r = send(&proxy, up.port, get("/stall-small"), Duration::from_secs(8))
        .await
        .expect("a held response that stalls is answered");
    assert_eq!(r.status, 504, "{r:?}");
    let r = send(&proxy, up.port, get("/stall-large"), Duration::from_secs(8))
        .await
        .expect("a streamed response that stalls is ended");
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body_error.is_some(),
        "the body is cut, not completed: {r:?}"
    );
    assert!(r.body_len < 2_000_000, "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(12));
}
