//! `bb-gitgate`: the git gate's command line. See the crate's README.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use bb_egress::dlp::DlpEngine;
use bb_gitgate::config::Config;
use bb_gitgate::gate::Gate;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Exit code for a configuration error (`EX_USAGE`).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "bb-gitgate",
    version,
    about = "bot-bottle's git gate: scanned pushes, pinned-SSH upstreams"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// The gate.yaml.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where git:// (fetch only) listens.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where smart HTTP listens.
    #[arg(long, default_value = "127.0.0.1:9420")]
    http_listen: SocketAddr,
    /// Read known secrets from stdin: NUL-terminated NAME=VALUE records.
    #[arg(long)]
    secrets_stdin: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Validate a gate.yaml and exit (64 when it is wrong).
    Check {
        /// The file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bb-gitgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_error(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("bb-gitgate: {e}");
    ExitCode::from(EXIT_CONFIG)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if let Some(Cmd::Check { file }) = &cli.command {
        return Ok(match Config::load(file) {
            Ok(c) => {
                println!("{}: ok ({} repo(s))", file.display(), c.repos.len());
                ExitCode::SUCCESS
            }
            Err(e) => config_error(&e),
        });
    }
    let Some(file) = &cli.config else {
        return Ok(config_error(&"--config gate.yaml is required"));
    };
    let config = match Config::load(file) {
        Ok(c) => c,
        Err(e) => return Ok(config_error(&e)),
    };
    let secrets = if cli.secrets_stdin {
        match bb_gitgate::secrets::read(std::io::stdin().lock()) {
            Ok(s) => s,
            Err(e) => return Ok(config_error(&e)),
        }
    } else {
        Vec::new()
    };
    let engine = match DlpEngine::new(secrets) {
        Ok(e) => Arc::new(e),
        Err(e) => return Ok(config_error(&e)),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BB_GITGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("creating state_dir {}", config.state_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(serve(cli, config, engine))
}

async fn serve(cli: Cli, config: Config, engine: Arc<DlpEngine>) -> anyhow::Result<ExitCode> {
    let gate = Arc::new(Gate::new(config, engine));
    let cancel = CancellationToken::new();
    let http = tokio::net::TcpListener::bind(cli.http_listen)
        .await
        .with_context(|| format!("binding {}", cli.http_listen))?;
    tracing::info!(addr = %http.local_addr()?, "smart HTTP listening");
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(bb_gitgate::http::serve(
        Arc::clone(&gate),
        http,
        cancel.clone(),
    ));
    if let Some(addr) = cli.listen {
        let git = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        tracing::info!(addr = %git.local_addr()?, "git:// listening (fetch only)");
        tasks.spawn(bb_gitgate::daemon::serve(
            Arc::clone(&gate),
            git,
            cancel.clone(),
        ));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    Ok(ExitCode::SUCCESS)
}
