//! `bb-probe`: the agent-side test client of bot-bottle's end-to-end tests.
//! It runs inside the agent container (`FROM scratch` with busybox) and
//! reports, one machine-readable line at a time, what the agent can reach
//! and what it can see. The reference below is also its `--help`:
//!
//! ```text
#![doc = include_str!("help.txt")]
//! ```

mod https;
mod resolve;
mod scan_fs;
mod tcp;
mod udp;

use std::ffi::OsString;
use std::io;
use std::process::ExitCode;

use bb_testkit::cli;

/// The positive answer: response received, connected, reply, resolved,
/// clean.
const EXIT_OK: u8 = 0;
/// The negative answer of tcp, udp, resolve; scan-fs found the needle.
const EXIT_NO: u8 = 1;
/// https got no HTTP response; scan-fs could not read its root.
const EXIT_FAILED: u8 = 2;
/// Bad command line or configuration (sysexits `EX_USAGE`).
const EXIT_USAGE: u8 = 64;

const HELP: &str = include_str!("help.txt");

/// A command line or configuration the probe cannot act on.
struct BadInput {
    /// `usage` or `config`.
    kind: &'static str,
    message: String,
}

impl BadInput {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            kind: "usage",
            message: message.into(),
        }
    }

    fn config(message: impl Into<String>) -> Self {
        Self {
            kind: "config",
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    match run(std::env::args_os().skip(1).collect()) {
        Ok(code) => ExitCode::from(code),
        Err(BadInput { kind, message }) => {
            cli::say(&format!("error={kind} {}", cli::one_line(&message)));
            cli::note(&format!("bb-probe: {message} (see bb-probe --help)"));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

fn run(mut words: Vec<OsString>) -> Result<u8, BadInput> {
    if words.is_empty() {
        return Err(BadInput::usage("no command given"));
    }
    let command = words.remove(0);
    let flags: &[&str] = match command.to_str() {
        Some("https") => &["--method", "--data", "--header", "--timeout-ms"],
        Some("tcp" | "udp") => &["--timeout-ms"],
        Some("resolve" | "scan-fs") => &[],
        Some("--help" | "-h" | "help") => {
            cli::emit(HELP.as_bytes());
            return Ok(EXIT_OK);
        }
        _ => {
            return Err(BadInput::usage(format!(
                "unknown command {}",
                command.display()
            )));
        }
    };
    let args = cli::parse(words, flags).map_err(BadInput::usage)?;
    if args.help {
        cli::emit(HELP.as_bytes());
        return Ok(EXIT_OK);
    }
    match command.to_str() {
        Some("https") => https::run(&args),
        Some("tcp") => tcp::run(&args),
        Some("udp") => udp::run(&args),
        Some("resolve") => resolve::run(&args),
        _ => scan_fs::run(&args),
    }
}

/// The one positional argument a command takes, named `what` in errors.
fn single<'a>(args: &'a cli::Parsed, what: &str) -> Result<&'a str, BadInput> {
    match args.positional.as_slice() {
        [one] => Ok(one),
        [] => Err(BadInput::usage(format!("missing {what}"))),
        _ => Err(BadInput::usage(format!("expected only {what}"))),
    }
}

/// Splits `HOST:PORT` (`[v6]:PORT` for IPv6 literals) into host and port.
fn host_port(text: &str) -> Result<(String, u16), BadInput> {
    let bad = || BadInput::usage(format!("{text:?} is not HOST:PORT"));
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, rest) = rest.split_once(']').ok_or_else(bad)?;
        (host, rest.strip_prefix(':').ok_or_else(bad)?)
    } else {
        text.rsplit_once(':').ok_or_else(bad)?
    };
    if host.is_empty() || host.contains(':') && !text.starts_with('[') {
        return Err(bad());
    }
    Ok((host.to_owned(), port.parse().map_err(|_| bad())?))
}

/// The result-line kind for a socket error.
fn io_kind(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => "refused",
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "timeout",
        io::ErrorKind::ConnectionReset => "reset",
        io::ErrorKind::ConnectionAborted => "aborted",
        io::ErrorKind::NetworkUnreachable => "network-unreachable",
        io::ErrorKind::HostUnreachable => "host-unreachable",
        io::ErrorKind::AddrNotAvailable => "addr-not-available",
        io::ErrorKind::PermissionDenied => "permission-denied",
        io::ErrorKind::NotFound => "not-found",
        io::ErrorKind::UnexpectedEof => "closed",
        _ => "io",
    }
}

/// Prints `error=<kind> <message>` for `error`.
fn report(kind: &str, message: &str) {
    cli::say(&format!("error={kind} {}", cli::one_line(message)));
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn splits_host_and_port() {
        assert_eq!(host_port("a.b:80").ok(), Some(("a.b".to_owned(), 80)));
        assert_eq!(host_port("[::1]:53").ok(), Some(("::1".to_owned(), 53)));
        assert!(host_port("::1:53").is_err());
        assert!(host_port("a.b").is_err());
        assert!(host_port(":80").is_err());
        assert!(host_port("a:99999").is_err());
    }
}
