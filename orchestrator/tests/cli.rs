//! The `bot-bottle` binary as an operator runs it: a temp `HOME`, a temp
//! working directory, stdin not a terminal. Nothing here needs a container
//! runtime; `BOT_BOTTLE_DOCKER` points at a command that does not exist, so
//! a test can never reach a real Docker engine.

#![allow(clippy::expect_used, reason = "tests")]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Long enough for a loaded CI box; a hang is a failure, not a wait.
const TIMEOUT: Duration = Duration::from_mins(1);

/// Secrets set in the child's environment: they must never be printed.
const GITHUB_SECRET: &str = "ghp_CLItestSECRET0000github1111token";
const CLAUDE_SECRET: &str = "sk-ant-oat01-CLItestSECRET-claude-2222";

struct Env {
    _tmp: tempfile::TempDir,
    home: PathBuf,
    cwd: PathBuf,
}

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn all(&self) -> String {
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

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

impl Env {
    fn empty() -> Self {
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
    fn examples() -> Self {
        let env = Self::empty();
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("examples")
            .join("home");
        copy_dir(&src, &env.home);
        env
    }

    fn bottles(&self) -> PathBuf {
        self.home.join(".bot-bottle").join("bottles")
    }

    fn agents(&self) -> PathBuf {
        self.home.join(".bot-bottle").join("agents")
    }

    fn run(&self, args: &[&str]) -> Out {
        self.run_env(args, &[])
    }

    /// Runs the binary with a clean environment plus `vars`; kills it and
    /// fails the test after [`TIMEOUT`].
    fn run_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Out {
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
        let mut child = cmd.spawn().expect("spawn bot-bottle");
        let mut stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let out_reader = std::thread::spawn(move || {
            let mut s = String::new();
            stdout.read_to_string(&mut s).expect("read stdout");
            s
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            stderr.read_to_string(&mut s).expect("read stderr");
            s
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

#[track_caller]
fn contains_all(text: &str, needles: &[&str]) {
    for n in needles {
        assert!(text.contains(n), "{text}\n--- does not contain {n:?}");
    }
}

#[track_caller]
fn no_secrets(out: &Out) {
    for secret in [GITHUB_SECRET, CLAUDE_SECRET, "CLItestSECRET"] {
        assert!(
            !out.all().contains(secret),
            "a secret was printed:\n{out:?}"
        );
    }
}

#[test]
fn dry_run_prints_the_plan_of_the_example() {
    let env = Env::examples();
    let out = env.run(&["start", "dev", "--dry-run"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "agent `dev` in bottle `dev`",
            &env.agents().join("dev.md").display().to_string(),
            &env.bottles().join("base.md").display().to_string(),
            "egress allowlist (5 routes):",
            "- host: registry.npmjs.org",
            "- host: pypi.org",
            "- host: files.pythonhosted.org",
            "- host: api.github.com",
            "- host: api.anthropic.com",
            "token_env: EGRESS_TOKEN_GITHUB_TOKEN",
            "token_env: EGRESS_TOKEN_AGENT_PROVIDER",
            "EGRESS_TOKEN_GITHUB_TOKEN <- env `GITHUB_TOKEN` = ${GITHUB_TOKEN}",
            "GITHUB_TOKEN=egress-placeholder",
            "CLAUDE_CODE_OAUTH_TOKEN=egress-placeholder",
            "sidecar daemons: egress, git-gate, supervise",
            "-> git@github.com:example/app.git",
            "dry run: nothing was started",
        ],
    );
    no_secrets(&out);
    // A dry run creates no state.
    assert!(!env.home.join(".bot-bottle").join("state").exists());
}

#[test]
fn dry_run_never_prints_secret_values() {
    let env = Env::examples();
    write(
        &env.bottles().join("secretive.md"),
        "---\nextends: dev\nenv:\n  PASTED: literal-CLItestSECRET-pasted\n  \
         MIXED: \"x-${GITHUB_TOKEN}\"\n  ASKED: \"?Deploy password\"\n---\n",
    );
    write(
        &env.agents().join("sec.md"),
        "---\nbottle: secretive\n---\nGo.\n",
    );
    let out = env.run(&["start", "sec", "--dry-run"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "PASTED <- literal (28 chars)",
            "MIXED <- literal(2 chars) + ${GITHUB_TOKEN}",
            "ASKED <- asked at launch: Deploy password",
        ],
    );
    no_secrets(&out);
    // `info` shows the same plan, no secrets either.
    let out = env.run(&["info", "sec"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    no_secrets(&out);
}

#[test]
fn start_without_a_name_and_no_terminal_names_the_command() {
    let env = Env::examples();
    let out = env.run(&["start"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(&out.stderr, &["bot-bottle start NAME", "available: dev"]);
    let out = Env::empty().run(&["start", "--dry-run"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(&out.stderr, &["bot-bottle start NAME", "bot-bottle init"]);
}

#[test]
fn start_without_yes_and_no_terminal_never_waits() {
    let env = Env::examples();
    let out = env.run(&["start", "dev"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    let said_yes = out.stderr.contains("pass --yes");
    let said_backend = out.stderr.contains("docker") || out.stderr.contains("backend");
    assert!(said_yes || said_backend, "{out:?}");
    no_secrets(&out);
}

#[test]
fn an_unknown_backend_is_refused_before_anything_starts() {
    let env = Env::examples();
    let out = env.run(&["start", "dev", "--yes", "--backend", "podman"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stderr,
        &["unknown backend `podman` (from --backend)", "docker"],
    );
    let out = env.run_env(
        &["start", "dev", "--yes"],
        &[("BOT_BOTTLE_BACKEND", "smolmachines")],
    );
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stderr,
        &["backend `smolmachines` (from BOT_BOTTLE_BACKEND)"],
    );
    no_secrets(&out);
}

#[test]
fn init_writes_an_agent_and_refuses_to_overwrite() {
    let env = Env::empty();
    let out = env.run(&["init", "--name", "x", "--bottle", "y"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let file = env.agents().join("x.md");
    contains_all(
        &out.stdout,
        &[
            &format!("wrote {}", file.display()),
            "bottle `y` does not exist yet",
        ],
    );
    let text = std::fs::read_to_string(&file).expect("written");
    assert!(text.starts_with("---\nbottle: y\n---\n"), "{text}");

    std::fs::write(&file, "---\nbottle: mine\n---\nkeep me\n").expect("edit");
    let out = env.run(&["init", "--name", "x", "--bottle", "z"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stderr,
        &[
            &file.display().to_string(),
            "already exists",
            "bot-bottle edit x",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(&file).expect("kept"),
        "---\nbottle: mine\n---\nkeep me\n"
    );

    // --here writes into the working directory; the bottle defaults.
    let out = env.run(&["init", "--name", "local", "--here"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let local = env.cwd.join(".bot-bottle").join("agents").join("local.md");
    contains_all(
        &std::fs::read_to_string(&local).expect("written"),
        &["bottle: default"],
    );

    let out = env.run(&["init", "--name", "Bad_Name", "--bottle", "y"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(&out.stderr, &["agent name `Bad_Name` is not valid"]);
}

#[test]
fn init_without_flags_and_no_terminal_names_the_flag() {
    let env = Env::empty();
    let out = env.run(&["init"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(&out.stderr, &["no terminal", "--name"]);
    assert!(!env.agents().exists(), "nothing written");
}

#[test]
fn list_available_lists_agents_from_home_and_cwd() {
    let env = Env::examples();
    write(
        &env.cwd.join(".bot-bottle").join("agents").join("local.md"),
        "---\nbottle: dev\n---\n",
    );
    // A broken agent file is listed (names only; nothing is parsed).
    write(&env.agents().join("broken.md"), "not a manifest");
    let out = env.run(&["list", "available"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out:?}");
    assert!(lines[0].starts_with("broken\t"), "{out:?}");
    assert_eq!(
        lines[1],
        format!("dev\t{}", env.agents().join("dev.md").display())
    );
    assert!(lines[2].starts_with("local\t"), "{out:?}");
    // `list` defaults to available.
    assert_eq!(env.run(&["list"]).stdout, out.stdout);

    let out = Env::empty().run(&["list", "available"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(&out.stdout, &["no agents yet", "bot-bottle init"]);
}

#[test]
fn list_warns_about_bottles_in_the_working_directory() {
    let env = Env::examples();
    write(
        &env.cwd.join(".bot-bottle").join("bottles").join("dev.md"),
        "---\negress:\n  routes:\n    - host: attacker.example\n---\n",
    );
    let out = env.run(&["list", "available"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stderr,
        &["warning: ignoring", "bottles are read only from"],
    );
    // And start uses the home bottle, saying so.
    let out = env.run(&["start", "dev", "--dry-run"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!out.stdout.contains("attacker.example"), "{out:?}");
    contains_all(&out.stdout, &["warning: ignoring"]);
}

#[test]
fn info_prints_the_plan() {
    let env = Env::examples();
    let out = env.run(&["info", "dev"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "bottle dev-<random> — agent `dev` in bottle `dev`",
            "- host: api.github.com",
            "credentials egress injects",
        ],
    );
    no_secrets(&out);
    let out = env.run(&["info", "ghost"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(&out.stderr, &["no agent named `ghost`"]);
}

#[test]
fn a_bad_manifest_fails_the_dry_run_naming_the_file() {
    let env = Env::examples();
    let dev = env.bottles().join("dev.md");
    let text = std::fs::read_to_string(&dev).expect("read");
    std::fs::write(
        &dev,
        text.replacen("extends: base\n", "extends: base\nsupervize: true\n", 1),
    )
    .expect("write");
    let out = env.run(&["start", "dev", "--dry-run"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stderr,
        &[&dev.display().to_string(), "unknown field `supervize`"],
    );
    assert!(!out.stdout.contains("dry run"), "{out:?}");

    // A bad route, and an unknown template, name the bottle file too.
    let env = Env::examples();
    let base = env.bottles().join("base.md");
    let text = std::fs::read_to_string(&base).expect("read");
    std::fs::write(
        &base,
        text.replacen("template: claude", "template: gemini", 1),
    )
    .expect("write");
    let out = env.run(&["start", "dev", "--dry-run"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stderr,
        &[
            &env.bottles().join("dev.md").display().to_string(),
            "unknown agent_provider template `gemini`",
            "built-ins are claude, codex, pi",
        ],
    );
}

#[test]
fn remote_control_is_refused_plainly() {
    let env = Env::examples();
    let out = env.run(&["start", "dev", "--dry-run", "--remote-control"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    contains_all(&out.stderr, &["--remote-control is not supported yet"]);
}

#[test]
fn cwd_copy_refuses_a_folder_holding_the_home() {
    let mut env = Env::examples();
    // Run from HOME itself: a workspace copy would carry ~/.bot-bottle.
    env.cwd = env.home.clone();
    let out = env.run(&["start", "dev", "--dry-run", "--cwd"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &["--cwd: refusing to copy", ".bot-bottle"]);
    // From a project folder it is planned.
    let mut env = Env::examples();
    env.cwd = env.home.parent().expect("tmp").join("cwd");
    let out = env.run(&["start", "dev", "--dry-run", "--cwd"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &["workspace:", "copied to /home/node/workspace"],
    );
}

#[test]
fn run_from_home_the_trusted_bottles_folder_gets_no_warning() {
    let mut env = Env::examples();
    env.cwd = env.home.clone();
    let out = env.run(&["list", "available"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(!out.stderr.contains("ignoring"), "{out:?}");
}

#[test]
fn dry_run_shows_the_command_given_after_dashes() {
    let env = Env::examples();
    let out = env.run(&["start", "dev", "--dry-run", "--", "make", "test"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(&out.stdout, &["agent runs: make test"]);
}
