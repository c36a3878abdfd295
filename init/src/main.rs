//! `bb-init`: PID 1 of the sidecar bundle image.
//!
//! The bundle is an image built `FROM scratch` holding only static binaries
//! under `/bb/`. There is no shell and no init system, so this binary is the
//! entrypoint: it starts the daemons named on its command line (the egress
//! proxy, the git gate, the supervise server), copies their output to its own
//! with a `[name] ` prefix, forwards `SIGTERM`/`SIGINT` to them and `SIGHUP` to egress, reaps
//! every zombie, and brings the whole sidecar down as soon as one daemon dies.
//!
//! Thin on purpose: `main` hands the arguments to [`run`], which parses them
//! ([`cli`]), checks every daemon's binary before starting any ([`daemon`]),
//! and then hands over to the [`supervisor`] loop. Configuration errors exit
//! 64 before anything is started. The same binary is also the trampoline
//! each daemon is started through ([`exec`]).
//!
//! `bb-init hold` and `bb-init probe` are the bottle's network holder and
//! its isolation probe ([`netns`], [`probe`], [`dns`]): the same static
//! binary, so they run from the bundle image in the agent's namespace.
//!
//! Only `std` and `nix` are linked: the binary must build with
//! `crt-static` and run in an image with no libc of its own.

mod cli;
mod daemon;
mod dns;
mod exec;
mod netns;
mod output;
mod probe;
mod supervisor;

use std::process::ExitCode;

use cli::{Command, UsageError};

fn main() -> ExitCode {
    match run(std::env::args_os().skip(1)) {
        Ok(code) => code,
        Err(error) => {
            output::say(format_args!("error: {error}"));
            ExitCode::from(cli::EXIT_USAGE)
        }
    }
}

/// Parses the flags, validates every daemon, then supervises them until the
/// sidecar shuts down.
fn run(args: impl IntoIterator<Item = std::ffi::OsString>) -> Result<ExitCode, UsageError> {
    let run = match cli::parse(args)? {
        Command::Help => {
            print!("{}", cli::HELP);
            return Ok(ExitCode::SUCCESS);
        }
        Command::Version => {
            println!("bb-init {}", env!("CARGO_PKG_VERSION"));
            return Ok(ExitCode::SUCCESS);
        }
        Command::Exec { program, args } => return Ok(exec::exec(&program, &args)),
        Command::Hold { keep_routes } => return Ok(netns::hold(keep_routes)),
        Command::Probe(opts) => return Ok(probe::run(&opts)),
        Command::Run(run) => run,
    };
    // Every binary is checked before the first is started: a half-started
    // sidecar would only be torn down again.
    for &daemon in &run.daemons {
        daemon::check_binary(daemon, &run.root)?;
    }
    Ok(ExitCode::from(supervisor::supervise(
        &run.root,
        &run.daemons,
    )))
}
