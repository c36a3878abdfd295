//! `bb-loadgen load`: closed-loop load through an HTTP proxy.
//!
//! Each of `--connections` workers opens a tunnel (`CONNECT host:port`),
//! does TLS to the target inside it trusting `--ca`, and sends requests one
//! after another on that connection (HTTP/1.1 keep-alive, hyper's client
//! connection) until the run ends. A failed request counts as an error and
//! the worker reconnects. Latency is measured per request from send to the
//! last byte of the response body; with `--new-connection-per-request` it
//! includes the TCP connect, `CONNECT` and TLS handshake.
//!
//! Requests started during `--warmup` are not counted; requests started
//! before the end of `--duration` are counted when they complete, and the
//! rate divides by the time from the end of the warm-up to the last
//! completion. Every await is bounded by `--timeout`, so a run always ends.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail, ensure};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderValue, Method, Request, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::LoadArgs;
use crate::upstream::GET_BODY;

/// Response bodies larger than this are an error (the upstream sends a few
/// bytes; a proxy's block page is small too).
const MAX_RESPONSE: usize = 1 << 20;
/// Largest `CONNECT` response head accepted.
const MAX_CONNECT_HEAD: usize = 16 << 10;
/// Pause after a failed request, so a proxy that refuses everything is not
/// hammered in a tight loop.
const ERROR_BACKOFF: Duration = Duration::from_millis(20);

/// A validated run.
pub(crate) struct Plan {
    /// The proxy; `None` connects to the target itself.
    proxy: Option<SocketAddr>,
    /// The target's loopback address, for `--proxy direct`.
    direct: Option<SocketAddr>,
    /// `host:port`, for `CONNECT` and the `Host` header.
    authority: String,
    path: String,
    server_name: ServerName<'static>,
    tls: tokio_rustls::TlsConnector,
    method: Method,
    body: Bytes,
    authorization: HeaderValue,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    timeout: Duration,
    keep_alive: bool,
}

impl Plan {
    /// Checks the flags, reads the CA, builds the request body.
    pub(crate) fn new(args: LoadArgs) -> anyhow::Result<Self> {
        let proxy = if args.proxy == "direct" {
            None
        } else {
            Some(parse_proxy(&args.proxy)?)
        };
        let uri: http::Uri = args
            .url
            .parse()
            .with_context(|| format!("--url {}", args.url))?;
        ensure!(
            uri.scheme_str() == Some("https"),
            "--url {}: must be https://",
            args.url
        );
        let host = uri
            .host()
            .ok_or_else(|| anyhow!("--url {}: no host", args.url))?
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let direct = if proxy.is_some() {
            None
        } else {
            let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                .with_context(|| format!("--url {}: resolving {host}", args.url))?
                .find(|a| a.ip().is_loopback())
                .ok_or_else(|| {
                    anyhow!(
                        "--url {}: {host} has no loopback address (the bench sends load to loopback only)",
                        args.url
                    )
                })?;
            Some(addr)
        };
        let path = uri
            .path_and_query()
            .map_or_else(|| "/".to_owned(), ToString::to_string);
        let server_name = ServerName::try_from(host.clone())
            .with_context(|| format!("--url {}: bad host name", args.url))?;
        ensure!(args.connections > 0, "--connections must be at least 1");
        ensure!(
            args.method == Method::POST || args.body_size == 0,
            "--body-size needs --method POST"
        );

        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&args.ca)
            .with_context(|| format!("--ca {}", args.ca.display()))?
        {
            roots
                .add(cert.with_context(|| format!("--ca {}", args.ca.display()))?)
                .with_context(|| format!("--ca {}", args.ca.display()))?;
        }
        ensure!(
            !roots.is_empty(),
            "--ca {}: no certificate in the file",
            args.ca.display()
        );
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        // hyper's http1 client connection below: do not offer h2.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];

        let authorization = match &args.bearer_env {
            Some(name) => {
                let v = std::env::var(name)
                    .with_context(|| format!("--bearer-env {name}: variable not set"))?;
                let mut h = HeaderValue::from_str(&format!("Bearer {v}"))
                    .with_context(|| format!("--bearer-env {name}: not a valid header value"))?;
                h.set_sensitive(true);
                h
            }
            None => HeaderValue::from_str(&args.authorization)
                .context("--authorization: not a valid header value")?,
        };
        Ok(Self {
            proxy,
            direct,
            authority: format!("{host}:{port}"),
            path,
            server_name,
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
            method: args.method,
            body: filler(args.body_size),
            authorization,
            connections: args.connections,
            duration: args.duration,
            warmup: args.warmup,
            timeout: args.timeout,
            keep_alive: !args.new_connection_per_request,
        })
    }
}

/// `http://127.0.0.1:PORT` (a trailing `/` allowed) to a loopback address.
fn parse_proxy(s: &str) -> anyhow::Result<SocketAddr> {
    let rest = s
        .strip_prefix("http://")
        .ok_or_else(|| anyhow!("--proxy {s}: must be http://ADDRESS:PORT"))?;
    let addr: SocketAddr = rest
        .trim_end_matches('/')
        .parse()
        .with_context(|| format!("--proxy {s}: expected an IP address and port"))?;
    ensure!(
        addr.ip().is_loopback(),
        "--proxy {s}: the bench sends load to loopback addresses only"
    );
    Ok(addr)
}

/// A deterministic prose-like body: lower-case words and newlines, so no
/// detector of either proxy fires on it and both scan the same bytes.
fn filler(len: usize) -> Bytes {
    const WORDS: &[&str] = &[
        "the",
        "proxy",
        "scans",
        "every",
        "request",
        "body",
        "for",
        "tokens",
        "and",
        "keys",
        "before",
        "it",
        "leaves",
        "bottle",
        "agent",
        "writes",
        "code",
        "reads",
        "docs",
        "builds",
        "tests",
        "commits",
        "pushes",
        "review",
        "latency",
        "throughput",
        "memory",
        "stream",
        "chunk",
        "buffer",
        "window",
        "rule",
        "match",
        "route",
        "host",
        "path",
    ];
    let mut out = Vec::with_capacity(len + 16);
    let mut state: u64 = 0x5eed_0fb0_771e;
    let mut col = 0;
    while out.len() < len {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let word = WORDS[(z % WORDS.len() as u64) as usize];
        out.extend_from_slice(word.as_bytes());
        col += word.len() + 1;
        if col > 72 {
            out.push(b'\n');
            col = 0;
        } else {
            out.push(b' ');
        }
    }
    out.truncate(len);
    Bytes::from(out)
}

/// Longest latency the histogram tracks, µs (an hour; longer saturates).
const MAX_LATENCY_US: u64 = 3_600_000_000;
/// Significant decimal digits the histogram keeps: quantiles within 0.1 %.
const LATENCY_DIGITS: u8 = 3;

/// An empty latency histogram (µs).
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, LATENCY_DIGITS)
        .unwrap_or_else(|e| unreachable!("constant bounds are valid: {e}"))
}

/// What one worker saw in the measured window.
struct Tally {
    hist: Histogram<u64>,
    requests: u64,
    errors: u64,
    /// Request plus response body bytes of successful requests.
    bytes: u64,
    first_error: Option<String>,
    /// When the last counted request completed.
    last_done: Option<Instant>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            hist: histogram(),
            requests: 0,
            errors: 0,
            bytes: 0,
            first_error: None,
            last_done: None,
        }
    }
}

/// The latency (ms) below which a fraction `q` of the recorded values fall.
#[allow(clippy::cast_precision_loss, reason = "microseconds far below 2^52")]
fn quantile_ms(hist: &Histogram<u64>, q: f64) -> Option<f64> {
    (!hist.is_empty()).then(|| hist.value_at_quantile(q) as f64 / 1000.0)
}

/// Runs the plan and prints one JSON line on stdout.
pub(crate) async fn run(plan: Plan) -> anyhow::Result<ExitCode> {
    let plan = Arc::new(plan);
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let deadline = measure_from + plan.duration;
    let workers: Vec<_> = (0..plan.connections)
        .map(|_| tokio::spawn(worker(plan.clone(), measure_from, deadline)))
        .collect();
    // The load generator's own CPU over the measured window: on a small
    // machine it competes with the proxy and the upstream, and the harness
    // adds the three up to see whether a row is CPU-bound.
    let cpu_from = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from).await;
        cpu_ticks()
    });
    let mut total = Tally::default();
    for w in workers {
        let t = w.await.context("a load worker panicked")?;
        total
            .hist
            .add(&t.hist)
            .context("merging latency histograms")?;
        total.requests += t.requests;
        total.errors += t.errors;
        total.bytes += t.bytes;
        total.first_error = total.first_error.or(t.first_error);
        total.last_done = total.last_done.max(t.last_done);
    }
    let cpu = cpu_from
        .await
        .ok()
        .flatten()
        .zip(cpu_ticks())
        .map(|(from, to)| to.saturating_sub(from));
    let elapsed = total
        .last_done
        .map_or(plan.duration, |t| t.saturating_duration_since(measure_from))
        .max(Duration::from_millis(1))
        .as_secs_f64();
    #[allow(
        clippy::cast_precision_loss,
        reason = "counts and microseconds far below 2^52"
    )]
    let (req_per_s, mb_per_s, p50, p99) = (
        total.requests as f64 / elapsed,
        total.bytes as f64 / elapsed / 1e6,
        quantile_ms(&total.hist, 0.50),
        quantile_ms(&total.hist, 0.99),
    );
    let line = serde_json::json!({
        "requests": total.requests,
        "errors": total.errors,
        "req_per_s": round(req_per_s, 1),
        "p50_ms": p50.map(|v| round(v, 3)),
        "p99_ms": p99.map(|v| round(v, 3)),
        "mb_per_s": round(mb_per_s, 2),
        "elapsed_s": round(elapsed, 3),
        "connections": plan.connections,
        "method": plan.method.as_str(),
        "body_size": plan.body.len(),
        "keep_alive": plan.keep_alive,
        "first_error": total.first_error,
        "loadgen_cpu_ticks": cpu,
    });
    println!("{line}");
    Ok(if total.requests == 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// This process's user plus system CPU time so far, in clock ticks
/// (`getconf CLK_TCK`; the harness converts), from `/proc/self/stat`.
/// `None` where there is no procfs.
fn cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields 14 and 15 (utime, stime), counted after the ")" that closes
    // the command name, which may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn round(v: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (v * scale).round() / scale
}

async fn worker(plan: Arc<Plan>, measure_from: Instant, deadline: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<SendRequest<Full<Bytes>>> = None;
    loop {
        let started = Instant::now();
        if started >= deadline {
            break;
        }
        let outcome = tokio::time::timeout(plan.timeout, request(&plan, &mut conn)).await;
        let done = Instant::now();
        let counted = started >= measure_from;
        match outcome {
            Ok(Ok(bytes)) => {
                if counted {
                    tally.requests += 1;
                    tally.bytes += bytes;
                    let us =
                        u64::try_from(done.duration_since(started).as_micros()).unwrap_or(u64::MAX);
                    tally.hist.saturating_record(us.max(1));
                    tally.last_done = Some(done);
                }
            }
            Ok(Err(e)) => {
                conn = None;
                if counted {
                    tally.errors += 1;
                    tally.first_error.get_or_insert_with(|| format!("{e:#}"));
                }
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
            Err(_) => {
                conn = None;
                if counted {
                    tally.errors += 1;
                    tally
                        .first_error
                        .get_or_insert_with(|| format!("timed out after {:?}", plan.timeout));
                }
            }
        }
    }
    tally
}

/// One request on the worker's connection (opened first if needed). Returns
/// the body bytes moved both ways.
async fn request(plan: &Plan, conn: &mut Option<SendRequest<Full<Bytes>>>) -> anyhow::Result<u64> {
    if conn.as_ref().is_none_or(SendRequest::is_closed) {
        *conn = Some(connect(plan).await?);
    }
    let Some(sender) = conn.as_mut() else {
        unreachable!("the connection was just opened")
    };
    sender
        .ready()
        .await
        .context("connection closed before the request")?;

    let mut req = Request::builder()
        .method(plan.method.clone())
        .uri(&plan.path)
        .header(header::HOST, &plan.authority)
        .header(header::AUTHORIZATION, plan.authorization.clone())
        .header(header::USER_AGENT, "bb-loadgen");
    if plan.method == Method::POST {
        req = req.header(header::CONTENT_TYPE, "text/plain");
    }
    if !plan.keep_alive {
        req = req.header(header::CONNECTION, "close");
    }
    let req = req.body(Full::new(plan.body.clone()))?;
    let resp = sender.send_request(req).await.context("sending request")?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| anyhow!("reading response body: {e}"))?
        .to_bytes();
    if !plan.keep_alive {
        *conn = None;
    }
    if !status.is_success() {
        let snippet = String::from_utf8_lossy(&body[..body.len().min(300)]);
        bail!("HTTP {status}: {}", snippet.trim());
    }
    let ok = if plan.method == Method::POST {
        body.as_ref() == plan.body.len().to_string().as_bytes()
    } else {
        body.as_ref() == GET_BODY
    };
    if !ok {
        let snippet = String::from_utf8_lossy(&body[..body.len().min(100)]);
        bail!("unexpected response body: {snippet:?}");
    }
    Ok((plan.body.len() + body.len()) as u64)
}

/// Tunnel (unless direct), TLS, HTTP/1.1 handshake.
async fn connect(plan: &Plan) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let tcp = match (plan.proxy, plan.direct) {
        (Some(proxy), _) => {
            let mut tcp = TcpStream::connect(proxy)
                .await
                .with_context(|| format!("connecting to the proxy {proxy}"))?;
            tcp.set_nodelay(true)?;
            let head = format!(
                "CONNECT {a} HTTP/1.1\r\nHost: {a}\r\nUser-Agent: bb-loadgen\r\n\r\n",
                a = plan.authority
            );
            tcp.write_all(head.as_bytes()).await?;
            read_connect_response(&mut tcp).await?;
            tcp
        }
        (None, Some(target)) => {
            let tcp = TcpStream::connect(target)
                .await
                .with_context(|| format!("connecting to {target}"))?;
            tcp.set_nodelay(true)?;
            tcp
        }
        (None, None) => unreachable!("a plan has a proxy or a direct target"),
    };
    let tls = plan
        .tls
        .connect(plan.server_name.clone(), tcp)
        .await
        .context("TLS through the tunnel")?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .context("HTTP/1.1 handshake")?;
    // Ends when the sender is dropped or the peer closes; either is normal.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Reads the proxy's answer to `CONNECT` and checks it is a 2xx. The client
/// speaks first in TLS, so nothing follows the head until the `ClientHello`
/// is sent; reading in chunks cannot swallow tunnel bytes.
async fn read_connect_response(tcp: &mut TcpStream) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = tcp.read(&mut chunk).await?;
        ensure!(n > 0, "proxy closed the connection during CONNECT");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        ensure!(
            buf.len() <= MAX_CONNECT_HEAD,
            "CONNECT response head over {MAX_CONNECT_HEAD} bytes"
        );
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let status_line = head.lines().next().unwrap_or_default();
    let code = status_line.split_whitespace().nth(1).unwrap_or_default();
    if !code.starts_with('2') {
        let body = String::from_utf8_lossy(&buf[end..]);
        bail!("CONNECT refused: {status_line} {}", body.trim());
    }
    ensure!(
        end == buf.len(),
        "proxy sent bytes after its CONNECT response"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_must_be_loopback() {
        assert!(parse_proxy("http://127.0.0.1:8080").is_ok());
        assert!(parse_proxy("http://[::1]:8080/").is_ok());
        assert!(parse_proxy("http://10.0.0.1:8080").is_err());
        assert!(parse_proxy("https://127.0.0.1:8080").is_err());
        assert!(parse_proxy("http://localhost:8080").is_err());
    }

    #[test]
    fn quantiles_come_from_the_histogram() {
        let mut h = histogram();
        assert_eq!(quantile_ms(&h, 0.5), None);
        for us in 1..=1000 {
            h.saturating_record(us * 1000);
        }
        let p50 = quantile_ms(&h, 0.5).unwrap_or_default();
        let p99 = quantile_ms(&h, 0.99).unwrap_or_default();
        assert!((p50 - 500.0).abs() <= 0.5, "{p50}");
        assert!((p99 - 990.0).abs() <= 1.0, "{p99}");
        // Past the tracked range a value saturates rather than failing.
        h.saturating_record(u64::MAX);
        assert!(quantile_ms(&h, 1.0).unwrap_or_default() >= 3_600_000.0);
    }

    #[test]
    fn filler_is_sized_and_plain() {
        for len in [0, 1, 100, 65536] {
            assert_eq!(filler(len).len(), len);
        }
        let b = filler(1 << 20);
        assert!(
            b.iter()
                .all(|&c| c.is_ascii_lowercase() || c == b' ' || c == b'\n')
        );
        assert_eq!(b, filler(1 << 20));
    }
}
