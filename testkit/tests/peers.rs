//! The real `bb-probe` and `bb-testupstream` binaries against each other on
//! 127.0.0.1, directly and through a minimal CONNECT proxy written here.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io::{self, BufRead, BufReader, Write as _};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use bb_testkit::{TestPki, http1, mint_test_pki};
use tempfile::TempDir;

const PROBE: &str = env!("CARGO_BIN_EXE_bb-probe");
const UPSTREAM: &str = env!("CARGO_BIN_EXE_bb-testupstream");
const TOKEN: &str = "tok-3f9a-upstream-secret";

/// A running `bb-testupstream` with its stdout lines collected.
struct Upstream {
    child: Child,
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    pki: TestPki,
    _dir: TempDir,
}

impl Upstream {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = mint_test_pki(dir.path(), &["localhost", "127.0.0.1"]).unwrap();
        let mut child = Command::new(UPSTREAM)
            .args(["--listen", "127.0.0.1:0", "--cert"])
            .arg(&pki.server_cert)
            .arg("--key")
            .arg(&pki.server_key)
            .args(["--expect-token-env", "UPSTREAM_TOKEN"])
            .env("UPSTREAM_TOKEN", TOKEN)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let port = first
            .trim()
            .strip_prefix("listening 127.0.0.1:")
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .parse()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { return };
                sink.lock().unwrap().push(line);
            }
        });
        Self {
            child,
            port,
            lines,
            pki,
            _dir: dir,
        }
    }

    /// The first log line containing `needle`, waiting for the reader
    /// thread (the upstream flushes before answering, so it is on its way).
    fn log_line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(line) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .find(|l| l.contains(needle))
            {
                return line.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no upstream log line contains {needle:?}: {:?}",
                self.lines.lock().unwrap()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `bb-probe` with only the given environment.
fn probe(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(PROBE)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exit code")
}

fn roots(pki: &TestPki) -> &str {
    pki.ca_cert.to_str().unwrap()
}

/// A port on 127.0.0.1 that nothing listens on (just released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A one-connection CONNECT proxy: records the request line, then answers
/// 200 and splices to `127.0.0.1:upstream`, or answers 403 when `refuse`.
fn connect_proxy(upstream: u16, refuse: bool) -> (u16, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(client);
        let head = http1::read_head(&mut reader).unwrap().unwrap();
        let early = reader.buffer().to_vec();
        let mut client = reader.into_inner();
        if refuse {
            let body = "denied by policy\n";
            write!(
                client,
                "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            return head.start_line;
        }
        let mut server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .unwrap();
        server.write_all(&early).unwrap();
        let (mut client_in, mut server_out) =
            (client.try_clone().unwrap(), server.try_clone().unwrap());
        let up = thread::spawn(move || {
            let _ = io::copy(&mut client_in, &mut server_out);
            let _ = server_out.shutdown(Shutdown::Write);
        });
        let _ = io::copy(&mut server, &mut client);
        let _ = client.shutdown(Shutdown::Write);
        up.join().unwrap();
        head.start_line
    });
    (port, handle)
}

#[test]
fn https_direct_reports_auth_and_logs_the_body() {
    let upstream = Upstream::start();
    let env = [("SSL_CERT_FILE", roots(&upstream.pki))];
    let bearer = format!("Authorization: Bearer {TOKEN}");

    let url = format!("https://localhost:{}/echo?x=1", upstream.port);
    let out = probe(
        &[
            "https",
            &url,
            "--data",
            "posted-body-1\n",
            "--header",
            &bearer,
        ],
        &env,
    );
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(text.starts_with("status=200\n"), "{text}");
    for line in ["method=POST", "path=/echo?x=1", "auth=match", "body_len=14"] {
        assert!(text.lines().any(|l| l == line), "{line} missing: {text}");
    }
    assert!(!text.contains(TOKEN), "the token is echoed: {text}");
    let log = upstream.log_line("path=/echo?x=1");
    assert_eq!(
        log,
        "request method=POST path=/echo?x=1 auth=match body=posted-body-1\\x0a"
    );

    // By IP address, a wrong token; then no header at all.
    let url = format!("https://127.0.0.1:{}/wrong", upstream.port);
    let out = probe(
        &[
            "https",
            &url,
            "--method",
            "PUT",
            "--header",
            "Authorization: Bearer nope",
        ],
        &env,
    );
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(text.lines().any(|l| l == "auth=mismatch"), "{text}");
    assert!(text.lines().any(|l| l == "method=PUT"), "{text}");

    let url = format!("https://localhost:{}/", upstream.port);
    let out = probe(&["https", &url], &env);
    let text = stdout(&out);
    assert!(text.lines().any(|l| l == "auth=absent"), "{text}");
    assert!(text.lines().any(|l| l == "method=GET"), "{text}");
    let url = format!("https://localhost:{}/head", upstream.port);
    let out = probe(&["https", &url, "--method", "HEAD"], &env);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "status=200\n"));
    assert!(upstream.log_line("path=/wrong").contains("auth=mismatch"));
    assert!(
        !upstream
            .lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(TOKEN))
    );
}

#[test]
fn https_goes_through_the_connect_proxy() {
    let upstream = Upstream::start();
    let (proxy, seen) = connect_proxy(upstream.port, false);
    let proxy_url = format!("http://127.0.0.1:{proxy}");
    let url = format!("https://localhost:{}/via-proxy", upstream.port);
    let out = probe(
        &["https", &url, "--data", "through-the-tunnel"],
        &[
            ("SSL_CERT_FILE", roots(&upstream.pki)),
            ("HTTPS_PROXY", &proxy_url),
        ],
    );
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}");
    assert!(text.starts_with("status=200\n"), "{text}");
    assert!(text.lines().any(|l| l == "path=/via-proxy"), "{text}");
    assert_eq!(
        seen.join().unwrap(),
        format!("CONNECT localhost:{} HTTP/1.1", upstream.port)
    );
    assert!(
        upstream
            .log_line("path=/via-proxy")
            .ends_with("body=through-the-tunnel")
    );
}

#[test]
fn a_refused_connect_is_a_status_not_an_error() {
    let upstream = Upstream::start();
    let (proxy, seen) = connect_proxy(upstream.port, true);
    let proxy_url = format!("http://127.0.0.1:{proxy}/");
    let out = probe(
        &["https", "https://blocked.example:443/x"],
        &[
            ("SSL_CERT_FILE", roots(&upstream.pki)),
            ("https_proxy", &proxy_url),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert_eq!(stdout(&out), "status=403\ndenied by policy\n");
    assert_eq!(seen.join().unwrap(), "CONNECT blocked.example:443 HTTP/1.1");
}

#[test]
fn https_failures_exit_2_and_bad_configuration_64() {
    let upstream = Upstream::start();
    let closed = format!("https://127.0.0.1:{}/", closed_port());
    let out = probe(
        &["https", &closed],
        &[("SSL_CERT_FILE", roots(&upstream.pki))],
    );
    assert_eq!(code(&out), 2);
    assert!(
        stdout(&out).starts_with("error=refused "),
        "{}",
        stdout(&out)
    );

    // A CA the upstream's certificate does not chain to.
    let other = tempfile::tempdir().unwrap();
    let other_pki = mint_test_pki(other.path(), &["localhost"]).unwrap();
    let url = format!("https://localhost:{}/", upstream.port);
    let out = probe(&["https", &url], &[("SSL_CERT_FILE", roots(&other_pki))]);
    assert_eq!(code(&out), 2);
    assert!(stdout(&out).starts_with("error=tls "), "{}", stdout(&out));

    let out = probe(&["https", &url], &[]);
    assert_eq!(code(&out), 64);
    assert!(
        stdout(&out).starts_with("error=config "),
        "{}",
        stdout(&out)
    );
    let out = probe(
        &["https", "http://plain/"],
        &[("SSL_CERT_FILE", roots(&upstream.pki))],
    );
    assert_eq!(code(&out), 64);
    assert!(stdout(&out).starts_with("error=usage "), "{}", stdout(&out));
    assert_eq!(code(&probe(&["nope"], &[])), 64);
    let help = probe(&["--help"], &[]);
    assert_eq!(code(&help), 0);
    assert!(stdout(&help).contains("scan-fs HEX_NEEDLE [ROOT]"));
}

#[test]
fn tcp_connects_or_says_why_not() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let open = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let out = probe(&["tcp", &open], &[]);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "connected\n"));

    let closed = format!("localhost:{}", closed_port());
    let out = probe(&["tcp", &closed, "--timeout-ms", "10000"], &[]);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).starts_with("error=refused "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn udp_waits_for_any_reply() {
    let responder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = responder.local_addr().unwrap();
    let echo = thread::spawn(move || {
        let mut buf = [0u8; 512];
        let (n, from) = responder.recv_from(&mut buf).unwrap();
        responder.send_to(&buf[..n], from).unwrap();
        buf[..n].to_vec()
    });
    let out = probe(&["udp", &addr.to_string(), "--timeout-ms", "20000"], &[]);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "reply\n"));
    let query = echo.join().unwrap();
    assert!(query.windows(9).any(|w| w == b"\x07example\x03"));

    // Nothing bound: loopback answers with ICMP port unreachable.
    let free = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = probe(&["udp", &free.to_string(), "--timeout-ms", "20000"], &[]);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).starts_with("error=refused "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn resolve_localhost() {
    let out = probe(&["resolve", "localhost"], &[]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    let ip: IpAddr = stdout(&out)
        .trim()
        .strip_prefix("resolved=")
        .unwrap()
        .parse()
        .unwrap();
    assert!(ip.is_loopback());
    let out = probe(&["resolve", "no-such-host.invalid"], &[]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).starts_with("error=dns "), "{}", stdout(&out));
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, b| {
        write!(out, "{b:02x}").unwrap();
        out
    })
}

#[test]
fn scan_fs_finds_the_needle_on_disk_and_in_the_environment() {
    let needle = b"needle-\x00-7c1e9b";
    let root = tempfile::tempdir().unwrap();
    let nested = root.path().join("a/b");
    std::fs::create_dir_all(&nested).unwrap();
    std::fs::write(root.path().join("plain.txt"), b"nothing here").unwrap();
    let mut haystack = vec![0xffu8; 100_000];
    haystack.extend_from_slice(needle);
    std::fs::write(nested.join("secret.bin"), &haystack).unwrap();
    // A symlink to the hit is not followed, so it is reported once.
    std::os::unix::fs::symlink(nested.join("secret.bin"), root.path().join("link")).unwrap();
    let root_arg = root.path().to_str().unwrap();

    let out = probe(&["scan-fs", &hex(needle), root_arg], &[]);
    let hit = format!("found {}\n", nested.join("secret.bin").display());
    assert_eq!((code(&out), stdout(&out)), (1, hit));

    let clean = tempfile::tempdir().unwrap();
    std::fs::write(clean.path().join("f"), b"needle-").unwrap();
    let clean_arg = clean.path().to_str().unwrap();
    let out = probe(&["scan-fs", &hex(needle), clean_arg], &[]);
    assert_eq!((code(&out), stdout(&out).as_str()), (0, "clean\n"));

    let out = probe(
        &["scan-fs", &hex(b"env-needle-42"), clean_arg],
        &[("LEAKY", "x env-needle-42 y")],
    );
    assert_eq!(
        (code(&out), stdout(&out).as_str()),
        (1, "found env:LEAKY\n")
    );

    let out = probe(&["scan-fs", "xyz", clean_arg], &[]);
    assert_eq!(code(&out), 64);
    let missing = clean.path().join("missing");
    let out = probe(&["scan-fs", "aa", missing.to_str().unwrap()], &[]);
    assert_eq!(code(&out), 2);
    assert!(
        stdout(&out).starts_with("error=not-found "),
        "{}",
        stdout(&out)
    );
}

#[test]
fn the_upstream_refuses_an_unset_token_variable() {
    let dir = tempfile::tempdir().unwrap();
    let pki = mint_test_pki(dir.path(), &["localhost"]).unwrap();
    let out = Command::new(UPSTREAM)
        .args(["--listen", "127.0.0.1:0", "--cert"])
        .arg(&pki.server_cert)
        .arg("--key")
        .arg(&pki.server_key)
        .args(["--expect-token-env", "SURELY_UNSET_VAR"])
        .env_remove("SURELY_UNSET_VAR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(out.stdout.is_empty(), "bound before refusing");
}
