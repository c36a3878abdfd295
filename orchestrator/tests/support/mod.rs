//! The `bot-bottle` binary as an operator runs it: a temp `HOME`, a temp
//! working directory, stdin not a terminal, a clean environment. Nothing
//! here needs a container runtime; `BOT_BOTTLE_DOCKER` points at a command
//! that does not exist, so a test can never reach a real Docker engine.

#![allow(dead_code, reason = "each test file uses part of the harness")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Long enough for a loaded CI box; a hang is a failure, not a wait.
pub(crate) const TIMEOUT: Duration = Duration::from_mins(1);

/// Secrets set in the child's environment: they must never be printed.
pub(crate) const GITHUB_SECRET: &str = "ghp_CLItestSECRET0000github1111token";
/// The claude token the example home reads.
pub(crate) const CLAUDE_SECRET: &str = "sk-ant-oat01-CLItestSECRET-claude-2222";

/// A temp operator home and working directory.
pub(crate) struct Env {
    _tmp: tempfile::TempDir,
    /// `HOME` of the child.
    pub(crate) home: PathBuf,
    /// Its working directory.
    pub(crate) cwd: PathBuf,
}

/// What a run printed and how it exited.
pub(crate) struct Out {
    /// The exit status (`None`: killed by a signal).
    pub(crate) code: Option<i32>,
    /// Standard output.
    pub(crate) stdout: String,
    /// Standard error.
    pub(crate) stderr: String,
}

impl Out {
    /// stdout then stderr.
    pub(crate) fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Writes `text` to `path`, creating its parents.
pub(crate) fn write(path: &Path, text: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

impl Env {
    /// An empty home and working directory.
    pub(crate) fn empty() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let home = tmp.path().join("home");
        let cwd = tmp.path().join("cwd");
        std::fs::create_dir_all(&home).expect("mkdir");
        std::fs::create_dir_all(&cwd).expect("mkdir");
        Self {
            _tmp: tmp,
            home,
            cwd,
        }
    }

    /// `HOME` is a copy of `examples/home`.
    pub(crate) fn examples() -> Self {
        let env = Self::empty();
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("examples")
            .join("home");
        copy_dir(&src, &env.home);
        env
    }

    /// A folder outside the home, in the same temp dir.
    pub(crate) fn outside(&self) -> PathBuf {
        self.home.parent().expect("tmp").join("outside")
    }

    /// `~/.bot-bottle/bottles`.
    pub(crate) fn bottles(&self) -> PathBuf {
        self.home.join(".bot-bottle").join("bottles")
    }

    /// `~/.bot-bottle/agents`.
    pub(crate) fn agents(&self) -> PathBuf {
        self.home.join(".bot-bottle").join("agents")
    }

    /// Writes bottle `name` with this frontmatter.
    pub(crate) fn bottle(&self, name: &str, yaml: &str) -> PathBuf {
        let p = self.bottles().join(format!("{name}.md"));
        write(&p, format!("---\n{yaml}---\n"));
        p
    }

    /// Writes agent `name` running in `bottle`.
    pub(crate) fn agent(&self, name: &str, bottle: &str) -> PathBuf {
        let p = self.agents().join(format!("{name}.md"));
        write(&p, format!("---\nbottle: {bottle}\n---\nDo the task.\n"));
        p
    }

    /// Runs with the default environment.
    pub(crate) fn run(&self, args: &[&str]) -> Out {
        self.run_with(args, &[], &[])
    }

    /// Runs with the default environment plus `vars`.
    pub(crate) fn run_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Out {
        self.run_with(args, vars, &[])
    }

    /// Runs the binary with a clean environment (`HOME`, `PATH`, a docker
    /// that does not exist, the two example secrets) plus `vars`, minus
    /// `unset`; kills it and fails the test after [`TIMEOUT`].
    pub(crate) fn run_with(&self, args: &[&str], vars: &[(&str, &str)], unset: &[&str]) -> Out {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bot-bottle"));
        cmd.args(args)
            .current_dir(&self.cwd)
            .env_clear()
            .env("HOME", &self.home)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("BOT_BOTTLE_DOCKER", self.home.join("no-such-docker"))
            .env("GITHUB_TOKEN", GITHUB_SECRET)
            .env("CLAUDE_CODE_OAUTH_TOKEN", CLAUDE_SECRET)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        for k in unset {
            cmd.env_remove(k);
        }
        let mut child = cmd.spawn().expect("spawn bot-bottle");
        let mut stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let out_reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            stdout.read_to_end(&mut s).expect("read stdout");
            String::from_utf8_lossy(&s).into_owned()
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = Vec::new();
            stderr.read_to_end(&mut s).expect("read stderr");
            String::from_utf8_lossy(&s).into_owned()
        });
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if start.elapsed() > TIMEOUT {
                child.kill().expect("kill");
                let _ = child.wait();
                panic!("bot-bottle {args:?} did not finish in {TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Out {
            code: status.code(),
            stdout: out_reader.join().expect("stdout thread"),
            stderr: err_reader.join().expect("stderr thread"),
        }
    }
}

/// Asserts `text` contains every needle.
#[track_caller]
pub(crate) fn contains_all(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "{text}\n--- does not contain {n:?}");
    }
}

/// Asserts `text` contains none of the needles.
#[track_caller]
pub(crate) fn contains_none(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(!text.contains(n), "{text}\n--- contains {n:?}");
    }
}

/// Asserts no secret of the harness was printed.
#[track_caller]
pub(crate) fn no_secrets(out: &Out) {
    for secret in [GITHUB_SECRET, CLAUDE_SECRET, "CLItestSECRET"] {
        assert!(
            !out.all().contains(secret),
            "a secret was printed:\n{out:?}"
        );
    }
}
