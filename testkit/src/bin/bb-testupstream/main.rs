//! `bb-testupstream`: the HTTPS upstream of bot-bottle's end-to-end tests.
//!
//! ```text
//! bb-testupstream --listen ADDR --cert PEM --key PEM [--expect-token-env VAR]
//! ```
//!
//! A blocking HTTPS/1.1 server, one thread per connection, one request per
//! connection (every answer says `Connection: close`). It prints
//! `listening <addr>` once bound, then for each request:
//!
//! - answers `200` (or `413` past a 16 MiB body, `400` for a malformed
//!   request) with a `text/plain` body of lines `method=<M>`, `path=<P>`,
//!   `auth=match|mismatch|absent`, `body_len=<n>`. `auth` compares the one
//!   `Authorization` header with `Bearer <value of $VAR>`: `absent` without
//!   the header, `match` when equal, `mismatch` otherwise (always without
//!   `--expect-token-env`). Neither the header nor the token is ever echoed;
//! - logs one stdout line, flushed: `request method=<M> path=<P>
//!   auth=<...> body=<body>`, bytes outside printable ASCII written as
//!   `\xNN`, so a test can grep `docker logs` for a secret that must never
//!   arrive. Connection errors go to stderr.
//!
//! Exit codes: 64 for a bad command line, an unset `$VAR` or an unreadable
//! certificate or key (before binding); 1 when the address cannot be bound.
//! Otherwise it runs until killed.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use bb_testkit::http1::{self, BodyEnd, Framing, Head};
use bb_testkit::{cli, tls};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// The most request body bytes read; larger bodies get 413.
const BODY_CAP: usize = 16 * 1024 * 1024;
/// How long a connection may stay silent before it is dropped, so stuck
/// clients do not pile up threads.
const IDLE: Duration = Duration::from_mins(1);

const USAGE: &str =
    "usage: bb-testupstream --listen ADDR --cert PEM --key PEM [--expect-token-env VAR]";

/// What every connection needs.
struct Shared {
    tls: Arc<ServerConfig>,
    /// `Bearer <token>` when `--expect-token-env` was given.
    expected: Option<Vec<u8>>,
}

fn main() -> ExitCode {
    match run(std::env::args_os().skip(1).collect()) {
        Ok(code) => code,
        Err(message) => {
            cli::note(&format!("bb-testupstream: {message}\n{USAGE}"));
            ExitCode::from(64)
        }
    }
}

/// Configuration errors come back as `Err` (exit 64); everything after the
/// bind is handled here.
fn run(words: Vec<OsString>) -> Result<ExitCode, String> {
    let args = cli::parse(
        words,
        &["--listen", "--cert", "--key", "--expect-token-env"],
    )?;
    if args.help {
        cli::say(USAGE);
        return Ok(ExitCode::SUCCESS);
    }
    if !args.positional.is_empty() {
        return Err(format!("unexpected argument {:?}", args.positional[0]));
    }
    let required = |flag: &str| args.last(flag).ok_or_else(|| format!("{flag} is required"));
    let listen = required("--listen")?;
    let tls = tls::server_config(
        Path::new(required("--cert")?),
        Path::new(required("--key")?),
    )
    .map_err(|error| error.to_string())?;
    let expected = match args.last("--expect-token-env") {
        None => None,
        Some(var) => {
            let token = std::env::var_os(var).ok_or_else(|| format!("${var} is not set"))?;
            let mut expected = b"Bearer ".to_vec();
            expected.extend_from_slice(token.as_encoded_bytes());
            Some(expected)
        }
    };
    let shared = Arc::new(Shared {
        tls: Arc::new(tls),
        expected,
    });

    let listener = match TcpListener::bind(listen) {
        Ok(listener) => listener,
        Err(error) => {
            cli::note(&format!("bb-testupstream: binding {listen}: {error}"));
            return Ok(ExitCode::FAILURE);
        }
    };
    match listener.local_addr() {
        Ok(addr) => cli::say(&format!("listening {addr}")),
        Err(_) => cli::say(&format!("listening {listen}")),
    }
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                let shared = Arc::clone(&shared);
                thread::spawn(move || {
                    if let Err(error) = serve(stream, &shared) {
                        cli::note(&format!("connection peer={peer} error={error}"));
                    }
                });
            }
            Err(error) => {
                cli::note(&format!("accept error={error}"));
                // Out of descriptors, most likely: give connections time to end.
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Serves the one request of a connection.
fn serve(tcp: TcpStream, shared: &Shared) -> io::Result<()> {
    tcp.set_read_timeout(Some(IDLE))?;
    tcp.set_write_timeout(Some(IDLE))?;
    let conn = ServerConnection::new(Arc::clone(&shared.tls)).map_err(io::Error::other)?;
    let mut reader = BufReader::new(StreamOwned::new(conn, tcp));
    let Some(head) = http1::read_head(&mut reader)? else {
        return Ok(());
    };
    let parsed = head
        .request_line()
        .and_then(|(method, target)| Ok((method, target, head.request_framing()?)));
    let (method, target, framing) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            let body = format!("bad request: {error}\n");
            respond(reader.get_mut(), (400, "Bad Request"), &body, true)?;
            return Err(error);
        }
    };
    if framing != Framing::Empty
        && head
            .value("expect")
            .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"))
    {
        let tls = reader.get_mut();
        tls.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        tls.flush()?;
    }

    let mut body = Vec::new();
    let end = http1::read_body(&mut reader, framing, BODY_CAP, &mut body);
    let auth = auth(&head, shared.expected.as_deref());
    // Logged even when the body broke off: what arrived is what counts.
    cli::say(&format!(
        "request method={} path={} auth={auth} body={}",
        escape(method.as_bytes()),
        escape(target.as_bytes()),
        escape(&body)
    ));
    let status = match end? {
        BodyEnd::Complete => (200, "OK"),
        BodyEnd::CapReached => (413, "Content Too Large"),
    };
    let report = format!(
        "method={method}\npath={target}\nauth={auth}\nbody_len={}\n",
        body.len()
    );
    // A HEAD answer has the headers a GET would get, and no body.
    let send_body = !method.eq_ignore_ascii_case("HEAD");
    respond(reader.get_mut(), status, &report, send_body)
}

fn respond(
    tls: &mut StreamOwned<ServerConnection, TcpStream>,
    (status, reason): (u16, &str),
    body: &str,
    send_body: bool,
) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes())?;
    if send_body {
        tls.write_all(body.as_bytes())?;
    }
    tls.conn.send_close_notify();
    tls.flush()
}

/// `match`, `mismatch` or `absent`: the one `Authorization` header against
/// `expected`. Several headers never match.
fn auth(head: &Head, expected: Option<&[u8]>) -> &'static str {
    let mut values = head.values("authorization");
    match (values.next(), values.next(), expected) {
        (None, _, _) => "absent",
        (Some(value), None, Some(expected)) if value == expected => "match",
        _ => "mismatch",
    }
}

/// `bytes` with everything outside printable ASCII as `\xNN`, on one line.
fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte == b' ' || byte.is_ascii_graphic() {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\x{byte:02x}");
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn escapes_unprintable_bytes() {
        assert_eq!(escape(b"a b\n\x00\xff~"), "a b\\x0a\\x00\\xff~");
    }

    #[test]
    fn classifies_authorization() {
        let head = |text: &str| http1::read_head(&mut text.as_bytes()).unwrap().unwrap();
        let none = head("GET / HTTP/1.1\r\n\r\n");
        let good = head("GET / HTTP/1.1\r\nauthorization: Bearer t\r\n\r\n");
        let twice =
            head("GET / HTTP/1.1\r\nAuthorization: Bearer t\r\nAuthorization: Bearer t\r\n\r\n");
        assert_eq!(auth(&none, Some(b"Bearer t")), "absent");
        assert_eq!(auth(&good, Some(b"Bearer t")), "match");
        assert_eq!(auth(&good, Some(b"Bearer u")), "mismatch");
        assert_eq!(auth(&good, None), "mismatch");
        assert_eq!(auth(&twice, Some(b"Bearer t")), "mismatch");
    }
}
