//! Test support: a temporary bundle root whose daemons are small `#!/bin/sh`
//! scripts, and a running `bb-init` whose output lines can be awaited.
//!
//! Nothing here waits on a clock for correctness: tests wait for output
//! lines (up to [`TIMEOUT`]) and for `bb-init` to exit (up to
//! [`EXIT_TIMEOUT`]); the bounds only turn a hang into a failure.

// Each test binary uses a different part of this module.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead as _, BufReader, Read};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;

/// How long to wait for an expected output line.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for `bb-init` to exit: well past its 10 s grace period.
pub(crate) const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Loop forever, in small steps so a trapped signal runs promptly (`sh`
/// runs traps between commands) and without a long-lived child that would
/// keep the output pipe open after the script exits.
pub(crate) const IDLE: &str = "while :; do sleep 0.1; done";

/// Held while writing a script and while spawning `bb-init`. A process
/// forked by another test thread while a script is open for writing would
/// carry that descriptor until it execs, and executing the script meanwhile
/// fails with "Text file busy".
static SPAWN_LOCK: Mutex<()> = Mutex::new(());

fn spawn_lock() -> std::sync::MutexGuard<'static, ()> {
    SPAWN_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Which of `bb-init`'s streams a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// A temporary root with `bb/` and `bb/config/`.
pub(crate) struct Root {
    dir: TempDir,
}

impl Root {
    pub(crate) fn new() -> Root {
        let dir = tempfile::tempdir().expect("create temp root");
        fs::create_dir_all(dir.path().join("bb/config")).expect("create bb/config");
        Root { dir }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `root/rel`.
    pub(crate) fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `bb/<binary>` as a `#!/bin/sh` script with `body`, mode 755.
    pub(crate) fn script(&self, binary: &str, body: &str) {
        let path = self.join(&format!("bb/{binary}"));
        let _guard = spawn_lock();
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
    }

    /// Writes a plain file under the root.
    pub(crate) fn file(&self, rel: &str, contents: &str) {
        fs::write(self.join(rel), contents).expect("write file");
    }

    /// Starts `bb-init --root <root> ARGS...` with extra environment.
    pub(crate) fn start(&self, args: &[&str], env: &[(&str, &str)]) -> Init {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bb-init"));
        command
            .arg("--root")
            .arg(self.path())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = {
            let _guard = spawn_lock();
            command.spawn().expect("spawn bb-init")
        };
        let (sender, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout pipe");
        let stderr = child.stderr.take().expect("stderr pipe");
        for (stream, pipe) in [
            (Stream::Stdout, Box::new(stdout) as Box<dyn Read + Send>),
            (Stream::Stderr, Box::new(stderr)),
        ] {
            let sender = sender.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(pipe);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let text = String::from_utf8_lossy(&line);
                            let text = text.strip_suffix('\n').unwrap_or(&text).to_owned();
                            if sender.send((stream, text)).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
        Init {
            child: Some(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// Runs `bb-init` to its end.
    pub(crate) fn run(&self, args: &[&str]) -> Finished {
        self.start(args, &[]).finish()
    }
}

/// A running `bb-init`.
pub(crate) struct Init {
    child: Option<Child>,
    lines: Receiver<(Stream, String)>,
    seen: Vec<(Stream, String)>,
}

/// What `bb-init` did, once it exited.
#[derive(Debug)]
pub(crate) struct Finished {
    /// Its exit code (`None` if it was killed by a signal).
    pub(crate) code: Option<i32>,
    pub(crate) stdout: Vec<String>,
    pub(crate) stderr: Vec<String>,
}

impl Finished {
    /// Panics with the whole output unless `stream` has exactly `line`.
    pub(crate) fn assert_line(&self, stream: Stream, line: &str) {
        assert!(
            self.lines(stream).iter().any(|seen| seen == line),
            "no {stream:?} line {line:?} in {self:#?}"
        );
    }

    /// Panics with the whole output unless `stream` has a line matching.
    pub(crate) fn assert_line_where(
        &self,
        stream: Stream,
        what: &str,
        matches: impl Fn(&str) -> bool,
    ) {
        assert!(
            self.lines(stream).iter().any(|seen| matches(seen)),
            "no {stream:?} line {what} in {self:#?}"
        );
    }

    pub(crate) fn lines(&self, stream: Stream) -> &[String] {
        match stream {
            Stream::Stdout => &self.stdout,
            Stream::Stderr => &self.stderr,
        }
    }

    /// `stream`'s lines starting with `prefix`.
    pub(crate) fn lines_of(&self, stream: Stream, prefix: &str) -> Vec<&str> {
        self.lines(stream)
            .iter()
            .filter(|line| line.starts_with(prefix))
            .map(String::as_str)
            .collect()
    }
}

impl Init {
    pub(crate) fn pid(&self) -> Pid {
        let child = self.child.as_ref().expect("bb-init still owned");
        Pid::from_raw(i32::try_from(child.id()).expect("pid fits i32"))
    }

    /// Waits until `stream` has printed exactly `line`.
    pub(crate) fn wait_for(&mut self, stream: Stream, line: &str) {
        self.wait_for_where(stream, line, |seen| seen == line);
    }

    /// Waits until `stream` has printed a line matching; returns it.
    pub(crate) fn wait_for_where(
        &mut self,
        stream: Stream,
        what: &str,
        matches: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some((_, line)) = self.seen.iter().find(|(s, l)| *s == stream && matches(l)) {
                return line.clone();
            }
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(entry) => self.seen.push(entry),
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no {stream:?} line {what} within {TIMEOUT:?}; seen: {:#?}",
                        self.seen
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "bb-init closed its output before {stream:?} line {what}; seen: {:#?}",
                        self.seen
                    )
                }
            }
        }
    }

    /// Sends `signal` to `bb-init`.
    pub(crate) fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal bb-init");
    }

    /// Waits for `bb-init` to exit and for its output to close.
    pub(crate) fn finish(mut self) -> Finished {
        let mut child = self.child.take().expect("bb-init still owned");
        let deadline = Instant::now() + EXIT_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait bb-init") {
                break status;
            }
            if Instant::now() > deadline {
                drop(child.kill());
                drop(child.wait());
                panic!(
                    "bb-init still running after {EXIT_TIMEOUT:?}; seen: {:#?}",
                    self.seen
                );
            }
            thread::sleep(Duration::from_millis(20));
        };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(entry) => self.seen.push(entry),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "bb-init exited but its output stayed open; seen: {:#?}",
                        self.seen
                    )
                }
            }
        }
        let pick = |stream| {
            self.seen
                .iter()
                .filter(|(s, _)| *s == stream)
                .map(|(_, line)| line.clone())
                .collect()
        };
        Finished {
            code: status.code(),
            stdout: pick(Stream::Stdout),
            stderr: pick(Stream::Stderr),
        }
    }
}

impl Drop for Init {
    /// A failed test must not leave `bb-init` and its daemons behind: stop
    /// it the way an operator would, then kill it.
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            kill(Pid::from_raw(pid), Signal::SIGTERM).ok();
        }
        let deadline = Instant::now() + EXIT_TIMEOUT;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
        drop(child.kill());
        drop(child.wait());
    }
}
