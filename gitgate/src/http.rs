//! git's smart HTTP protocol on the agent side (port 9420 in the bundle).
//!
//! Routes, for each declared repo `<name>` (`.git` suffix optional):
//! `GET /<name>.git/info/refs?service=git-upload-pack|git-receive-pack`,
//! `POST /<name>.git/git-upload-pack`, `POST /<name>.git/git-receive-pack`.
//! Anything else is a refusal that says what is served.
//!
//! Limits (SPEC §7): a POST must carry a valid `Content-Length` or be
//! chunked (400 otherwise; hyper itself answers 400 to a malformed or
//! negative length); a pack over `max_pack_bytes` is 413; a client idle
//! for [`CLIENT_IDLE`] between body frames is dropped with 408; pushed
//! packs are streamed to a spool file, so memory does not grow with them.

use std::convert::Infallible;
use std::io::{self, Read as _};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt as _, Full, channel::Channel, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::gate::Gate;
use crate::mirror::Mirror;
use crate::pktline::PushRequest;
use crate::ssh::Service;

/// How long a client may send nothing while the gate waits for its body.
pub const CLIENT_IDLE: Duration = Duration::from_mins(1);
/// Most bytes of commands and push options before the pack.
pub const MAX_HEADER_BYTES: usize = 16 * 1024 * 1024;
/// Largest upload-pack request (wants and haves), after gunzip.
pub const MAX_NEGOTIATION_BYTES: usize = 32 * 1024 * 1024;

type Body = BoxBody<Bytes, io::Error>;

/// Serves smart HTTP on `listener` until `cancel` fires.
pub async fn serve(gate: Arc<Gate>, listener: TcpListener, cancel: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let gate = Arc::clone(&gate);
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let gate = Arc::clone(&gate);
                async move { Ok::<_, Infallible>(handle(gate, req).await) }
            });
            let conn = http1_builder().serve_connection(TokioIo::new(tcp), service);
            tokio::select! {
                r = conn => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "http connection ended");
                },
                () = cancel.cancelled() => {}
            }
        });
    }
}

/// The HTTP/1 settings of every agent connection. Public (hidden) so the
/// `gitgate_http` fuzz target parses with exactly these.
#[doc(hidden)]
#[must_use]
pub fn http1_builder() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(CLIENT_IDLE);
    builder
}

fn text(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn git_response(content_type: &str, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    let headers = resp.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache, max-age=0, must-revalidate"),
    );
    resp
}

/// Splits `/<name>[.git]/<rest>` into the repo name and the rest.
#[must_use]
pub fn route(path: &str) -> Option<(&str, &str)> {
    let path = path.strip_prefix('/')?;
    let (repo, rest) = path.split_once('/')?;
    let name = repo.strip_suffix(".git").unwrap_or(repo);
    Some((name, rest))
}

async fn handle(gate: Arc<Gate>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let Some((name, rest)) = route(&path) else {
        return text(
            StatusCode::NOT_FOUND,
            "git-gate: not a repository URL (/<name>.git/...)\n".into(),
        );
    };
    let Some(up) = gate.repo(name) else {
        let known: Vec<&str> = gate.config.repos.keys().map(String::as_str).collect();
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "git-gate: no repo named {:?} is declared for this bottle (declared: {})\n",
                name.escape_debug().to_string(),
                known.join(", ")
            ),
        );
    };
    let query = req.uri().query().unwrap_or("").to_owned();
    match (req.method(), rest) {
        (&Method::GET, "info/refs") => {
            let service = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("service="))
                .and_then(Service::from_name);
            let Some(service) = service else {
                return text(
                    StatusCode::FORBIDDEN,
                    "git-gate: only git's smart HTTP protocol is served (?service=git-upload-pack or git-receive-pack)\n".into(),
                );
            };
            match gate.advertise(&up, service).await {
                Ok(ad) => {
                    let mut body = Vec::new();
                    crate::pktline::encode(
                        &mut body,
                        format!("# service={}\n", service.name()).as_bytes(),
                    );
                    crate::pktline::flush(&mut body);
                    body.extend_from_slice(&ad);
                    git_response(
                        &format!("application/x-{}-advertisement", service.name()),
                        Full::new(Bytes::from(body))
                            .map_err(|never| match never {})
                            .boxed(),
                    )
                }
                Err(e) => {
                    tracing::warn!(repo = %up.name, error = %e, "advertisement failed");
                    text(StatusCode::BAD_GATEWAY, format!("git-gate: {e}\n"))
                }
            }
        }
        (&Method::POST, "git-upload-pack") => upload_pack(gate, up, req).await,
        (&Method::POST, "git-receive-pack") => receive_pack(gate, up, req).await,
        _ => text(
            StatusCode::NOT_FOUND,
            format!(
                "git-gate: {} /{name}.git/{rest} is not served\n",
                req.method()
            ),
        ),
    }
}

/// The body's declared framing: `Ok(Some(n))` for a Content-Length,
/// `Ok(None)` for chunked, `Err` for a 400.
#[doc(hidden)]
pub fn framing<B>(req: &Request<B>) -> Result<Option<u64>, String> {
    let chunked = req
        .headers()
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .any(|v| {
            v.to_str()
                .is_ok_and(|s| s.to_ascii_lowercase().contains("chunked"))
        });
    match req.headers().get(header::CONTENT_LENGTH) {
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| "Content-Length is not text".to_owned())?;
            s.trim()
                .parse::<u64>()
                .map(Some)
                .map_err(|_| format!("Content-Length {s:?} is not a non-negative integer"))
        }
        None if chunked => Ok(None),
        None => Err("a Content-Length (or a chunked body) is required".into()),
    }
}

/// Waits for the next body frame, at most [`CLIENT_IDLE`].
async fn next_chunk<B: ReqBody>(body: &mut B) -> Result<Option<Bytes>, Response<Body>> {
    loop {
        match tokio::time::timeout(CLIENT_IDLE, body.frame()).await {
            Err(_) => {
                return Err(text(
                    StatusCode::REQUEST_TIMEOUT,
                    "git-gate: the request body stalled\n".into(),
                ));
            }
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => {
                return Err(text(
                    StatusCode::BAD_REQUEST,
                    format!("git-gate: reading the request body: {e}\n"),
                ));
            }
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
        }
    }
}

/// A request body the gate reads: hyper's `Incoming` when serving, any
/// body in the fuzz target and the property tests.
#[doc(hidden)]
pub trait ReqBody: hyper::body::Body<Data = Bytes, Error: std::fmt::Display> + Unpin {}
impl<B: hyper::body::Body<Data = Bytes, Error: std::fmt::Display> + Unpin> ReqBody for B {}

async fn upload_pack(
    gate: Arc<Gate>,
    up: Arc<crate::config::Upstream>,
    req: Request<Incoming>,
) -> Response<Body> {
    let request = match read_negotiation(req, MAX_NEGOTIATION_BYTES).await {
        Ok(r) => r,
        Err(resp) => return resp,
    };
    let (tx, chan) = Channel::<Bytes, io::Error>::new(4);
    tokio::spawn(async move {
        if let Err(e) = gate.upload_pack(&up, request, tx).await {
            tracing::warn!(repo = %up.name, error = %e, "upload-pack relay failed");
        }
    });
    git_response("application/x-git-upload-pack-result", chan.boxed())
}

/// Reads an upload-pack request (wants and haves), gunzipped when sent
/// so: at most `limit` bytes before and after gunzip, else 413.
#[doc(hidden)]
pub async fn read_negotiation<B: ReqBody>(
    req: Request<B>,
    limit: usize,
) -> Result<Vec<u8>, Response<Body>> {
    if let Err(why) = framing(&req) {
        return Err(text(StatusCode::BAD_REQUEST, format!("git-gate: {why}\n")));
    }
    let gzip = req
        .headers()
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let mut body = req.into_body();
    let mut buf = BytesMut::new();
    while let Some(d) = next_chunk(&mut body).await? {
        if buf.len() + d.len() > limit {
            return Err(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "git-gate: upload-pack request too large\n".into(),
            ));
        }
        buf.extend_from_slice(&d);
    }
    if !gzip {
        return Ok(buf.to_vec());
    }
    let mut out = Vec::new();
    let cap = limit as u64 + 1;
    match flate2::read::GzDecoder::new(&buf[..])
        .take(cap)
        .read_to_end(&mut out)
    {
        Ok(n) if n as u64 >= cap => Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "git-gate: upload-pack request too large\n".into(),
        )),
        Ok(_) => Ok(out),
        Err(e) => Err(text(
            StatusCode::BAD_REQUEST,
            format!("git-gate: bad gzip body: {e}\n"),
        )),
    }
}

async fn receive_pack(
    gate: Arc<Gate>,
    up: Arc<crate::config::Upstream>,
    req: Request<Incoming>,
) -> Response<Body> {
    let max = gate.config.max_pack_bytes;
    let PushHead {
        push,
        header,
        pending,
        body,
    } = match read_push_head(req, max, MAX_HEADER_BYTES).await {
        Ok(h) => h,
        Err(resp) => return resp,
    };
    if push.commands.is_empty() {
        // git's probe before a large chunked upload: a bare flush.
        return git_response(
            "application/x-git-receive-pack-result",
            Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed(),
        );
    }
    let mirror = match Mirror::open(&gate.config.state_dir, &up.name) {
        Ok(m) => m,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("git-gate: {e}\n"),
            );
        }
    };
    let spool_failed = |e: &io::Error| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("git-gate: spool file: {e}\n"),
        )
    };
    let spool = match tempfile::NamedTempFile::new_in(mirror.spool()) {
        Ok(s) => s,
        Err(e) => return spool_failed(&e),
    };
    let mut file = match tokio::fs::File::create(spool.path()).await {
        Ok(f) => f,
        Err(e) => return spool_failed(&e),
    };
    // The mirror's refresh runs while the pack arrives, and so does the
    // first pass of its indexing (reading the spool as it grows).
    let (start, feed) = match gate.begin_push(&up, &mirror, spool.path()) {
        Ok(begun) => begun,
        Err(e) => return spool_failed(&e),
    };
    // An upload that fails here drops `feed`, which ends the indexing.
    let len = match spool_pack(body, pending, &mut file, max).await {
        Ok(len) => len,
        Err(resp) => return resp,
    };
    drop(file);
    feed.finish(len);
    let header = header.freeze();
    let (tx, chan) = Channel::<Bytes, io::Error>::new(4);
    tokio::spawn(async move {
        // The spool file lives until the push is answered.
        let spool = spool;
        gate.receive_pack(&up, &push, &header, spool.path().to_owned(), start, tx)
            .await;
    });
    git_response("application/x-git-receive-pack-result", chan.boxed())
}

/// The front of a receive-pack request, read off its body.
#[doc(hidden)]
#[derive(Debug)]
pub struct PushHead<B> {
    /// The commands, capabilities and push options.
    pub push: PushRequest,
    /// Their bytes as they came (`push.header_len` of them).
    pub header: BytesMut,
    /// Pack bytes that arrived with the header's last frame.
    pub pending: BytesMut,
    /// The rest of the body: the pack.
    pub body: B,
}

/// Checks the framing (400, or 413 for a length over `max_pack` plus
/// `max_header`) and reads the commands and push options: 413 once more
/// than `max_header` bytes came without them ending, 400 when they are
/// malformed or the body ends first.
#[doc(hidden)]
pub async fn read_push_head<B: ReqBody>(
    req: Request<B>,
    max_pack: u64,
    max_header: usize,
) -> Result<PushHead<B>, Response<Body>> {
    match framing(&req) {
        Err(why) => return Err(text(StatusCode::BAD_REQUEST, format!("git-gate: {why}\n"))),
        Ok(Some(n)) if n > max_pack.saturating_add(max_header as u64) => {
            return Err(too_large(max_pack));
        }
        Ok(_) => {}
    }
    let mut body = req.into_body();
    let mut head = BytesMut::new();
    // Parsing again at every frame made a many-command push quadratic
    // (40 000 commands in 8 KiB frames: 7.7 s against 19 ms for one
    // parse), so the request is parsed only when a frame completes a
    // pkt-line it could decide on (see `decisive`), at the header cap and
    // at the end of the body. A malformed command line is then refused
    // at its flush rather than at once, with the same 400 and message.
    let mut walked = 0;
    let mut ended = false;
    loop {
        if ended || head.len() > max_header || decisive(&head, &mut walked) {
            match PushRequest::parse(&head) {
                Err(e) => {
                    return Err(text(
                        StatusCode::BAD_REQUEST,
                        format!("git-gate: bad push request: {e}\n"),
                    ));
                }
                Ok(Some(push)) => {
                    let pending = head.split_off(push.header_len);
                    return Ok(PushHead {
                        push,
                        header: head,
                        pending,
                        body,
                    });
                }
                Ok(None) => {}
            }
        }
        if ended {
            return Err(text(
                StatusCode::BAD_REQUEST,
                "git-gate: the push request ended before its commands did\n".into(),
            ));
        }
        if head.len() > max_header {
            return Err(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "git-gate: push commands too large\n".into(),
            ));
        }
        match next_chunk(&mut body).await? {
            None => ended = true,
            Some(d) => head.extend_from_slice(&d),
        }
    }
}

/// Walks the complete pkt-lines of `head` from `*walked` on and says
/// whether one of them could change what [`PushRequest::parse`] returns:
/// a flush (the end of the commands or of the options), a delimiter or
/// response-end (refused), or a malformed length. Data lines alone leave
/// it incomplete or wrong, which the next decisive line or the end of the
/// body still reports. Each byte is walked once.
fn decisive(head: &[u8], walked: &mut usize) -> bool {
    loop {
        match crate::pktline::decode(&head[*walked..]) {
            Ok(None) => return false,
            Ok(Some((crate::pktline::Pkt::Data(_), used))) => *walked += used,
            Ok(Some((_, used))) => {
                *walked += used;
                return true;
            }
            Err(_) => return true,
        }
    }
}

/// Writes `pending` and the rest of `body` to `out`, at most `max` bytes
/// (413 past them, after draining); returns the bytes written.
#[doc(hidden)]
pub async fn spool_pack<B: ReqBody, W: tokio::io::AsyncWrite + Unpin>(
    mut body: B,
    mut pending: BytesMut,
    out: &mut W,
    max: u64,
) -> Result<u64, Response<Body>> {
    let mut written = 0u64;
    loop {
        if !pending.is_empty() {
            written += pending.len() as u64;
            if written > max {
                return Err(drain_then_413(body, max).await);
            }
            if let Err(e) = out.write_all(&pending).await {
                return Err(text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("git-gate: spooling the pack: {e}\n"),
                ));
            }
        }
        match next_chunk(&mut body).await? {
            None => break,
            Some(d) => pending = BytesMut::from(&d[..]),
        }
    }
    if let Err(e) = out.flush().await {
        return Err(text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("git-gate: spooling the pack: {e}\n"),
        ));
    }
    Ok(written)
}

/// Reads and discards the rest of an over-cap body (up to a bound) before
/// answering 413, so the client is reading when the answer comes rather
/// than still writing into a closed connection.
async fn drain_then_413<B: ReqBody>(mut body: B, max: u64) -> Response<Body> {
    let mut drained = 0u64;
    let bound = max.saturating_mul(4).max(64 * 1024 * 1024);
    while drained < bound {
        match tokio::time::timeout(CLIENT_IDLE, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    drained += d.len() as u64;
                }
            }
            _ => break,
        }
    }
    too_large(max)
}

fn too_large(max: u64) -> Response<Body> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "git-gate: the pushed pack is over the gate's limit of {max} bytes (max_pack_bytes)\n"
        ),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/app.git/info/refs"), Some(("app", "info/refs")));
        assert_eq!(
            route("/app/git-receive-pack"),
            Some(("app", "git-receive-pack"))
        );
        assert_eq!(route("/app.git"), None);
        assert_eq!(route("app/x"), None);
    }

    #[test]
    fn content_length_rules() {
        let req = |h: &[(&str, &str)]| {
            let mut b = Request::builder()
                .method("POST")
                .uri("/a.git/git-receive-pack");
            for (k, v) in h {
                b = b.header(*k, *v);
            }
            b.body(()).unwrap()
        };
        assert_eq!(framing(&req(&[("content-length", "12")])), Ok(Some(12)));
        assert_eq!(framing(&req(&[("transfer-encoding", "chunked")])), Ok(None));
        assert!(framing(&req(&[])).is_err());
        assert!(framing(&req(&[("content-length", "-1")])).is_err());
        assert!(framing(&req(&[("content-length", "ten")])).is_err());
    }

    /// Properties of the framing through the real hyper server the gate
    /// builds (`http1_builder`), on an in-memory duplex: the client writes
    /// its whole request, closes its side, and reads every answer.
    mod props {
        use super::super::*;
        use crate::pktline::{Command, ZERO_OID};
        use proptest::prelude::*;
        use std::cell::RefCell;
        use std::rc::Rc;
        use tokio::io::AsyncReadExt as _;

        const MAX_PACK: u64 = 1024;
        const MAX_HEADER: usize = 4096;
        const LIMIT: usize = 300;

        /// What the service read from one request.
        #[derive(Debug, Default, Clone)]
        struct Got {
            status: u16,
            header: Vec<u8>,
            spooled: Vec<u8>,
            negotiation: Vec<u8>,
        }

        /// Serves `input` as the gate's receive-pack and upload-pack
        /// readers do; returns what they read and the raw answer.
        fn serve(input: Vec<u8>) -> (Vec<Got>, Vec<u8>) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let got = Rc::new(RefCell::new(Vec::new()));
            let log = Rc::clone(&got);
            let answer = rt.block_on(async move {
                let (mut client, server) = tokio::io::duplex(4 << 20);
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let log = Rc::clone(&log);
                    async move {
                        let (resp, g) = dispatch(req).await;
                        log.borrow_mut().push(g);
                        Ok::<_, Infallible>(resp)
                    }
                });
                // The client closes its side once it has sent everything;
                // half-close lets hyper answer it still (the gate's own
                // setting drops a request whose client has gone).
                let mut builder = http1_builder();
                builder.half_close(true);
                let server = async move {
                    let _ = builder
                        .serve_connection(TokioIo::new(server), service)
                        .await;
                };
                let client = async move {
                    client.write_all(&input).await.unwrap();
                    client.shutdown().await.unwrap();
                    let mut out = Vec::new();
                    client.read_to_end(&mut out).await.unwrap();
                    out
                };
                tokio::join!(server, client).1
            });
            let got = got.borrow().clone();
            (got, answer)
        }

        async fn dispatch(req: Request<Incoming>) -> (Response<Body>, Got) {
            let mut got = Got::default();
            let tail = route(req.uri().path()).map(|(_, r)| r.to_owned());
            let resp = match tail.as_deref() {
                Some("git-upload-pack") => match read_negotiation(req, LIMIT).await {
                    Ok(n) => {
                        got.negotiation = n;
                        text(StatusCode::OK, String::new())
                    }
                    Err(resp) => resp,
                },
                _ => match read_push_head(req, MAX_PACK, MAX_HEADER).await {
                    Ok(PushHead {
                        header,
                        pending,
                        body,
                        ..
                    }) => {
                        got.header = header.to_vec();
                        let mut spool = Vec::new();
                        let r = spool_pack(body, pending, &mut spool, MAX_PACK).await;
                        assert!(spool.len() as u64 <= MAX_PACK, "spooled {}", spool.len());
                        got.spooled = spool;
                        match r {
                            Ok(_) => text(StatusCode::OK, String::new()),
                            Err(resp) => resp,
                        }
                    }
                    Err(resp) => resp,
                },
            };
            got.status = resp.status().as_u16();
            (resp, got)
        }

        /// The final statuses in a raw answer: every status line (the
        /// gate's bodies are plain text that never holds one), 1xx skipped.
        fn statuses(out: &[u8]) -> Vec<u16> {
            memchr::memmem::find_iter(out, b"HTTP/1.1 ")
                .filter(|&i| i == 0 || out[i - 1] == b'\n')
                .filter_map(|i| {
                    std::str::from_utf8(out.get(i + 9..i + 12)?)
                        .ok()?
                        .parse()
                        .ok()
                })
                .filter(|&code: &u16| code >= 200)
                .collect()
        }

        fn chunked(body: &[u8], sizes: &[usize], ext: bool) -> Vec<u8> {
            let mut out = Vec::new();
            let mut rest = body;
            let mut i = 0;
            while !rest.is_empty() {
                let n = sizes[i % sizes.len()].min(rest.len());
                i += 1;
                let (chunk, tail) = rest.split_at(n);
                let ext = if ext { ";a=b" } else { "" };
                out.extend_from_slice(format!("{n:x}{ext}\r\n").as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
                rest = tail;
            }
            out.extend_from_slice(b"0\r\n");
            if ext {
                out.extend_from_slice(b"X-T: 1\r\n");
            }
            out.extend_from_slice(b"\r\n");
            out
        }

        fn push() -> impl Strategy<Value = PushRequest> {
            let oid = prop_oneof![Just(ZERO_OID.to_owned()), "[0-9a-f]{40}"];
            let command = (oid.clone(), oid, "refs/heads/[a-z0-9]{1,10}")
                .prop_map(|(old, new, name)| Command { old, new, name });
            (
                proptest::collection::vec(command, 1..6),
                proptest::collection::vec("[a-z]{1,8}", 0..4),
                any::<bool>(),
            )
                .prop_map(|(commands, options, with_options)| PushRequest {
                    commands,
                    caps: if with_options {
                        vec!["report-status".into(), "push-options".into()]
                    } else {
                        vec!["report-status".into()]
                    },
                    options: if with_options { options } else { Vec::new() },
                    header_len: 0,
                })
        }

        /// The commands are parsed only at decisive pkt-lines (a flush,
        /// the cap, the end of the body): a malformed command is still
        /// refused with its own message, whether a flush follows or not.
        #[test]
        fn a_bad_command_is_refused_with_its_message() {
            let mut head = Vec::new();
            crate::pktline::encode(&mut head, format!("{ZERO_OID} x refs/heads/a\n").as_bytes());
            for flush in [true, false] {
                let mut body = head.clone();
                if flush {
                    crate::pktline::flush(&mut body);
                }
                let mut wire = format!(
                    "POST /a.git/git-receive-pack HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                wire.extend_from_slice(&body);
                let (got, answer) = serve(wire);
                assert_eq!(got[0].status, 400);
                let answer = String::from_utf8_lossy(&answer);
                assert!(
                    answer.contains("git-gate: bad push request: bad push command"),
                    "{answer}"
                );
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// chunked encode → hyper → the gate's readers gives the push
            /// and pack back; a pack over the cap is 413 and never spooled
            /// past it.
            #[test]
            fn chunked_pushes_round_trip(
                push in push(),
                pack in proptest::collection::vec(any::<u8>(), 0..2000),
                sizes in proptest::collection::vec(1usize..400, 1..8),
                ext: bool,
            ) {
                let head = push.encode();
                let mut body = head.clone();
                body.extend_from_slice(&pack);
                let mut wire = b"POST /app.git/git-receive-pack HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                wire.extend_from_slice(&chunked(&body, &sizes, ext));
                let (got, answer) = serve(wire);
                prop_assert_eq!(got.len(), 1);
                let expected = if pack.len() as u64 <= MAX_PACK { 200 } else { 413 };
                prop_assert_eq!(got[0].status, expected);
                prop_assert_eq!(statuses(&answer), vec![expected]);
                prop_assert_eq!(&got[0].header, &head);
                if expected == 200 {
                    prop_assert_eq!(&got[0].spooled, &pack);
                }
            }

            /// SPEC §7: 400 on a missing, invalid or negative length, 413
            /// over the cap, else the body is read exactly.
            #[test]
            fn content_length_rules(
                length in proptest::option::of(prop_oneof![
                    "[0-9]{1,6}",
                    "-[0-9]{1,4}",
                    "[+ a-f0-9-]{0,8}",
                    Just("99999999999".to_owned()),
                ]),
                push in push(),
            ) {
                let head = push.encode();
                let mut wire = b"POST /app.git/git-receive-pack HTTP/1.1\r\nHost: g\r\n".to_vec();
                if let Some(l) = &length {
                    wire.extend_from_slice(format!("Content-Length: {l}\r\n").as_bytes());
                }
                wire.extend_from_slice(b"\r\n");
                wire.extend_from_slice(&head);
                // httparse drops the spaces around a value; hyper takes
                // only digits after that.
                let n = length.as_deref().map(str::trim).and_then(|l| {
                    (!l.is_empty() && l.bytes().all(|b| b.is_ascii_digit())).then(|| l.parse::<u64>().unwrap())
                });
                let expected = match n {
                    Some(n) if n > MAX_PACK + MAX_HEADER as u64 => 413,
                    Some(n) if n == head.len() as u64 => 200,
                    // Missing or invalid; shorter: the commands are cut;
                    // longer: the body ends early.
                    _ => 400,
                };
                let (_, answer) = serve(wire);
                prop_assert_eq!(statuses(&answer).first().copied(), Some(expected));
            }

            /// An upload-pack request (gzipped or not) comes back byte for
            /// byte, or 413 when it or its gunzipped form is over the limit.
            #[test]
            fn negotiation_is_bounded(
                payload in proptest::collection::vec(any::<u8>(), 0..600),
                gzip: bool,
                sizes in proptest::collection::vec(1usize..200, 1..4),
            ) {
                let body = if gzip {
                    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                    std::io::Write::write_all(&mut enc, &payload).unwrap();
                    enc.finish().unwrap()
                } else {
                    payload.clone()
                };
                let mut wire = b"POST /app.git/git-upload-pack HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked\r\n".to_vec();
                if gzip {
                    wire.extend_from_slice(b"Content-Encoding: gzip\r\n");
                }
                wire.extend_from_slice(b"\r\n");
                wire.extend_from_slice(&chunked(&body, &sizes, false));
                let (got, _) = serve(wire);
                let expected = if body.len() > LIMIT || payload.len() > LIMIT { 413 } else { 200 };
                prop_assert_eq!(got[0].status, expected);
                if expected == 200 {
                    prop_assert_eq!(&got[0].negotiation, &payload);
                }
            }

            /// Whatever the bytes, nothing is spooled past the cap (checked
            /// in `dispatch`) and every request is answered with a status
            /// hyper or the gate chose on purpose.
            #[test]
            fn arbitrary_bytes_stay_bounded(
                prefix in prop_oneof![
                    Just(b"POST /a/git-receive-pack HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()),
                    Just(b"POST /a/git-receive-pack HTTP/1.1\r\nContent-Length: 1500\r\n\r\n".to_vec()),
                    Just(Vec::new()),
                ],
                junk in proptest::collection::vec(any::<u8>(), 0..3000),
            ) {
                let mut wire = prefix;
                wire.extend_from_slice(&junk);
                let (got, _) = serve(wire);
                for g in got {
                    prop_assert!(matches!(g.status, 200 | 400 | 413), "{}", g.status);
                    prop_assert!(g.header.len() <= MAX_HEADER + 3000);
                }
            }

            /// `route` gives back the name and rest a URL was built from.
            #[test]
            fn routes_round_trip(name in "[^/]{0,12}", rest in "[ -~]{0,20}", suffix: bool) {
                let path = if suffix { format!("/{name}.git/{rest}") } else { format!("/{name}/{rest}") };
                let (n, r) = route(&path).unwrap();
                prop_assert_eq!(r, rest.as_str());
                if suffix {
                    prop_assert_eq!(n, name.as_str());
                } else {
                    prop_assert_eq!(n, name.strip_suffix(".git").unwrap_or(&name));
                }
            }
        }
    }
}
