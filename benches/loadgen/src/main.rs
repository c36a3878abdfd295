//! `bb-loadgen`: the two halves of the side-by-side harness
//! (`benches/compare-mitmproxy.sh`) that are not the proxies themselves.
//!
//! - `upstream` is a local HTTPS origin with its own test CA, so both proxies
//!   bump and re-encrypt against the same server.
//! - `load` drives a proxy the way an agent does: HTTP `CONNECT`, TLS through
//!   the tunnel trusting the proxy's CA, then keep-alive requests back to
//!   back. It prints one JSON line of results.
//!
//! Everything listens on and connects to loopback addresses only: the
//! harness must never send load anywhere else.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

mod load;
mod upstream;

/// Exit code for usage and configuration errors (the project's `EX_USAGE`).
const EXIT_USAGE: u8 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "bb-loadgen",
    version,
    about = "load generator and HTTPS upstream for the bb-egress vs mitmproxy bench"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve HTTPS (HTTP/1.1 and h2) on a loopback address with a freshly
    /// minted test CA written to DIR/ca.crt.
    Upstream(UpstreamArgs),
    /// Drive a proxy through CONNECT tunnels and print one JSON line.
    Load(LoadArgs),
    /// Mint a test CA and a `localhost` leaf into DIR: `ca.crt`, `leaf.crt`
    /// and `leaf.key` (0600), for another upstream server (nginx).
    Cert {
        /// Folder to write the files into (created if missing).
        dir: PathBuf,
    },
}

/// Flags of `bb-loadgen upstream`.
#[derive(clap::Args, Debug)]
struct UpstreamArgs {
    /// Loopback address to listen on (port 0 picks one; the bound address
    /// is printed as `listening ADDR`).
    #[arg(long)]
    listen: SocketAddr,
    /// Folder to write the test CA certificate into (`ca.crt`).
    #[arg(long)]
    cert_dir: PathBuf,
    /// Name of an environment variable holding the token the proxy must
    /// inject: requests without `Authorization: Bearer <value>` get 401.
    #[arg(long)]
    expect_bearer_env: Option<String>,
    /// Exit after this long even if nobody stops the server (a safety net
    /// for a harness that died without cleaning up).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    max_lifetime: Duration,
}

/// Flags of `bb-loadgen load`.
#[derive(clap::Args, Debug)]
struct LoadArgs {
    /// The proxy, `http://127.0.0.1:PORT`, or `direct` to connect to the
    /// target itself (the harness's "direct" row; the target must resolve
    /// to a loopback address).
    #[arg(long)]
    proxy: String,
    /// The target, `https://HOST:PORT/path`, tunnelled through the proxy.
    #[arg(long)]
    url: String,
    /// PEM file of the CA that signs the proxy's bumped certificates.
    #[arg(long)]
    ca: PathBuf,
    /// Concurrent connections, each with one request in flight.
    #[arg(long, default_value_t = 20)]
    connections: usize,
    /// Measured run time, e.g. `10s`, `500ms`, `1m`.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured run time before `--duration` starts (leaf certificates
    /// minted, connections open).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,
    /// `GET` or `POST`.
    #[arg(long, default_value = "GET", value_parser = parse_method)]
    method: http::Method,
    /// Request body size for POST, in bytes (suffixes `KiB`, `MiB` accepted).
    #[arg(long, default_value = "0", value_parser = parse_size)]
    body_size: usize,
    /// Open a new tunnel for every request instead of keeping it alive.
    #[arg(long)]
    new_connection_per_request: bool,
    /// A request (including any connect) that takes longer is an error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Value of the `Authorization` header the client sends (an agent sends
    /// a placeholder that the proxy replaces).
    #[arg(long, default_value = "Bearer egress-placeholder")]
    authorization: String,
    /// Read the `Authorization` value from this environment variable
    /// instead (`Bearer <value>`), so a real token never goes on argv: the
    /// direct row has no proxy to inject it.
    #[arg(long, conflicts_with = "authorization")]
    bearer_env: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bb-loadgen: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Two worker threads at most: the harness shares a small machine with
    // the proxy under test, and more threads only add scheduling noise.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match cli.command {
        Command::Upstream(args) => {
            if let Err(e) = upstream::validate(&args) {
                eprintln!("bb-loadgen upstream: {e:#}");
                return Ok(ExitCode::from(EXIT_USAGE));
            }
            runtime.block_on(upstream::run(args))
        }
        Command::Cert { dir } => {
            upstream::write_cert_files(&dir)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Load(args) => {
            let plan = match load::Plan::new(args) {
                Ok(plan) => plan,
                Err(e) => {
                    eprintln!("bb-loadgen load: {e:#}");
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            };
            runtime.block_on(load::run(plan))
        }
    }
}

/// Parses `250ms`, `10s`, `1.5s`, `2m`, `1h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 10s or 500ms"))?;
    let scale = match unit {
        "ms" => 1e-3,
        "s" | "" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("`{s}`: {e}"))
}

/// Parses a byte count: `4096`, `64KiB`, `1MiB` (also `k`/`K`/`M`).
fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: usize = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 65536 or 64KiB"))?;
    let scale = match unit {
        "" | "B" => 1,
        "k" | "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (KiB, MiB)")),
    };
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("`{s}` is too large"))
}

fn parse_method(s: &str) -> Result<http::Method, String> {
    match s.to_ascii_uppercase().as_str() {
        "GET" => Ok(http::Method::GET),
        "POST" => Ok(http::Method::POST),
        _ => Err(format!("`{s}`: only GET and POST are supported")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_mins(2)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert!(parse_size("1GiB").is_err());
    }

    #[test]
    fn cli_parses() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
