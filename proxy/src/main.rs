//! The `bb-egress` command. Thin: parse flags, call [`run`], map the outcome
//! to an exit code. Configuration errors exit 64 before any port is bound.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use bb_egress::ca::BottleCa;
use bb_egress::policy::Policy;
use bb_egress::server::{Limits, Server, ServerConfig, ServerError};
use clap::{Args, Parser, Subcommand};

/// Exit code for bad configuration or usage (`EX_USAGE`).
const EXIT_CONFIG: u8 = 64;

/// bot-bottle's TLS-bumping egress proxy.
#[derive(Debug, Parser)]
#[command(name = "bb-egress", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate a routes file; print every error with its location (exit 64 on error).
    Check {
        /// The routes.yaml to check.
        routes: PathBuf,
    },
    /// Manage the bottle CA.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Create DIR/ca.key (0600) and DIR/ca.crt.
    Init {
        /// Directory to create the CA in.
        dir: PathBuf,
        /// Restrict the CA with X.509 name constraints to these DNS names
        /// (and their subdomains); repeatable.
        #[arg(long = "permit", value_name = "HOST")]
        permit: Vec<String>,
    },
}

/// Running the proxy (no subcommand).
#[derive(Debug, Args)]
struct RunArgs {
    /// The routes.yaml to enforce (reloaded on SIGHUP).
    #[arg(long, value_name = "FILE")]
    routes: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9099")]
    listen: SocketAddr,
    /// Directory holding the bottle CA (ca.key, ca.crt); see `bb-egress ca init`.
    #[arg(long, value_name = "DIR")]
    ca: Option<PathBuf>,
    /// Extra PEM roots to trust for upstream TLS (private CAs, tests).
    #[arg(long, value_name = "FILE")]
    upstream_ca: Option<PathBuf>,
    /// Most concurrent client connections, tunnels and WebSocket relays included;
    /// more are answered 503.
    #[arg(long, default_value_t = 4096)]
    max_connections: usize,
    /// Seconds to open a TCP connection to an upstream (all its addresses).
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    upstream_connect_timeout: u64,
    /// Seconds for the TLS handshake with an upstream.
    #[arg(long, value_name = "SECS", default_value_t = 10)]
    upstream_tls_timeout: u64,
    /// Seconds an upstream has to send its response head (504 after).
    /// Generous by default: model APIs can take minutes to their first byte.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    upstream_response_timeout: u64,
    /// Seconds a client connection may sit with no request in flight and no
    /// byte moved before it is closed.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    idle_timeout: u64,
    /// Seconds a request body may go without sending anything (408 after).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    body_timeout: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bb-egress: error: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Some(Command::Check { routes }) => check(&routes),
        Some(Command::Ca {
            command: CaCommand::Init { dir, permit },
        }) => {
            BottleCa::init(&dir, &permit)?;
            println!("{}: CA written (ca.key, ca.crt)", dir.display());
            Ok(ExitCode::SUCCESS)
        }
        None => serve(cli.run),
    }
}

fn check(file: &Path) -> anyhow::Result<ExitCode> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    match Policy::from_yaml(&text) {
        Ok(policy) => {
            println!(
                "{}: ok ({} routes)",
                file.display(),
                policy.config().routes.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{}: {e}", file.display());
            }
            eprintln!("{}: {} error(s)", file.display(), errors.0.len());
            Ok(ExitCode::from(EXIT_CONFIG))
        }
    }
}

/// A timeout flag; 0 is not "never" but the shortest wait (one second), so
/// no flag can switch a deadline off.
fn seconds(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n.max(1))
}

fn serve(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (Some(routes), Some(ca)) = (args.routes, args.ca) else {
        anyhow::bail!(
            "bb-egress needs --routes FILE and --ca DIR to run (see --help); \
             `bb-egress ca init DIR` creates a CA"
        );
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(bb_egress::env_vars::BB_EGRESS_LOG)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = ServerConfig {
        listen: args.listen,
        routes,
        ca_dir: ca,
        upstream_ca: args.upstream_ca,
        limits: Limits {
            max_connections: args.max_connections,
            upstream_connect_timeout: seconds(args.upstream_connect_timeout),
            upstream_tls_timeout: seconds(args.upstream_tls_timeout),
            upstream_response_timeout: seconds(args.upstream_response_timeout),
            idle_timeout: seconds(args.idle_timeout),
            body_timeout: seconds(args.body_timeout),
            ..Limits::default()
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let server = match Server::start(config).await {
            Ok(s) => s,
            Err(e @ ServerError::Bind { .. }) => {
                eprintln!("bb-egress: error: {e}");
                return Ok(ExitCode::FAILURE);
            }
            Err(e) => {
                eprintln!("bb-egress: error: {e}");
                return Ok(ExitCode::from(EXIT_CONFIG));
            }
        };
        server.run_until_signalled().await?;
        Ok(ExitCode::SUCCESS)
    })
}
