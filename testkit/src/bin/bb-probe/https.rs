//! `bb-probe https URL`: one HTTPS/1.1 request the way an agent's tools
//! make it, through the CONNECT proxy named by `HTTPS_PROXY` when set.

use std::env;
use std::fmt::Write as _;
use std::io::{self, BufReader, Cursor, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs as _};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bb_testkit::http1::{self, BodyEnd, Framing, Head};
use bb_testkit::{cli, tls};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};

use crate::{BadInput, EXIT_FAILED, EXIT_OK, io_kind, report, single};

/// The most response body bytes kept (the rest is dropped, with a note).
const BODY_CAP: usize = 64 * 1024 * 1024;

/// Where and what to ask.
struct Request {
    host: String,
    port: u16,
    /// `host:port`, brackets around IPv6: the CONNECT target.
    authority: String,
    /// The `Host` header value: the port only when it is not 443.
    host_header: String,
    /// Origin-form target: path and query.
    target: String,
    method: String,
    headers: Vec<(String, String)>,
    data: Option<String>,
}

/// An HTTP response: the origin's, or the proxy's refusal of CONNECT.
struct Response {
    status: u16,
    body: Vec<u8>,
}

/// No HTTP response: `error=<kind> <message>`.
struct Failure {
    kind: &'static str,
    message: String,
}

impl Failure {
    fn new(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    fn io(context: &str, error: &io::Error) -> Self {
        Self::new(io_kind(error), format!("{context}: {error}"))
    }
}

pub(crate) fn run(args: &cli::Parsed) -> Result<u8, BadInput> {
    let request = parse_request(args)?;
    let timeout = args
        .millis("--timeout-ms", 30_000)
        .map_err(BadInput::usage)?;
    let proxy = proxy_from_env()?;
    let roots = env::var_os("SSL_CERT_FILE")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| BadInput::config("SSL_CERT_FILE is not set"))?;
    let config = tls::client_config(Path::new(&roots))
        .map_err(|error| BadInput::config(format!("SSL_CERT_FILE: {error}")))?;

    match fetch(&request, proxy.as_ref(), config, timeout) {
        Ok(response) => {
            cli::emit(format!("status={}\n", response.status).as_bytes());
            cli::emit(&response.body);
            Ok(EXIT_OK)
        }
        Err(failure) => {
            report(failure.kind, &failure.message);
            Ok(EXIT_FAILED)
        }
    }
}

fn parse_request(args: &cli::Parsed) -> Result<Request, BadInput> {
    let url = single(args, "URL")?;
    let bad = |why: &str| BadInput::usage(format!("URL {url:?}: {why}"));
    let rest = url
        .get(..8)
        .filter(|scheme| scheme.eq_ignore_ascii_case("https://"))
        .map(|_| &url[8..])
        .ok_or_else(|| bad("only https:// URLs"))?;
    let rest = rest.split('#').next().unwrap_or_default();
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(split);
    if authority.contains('@') {
        return Err(bad("user info is not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(bad("junk after ]")),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 443,
        Some(port) => port.parse().map_err(|_| bad("bad port"))?,
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    ServerName::try_from(host).map_err(|_| bad("host is not a DNS name or IP address"))?;
    let target = match target {
        "" => "/".to_owned(),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_owned(),
    };
    if target.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(bad("spaces or control characters in the path"));
    }
    let bracketed = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };

    let mut headers = Vec::new();
    for header in args.all("--header") {
        let (name, value) = header
            .split_once(':')
            .ok_or_else(|| BadInput::usage(format!("--header {header:?} is not 'Name: value'")))?;
        let name = name.trim();
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_graphic())
            || header.bytes().any(|b| b == b'\r' || b == b'\n')
        {
            return Err(BadInput::usage(format!(
                "--header {header:?} is not 'Name: value'"
            )));
        }
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
    let data = args.last("--data").map(str::to_owned);
    let method = match args.last("--method") {
        Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') => {
            m.to_owned()
        }
        Some(m) => return Err(BadInput::usage(format!("--method {m:?} is not a method"))),
        None if data.is_some() => "POST".to_owned(),
        None => "GET".to_owned(),
    };
    Ok(Request {
        host: host.to_owned(),
        port,
        authority: format!("{bracketed}:{port}"),
        host_header: if port == 443 {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        },
        target,
        method,
        headers,
        data,
    })
}

/// The proxy from `HTTPS_PROXY`, else `https_proxy`: `http://host:port`
/// (the scheme and a trailing slash are optional, the port defaults to 80).
fn proxy_from_env() -> Result<Option<(String, u16)>, BadInput> {
    let Some((name, value)) = ["HTTPS_PROXY", "https_proxy"]
        .into_iter()
        .find_map(|name| Some((name, env::var(name).ok().filter(|v| !v.is_empty())?)))
    else {
        return Ok(None);
    };
    let bad = |why: &str| BadInput::config(format!("{name}={value:?}: {why}"));
    let rest = match value.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
        Some(_) => return Err(bad("only http:// proxies")),
        None => value.as_str(),
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['@', '/']) {
        return Err(bad("expected http://host:port"));
    }
    let (host, port) = match crate::host_port(authority) {
        Ok(host_port) => host_port,
        Err(_) if !authority.contains(':') => (authority.to_owned(), 80),
        Err(_) => return Err(bad("expected http://host:port")),
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(Some((host, port)))
}

fn fetch(
    request: &Request,
    proxy: Option<&(String, u16)>,
    config: ClientConfig,
    timeout: Duration,
) -> Result<Response, Failure> {
    let stream = match proxy {
        None => Tunnel::direct(connect(&request.host, request.port, timeout)?),
        Some((host, port)) => {
            match open_tunnel(connect(host, *port, timeout)?, &request.authority)? {
                Ok(tunnel) => tunnel,
                Err(refusal) => return Ok(refusal),
            }
        }
    };

    let name = ServerName::try_from(request.host.clone())
        .map_err(|error| Failure::new("tls", format!("{}: {error}", request.host)))?;
    let conn = ClientConnection::new(Arc::new(config), name)
        .map_err(|error| Failure::new("tls", error.to_string()))?;
    let mut tls = StreamOwned::new(conn, stream);
    while tls.conn.is_handshaking() {
        match tls.conn.complete_io(&mut tls.sock) {
            Ok((0, 0)) => {
                return Err(Failure::new("tls", "TLS handshake: no progress"));
            }
            Ok(_) => {}
            Err(error) => {
                let kind = match error.kind() {
                    io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => "tls",
                    _ => io_kind(&error),
                };
                return Err(Failure::new(kind, format!("TLS handshake: {error}")));
            }
        }
    }

    tls.write_all(&request_bytes(request))
        .and_then(|()| tls.flush())
        .map_err(|error| Failure::io("sending the request", &error))?;
    let mut reader = BufReader::new(tls);
    let head = loop {
        let head = read_response_head(&mut reader, "the response")?;
        let status = head
            .status()
            .map_err(|e| Failure::new("protocol", e.to_string()))?;
        // Interim answers (100 Continue, 103 Early Hints) precede the real one.
        if !(100..200).contains(&status) || status == 101 {
            break head;
        }
    };
    read_response(&mut reader, &head, &request.method)
}

/// A TCP connection to the first address of `host` that answers.
fn connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream, Failure> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|error| Failure::new("dns", format!("{host}: {error}")))?
        .collect();
    let mut last = Failure::new("dns", format!("{host}: no addresses"));
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(stream) => {
                stream
                    .set_read_timeout(Some(timeout))
                    .and_then(|()| stream.set_write_timeout(Some(timeout)))
                    .map_err(|error| Failure::io("socket options", &error))?;
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(error) => last = Failure::io(&format!("connecting to {addr}"), &error),
        }
    }
    Err(last)
}

/// Asks the proxy for a tunnel to `authority`. `Ok(Err(response))` when the
/// proxy answered with something other than 2xx.
fn open_tunnel(
    mut stream: TcpStream,
    authority: &str,
) -> Result<Result<Tunnel, Response>, Failure> {
    let connect = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream
        .write_all(connect.as_bytes())
        .map_err(|error| Failure::io("sending CONNECT", &error))?;
    let mut reader = BufReader::new(stream);
    let head = read_response_head(&mut reader, "the CONNECT answer").map_err(|f| {
        Failure::new(
            if f.kind == "protocol" {
                "proxy"
            } else {
                f.kind
            },
            f.message,
        )
    })?;
    let status = head
        .status()
        .map_err(|error| Failure::new("proxy", format!("CONNECT answer: {error}")))?;
    if !(200..300).contains(&status) {
        return read_response(&mut reader, &head, "CONNECT").map(Err);
    }
    // Bytes the proxy sent past its answer belong to the tunnel.
    let early = reader.buffer().to_vec();
    Ok(Ok(Tunnel {
        early: Cursor::new(early),
        stream: reader.into_inner(),
    }))
}

fn read_response_head<R: io::BufRead>(reader: &mut R, what: &str) -> Result<Head, Failure> {
    match http1::read_head(reader) {
        Ok(Some(head)) => Ok(head),
        Ok(None) => Err(Failure::new(
            "closed",
            format!("connection closed before {what}"),
        )),
        Err(error) if error.kind() == io::ErrorKind::InvalidData => {
            // rustls reports TLS alerts as InvalidData too.
            let kind = if matches!(error.get_ref(), Some(inner) if inner.is::<rustls::Error>()) {
                "tls"
            } else {
                "protocol"
            };
            Err(Failure::new(kind, format!("reading {what}: {error}")))
        }
        Err(error) => Err(Failure::io(&format!("reading {what}"), &error)),
    }
}

/// Reads the body after `head`. A body cut short is still a response: the
/// test wants the status, so the shortfall is only noted on stderr.
fn read_response(
    reader: &mut impl io::BufRead,
    head: &Head,
    method: &str,
) -> Result<Response, Failure> {
    let status = head
        .status()
        .map_err(|error| Failure::new("protocol", error.to_string()))?;
    let framing = if method == "CONNECT" && (200..300).contains(&status) {
        Framing::Empty
    } else {
        head.response_framing(method).unwrap_or_else(|error| {
            cli::note(&format!("bb-probe: {error}; reading the body until close"));
            Framing::UntilClose
        })
    };
    let mut body = Vec::new();
    match http1::read_body(reader, framing, BODY_CAP, &mut body) {
        Ok(BodyEnd::Complete) => {}
        Ok(BodyEnd::CapReached) => {
            cli::note(&format!("bb-probe: body cut at {BODY_CAP} bytes"));
        }
        Err(error) => cli::note(&format!(
            "bb-probe: body incomplete after {} bytes: {error}",
            body.len()
        )),
    }
    Ok(Response { status, body })
}

fn request_bytes(request: &Request) -> Vec<u8> {
    let given = |name: &str| {
        request
            .headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    };
    // Writing to a String cannot fail: the `write!` results are dropped.
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    if !given("host") {
        let _ = write!(head, "Host: {}\r\n", request.host_header);
    }
    for (name, value) in &request.headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    if let Some(data) = &request.data
        && !given("content-length")
        && !given("transfer-encoding")
    {
        let _ = write!(head, "Content-Length: {}\r\n", data.len());
    }
    if !given("connection") {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if let Some(data) = &request.data {
        bytes.extend_from_slice(data.as_bytes());
    }
    bytes
}

/// The byte stream TLS runs over: the TCP connection, first replaying any
/// bytes the proxy sent right after its CONNECT answer.
struct Tunnel {
    early: Cursor<Vec<u8>>,
    stream: TcpStream,
}

impl Tunnel {
    fn direct(stream: TcpStream) -> Self {
        Self {
            early: Cursor::new(Vec::new()),
            stream,
        }
    }
}

impl Read for Tunnel {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.early.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        self.stream.read(buf)
    }
}

impl Write for Tunnel {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn request(words: &[&str]) -> Result<Request, BadInput> {
        let words = words.iter().map(OsString::from);
        let args =
            cli::parse(words, &["--method", "--data", "--header"]).map_err(BadInput::usage)?;
        parse_request(&args)
    }

    #[test]
    fn parses_urls() {
        let r = request(&["https://Example.com"]).ok().unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.target.as_str()),
            ("Example.com", 443, "/")
        );
        assert_eq!(r.host_header, "Example.com");
        assert_eq!(r.authority, "Example.com:443");
        let r = request(&["https://[::1]:8443?q=1#frag"]).ok().unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.target.as_str()),
            ("::1", 8443, "/?q=1")
        );
        assert_eq!(r.host_header, "[::1]:8443");
        let r = request(&["https://127.0.0.1:9/a/b?c"]).ok().unwrap();
        assert_eq!(r.target, "/a/b?c");
        for bad in [
            "http://a/",
            "https://",
            "https://u@a/",
            "https://a:x/",
            "https://a/b c",
        ] {
            assert!(request(&[bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn builds_the_request() {
        let r = request(&["https://a:8443/p", "--data", "xy", "--header", "X-K:  v "])
            .ok()
            .unwrap();
        assert_eq!(r.method, "POST");
        let text = String::from_utf8(request_bytes(&r)).unwrap();
        assert_eq!(
            text,
            "POST /p HTTP/1.1\r\nHost: a:8443\r\nX-K: v\r\nContent-Length: 2\r\nConnection: close\r\n\r\nxy"
        );
        let r = request(&["https://a/", "--method", "PUT", "--header", "host: b"])
            .ok()
            .unwrap();
        let text = String::from_utf8(request_bytes(&r)).unwrap();
        assert_eq!(
            text,
            "PUT / HTTP/1.1\r\nhost: b\r\nConnection: close\r\n\r\n"
        );
        assert!(request(&["https://a/", "--header", "nocolon"]).is_err());
        assert!(request(&["https://a/", "--method", "G T"]).is_err());
    }
}
