//! Fuzzes the git gate's smart-HTTP framing: hyper's HTTP/1 server built
//! by the gate's own `http1_builder`, over in-memory I/O, in front of the
//! gate's own body readers (`read_push_head`, `spool_pack`,
//! `read_negotiation`), `framing` and `route`, dispatched as `handle` does
//! (the upstream relay after them is left out: it is SSH).
//!
//! Input: a selector byte, then
//! - even selector: raw bytes a client sends, read by the server in pieces
//!   of `selector / 4 + 1` bytes (up to 63, then the whole input); bit 1
//!   set, the client then closes its side (EOF), else it waits for the
//!   answers as git does;
//! - odd selector: a request built from the bytes that follow (service,
//!   framing, chunk sizes, commands, pack) and serialised here, so the
//!   expected outcome is known.
//!
//! Invariants:
//! - nothing panics, and no response is a 408 when the client had sent
//!   every byte of its request: the clock is paused (and auto-advances
//!   when everything waits), so a wait on a client with nothing more to
//!   send shows as an instant idle timeout rather than a slow input;
//! - `route` splits `/<name>[.git]/<rest>` back into exactly its path;
//! - `framing` agrees with hyper's body: a length it accepts is the body's
//!   exact size; a refusal (400) is a body-less POST; nothing past a
//!   Content-Length is ever read as that request's body;
//! - bounded memory: spooled pack bytes never exceed the cap; the bytes
//!   held while reading the commands stay within the header cap plus one
//!   frame; a negotiation body is at most its limit, before and after
//!   gunzip;
//! - what is accepted is the body: header ++ spooled pack is every byte
//!   the body gave, and the header parses back to the same push;
//! - raw input, read independently with httparse: a POST to a service with
//!   neither Content-Length nor Transfer-Encoding is answered 400, one with
//!   an invalid or conflicting Content-Length 400, one with a length over
//!   the caps 413;
//! - built requests round-trip: a chunked body (any chunk sizes,
//!   extensions, trailers) or a Content-Length body decodes to the bytes
//!   encoded; the push read is the push encoded; a pack within the cap is
//!   spooled whole (200), one over it is refused (413); the upload-pack
//!   request (gzipped or not) comes back byte for byte, or 413 over the
//!   limit.
#![no_main]

use std::cell::RefCell;
use std::convert::Infallible;
use std::io::{self, Read as _};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bb_gitgate::http::{self as gate, PushHead};
use bb_gitgate::pktline::{Command, PushRequest, ZERO_OID};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use libfuzzer_sys::fuzz_target;

/// Small caps, so that inputs of a few hundred bytes reach every limit.
const MAX_PACK: u64 = 256;
const MAX_HEADER: usize = 512;
const MAX_NEGOTIATION: usize = 300;

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if let Ok(s) = std::str::from_utf8(rest) {
        check_route(s);
    }
    if selector % 2 == 0 {
        let piece = if selector < 252 {
            usize::from(selector / 4) + 1
        } else {
            usize::MAX
        };
        let eof = selector & 2 != 0;
        let run = serve(rest.to_vec(), piece, eof);
        if eof {
            // hyper drops a request whose client closed before the answer
            // (no half-close): nothing to compare, but nothing waited.
            for o in &run.outcomes {
                assert_ne!(o.status, 408, "waited on a client that had closed: {o:?}");
            }
        } else {
            raw_oracle(rest, &run);
        }
    } else {
        built(rest);
    }
});

/// What the service saw of one request.
#[derive(Debug)]
struct Outcome {
    status: u16,
    /// The body's data, as the gate's readers pulled it.
    seen: Vec<u8>,
    /// What was accepted: the push and its header bytes, the spooled pack,
    /// or the negotiation request.
    push: Option<(PushRequest, Vec<u8>)>,
    spooled: Option<Vec<u8>>,
    negotiation: Option<Vec<u8>>,
}

#[derive(Debug)]
struct Run {
    outcomes: Vec<Outcome>,
    out: Vec<u8>,
}

/// Serves `input` through the gate's HTTP/1 server, `piece` bytes a read,
/// then EOF (`eof`) or nothing more, ever.
fn serve(input: Vec<u8>, piece: usize, eof: bool) -> Run {
    let out = Rc::new(RefCell::new(Vec::new()));
    let outcomes = Rc::new(RefCell::new(Vec::new()));
    let io = Io {
        input,
        pos: 0,
        piece,
        eof,
        out: Rc::clone(&out),
    };
    let log = Rc::clone(&outcomes);
    let service = hyper::service::service_fn(move |req| {
        let log = Rc::clone(&log);
        async move {
            let (resp, outcome) = handle(req).await;
            log.borrow_mut().push(outcome);
            Ok::<_, Infallible>(resp)
        }
    });
    RT.with(|rt| {
        rt.block_on(async move {
            // Errors are the client's malformed input; hyper answers them.
            // A connection left waiting for a next request ends at hyper's
            // header timeout, or at this one (paused clock: instantly).
            let conn = gate::http1_builder().serve_connection(io, service);
            let _ = tokio::time::timeout(Duration::from_secs(3600), conn).await;
        });
    });
    let outcomes = Rc::try_unwrap(outcomes).unwrap().into_inner();
    let out = out.borrow().clone();
    Run { outcomes, out }
}

type GateBody = BoxBody<Bytes, io::Error>;

/// `handle`'s dispatch, with the relay replaced by recording what the
/// gate's readers produced, and the invariants that hold per request.
async fn handle(req: Request<Incoming>) -> (Response<GateBody>, Outcome) {
    let path = req.uri().path().to_owned();
    check_route(&path);
    let rest = gate::route(&path).map(|(_, rest)| rest.to_owned());
    let service = match (req.method(), rest.as_deref()) {
        (&Method::POST, Some("git-receive-pack")) => Service::Receive,
        (&Method::POST, Some("git-upload-pack")) => Service::Upload,
        _ => {
            let resp = Response::builder()
                .status(StatusCode::NOT_FOUND)
                .body(empty())
                .unwrap();
            return (resp, outcome(404, Vec::new()));
        }
    };
    let framing = gate::framing(&req);
    let exact = req.body().size_hint().exact();
    match &framing {
        Ok(Some(n)) => assert_eq!(exact, Some(*n), "framing and hyper disagree"),
        Ok(None) => {}
        Err(_) => assert_eq!(
            exact,
            Some(0),
            "a refused POST has no body: {:?}",
            req.headers()
        ),
    }
    let seen = Rc::new(RefCell::new(Seen::default()));
    let (parts, body) = req.into_parts();
    let req = Request::from_parts(
        parts,
        Tap {
            inner: body,
            seen: Rc::clone(&seen),
        },
    );
    let (resp, mut outcome) = match service {
        Service::Receive => receive(req, &seen).await,
        Service::Upload => upload(req, &seen).await,
    };
    let status = resp.status().as_u16();
    match framing {
        Err(_) => assert_eq!(status, 400),
        Ok(Some(n)) if n > MAX_PACK + MAX_HEADER as u64 => assert_eq!(status, 413),
        Ok(_) => {}
    }
    let seen = seen.borrow();
    if let Ok(Some(n)) = framing {
        assert!(seen.bytes.len() as u64 <= n, "read past Content-Length");
        if seen.ended {
            assert_eq!(seen.bytes.len() as u64, n);
        }
    }
    if status == 400 || status == 413 {
        assert!(outcome.push.is_none() || outcome.spooled.is_none());
    }
    outcome.seen.clone_from(&seen.bytes);
    (resp, outcome)
}

enum Service {
    Receive,
    Upload,
}

async fn receive(req: Request<Tap>, seen: &Rc<RefCell<Seen>>) -> (Response<GateBody>, Outcome) {
    let PushHead {
        push,
        header,
        pending,
        body,
    } = match gate::read_push_head(req, MAX_PACK, MAX_HEADER).await {
        Ok(h) => h,
        Err(resp) => {
            let status = resp.status().as_u16();
            assert!(matches!(status, 400 | 408 | 413), "{status}");
            return (resp, outcome(status, Vec::new()));
        }
    };
    {
        let seen = seen.borrow();
        assert_eq!(push.header_len, header.len());
        assert!(
            header.len() + pending.len() <= MAX_HEADER + seen.largest_frame,
            "held {} bytes for the commands",
            header.len() + pending.len()
        );
        let mut taken = header.to_vec();
        taken.extend_from_slice(&pending);
        assert_eq!(taken, seen.bytes, "bytes lost or added around the header");
    }
    let again = PushRequest::parse(&header).unwrap().unwrap();
    assert_eq!(again, push);
    let mut o = outcome(200, Vec::new());
    o.push = Some((push.clone(), header.to_vec()));
    if push.commands.is_empty() {
        // The gate answers git's probe (a bare flush) without the pack.
        return (ok(), o);
    }
    let mut spool = Vec::new();
    let result = gate::spool_pack(body, pending, &mut spool, MAX_PACK).await;
    assert!(
        spool.len() as u64 <= MAX_PACK,
        "spooled {} bytes",
        spool.len()
    );
    match result {
        Ok(n) => {
            assert_eq!(n, spool.len() as u64);
            let seen = seen.borrow();
            assert!(seen.ended, "accepted a pack the body had not finished");
            let mut whole = header.to_vec();
            whole.extend_from_slice(&spool);
            assert_eq!(whole, seen.bytes, "header ++ pack is not the body");
            o.spooled = Some(spool);
            (ok(), o)
        }
        Err(resp) => {
            let status = resp.status().as_u16();
            assert!(matches!(status, 400 | 408 | 413), "{status}");
            o.status = status;
            (resp, o)
        }
    }
}

async fn upload(req: Request<Tap>, seen: &Rc<RefCell<Seen>>) -> (Response<GateBody>, Outcome) {
    let gzip = req
        .headers()
        .get(http::header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    match gate::read_negotiation(req, MAX_NEGOTIATION).await {
        Ok(request) => {
            assert!(request.len() <= MAX_NEGOTIATION);
            let seen = seen.borrow();
            assert!(seen.ended);
            assert!(seen.bytes.len() <= MAX_NEGOTIATION);
            if gzip {
                let mut plain = Vec::new();
                flate2::read::GzDecoder::new(&seen.bytes[..])
                    .read_to_end(&mut plain)
                    .unwrap();
                assert_eq!(plain, request);
            } else {
                assert_eq!(seen.bytes, request);
            }
            let mut o = outcome(200, Vec::new());
            o.negotiation = Some(request);
            (ok(), o)
        }
        Err(resp) => {
            let status = resp.status().as_u16();
            assert!(matches!(status, 400 | 408 | 413), "{status}");
            (resp, outcome(status, Vec::new()))
        }
    }
}

fn outcome(status: u16, seen: Vec<u8>) -> Outcome {
    Outcome {
        status,
        seen,
        push: None,
        spooled: None,
        negotiation: None,
    }
}

fn empty() -> GateBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed()
}

fn ok() -> Response<GateBody> {
    Response::new(empty())
}

fn check_route(path: &str) {
    let Some((name, rest)) = gate::route(path) else {
        assert!(!path.starts_with('/') || !path[1..].contains('/'));
        return;
    };
    assert!(!name.contains('/'));
    assert!(
        path == format!("/{name}/{rest}") || path == format!("/{name}.git/{rest}"),
        "{path:?} → {name:?}, {rest:?}"
    );
}

/// The body data the gate's readers pulled through it.
#[derive(Debug, Default)]
struct Seen {
    bytes: Vec<u8>,
    largest_frame: usize,
    ended: bool,
}

struct Tap {
    inner: Incoming,
    seen: Rc<RefCell<Seen>>,
}

impl Body for Tap {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        let mut seen = self.seen.borrow_mut();
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    seen.bytes.extend_from_slice(d);
                    seen.largest_frame = seen.largest_frame.max(d.len());
                }
            }
            Poll::Ready(None) => seen.ended = true,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The client side: `input` read `piece` bytes at a time, then EOF or a
/// read that never completes; whatever the server writes is kept.
struct Io {
    input: Vec<u8>,
    pos: usize,
    piece: usize,
    eof: bool,
    out: Rc<RefCell<Vec<u8>>>,
}

impl hyper::rt::Read for Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos == self.input.len() && !self.eof {
            return Poll::Pending;
        }
        let n = (self.input.len() - self.pos)
            .min(self.piece)
            .min(buf.remaining());
        let pos = self.pos;
        buf.put_slice(&self.input[pos..pos + n]);
        self.pos += n;
        Poll::Ready(Ok(()))
    }
}

impl hyper::rt::Write for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.out.borrow_mut().extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The statuses of the responses in `out`, 1xx skipped, as far as httparse
/// can read them (a body is skipped by its Content-Length).
fn statuses(mut out: &[u8]) -> Vec<u16> {
    let mut found = Vec::new();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(len)) = resp.parse(out) else {
            return found;
        };
        let code = resp.code.unwrap();
        let body = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok());
        if code >= 200 {
            found.push(code);
        }
        let Some(body) = body.or((code < 200).then_some(0)) else {
            return found;
        };
        if out.len() < len + body {
            return found;
        }
        out = &out[len + body..];
    }
}

/// What SPEC §7 says of the first request of `input`, read with httparse
/// rather than hyper, against what came out.
fn raw_oracle(input: &[u8], run: &Run) {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(input) else {
        return;
    };
    let (Some("POST"), Some(target)) = (req.method, req.path) else {
        return;
    };
    // Plain origin-form targets only, which hyper's URI parser takes as
    // they are.
    if !target
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
    {
        return;
    }
    if !matches!(
        gate::route(target),
        Some((_, "git-receive-pack" | "git-upload-pack"))
    ) {
        return;
    }
    let named = |name: &'static str| {
        req.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if named("transfer-encoding").next().is_some() {
        return;
    }
    let lengths: Vec<Option<u64>> = named("content-length").map(digits).collect();
    let expected = if lengths.is_empty() {
        400
    } else if lengths.iter().any(Option::is_none) || lengths.windows(2).any(|w| w[0] != w[1]) {
        // hyper refuses it before the gate sees it: a 400 (431 for a
        // length of u64::MAX - 1 or more, found by this target), or no
        // answer at all when what follows the head looks like an h2
        // preface.
        assert!(run.outcomes.is_empty(), "a bad length reached the gate");
        let got = statuses(&run.out);
        assert!(
            got.is_empty() || matches!(got[0], 400 | 431),
            "{:?}",
            String::from_utf8_lossy(&run.out)
        );
        return;
    } else if lengths[0].unwrap() > MAX_PACK + MAX_HEADER as u64
        && target.ends_with("git-receive-pack")
    {
        413
    } else {
        return;
    };
    let got = statuses(&run.out);
    assert_eq!(
        got.first(),
        Some(&expected),
        "{:?}",
        String::from_utf8_lossy(&run.out)
    );
}

/// hyper's Content-Length rule: ASCII digits only, no sign, no spaces
/// inside, below `u64::MAX - 1`.
fn digits(v: &[u8]) -> Option<u64> {
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v)
        .ok()?
        .parse::<u64>()
        .ok()
        .filter(|&n| n < u64::MAX - 1)
}

/// A request built from `data`, serialised here, with a known outcome.
fn built(data: &[u8]) {
    let [flags, chunk_seed, read_seed, shape, rest @ ..] = data else {
        return;
    };
    let service = flags & 3;
    let framing = (flags >> 2) & 3;
    let gzip = flags & 0x10 != 0;
    let expect = flags & 0x20 != 0;
    let pipelined = flags & 0x40 != 0;
    let extras = flags & 0x80 != 0;

    let (path, body, push) = match service {
        0 | 3 => {
            let (push, pack) = push_from(*shape, rest);
            let mut body = push.encode();
            body.extend_from_slice(pack);
            let path = if service == 0 {
                "/app.git/git-receive-pack"
            } else {
                "/app/git-receive-pack"
            };
            (path, body, Some((push, pack.to_vec())))
        }
        1 => {
            let body = if gzip {
                let mut enc =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                io::Write::write_all(&mut enc, rest).unwrap();
                enc.finish().unwrap()
            } else {
                rest.to_vec()
            };
            ("/app.git/git-upload-pack", body, None)
        }
        _ => ("/app.git/info/refs", rest.to_vec(), None),
    };
    let method = if service == 2 { "GET" } else { "POST" };
    let mut wire = format!("{method} {path} HTTP/1.1\r\nHost: gate\r\n").into_bytes();
    if gzip && service == 1 {
        wire.extend_from_slice(b"Content-Encoding: gzip\r\n");
    }
    if expect {
        wire.extend_from_slice(b"Expect: 100-continue\r\n");
    }
    match framing {
        0 => wire.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes()),
        1 => wire.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        2 => {}
        _ => {
            // Both: hyper must read it chunked and drop the length.
            wire.extend_from_slice(b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n");
        }
    }
    wire.extend_from_slice(b"\r\n");
    let chunked = matches!(framing, 1 | 3);
    if chunked {
        encode_chunked(&mut wire, &body, *chunk_seed, extras);
    } else if framing == 0 {
        wire.extend_from_slice(&body);
    }
    if pipelined {
        wire.extend_from_slice(
            b"GET /app.git/info/refs?service=git-upload-pack HTTP/1.1\r\nHost: gate\r\n\r\n",
        );
    }
    let piece = if *read_seed == 0 {
        usize::MAX
    } else {
        usize::from(*read_seed)
    };
    let run = serve(wire, piece, false);
    for o in &run.outcomes {
        assert_ne!(
            o.status, 408,
            "waited on a client that had sent everything: {o:?}"
        );
    }

    let first = run.outcomes.first();
    let sent_body = chunked || framing == 0;
    let expected_status = if service == 2 {
        404
    } else if !sent_body {
        400
    } else if let Some((push, pack)) = &push {
        let header_len = push.encode().len();
        if header_len > MAX_HEADER {
            // Depends on how the frames fell: the commands may or may not
            // have arrived in one frame.
            let status = first.unwrap().status;
            assert!(matches!(status, 200 | 413), "{status}");
            status
        } else if !chunked && body.len() as u64 > MAX_PACK + MAX_HEADER as u64 {
            413
        } else if push.commands.is_empty() || pack.len() as u64 <= MAX_PACK {
            200
        } else {
            413
        }
    } else if body.len() > MAX_NEGOTIATION || rest.len() > MAX_NEGOTIATION {
        413
    } else {
        200
    };
    let first = first.unwrap_or_else(|| panic!("no request reached the gate: {run:?}"));
    assert_eq!(first.status, expected_status, "{first:?}");
    if expected_status == 200 {
        if let Some((push, pack)) = &push {
            let (got, header) = first.push.as_ref().unwrap();
            assert_eq!(&got.commands, &push.commands);
            assert_eq!(header, &push.encode());
            // A probe (no command) is a bare flush: it carries no caps.
            if !push.commands.is_empty() {
                assert_eq!(&got.caps, &push.caps);
                assert_eq!(&got.options, &push.options);
                assert_eq!(first.spooled.as_ref().unwrap(), pack);
            }
        } else if service == 1 {
            assert_eq!(first.negotiation.as_deref(), Some(rest));
        }
    }
    // Whether the gate read the whole body (a probe leaves what follows
    // its flush unread; a 404 reads nothing), so that the next request
    // on the connection is in step.
    let probe_with_more = push
        .as_ref()
        .is_some_and(|(p, pack)| p.commands.is_empty() && !pack.is_empty());
    let read_whole = (expected_status == 200 && !probe_with_more) || framing == 2;
    if read_whole {
        if sent_body {
            assert_eq!(first.seen, body, "the body decoded to other bytes");
        }
        // Length and chunked together: hyper reads it chunked but closes
        // after the answer, which is right (RFC 9112 §6.1).
        if pipelined && framing != 3 {
            assert_eq!(run.outcomes.len(), 2, "{run:?}");
            assert_eq!(run.outcomes[1].status, 404);
        }
    }
    let statuses = statuses(&run.out);
    assert_eq!(statuses.first(), Some(&expected_status));
}

/// A push request from `shape` (commands, capabilities, options) and the
/// bytes after it (ids, then the pack).
fn push_from(shape: u8, rest: &[u8]) -> (PushRequest, &[u8]) {
    let n = usize::from(shape & 3);
    let (ids, pack) = rest.split_at(rest.len().min(n * 2));
    let mut caps = vec!["report-status".to_owned()];
    if shape & 4 != 0 {
        caps.push("side-band-64k".into());
    }
    let with_options = shape & 8 != 0;
    if with_options {
        caps.push("push-options".into());
    }
    let hex = |b: u8| format!("{b:02x}").repeat(20);
    let commands = (0..n)
        .map(|i| Command {
            old: ids
                .get(i * 2)
                .map_or_else(|| ZERO_OID.to_owned(), |&b| hex(b)),
            new: ids
                .get(i * 2 + 1)
                .map_or_else(|| ZERO_OID.to_owned(), |&b| hex(b)),
            name: format!("refs/heads/b{i}"),
        })
        .collect::<Vec<_>>();
    let options = if with_options && n > 0 {
        (0..usize::from(shape >> 4))
            .map(|i| format!("opt-{i}"))
            .collect()
    } else {
        Vec::new()
    };
    let push = PushRequest {
        commands,
        caps,
        options,
        header_len: 0,
    };
    (push, pack)
}

/// HTTP/1.1 chunked encoding of `body`, chunk sizes from `seed`, with
/// chunk extensions and a trailer when `extras`.
fn encode_chunked(out: &mut Vec<u8>, body: &[u8], seed: u8, extras: bool) {
    let mut state = u32::from(seed) | 1;
    let mut rest = body;
    while !rest.is_empty() {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let size = ((state >> 16) as usize % (usize::from(seed % 64) + 1)) + 1;
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        if extras {
            out.extend_from_slice(format!("{:X};ext=\"v\"\r\n", chunk.len()).as_bytes());
        } else {
            out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        }
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
        rest = tail;
    }
    out.extend_from_slice(b"0\r\n");
    if extras {
        out.extend_from_slice(b"X-Trailer: t\r\n");
    }
    out.extend_from_slice(b"\r\n");
}
