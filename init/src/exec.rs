//! The `--exec` trampoline every daemon is started through.
//!
//! `bb-init` keeps `SIGTERM`, `SIGINT`, `SIGHUP` and `SIGCHLD` blocked (see
//! the supervisor's docs), and a blocked mask survives `fork` and `exec`:
//! since Rust 1.66 `std::process::Command` deliberately leaves it as the
//! parent has it. A daemon started directly would never see the `SIGTERM`
//! we forward. The only `std` hook that runs in the child before `exec`,
//! `pre_exec`, is `unsafe`, which the workspace forbids, and unblocking in
//! the parent around the spawn would open a window in which a signal kills
//! `bb-init` itself.
//!
//! So each daemon is started as `bb-init --exec BINARY ARG...`: a fresh
//! process that clears its signal mask and replaces itself with the daemon.
//! The pid, process group, pipes and (already filtered) environment carry
//! over unchanged; the cost is one extra `exec` per daemon start.

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitCode};

use nix::sys::signal::SigSet;

/// The first argument that selects the trampoline.
pub(crate) const FLAG: &str = "--exec";

/// Exit code when the daemon cannot be executed (the shell's 127).
const EXIT_CANNOT_EXEC: u8 = 127;

/// Clears the signal mask and execs `program` with `args`; returns only on
/// failure, after saying why on stderr (which is the daemon's stderr pipe,
/// so the line reaches the log with the daemon's prefix).
pub(crate) fn exec(program: &OsString, args: &[OsString]) -> ExitCode {
    if let Err(error) = SigSet::empty().thread_set_mask() {
        eprintln!("[init] error: cannot clear the signal mask: {error}");
        return ExitCode::from(EXIT_CANNOT_EXEC);
    }
    let error = Command::new(program).args(args).exec();
    eprintln!(
        "[init] error: cannot execute {}: {error}",
        std::path::Path::new(program).display()
    );
    ExitCode::from(EXIT_CANNOT_EXEC)
}
