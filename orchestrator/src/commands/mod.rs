//! The CLI: one module per command (`start.rs`, `list.rs`, …).

mod cleanup;
mod commit;
mod doctor;
mod edit;
mod info;
mod init;
mod list;
mod resume;
mod rm_snapshot;
mod start;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::paths::Paths;

/// Run an AI coding agent in a throw-away bottle whose only ways out are
/// audited.
#[derive(Debug, Parser)]
#[command(name = "bot-bottle", version, about)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// `bot-bottle` commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Launch an agent in a new bottle.
    Start(start::Args),
    /// Boot a committed bottle again.
    Resume(resume::Args),
    /// List agents you can start, bottles that are running, or snapshots.
    List {
        /// `available` (default), `active` or `snapshots`.
        #[arg(value_enum, default_value_t = ListWhat::Available)]
        what: ListWhat,
        /// Backend for `active`.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Remove what bottles whose bot-bottle is gone left (running ones
    /// included), and with --snapshots every snapshot.
    Cleanup(cleanup::Args),
    /// Snapshot a running bottle's agent to an image for `resume`.
    Commit(commit::Args),
    /// Remove committed snapshots (image and preserved state).
    RmSnapshot(rm_snapshot::Args),
    /// Check the container runtime, config and skills folders.
    Doctor {
        /// Backend to check.
        #[arg(long)]
        backend: Option<String>,
    },
    /// Show an agent, its bottle chain and what it would launch.
    Info {
        /// The agent.
        name: String,
    },
    /// Write a new agent file.
    Init(init::Args),
    /// Open an agent file in `$VISUAL`/`$EDITOR`.
    Edit {
        /// The agent.
        name: String,
    },
    /// Review proposals from bottles (the supervise TUI).
    Supervise,
}

/// What `list` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListWhat {
    /// Agents on disk.
    Available,
    /// Bottles of this operator whose agent exists.
    Active,
    /// Committed snapshots (`resume` boots them).
    Snapshots,
}

/// The operator's paths from `HOME` and the working directory.
pub fn operator_paths() -> anyhow::Result<Paths> {
    let home = std::env::var_os(crate::env_vars::HOME)
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .context("HOME is not set: bot-bottle keeps its config in ~/.bot-bottle")?;
    let cwd = std::env::current_dir().context("cannot read the working directory")?;
    Ok(Paths::new(home, cwd))
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let paths = operator_paths()?;
    match cli.command {
        Command::Start(args) => start::run(&paths, args),
        Command::Resume(args) => resume::run(&paths, &args),
        Command::List {
            what: ListWhat::Available,
            ..
        } => Ok(list::available(&paths)),
        Command::List {
            what: ListWhat::Active,
            backend,
        } => list::active(&paths, backend.as_deref()),
        Command::List {
            what: ListWhat::Snapshots,
            backend,
        } => list::snapshots(&paths, backend.as_deref()),
        Command::Cleanup(args) => cleanup::run(&paths, &args),
        Command::Commit(args) => commit::run(&paths, &args),
        Command::RmSnapshot(args) => rm_snapshot::run(&paths, &args),
        Command::Doctor { backend } => Ok(doctor::run(&paths, backend.as_deref())),
        Command::Info { name } => info::run(&paths, &name),
        Command::Init(args) => init::run(&paths, &args),
        Command::Edit { name } => edit::run(&paths, &name),
        Command::Supervise => {
            anyhow::bail!(
                "the supervise TUI is not built yet (the supervise server and its queue come first); proposals wait in ~/.bot-bottle/state/<slug>/queue/"
            )
        }
    }
}
