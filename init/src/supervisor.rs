//! The PID 1 loop: start the daemons, forward signals, reap zombies, and
//! bring the whole sidecar down when one daemon dies.
//!
//! # Why PID 1 must reap
//!
//! When a process exits, its parent must `wait` for it or it stays a zombie,
//! holding a pid. A process whose parent died is re-parented to PID 1 of its
//! namespace, so in the bundle container every orphan (a git child of the
//! gate, a helper of a helper) becomes ours. An init that waits only for the
//! children it knows leaks zombies until the pid space runs out, so this one
//! calls `waitpid(-1, WNOHANG)` in a loop on every `SIGCHLD`, and picks out
//! its own daemons from what it reaps. When it is not PID 1 it makes itself
//! a child subreaper, so orphans come to it all the same.
//!
//! Reaping ourselves also means never using `std::process::Child::wait`: a
//! `waitpid(-1)` would steal its status. It has a useful side effect: a
//! daemon's pid is only ever signalled while it is unreaped (alive or a
//! zombie), so it cannot have been reused by another process.
//!
//! # Signals without handlers
//!
//! `SIGTERM`, `SIGINT`, `SIGHUP` and `SIGCHLD` are blocked in the main thread
//! before any other thread exists (so every thread inherits the mask), and
//! one thread takes them with `sigwait` and sends them down a channel. No
//! code runs in signal-handler context, so there is no async-signal-safety to
//! get wrong and no `unsafe`. The mask would be inherited by the daemons, so
//! they are started through the `--exec` trampoline that clears it
//! ([`crate::exec`]). As PID 1 the kernel drops signals that
//! have no handler, so blocking them is also what makes `docker stop` reach us.
//!
//! # Failing closed
//!
//! The bottle's only ways out are these daemons: without egress the agent is
//! cut off, without the gate its pushes go nowhere. A sidecar missing one is
//! broken, so the first unrequested exit stops everything: `SIGTERM` to the
//! rest, [`GRACE`] to finish, then `SIGKILL`. The exit code is that daemon's
//! (128 + signal if it was killed, 70 if it exited 0 without being asked)
//! so the orchestrator sees why the bottle ended.

use std::fmt;
use std::io::{self, Read};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::daemon::Daemon;
use crate::output::{self, Stream, say};

/// How long daemons get to exit after `SIGTERM` before `SIGKILL`.
const GRACE: Duration = Duration::from_secs(10);

/// How long to keep copying output after the last daemon exited, for pipes a
/// daemon's own children still hold open.
const DRAIN: Duration = Duration::from_secs(2);

/// A daemon exited 0 without being asked to, or in a way we cannot decode
/// (`EX_SOFTWARE`): never report an unexpected end as success.
const EXIT_SOFTWARE: u8 = 70;

/// A daemon could not be started or signals could not be set up (`EX_OSERR`).
const EXIT_OSERR: u8 = 71;

/// What the main loop waits for.
#[derive(Debug, Clone, Copy)]
enum Event {
    /// A signal taken by the signal thread.
    Signal(Signal),
    /// A reader thread reached the end of a daemon stream.
    StreamClosed,
}

/// How a daemon ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Killed(Signal),
    /// It was reaped but its status could not be decoded (a real-time
    /// signal `nix` has no name for).
    Unknown,
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Code(code) => write!(f, "exited with code {code}"),
            Status::Killed(signal) => write!(f, "was killed by {signal}"),
            Status::Unknown => f.write_str("ended with an undecodable status"),
        }
    }
}

/// Why the sidecar is shutting down; the first cause wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// A daemon exited unasked, with this status.
    DaemonExited(Status),
    /// `bb-init` received `SIGTERM` or `SIGINT`.
    Requested,
    /// A daemon could not be started.
    StartFailed,
}

/// A started, not yet reaped daemon.
#[derive(Debug)]
struct Child {
    daemon: Daemon,
    pid: Pid,
}

/// The loop's state.
#[derive(Debug, Default)]
struct Supervisor {
    running: Vec<Child>,
    /// Statuses of reaped daemons, in exit order.
    exited: Vec<Status>,
    cause: Option<Cause>,
    /// When to `SIGKILL` whatever still runs; set when stopping begins,
    /// cleared once the kill is sent.
    deadline: Option<Instant>,
    /// The stop signals `bb-init` received and forwarded.
    requested: Vec<Signal>,
    /// Daemon streams whose reader has not reached the end yet.
    open_streams: usize,
}

/// Starts `daemons` under `root` and supervises them until all have exited;
/// returns the exit code for `bb-init`.
pub(crate) fn supervise(root: &Path, daemons: &[Daemon]) -> u8 {
    let (events, receiver) = mpsc::channel();
    if let Err(error) = watch_signals(events.clone()) {
        say(format_args!(
            "error: cannot set up signal handling: {error}"
        ));
        return EXIT_OSERR;
    }
    become_subreaper();
    // `current_exe` reads /proc/self/exe; without /proc, an absolute argv[0]
    // (the image's entrypoint is `/bb/bb-init`) names us just as well.
    let argv0 = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .filter(|path| path.is_absolute());
    let launcher = match std::env::current_exe().or_else(|error| argv0.ok_or(error)) {
        Ok(path) => path,
        Err(error) => {
            say(format_args!(
                "error: cannot find bb-init's own path: {error}"
            ));
            return EXIT_OSERR;
        }
    };
    let mut supervisor = Supervisor::default();
    for &daemon in daemons {
        if let Err(error) = supervisor.start(daemon, &launcher, root, &events) {
            say(format_args!(
                "error: cannot start {} ({}): {error}",
                daemon.name(),
                daemon.binary(root).display()
            ));
            supervisor.stop(Cause::StartFailed, Signal::SIGTERM);
            break;
        }
    }
    drop(events);
    supervisor.run(&receiver)
}

/// Makes orphans of our daemons come to us even when `bb-init` is not PID 1
/// (tests, `docker run --init`), so the reaping duty is the same wherever it
/// runs. As PID 1 this changes nothing.
fn become_subreaper() {
    #[cfg(target_os = "linux")]
    if let Err(error) = nix::sys::prctl::set_child_subreaper(true) {
        say(format_args!("cannot become a child subreaper: {error}"));
    }
}

/// Blocks the signals `bb-init` handles and starts the thread that takes
/// them. Must run before any other thread is spawned.
fn watch_signals(events: Sender<Event>) -> io::Result<()> {
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        set.add(signal);
    }
    set.thread_block()?;
    thread::Builder::new()
        .name("signals".to_owned())
        .spawn(move || {
            // sigwait fails only for an invalid set, which this is not.
            while let Ok(signal) = set.wait() {
                if events.send(Event::Signal(signal)).is_err() {
                    break;
                }
            }
        })?;
    Ok(())
}

impl Supervisor {
    /// Spawns one daemon and the readers for its stdout and stderr.
    fn start(
        &mut self,
        daemon: Daemon,
        launcher: &Path,
        root: &Path,
        events: &Sender<Event>,
    ) -> io::Result<()> {
        // Reaped by `reap` through waitpid(-1), never through `Child::wait`:
        // see the module docs.
        let mut child = daemon.command(launcher, root).spawn()?;
        let pid = Pid::from_raw(i32::try_from(child.id()).map_err(io::Error::other)?);
        self.running.push(Child { daemon, pid });
        say(format_args!("started {} (pid {pid})", daemon.name()));
        if let Some(mut stdin) = child.stdin.take() {
            // The git gate's known secrets (daemon.rs module docs). Written
            // from a thread so a daemon that never reads cannot stall
            // bb-init; the pipe closes when the thread ends.
            let records = crate::daemon::secret_records(std::env::vars_os());
            std::thread::Builder::new()
                .name(format!("{}-secrets", daemon.name()))
                .spawn(move || {
                    let _ = std::io::Write::write_all(&mut stdin, &records);
                })?;
        }
        if let Some(stdout) = child.stdout.take() {
            self.spawn_reader(stdout, daemon, Stream::Stdout, events)?;
        }
        if let Some(stderr) = child.stderr.take() {
            self.spawn_reader(stderr, daemon, Stream::Stderr, events)?;
        }
        Ok(())
    }

    fn spawn_reader(
        &mut self,
        pipe: impl Read + Send + 'static,
        daemon: Daemon,
        stream: Stream,
        events: &Sender<Event>,
    ) -> io::Result<()> {
        let prefix = format!("[{}] ", daemon.name());
        let events = events.clone();
        thread::Builder::new()
            .name(format!("{}-{stream:?}", daemon.name()))
            .spawn(move || {
                output::copy_lines(pipe, prefix.as_bytes(), |line| {
                    output::write_line(stream, line);
                });
                // The loop may be gone already (drain timed out); fine.
                events.send(Event::StreamClosed).ok();
            })?;
        self.open_streams += 1;
        Ok(())
    }

    /// Runs until every daemon has been reaped, then drains their output and
    /// returns the exit code.
    fn run(mut self, events: &Receiver<Event>) -> u8 {
        while !self.running.is_empty() {
            let event = match self.deadline {
                Some(deadline) => {
                    match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(event) => event,
                        Err(RecvTimeoutError::Timeout) => {
                            self.kill_remaining();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match events.recv() {
                    Ok(event) => event,
                    Err(mpsc::RecvError) => break,
                },
            };
            self.handle(event);
        }
        if !self.running.is_empty() {
            // Only reachable if the signal thread died, which it does not:
            // without it nothing would be reaped, so end everything now.
            say(format_args!(
                "error: lost the signal thread; killing the daemons"
            ));
            self.kill_remaining();
            self.cause.get_or_insert(Cause::StartFailed);
        }
        self.drain(events);
        let code = exit_code(self.cause, &self.exited, &self.requested);
        say(format_args!("exiting with code {code}"));
        code
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::StreamClosed => self.open_streams -= 1,
            Event::Signal(Signal::SIGCHLD) => self.reap(),
            Event::Signal(Signal::SIGHUP) => {
                say(format_args!("received SIGHUP; forwarding (reload)"));
                self.forward_where(Signal::SIGHUP, Daemon::reloads_on_hup);
            }
            Event::Signal(signal) => {
                say(format_args!("received {signal}; stopping the daemons"));
                if !self.requested.contains(&signal) {
                    self.requested.push(signal);
                }
                self.stop(Cause::Requested, signal);
            }
        }
    }

    /// Records `cause` unless one is already set (starting the grace
    /// period), then sends `signal` to every running daemon.
    fn stop(&mut self, cause: Cause, signal: Signal) {
        if self.cause.is_none() {
            self.cause = Some(cause);
            self.deadline = Some(Instant::now() + GRACE);
        }
        self.forward(signal);
    }

    fn forward(&self, signal: Signal) {
        self.forward_where(signal, |_| true);
    }

    /// Sends `signal` to the running daemons `to` picks.
    fn forward_where(&self, signal: Signal, to: impl Fn(Daemon) -> bool) {
        for child in self.running.iter().filter(|c| to(c.daemon)) {
            // Cannot fail with ESRCH: an unreaped child still has its pid.
            if let Err(error) = kill(child.pid, signal) {
                say(format_args!(
                    "cannot send {signal} to {} (pid {}): {error}",
                    child.daemon.name(),
                    child.pid
                ));
            }
        }
    }

    fn kill_remaining(&mut self) {
        for child in &self.running {
            say(format_args!(
                "{} (pid {}) still running after {} s; sending SIGKILL",
                child.daemon.name(),
                child.pid,
                GRACE.as_secs()
            ));
        }
        self.forward(Signal::SIGKILL);
        self.deadline = None;
    }

    /// Reaps every child that has exited, daemons and orphans alike.
    fn reap(&mut self) {
        let mut undecoded = false;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.exited_pid(pid, Status::Code(code)),
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    self.exited_pid(pid, Status::Killed(signal));
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                // Stops and continues are not asked for (no WUNTRACED);
                // EINTR cannot happen with the signals blocked, but retrying is right.
                Ok(_) | Err(Errno::EINTR) => {}
                // The kernel reaped a child but nix could not name its signal:
                // find out below whether it was a daemon.
                Err(Errno::EINVAL) => undecoded = true,
                Err(error) => {
                    say(format_args!("error: waitpid: {error}"));
                    break;
                }
            }
        }
        if undecoded {
            let gone: Vec<Pid> = self
                .running
                .iter()
                .map(|child| child.pid)
                .filter(|&pid| waitpid(pid, Some(WaitPidFlag::WNOHANG)) == Err(Errno::ECHILD))
                .collect();
            for pid in gone {
                self.exited_pid(pid, Status::Unknown);
            }
        }
    }

    /// Handles a reaped pid: a daemon's end is logged and may start the
    /// shutdown; an orphan's is only reaped.
    fn exited_pid(&mut self, pid: Pid, status: Status) {
        let Some(index) = self.running.iter().position(|child| child.pid == pid) else {
            return;
        };
        let child = self.running.remove(index);
        let name = child.daemon.name();
        say(format_args!("{name} (pid {pid}) {status}"));
        self.exited.push(status);
        if self.cause.is_none() {
            say(format_args!(
                "{name} is gone; stopping the others (fail closed)"
            ));
            self.stop(Cause::DaemonExited(status), Signal::SIGTERM);
        }
    }

    /// Waits up to [`DRAIN`] for the readers to copy what the daemons wrote
    /// last, still reaping orphans meanwhile.
    fn drain(&mut self, events: &Receiver<Event>) {
        let deadline = Instant::now() + DRAIN;
        while self.open_streams > 0 {
            match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(Event::StreamClosed) => self.open_streams -= 1,
                Ok(Event::Signal(Signal::SIGCHLD)) => self.reap(),
                // No daemon is left to forward to.
                Ok(Event::Signal(_)) => {}
                Err(_) => {
                    say(format_args!(
                        "daemon output still open {} s after the last exit; not waiting for it",
                        DRAIN.as_secs()
                    ));
                    break;
                }
            }
        }
    }
}

/// `bb-init`'s exit code once every daemon is gone.
///
/// * A daemon exited unasked: its code, 128 + signal if killed, and
///   [`EXIT_SOFTWARE`] if that code was 0 (an unexpected end is a failure).
/// * Stop requested by `SIGTERM`/`SIGINT`: 0 if every daemon exited 0 or by
///   a signal we forwarded (or with 128 + that signal, as shells report it);
///   otherwise the first other ending's code.
/// * A daemon could not be started: [`EXIT_OSERR`].
fn exit_code(cause: Option<Cause>, exited: &[Status], requested: &[Signal]) -> u8 {
    let clean = |status: &&Status| match **status {
        Status::Code(0) => true,
        Status::Code(code) => requested.iter().any(|&signal| code == 128 + signal as i32),
        Status::Killed(signal) => requested.contains(&signal),
        Status::Unknown => false,
    };
    match cause {
        Some(Cause::DaemonExited(Status::Code(0))) | None => EXIT_SOFTWARE,
        Some(Cause::DaemonExited(status)) => status_code(status),
        Some(Cause::Requested) => exited
            .iter()
            .find(|status| !clean(status))
            .map_or(0, |&status| status_code(status)),
        Some(Cause::StartFailed) => EXIT_OSERR,
    }
}

/// The shell convention: the exit code, or 128 + the signal number.
fn status_code(status: Status) -> u8 {
    let code = match status {
        Status::Code(code) => code,
        Status::Killed(signal) => 128 + signal as i32,
        Status::Unknown => return EXIT_SOFTWARE,
    };
    u8::try_from(code).unwrap_or(EXIT_SOFTWARE)
}

#[cfg(test)]
mod tests {
    use super::*;

    use Signal::{SIGINT, SIGKILL, SIGTERM};
    use Status::{Code, Killed, Unknown};

    #[test]
    fn an_unasked_exit_is_never_success() {
        let exited = |status| {
            exit_code(
                Some(Cause::DaemonExited(status)),
                &[status, Killed(SIGTERM)],
                &[],
            )
        };
        assert_eq!(exited(Code(3)), 3);
        assert_eq!(exited(Code(0)), EXIT_SOFTWARE);
        assert_eq!(exited(Killed(SIGKILL)), 137);
        assert_eq!(exited(Unknown), EXIT_SOFTWARE);
    }

    #[test]
    fn a_requested_stop_is_clean_when_every_daemon_obeyed() {
        let requested = |exited: &[Status], signals: &[Signal]| {
            exit_code(Some(Cause::Requested), exited, signals)
        };
        assert_eq!(
            requested(&[Code(0), Killed(SIGTERM), Code(143)], &[SIGTERM]),
            0
        );
        assert_eq!(requested(&[Killed(SIGINT), Code(0)], &[SIGINT]), 0);
        assert_eq!(
            requested(&[Killed(SIGINT), Killed(SIGTERM)], &[SIGINT, SIGTERM]),
            0
        );
        // Ended some other way: that daemon's code.
        assert_eq!(requested(&[Code(0), Killed(SIGKILL)], &[SIGTERM]), 137);
        assert_eq!(requested(&[Killed(SIGTERM)], &[SIGINT]), 143);
        assert_eq!(requested(&[Code(2), Code(5)], &[SIGTERM]), 2);
        assert_eq!(requested(&[Unknown], &[SIGTERM]), EXIT_SOFTWARE);
    }

    #[test]
    fn start_failures_are_os_errors() {
        assert_eq!(
            exit_code(Some(Cause::StartFailed), &[Killed(SIGTERM)], &[]),
            EXIT_OSERR
        );
    }
}
