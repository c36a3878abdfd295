//! The `bb-supervise` command. Thin: parse flags, call [`run`], map the
//! outcome to an exit code. Configuration errors exit 64 before any port
//! is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bb_supervise::env_vars::{BB_SUPERVISE_LOG, BB_SUPERVISE_SLUG};
use bb_supervise::server::{self, Config, Supervise};
use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Exit code for bad configuration or usage (`EX_USAGE`).
const EXIT_CONFIG: u8 = 64;

/// bot-bottle's supervise server: MCP tools with which the agent in a
/// bottle proposes allowlist and capability changes for a human to decide.
#[derive(Debug, Parser)]
#[command(name = "bb-supervise", version, about)]
struct Cli {
    /// The bottle's state folder: proposals go to DIR/queue/, the live
    /// allowlist is DIR/routes.yaml.
    #[arg(long, value_name = "DIR")]
    state: PathBuf,
    /// Address to listen on (MCP at /mcp).
    #[arg(long, default_value = "127.0.0.1:9100")]
    listen: SocketAddr,
    /// The egress proxy to ask for the live allowlist
    /// (`http://host:port`); without it DIR/routes.yaml is read.
    #[arg(long, value_name = "URL")]
    egress_proxy: Option<String>,
    /// The bottle slug written into proposals (default: DIR's name).
    #[arg(long, env = BB_SUPERVISE_SLUG)]
    slug: Option<String>,
    /// Another accepted `Host` name (repeatable); `supervise`, `localhost`,
    /// `127.0.0.1` and `::1` always are.
    #[arg(long = "allow-host", value_name = "NAME")]
    allow_host: Vec<String>,
    /// Most proposals waiting for a decision at once.
    #[arg(long, default_value_t = bb_supervise::tools::DEFAULT_MAX_PENDING)]
    max_pending: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bb-supervise: error: {e:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// `http://host:port` or `host:port` → `host:port`.
fn proxy_authority(url: &str) -> anyhow::Result<String> {
    let rest = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(_) => anyhow::bail!("--egress-proxy {url:?}: only http:// is supported"),
        None => url,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let ok = !rest.contains(['/', '@', '?', '#'])
        && rest
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
    anyhow::ensure!(ok, "--egress-proxy {url:?}: expected http://HOST:PORT");
    Ok(rest.to_owned())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env(BB_SUPERVISE_LOG)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn")),
        )
        .with_writer(std::io::stderr)
        // bb-init prefixes and forwards the lines: colour only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut config = Config::new(cli.state.clone());
    if let Some(slug) = cli.slug {
        config.slug = slug;
    }
    config.egress_proxy = cli
        .egress_proxy
        .as_deref()
        .map(proxy_authority)
        .transpose()?;
    config.allowed_hosts.extend(cli.allow_host);
    anyhow::ensure!(cli.max_pending > 0, "--max-pending must be at least 1");
    config.max_pending = cli.max_pending;
    anyhow::ensure!(
        cli.state.is_dir(),
        "--state {}: not a folder",
        cli.state.display()
    );
    let handler =
        Supervise::new(config).with_context(|| format!("--state {}", cli.state.display()))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(cli.listen)
            .await
            .with_context(|| format!("listening on {}", cli.listen))?;
        let addr = listener.local_addr()?;
        tracing::info!(%addr, state = %cli.state.display(), "bb-supervise listening (MCP at /mcp)");
        let cancel = CancellationToken::new();
        tokio::spawn(stop_on_signal(cancel.clone()));
        server::serve(listener, handler, cancel).await?;
        tracing::info!("bb-supervise stopped");
        Ok(ExitCode::SUCCESS)
    })
}

async fn stop_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    cancel.cancel();
}
