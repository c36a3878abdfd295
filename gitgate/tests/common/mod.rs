//! Test fixtures: a real Debian `sshd` on 127.0.0.1 serving bare repos
//! (one per test binary, shared through a `OnceLock`), the real
//! `bb-gitgate` binary in front of it, and the real `git` client.

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test fixtures"
)]

use std::io::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const SSHD: &str = "/usr/sbin/sshd";

/// The shared upstream.
pub struct Sshd {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub host_key_line: String,
    pub client_key: PathBuf,
    pub user: String,
    _child: ChildGuard,
}

struct ChildGuard(Child);
impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "nothing listens on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen runs");
    assert!(out.status.success(), "ssh-keygen: {out:?}");
}

pub fn sshd() -> &'static Sshd {
    static SSHD_FIXTURE: OnceLock<Sshd> = OnceLock::new();
    SSHD_FIXTURE.get_or_init(start_sshd)
}

fn start_sshd() -> Sshd {
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} is missing: install Debian's openssh-server (.ci/run does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let host_key = dir.path().join("host_key");
    keygen(&host_key);
    let client_key = dir.path().join("client_key");
    keygen(&client_key);
    let auth = dir.path().join("authorized_keys");
    std::fs::copy(client_key.with_extension("pub"), &auth).unwrap();
    std::fs::create_dir_all("/run/sshd").ok();
    std::fs::create_dir_all(dir.path().join("repos")).unwrap();
    let port = free_port();
    let config = dir.path().join("sshd_config");
    std::fs::write(
        &config,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\n\
             PidFile {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\n\
             UsePAM no\nPrintMotd no\nLogLevel ERROR\n",
            host_key.display(),
            auth.display(),
            dir.path().join("sshd.pid").display()
        ),
    )
    .unwrap();
    // A static is never dropped, so a watcher shell stops sshd when this
    // test process is gone.
    let child = Command::new("sh")
        .arg("-c")
        .arg(
            "\"$0\" -D -e -f \"$1\" & s=$!; \
             while kill -0 \"$2\" 2>/dev/null; do sleep 0.5; done; kill $s",
        )
        .arg(SSHD)
        .arg(&config)
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("sshd starts");
    wait_port(port);
    let host_key_line = std::fs::read_to_string(host_key.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned();
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_owned();
    Sshd {
        dir,
        port,
        host_key_line,
        client_key,
        user,
        _child: ChildGuard(child),
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh name, unique in this test binary.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs git with a clean, fixed environment.
pub fn git(dir: &Path, args: &[&str]) -> Output {
    let home = sshd().dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    Command::new("git")
        .args([
            "-c",
            "user.name=Agent",
            "-c",
            "user.email=agent@example.invalid",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "protocol.version=2",
        ])
        .args(args)
        .current_dir(dir)
        .env("HOME", &home)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .output()
        .expect("git runs")
}

/// Runs git and asserts success; returns stdout.
pub fn git_ok(dir: &Path, args: &[&str]) -> String {
    let out = git(dir, args);
    assert!(
        out.status.success(),
        "git {args:?} failed:\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A bare upstream repo with one commit on `main`; returns its path.
pub fn upstream(name: &str) -> PathBuf {
    let s = sshd();
    let bare = s.dir.path().join("repos").join(format!("{name}.git"));
    git_ok(
        s.dir.path(),
        &["init", "-q", "--bare", "-b", "main", bare.to_str().unwrap()],
    );
    let work = s.dir.path().join("seed").join(name);
    std::fs::create_dir_all(&work).unwrap();
    git_ok(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("README.md"), "hello\n").unwrap();
    git_ok(&work, &["add", "."]);
    git_ok(&work, &["commit", "-qm", "initial"]);
    git_ok(&work, &["push", "-q", bare.to_str().unwrap(), "main"]);
    bare
}

/// The id `rev` has in the bare repo `bare` (empty when it does not exist).
pub fn rev(bare: &Path, rev: &str) -> String {
    let out = git(bare, &["rev-parse", "--verify", "-q", rev]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A running `bb-gitgate`.
pub struct Gate {
    pub port: u16,
    pub git_port: u16,
    pub dir: tempfile::TempDir,
    child: ChildGuard,
}

impl Gate {
    /// A field of the gate's `/proc/<pid>/status` in bytes (`VmHWM`,
    /// `RssAnon`), 0 once the process is gone.
    pub fn status_bytes(&self, field: &str) -> u64 {
        status_bytes(self.child.0.id(), field)
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    pub fn url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}.git", self.port)
    }
}

pub fn status_bytes(pid: u32, field: &str) -> u64 {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return 0;
    };
    status
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The gate.yaml entry for `name` on the shared sshd.
pub fn repo_entry(name: &str, host_key: &str) -> String {
    let s = sshd();
    let path = s.dir.path().join("repos").join(format!("{name}.git"));
    format!(
        "  {name}:\n    url: ssh://{}@127.0.0.1:{}{}\n    key_file: {}\n    host_key: \"{host_key}\"\n",
        s.user,
        s.port,
        path.display(),
        s.client_key.display()
    )
}

/// Starts the gate for `repos` with extra top-level yaml and known
/// secrets (NAME, value) passed on stdin.
pub fn gate(repos: &[&str], extra: &str, secrets: &[(&str, &str)]) -> Gate {
    let s = sshd();
    let mut yaml = String::from("repos:\n");
    for r in repos {
        yaml.push_str(&repo_entry(r, &s.host_key_line));
    }
    gate_with_yaml(&(yaml + extra), secrets)
}

pub fn gate_with_yaml(yaml: &str, secrets: &[(&str, &str)]) -> Gate {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!("{yaml}state_dir: {}\n", dir.path().join("state").display());
    let config = dir.path().join("gate.yaml");
    std::fs::write(&config, yaml).unwrap();
    let port = free_port();
    let git_port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_bb-gitgate"))
        .arg("--config")
        .arg(&config)
        .args(["--http-listen", &format!("127.0.0.1:{port}")])
        .args(["--listen", &format!("127.0.0.1:{git_port}")])
        .arg("--secrets-stdin")
        .env("BB_GITGATE_LOG", "bb_gitgate=debug,warn")
        .stdin(Stdio::piped())
        .spawn()
        .expect("bb-gitgate starts");
    {
        let mut stdin = child.stdin.take().unwrap();
        for (name, value) in secrets {
            stdin
                .write_all(format!("{name}={value}\0").as_bytes())
                .unwrap();
        }
    }
    wait_port(port);
    Gate {
        port,
        git_port,
        dir,
        child: ChildGuard(child),
    }
}

/// A clone of `name` through `gate` in a fresh folder.
pub fn clone(gate: &Gate, name: &str) -> PathBuf {
    let parent = tempfile::tempdir().unwrap().keep();
    git_ok(&parent, &["clone", "-q", &gate.url(name), "work"]);
    parent.join("work")
}

/// Writes `files` and commits them in `work`.
pub fn commit(work: &Path, files: &[(&str, &[u8])], message: &str) {
    for (path, data) in files {
        let p = work.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    git_ok(work, &["add", "-A"]);
    git_ok(work, &["commit", "-qm", message]);
}

/// `git push` output (stderr) and success.
pub fn push(work: &Path, args: &[&str]) -> (bool, String) {
    let mut full = vec!["push"];
    full.extend_from_slice(args);
    let out = git(work, &full);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The established TCP connections of process `pid` (IPv4), as
/// (local port, remote port), read from `/proc`.
pub fn tcp_conns(pid: u32) -> Vec<(u16, u16)> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    let inodes: Vec<String> = fds
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            l.strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_owned)
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next().unwrap_or(""), 16).ok();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // State 01 is ESTABLISHED; field 9 is the inode.
            if f.len() > 9 && f[3] == "01" && inodes.iter().any(|i| i == f[9]) {
                Some((port(f[1])?, port(f[2])?))
            } else {
                None
            }
        })
        .collect()
}

/// The pids of every running `sshd` process.
pub fn sshd_pids() -> Vec<u32> {
    let out = Command::new("pgrep")
        .arg("-x")
        .arg("sshd")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Samples the peak `RssAnon` of `pid` every `every` until the returned
/// flag is set; the thread returns the peak.
pub fn sample_peak_anon(
    pid: u32,
    every: Duration,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<u64>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut peak = 0;
            while !stop.load(Ordering::Relaxed) {
                peak = peak.max(status_bytes(pid, "RssAnon"));
                std::thread::sleep(every);
            }
            peak
        })
    };
    (stop, sampler)
}
