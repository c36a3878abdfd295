//! The CLI: one module per command (`start.rs`, `list.rs`, …).

mod cleanup;
mod commit;
mod doctor;
mod edit;
mod info;
mod init;
mod list;
mod reap;
mod resume;
mod rm_snapshot;
mod start;
mod supervise;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::paths::Paths;

/// The exit statuses of `bot-bottle`, one table (README.md, `--help`).
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// Something failed at run time (the container runtime, a forge, a
    /// file), or the operator answered no.
    pub const RUNTIME: u8 = 1;
    /// Usage or configuration: a flag, a manifest, a provider, a host
    /// variable the bottle needs. Nothing was started.
    pub const CONFIG: u8 = 64;
    /// Interrupted by SIGINT (Ctrl-C), after teardown.
    pub const INTERRUPTED_INT: u8 = 130;
    /// Interrupted by SIGTERM, after teardown.
    pub const INTERRUPTED_TERM: u8 = 143;

    /// The table as `--help` prints it.
    pub const TABLE: &str = "\
Exit status:
  0    done
  1    a runtime failure (container runtime, forge, files), or `no` at the prompt
  64   usage or configuration error (flags, manifests, providers, host variables); nothing was started
  N    `start -- CMD` and `resume`: the agent's own exit status
  130  interrupted by SIGINT (Ctrl-C), after teardown
  143  interrupted by SIGTERM, after teardown";
}

/// A usage or configuration error the operator must fix: exit 64.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A usage error as an `anyhow::Error`.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

/// A launch stopped by a signal; teardown has run. The status is
/// `128 + signal` (130 for SIGINT, 143 for SIGTERM).
#[derive(Debug, thiserror::Error)]
#[error("interrupted by signal {signal}; the bottle was torn down")]
pub struct Interrupted {
    /// The signal number.
    pub signal: i32,
}

/// The exit status for an error, by the table in [`exit`]: interruptions
/// by their signal, configuration errors anywhere in the chain 64, the
/// rest 1.
#[must_use]
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if let Some(i) = e.chain().find_map(|c| c.downcast_ref::<Interrupted>()) {
        return match i.signal {
            2 => exit::INTERRUPTED_INT,
            15 => exit::INTERRUPTED_TERM,
            n => u8::try_from(128 + n).unwrap_or(exit::RUNTIME),
        };
    }
    let config = e.chain().any(|c| {
        c.is::<crate::manifest::ManifestError>()
            || c.is::<crate::plan::PlanError>()
            || c.is::<crate::plan::ResolveError>()
            || c.is::<crate::env::EnvError>()
            || c.is::<crate::provider::ProviderError>()
            || c.is::<UsageError>()
    });
    if config { exit::CONFIG } else { exit::RUNTIME }
}

/// Run an AI coding agent in a throw-away bottle whose only ways out are
/// audited.
#[derive(Debug, Parser)]
#[command(name = "bot-bottle", version, about, after_help = exit::TABLE)]
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
    /// Answer the bottles' proposals: the TUI, or `list`, `show`,
    /// `approve`, `reject`, `verify`.
    Supervise(supervise::Args),
    /// Internal: removes a finished bottle's parts (started detached by
    /// `start` and `resume`).
    #[command(hide = true)]
    Reap(reap::Args),
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

/// The backend `--backend`/`BOT_BOTTLE_BACKEND` name; a name this build
/// does not know is a usage error (64).
pub(crate) fn select_backend(
    flag: Option<&str>,
    paths: &Paths,
) -> anyhow::Result<Box<dyn crate::backend::Backend>> {
    crate::backend::select(flag, paths).map_err(|e| usage(format!("{e:#}")))
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
        Command::Doctor { backend } => doctor::run(&paths, backend.as_deref()),
        Command::Info { name } => info::run(&paths, &name),
        Command::Init(args) => init::run(&paths, &args),
        Command::Edit { name } => edit::run(&paths, &name),
        Command::Reap(args) => reap::run(&paths, args),
        Command::Supervise(args) => supervise::run(&paths, args),
    }
}

#[cfg(test)]
mod tests {
    use super::{Interrupted, exit, exit_code, usage};

    #[test]
    fn one_table_maps_errors_to_exit_statuses() {
        let config =
            anyhow::Error::from(crate::plan::PlanError::Invalid("x".into())).context("planning");
        assert_eq!(exit_code(&config), exit::CONFIG);
        let unset = anyhow::Error::from(crate::plan::ResolveError::Env(
            crate::env::EnvError::MissingHostVar {
                key: "A".into(),
                var: "B".into(),
            },
        ));
        assert_eq!(exit_code(&unset), exit::CONFIG);
        assert_eq!(exit_code(&usage("bad flag")), exit::CONFIG);
        assert_eq!(
            exit_code(&anyhow::anyhow!("the Docker engine does not answer")),
            exit::RUNTIME
        );
        let int = anyhow::Error::from(Interrupted { signal: 2 }).context("launching");
        assert_eq!(exit_code(&int), exit::INTERRUPTED_INT);
        let term = anyhow::Error::from(Interrupted { signal: 15 });
        assert_eq!(exit_code(&term), exit::INTERRUPTED_TERM);
        for code in ["64", "130", "143", "start -- CMD"] {
            assert!(exit::TABLE.contains(code), "{code}");
        }
    }
}
