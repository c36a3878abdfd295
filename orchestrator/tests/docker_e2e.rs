//! End to end on a real Docker engine: `bot-bottle start --yes -- CMD`
//! launches a bottle whose agent is a `FROM scratch` image (Debian's
//! busybox-static plus `bb-probe`), and an HTTPS test upstream of ours
//! (`bb-testupstream`, test CA) sits on the bundle's outer network.
//!
//! Runs whenever a Docker engine answers; says loudly when it skips. With
//! `BB_E2E_REQUIRE_DOCKER=1` (set by `.ci/run`) a missing engine or
//! busybox is a failure instead.
//!
//! `BB_E2E_BOT_BOTTLE` (a `bot-bottle` executable) and
//! `BB_E2E_BUNDLE_BIN_DIR` (the folder of its static bundle binaries) run
//! the suite against another build, e.g. an older commit's, to see which
//! tests fail there.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Test-only: the `bot-bottle` executable under test (default: this build's).
const BB_E2E_BOT_BOTTLE: &str = "BB_E2E_BOT_BOTTLE";
/// Test-only: the bundle binaries that executable uses (default: this
/// build's static ones).
const BB_E2E_BUNDLE_BIN_DIR: &str = "BB_E2E_BUNDLE_BIN_DIR";

const UPSTREAM_TOKEN: &str = "e2e-upstream-token-9f3b2c7d1a";
/// Shaped like a GitHub token, so the token detector must block it.
const BODY_SECRET: &str = "ghp_Zq8Xw2Lk5Vn7Bm4Hj6Gf3Ds1Ap9Oi0Uy2Tr5";

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run docker")
}

fn docker_ok(args: &[&str]) -> String {
    let out = docker(args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Whether to run; panics instead of skipping when CI requires Docker.
fn ready() -> bool {
    let required = std::env::var("BB_E2E_REQUIRE_DOCKER").is_ok_and(|v| v == "1");
    let engine = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .output();
    let engine_ok = engine.as_ref().is_ok_and(|o| o.status.success());
    let busybox = Path::new("/bin/busybox").is_file();
    let why = if !engine_ok {
        "no Docker engine answers `docker version`"
    } else if !busybox {
        "/bin/busybox is missing (apt-get install busybox-static)"
    } else {
        return true;
    };
    assert!(!required, "BB_E2E_REQUIRE_DOCKER=1 but {why}");
    eprintln!("\n!!!!!!!!\n!!! SKIPPED docker end-to-end tests: {why}\n!!!!!!!!\n");
    false
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds the static binaries the bundle and the test images need.
fn static_bins() -> PathBuf {
    let ws = workspace();
    let target = ws.join("target/static");
    let status = Command::new(env!("CARGO"))
        .current_dir(&ws)
        .env(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
            "-C target-feature=+crt-static",
        )
        // Small images: no debug info in what goes into them.
        .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
        .env("CARGO_PROFILE_RELEASE_STRIP", "symbols")
        .args([
            "build",
            "--release",
            "--target",
            "x86_64-unknown-linux-gnu",
            "-p",
            "bb-egress",
            "-p",
            "bb-init",
            "-p",
            "bb-supervise",
            "-p",
            "bb-gitgate",
            "-p",
            "bb-testkit",
            "--target-dir",
        ])
        .arg(&target)
        .status()
        .expect("cargo build");
    assert!(status.success(), "static build failed");
    target.join("x86_64-unknown-linux-gnu/release")
}

struct Fixture {
    tmp: tempfile::TempDir,
    home: PathBuf,
    bins: PathBuf,
    upstream_ca: PathBuf,
    network: String,
    upstream: String,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.upstream]);
        let _ = docker(&["network", "rm", &self.network]);
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn fixture(tag: &str) -> Fixture {
    let bins = static_bins();
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    std::fs::create_dir_all(tmp.path().join("pki")).unwrap();
    let pki = bb_testkit::mint_test_pki(&tmp.path().join("pki"), &["upstream.test"]).unwrap();

    // The test upstream: FROM scratch, HTTPS with the test CA's leaf.
    let ctx = tmp.path().join("upstream-image");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::copy(bins.join("bb-testupstream"), ctx.join("bb-testupstream")).unwrap();
    std::fs::copy(&pki.server_cert, ctx.join("server.pem")).unwrap();
    std::fs::copy(&pki.server_key, ctx.join("server.key")).unwrap();
    write(
        &ctx.join("Dockerfile"),
        "FROM scratch\nCOPY bb-testupstream server.pem server.key /\nENTRYPOINT [\"/bb-testupstream\", \"--listen\", \"0.0.0.0:443\", \"--cert\", \"/server.pem\", \"--key\", \"/server.key\", \"--expect-token-env\", \"EXPECTED_TOKEN\"]\n",
    );
    // One image per fixture: each has its own test CA.
    let image = format!("bb-e2e-upstream-{tag}:latest");
    docker_ok(&["build", "-q", "-t", &image, ctx.to_str().unwrap()]);
    let network = format!("bb-e2e-ext-{tag}-{}", std::process::id());
    let upstream = format!("bb-e2e-upstream-{tag}-{}", std::process::id());
    let _ = docker(&["rm", "-f", &upstream]);
    let _ = docker(&["network", "rm", &network]);
    docker_ok(&["network", "create", &network]);
    let out = Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &upstream,
            "--network",
            &network,
            "--network-alias",
            "upstream.test",
            "-e",
            "EXPECTED_TOKEN",
            &image,
        ])
        .env("EXPECTED_TOKEN", UPSTREAM_TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "upstream: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The agent: a plugin provider whose image is FROM scratch.
    let plugin = home.join(".bot-bottle/contrib/e2e");
    std::fs::create_dir_all(&plugin).unwrap();
    std::fs::copy("/bin/busybox", plugin.join("busybox")).unwrap();
    std::fs::copy(bins.join("bb-probe"), plugin.join("bb-probe")).unwrap();
    write(
        &plugin.join("Dockerfile"),
        "FROM scratch\nCOPY busybox bb-probe /bin/\nCMD [\"/bin/busybox\", \"sh\"]\n",
    );
    write(
        &plugin.join("provider.yaml"),
        "command: [/bin/busybox, sh]\nhome: /root\nworkdir: /work\nfiles:\n  - path: \"{home}/hello.txt\"\n    content: \"hello {label}\\n\"\n",
    );
    // A realistic agent: the shared Debian image, as a plugin whose user is
    // not root. Its image is built only by the tests that start it.
    let deb = home.join(".bot-bottle/contrib/deb");
    std::fs::create_dir_all(&deb).unwrap();
    std::fs::copy(bins.join("bb-probe"), deb.join("bb-probe")).unwrap();
    write(
        &deb.join("Dockerfile"),
        &format!(
            "FROM {}\nCOPY bb-probe /usr/local/bin/\nUSER agent\n",
            bb_testkit::debian::tag()
        ),
    );
    write(
        &deb.join("provider.yaml"),
        "command: [/bin/bash]\nhome: /home/agent\nuser: agent\nworkdir: /home/agent/work\n",
    );
    write(
        &home.join(".bot-bottle/bottles/deb.md"),
        "---\nagent_provider:\n  template: deb\nsupervise: false\n---\n",
    );
    write(
        &home.join(".bot-bottle/agents/deb.md"),
        "---\nbottle: deb\n---\n",
    );
    write(
        &home.join(".bot-bottle/bottles/e2e.md"),
        "---\nagent_provider:\n  template: e2e\nsupervise: false\nenv:\n  UPSTREAM_TOKEN: ${E2E_UPSTREAM_TOKEN}\n  GREETING: hi\negress:\n  routes:\n    - host: upstream.test\n      allow_private: true\n      auth:\n        scheme: Bearer\n        token_ref: UPSTREAM_TOKEN\n---\n",
    );
    write(
        &home.join(".bot-bottle/agents/e2e.md"),
        "---\nbottle: e2e\nskills: [demo]\ngit-gate:\n  user:\n    name: E2E Bot\n---\nYou are an end-to-end test.\n",
    );
    write(&home.join(".claude/skills/demo/SKILL.md"), "demo skill\n");
    write(&tmp.path().join("project/README.txt"), "project file\n");
    Fixture {
        home,
        bins,
        upstream_ca: pki.ca_cert,
        network,
        upstream,
        tmp,
    }
}

fn bot_bottle(f: &Fixture, args: &[&str]) -> Command {
    let exe = std::env::var_os(BB_E2E_BOT_BOTTLE)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_bot-bottle").into());
    let bundle_bins = std::env::var_os(BB_E2E_BUNDLE_BIN_DIR)
        .filter(|v| !v.is_empty())
        .map_or_else(|| f.bins.clone(), PathBuf::from);
    let mut c = Command::new(exe);
    c.args(args)
        .current_dir(f.tmp.path().join("project"))
        .env("HOME", &f.home)
        .env("E2E_UPSTREAM_TOKEN", UPSTREAM_TOKEN)
        .env("BOT_BOTTLE_BUNDLE_BIN_DIR", bundle_bins)
        .env("BOT_BOTTLE_UPSTREAM_CA", &f.upstream_ca)
        .env("BOT_BOTTLE_DOCKER_EGRESS_NETWORK", &f.network)
        .env_remove("BOT_BOTTLE_BACKEND")
        .stdin(Stdio::null());
    c
}

fn run(f: &Fixture, args: &[&str]) -> (i32, String, String, Duration) {
    let start = Instant::now();
    let out = bot_bottle(f, args).output().unwrap();
    let took = start.elapsed();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
    )
}

/// The output of one `== name` section of the probe script.
fn section<'a>(out: &'a str, name: &str) -> &'a str {
    let marker = format!("== {name}\n");
    let start = out
        .find(&marker)
        .unwrap_or_else(|| panic!("no section {name} in:\n{out}"))
        + marker.len();
    let rest = &out[start..];
    &rest[..rest.find("\n== ").map_or(rest.len(), |e| e + 1)]
}

/// Containers, networks and state of bottles whose slug starts with `prefix`
/// (tests run in parallel, each with its own label).
fn bottle_leftovers(f: &Fixture, prefix: &str) -> Vec<String> {
    let mine = |name: &&str| name.starts_with(&format!("bb-{prefix}-"));
    let mut left = Vec::new();
    left.extend(
        docker_ok(&[
            "ps",
            "-a",
            "--filter",
            "label=bot-bottle.slug",
            "--format",
            "{{.Names}}",
        ])
        .lines()
        .filter(mine)
        .map(str::to_owned),
    );
    left.extend(
        docker_ok(&[
            "network",
            "ls",
            "--filter",
            "label=bot-bottle.slug",
            "--format",
            "{{.Name}}",
        ])
        .lines()
        .filter(mine)
        .map(str::to_owned),
    );
    if let Ok(entries) = std::fs::read_dir(f.home.join(".bot-bottle/state")) {
        left.extend(
            entries
                .flatten()
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!("{prefix}-"))
                })
                .map(|e| e.path().display().to_string()),
        );
    }
    left
}

/// What is left of bottles `prefix` once their teardown is done: a run
/// returns its exit status while a detached `bot-bottle reap` removes the
/// stopped bottle, so this waits (up to a minute) for it to finish.
fn leftovers_after_teardown(f: &Fixture, prefix: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let left = bottle_leftovers(f, prefix);
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// [`leftovers_after_teardown`] on the engine only (a committed bottle's
/// state stays).
fn engine_leftovers_after_teardown(f: &Fixture, prefix: &str) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_mins(1);
    loop {
        let left: Vec<String> = bottle_leftovers(f, prefix)
            .into_iter()
            .filter(|l| !l.contains("/.bot-bottle/state/"))
            .collect();
        if left.is_empty() || Instant::now() > deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_bottle_has_one_audited_way_out_and_leaves_nothing() {
    if !ready() {
        return;
    }
    let f = fixture("main");
    let hex: String = UPSTREAM_TOKEN.bytes().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });
    let script = format!(
        "echo '== tcp-upstream'; /bin/bb-probe tcp upstream.test:443; echo rc=$?\n\
         echo '== tcp-internet'; /bin/bb-probe tcp 1.1.1.1:443; echo rc=$?\n\
         echo '== udp-internet'; /bin/bb-probe udp 1.1.1.1:53; echo rc=$?\n\
         echo '== dns'; /bin/bb-probe resolve example.com; echo rc=$?\n\
         echo '== allowed'; /bin/bb-probe https https://upstream.test/hello; echo; echo rc=$?\n\
         echo '== unlisted'; /bin/bb-probe https https://other.test/; echo; echo rc=$?\n\
         echo '== secret-body'; /bin/bb-probe https https://upstream.test/upload --data 'token={BODY_SECRET}'; echo; echo rc=$?\n\
         echo '== scan'; /bin/bb-probe scan-fs {hex} /; echo rc=$?\n\
         echo '== env'; /bin/busybox env\n\
         echo '== files'; /bin/busybox cat /root/hello.txt /work/README.txt /root/.claude/skills/demo/SKILL.md /root/.gitconfig\n\
         echo '== end'\n\
         exit 7\n"
    );
    let (code, out, err, cold) = run(
        &f,
        &[
            "start",
            "e2e",
            "--yes",
            "--cwd",
            "--",
            "/bin/busybox",
            "sh",
            "-c",
            &script,
        ],
    );
    eprintln!("launch + run took {cold:?} (cold image cache)\nstderr:\n{err}");
    assert_eq!(
        code, 7,
        "the agent's exit status comes back\nstdout:\n{out}\nstderr:\n{err}"
    );

    // No way out but the proxy.
    assert!(section(&out, "tcp-upstream").contains("error=dns"), "{out}");
    assert!(section(&out, "tcp-internet").contains("rc=1"), "{out}");
    assert!(section(&out, "udp-internet").contains("rc=1"), "{out}");
    assert!(section(&out, "dns").contains("rc=1"), "{out}");
    // Through the proxy: the allowed upstream answers with the injected token.
    let allowed = section(&out, "allowed");
    assert!(
        allowed.contains("status=200") && allowed.contains("auth=match"),
        "{out}"
    );
    assert!(section(&out, "unlisted").contains("status=403"), "{out}");
    assert!(section(&out, "secret-body").contains("status=403"), "{out}");
    // The token is nowhere in the agent.
    assert!(section(&out, "scan").contains("clean"), "{out}");
    let env = section(&out, "env");
    assert!(!env.contains(UPSTREAM_TOKEN), "token in agent env");
    assert!(env.contains("UPSTREAM_TOKEN=egress-placeholder"), "{env}");
    assert!(env.contains("GREETING=hi"), "{env}");
    assert!(env.contains("HTTPS_PROXY=http://egress:9099"), "{env}");
    let files = section(&out, "files");
    for expected in [
        "hello e2e",
        "project file",
        "demo skill",
        "name = \"E2E Bot\"",
    ] {
        assert!(files.contains(expected), "{expected} missing:\n{out}");
    }
    assert!(
        !out.contains(UPSTREAM_TOKEN) && !err.contains(UPSTREAM_TOKEN),
        "token printed"
    );

    // The upstream saw the allowed request and never the secret body.
    let logs = docker_ok(&["logs", &f.upstream]);
    assert!(logs.contains("path=/hello auth=match"), "{logs}");
    assert!(
        !logs.contains(BODY_SECRET) && !logs.contains("/upload"),
        "secret reached the upstream:\n{logs}"
    );

    // Nothing of the bottle remains.
    assert_eq!(leftovers_after_teardown(&f, "e2e"), Vec::<String>::new());

    // Warm cache: the same launch again, for the timing.
    let (code, _, err, warm) = run(&f, &["start", "e2e", "--yes", "--", "/bin/busybox", "true"]);
    assert_eq!(code, 0, "{err}");
    eprintln!(
        "E2E-TIMING cold={:.2}s warm={:.2}s",
        cold.as_secs_f64(),
        warm.as_secs_f64()
    );
    assert_eq!(leftovers_after_teardown(&f, "e2e"), Vec::<String>::new());
}

#[test]
fn commit_then_resume_boots_the_snapshot() {
    if !ready() {
        return;
    }
    let f = fixture("commit");
    let script = "echo snapshot-data > /work/marker; while [ ! -e /work/stop ]; do /bin/busybox sleep 0.2; done";
    let first = bot_bottle(
        &f,
        &[
            "start",
            "e2e",
            "--yes",
            "--label",
            "snap",
            "--",
            "/bin/busybox",
            "sh",
            "-c",
            script,
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let slug = wait_running(&f, "snap");
    // The marker is written as the agent starts; wait until it exists.
    let agent = format!("bb-{slug}-agent");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !docker(&["exec", &agent, "/bin/busybox", "test", "-e", "/work/marker"])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "marker never written");
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, out, err, _) = run(&f, &["commit", &slug]);
    assert_eq!(code, 0, "commit: {out}{err}");
    assert!(
        out.contains(&format!("bot-bottle-commit/{slug}:latest")),
        "{out}"
    );
    docker_ok(&["exec", &agent, "/bin/busybox", "touch", "/work/stop"]);
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "first run: {}",
        String::from_utf8_lossy(&first.stderr)
    );

    // With the snapshot's image gone, resume says so and boots a rebuilt
    // image (the image is set aside and put back after).
    let image = format!("bot-bottle-commit/{slug}:latest");
    let keep = format!("bb-e2e-keep-{}:1", std::process::id());
    docker_ok(&["tag", &image, &keep]);
    docker_ok(&["rmi", &image]);
    let (code, out, err, _) = run(
        &f,
        &["resume", &slug, "--yes", "--", "/bin/busybox", "true"],
    );
    assert_eq!(code, 0, "resume without the image: {out}{err}");
    assert!(err.contains("is gone; rebuilding"), "{err}");
    docker_ok(&["tag", &keep, &image]);
    docker_ok(&["rmi", &keep]);

    // The snapshot boots with the file the first run wrote.
    let (code, out, err, _) = run(
        &f,
        &[
            "resume",
            &slug,
            "--yes",
            "--",
            "/bin/busybox",
            "cat",
            "/work/marker",
        ],
    );
    assert_eq!(code, 0, "resume: {out}{err}");
    assert!(out.contains("snapshot-data"), "{out}\n{err}");
    // Containers and networks are gone; the committed state stays until removed.
    assert_eq!(
        engine_leftovers_after_teardown(&f, "snap"),
        Vec::<String>::new()
    );
    // Snapshots are listed, and removed only by asking for it.
    let (_, out, _, _) = run(&f, &["list", "snapshots"]);
    assert!(out.contains(&slug) && out.contains(&image), "{out}");
    let (code, _, err, _) = run(&f, &["rm-snapshot", &slug]);
    assert_ne!(code, 0, "removed without --yes: {err}");
    let (code, out, err, _) = run(&f, &["rm-snapshot", &slug, "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !docker(&["image", "inspect", &image]).status.success(),
        "image left"
    );
    assert!(
        !f.home.join(".bot-bottle/state").join(&slug).exists(),
        "state left"
    );
    let (_, out, _, _) = run(&f, &["list", "snapshots"]);
    assert!(out.contains("no snapshots"), "{out}");
}

/// Waits until `list active` shows a running bottle whose slug starts with
/// `prefix`; returns its slug.
fn wait_running(f: &Fixture, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_mins(3);
    loop {
        let (_, out, _, _) = run(f, &["list", "active"]);
        if let Some(line) = out.lines().find(|l| {
            l.starts_with(&format!("{prefix}-")) && l.split('\t').nth(2) == Some("running")
        }) {
            return line.split('\t').next().unwrap().to_owned();
        }
        assert!(Instant::now() < deadline, "bottle never ran: {out}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Starts a bottle whose agent sleeps, and waits until it runs.
fn start_sleeping(f: &Fixture, label: &str) -> (std::process::Child, String) {
    let launch = bot_bottle(
        f,
        &[
            "start",
            "e2e",
            "--yes",
            "--label",
            label,
            "--",
            "/bin/busybox",
            "sleep",
            "600",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    (launch, wait_running(f, label))
}

#[test]
fn a_teardown_that_fails_is_found_by_cleanup() {
    if !ready() {
        return;
    }
    let f = fixture("reap");
    // A docker that refuses every removal: the detached teardown fails.
    let wrapper = f.home.join("docker-no-rm.sh");
    write(
        &wrapper,
        "#!/bin/sh\ncase \"$1 $2\" in rm\\ *|network\\ rm) exit 1;; esac\nexec docker \"$@\"\n",
    );
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let out = bot_bottle(
        &f,
        &[
            "start",
            "e2e",
            "--yes",
            "--label",
            "reap",
            "--",
            "/bin/busybox",
            "true",
        ],
    )
    .env("BOT_BOTTLE_DOCKER", &wrapper)
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // The reaper owns the bottle while it tries; once it has given up,
    // cleanup offers every part (state folder included) and removes it.
    let deadline = Instant::now() + Duration::from_mins(1);
    let offered = loop {
        let (_, out, err, _) = run(&f, &["cleanup"]);
        if out.contains("bb-reap-") {
            break format!("{out}{err}");
        }
        assert!(Instant::now() < deadline, "never offered:\n{out}{err}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for part in [
        "-agent",
        "-net",
        "-bundle",
        "-int",
        ".bot-bottle/state/reap-",
    ] {
        assert!(offered.contains(part), "{part} not offered:\n{offered}");
    }
    let (code, out, err, _) = run(&f, &["cleanup", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(bottle_leftovers(&f, "reap"), Vec::<String>::new());
}

#[test]
fn a_launch_that_fails_half_way_leaves_nothing() {
    if !ready() {
        return;
    }
    let f = fixture("half");
    // A docker wrapper records every command line bot-bottle runs.
    let argv_log = f.home.join("docker-argv.log");
    let wrapper = f.home.join("docker-wrapper.sh");
    write(
        &wrapper,
        &format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec docker \"$@\"\n",
            argv_log.display()
        ),
    );
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    // Everything is created, then the agent's command does not exist.
    let out = bot_bottle(
        &f,
        &[
            "start",
            "e2e",
            "--yes",
            "--label",
            "half",
            "--",
            "/bin/no-such-program",
        ],
    )
    .env("BOT_BOTTLE_DOCKER", &wrapper)
    .output()
    .unwrap();
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(leftovers_after_teardown(&f, "half"), Vec::<String>::new());
    // The token went to docker by name only, never as a value on argv.
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert!(argv.contains("-e EGRESS_TOKEN_UPSTREAM_TOKEN"), "{argv}");
    assert!(
        !argv.contains(UPSTREAM_TOKEN),
        "a token value was on a docker command line"
    );

    // A bottle whose isolation is broken on purpose (test-only knob: the
    // holder keeps its default route, the bridge its address) never runs
    // its agent: the launch probe names the check, and all is torn down.
    let out = bot_bottle(
        &f,
        &[
            "start",
            "e2e",
            "--yes",
            "--label",
            "broken",
            "--",
            "/bin/busybox",
            "echo",
            "AGENT-RAN",
        ],
    )
    .env("BOT_BOTTLE_TEST_BREAK_ISOLATION", "1")
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(!stdout.contains("AGENT-RAN"), "the agent ran: {stdout}");
    assert!(
        stderr.contains("isolation probe failed")
            && stderr.contains("FAIL default-route")
            && stderr.contains("what to do"),
        "{stderr}"
    );
    assert_eq!(bottle_leftovers(&f, "broken"), Vec::<String>::new());
}

#[test]
fn doctor_probes_isolation_and_cleanup_removes_a_live_bottle_whose_launcher_was_killed() {
    if !ready() {
        return;
    }
    let f = fixture("clean");
    let (mut launch, slug) = start_sleeping(&f, "killed");

    // What is wrong is collected, so one run reports every finding.
    let mut wrong = Vec::new();
    // doctor runs the launch probe in the running bottle and in a
    // throw-away one, and reports what it saw.
    let (_, out, err, _) = run(&f, &["doctor"]);
    match out
        .lines()
        .find(|l| l.contains(&format!("isolation of {slug}")))
    {
        Some(line) if line.starts_with("ok") && line.contains("no default route") => {}
        Some(line) => wrong.push(format!("doctor on the running bottle: {line}")),
        None => wrong.push(format!(
            "doctor did not check the running bottle:\n{out}{err}"
        )),
    }
    match out
        .lines()
        .find(|l| l.contains("isolation (throw-away bottle)"))
    {
        Some(line) if line.starts_with("ok") => {}
        Some(line) => wrong.push(format!("doctor's throw-away bottle: {line}")),
        None => wrong.push(format!("doctor ran no throw-away bottle:\n{out}{err}")),
    }

    // While its bot-bottle lives, cleanup leaves the bottle alone.
    let (code, out, err, _) = run(&f, &["cleanup", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains(&slug), "a live bottle was offered: {out}");

    // kill -9: no teardown runs; agent and bundle keep running.
    launch.kill().unwrap();
    let _ = launch.wait();
    let agent = format!("bb-{slug}-agent");
    assert_eq!(
        docker_ok(&["inspect", "-f", "{{.State.Running}}", &agent]).trim(),
        "true"
    );
    let (_, out, _, _) = run(&f, &["list", "active"]);
    if !out.contains("gone") {
        wrong.push(format!(
            "list active does not say the owner is gone:\n{out}"
        ));
    }

    // Without a terminal, cleanup previews and asks for --yes.
    let (code, out, err, _) = run(&f, &["cleanup"]);
    if code == 0 || !out.contains(&agent) || !err.contains("--yes") {
        wrong.push(format!(
            "cleanup without --yes: exit {code}, does not offer {agent} or ask for --yes:\n{out}{err}"
        ));
    }
    assert!(
        !bottle_leftovers(&f, "killed").is_empty(),
        "nothing is removed without --yes"
    );
    let (code, out, err, _) = run(&f, &["cleanup", "--yes"]);
    let left = bottle_leftovers(&f, "killed");
    if code != 0 || !left.is_empty() {
        wrong.push(format!(
            "cleanup --yes (exit {code}) left {left:?}:\n{out}{err}"
        ));
    }
    // Whatever cleanup left, nothing of this test stays on the engine.
    for name in left.iter().filter(|l| l.starts_with("bb-")) {
        let _ = docker(&["rm", "-f", "-v", name]);
    }
    for name in left.iter().filter(|l| l.starts_with("bb-")) {
        let _ = docker(&["network", "rm", name]);
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Local IPv4 addresses of this host (its own and every bridge gateway).
fn host_ipv4s() -> Vec<String> {
    let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap();
    let mut out = Vec::new();
    let mut last = String::new();
    for line in trie.lines() {
        let t = line.trim_start_matches([' ', '|', '+', '-']).trim();
        if t.parse::<std::net::Ipv4Addr>().is_ok() {
            t.clone_into(&mut last);
        } else if t.contains("/32 host LOCAL") && !last.starts_with("127.") && !out.contains(&last)
        {
            out.push(last.clone());
        }
    }
    out
}

/// A listener that counts what reaches it.
/// What came in, with the sender's address.
type Hits = std::sync::Arc<std::sync::Mutex<Vec<(Option<std::net::IpAddr>, String)>>>;

struct Tap {
    hits: Hits,
}

impl Tap {
    fn new() -> Self {
        Self {
            hits: std::sync::Arc::default(),
        }
    }

    fn tcp(&self, l: std::net::TcpListener) {
        let hits = std::sync::Arc::clone(&self.hits);
        std::thread::spawn(move || {
            for c in l.incoming().flatten() {
                let mut buf = [0u8; 600];
                let _ = c.set_read_timeout(Some(Duration::from_millis(500)));
                let n = std::io::Read::read(&mut &c, &mut buf).unwrap_or(0);
                hits.lock().unwrap().push((
                    c.peer_addr().ok().map(|a| a.ip()),
                    format!(
                        "tcp {} from {:?}: {:?}",
                        c.local_addr().unwrap(),
                        c.peer_addr(),
                        String::from_utf8_lossy(&buf[..n])
                    ),
                ));
            }
        });
    }

    fn udp(&self, s: std::net::UdpSocket) {
        let hits = std::sync::Arc::clone(&self.hits);
        std::thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = s.recv_from(&mut buf) {
                hits.lock().unwrap().push((
                    Some(peer.ip()),
                    format!(
                        "udp {} from {peer}: {:?}",
                        s.local_addr().unwrap(),
                        String::from_utf8_lossy(&buf[..n])
                    ),
                ));
            }
        });
    }

    /// What came from `senders` (all of it when none is known). Port 53
    /// on every host address also hears other containers of this machine
    /// whose resolvers forward to the host.
    fn seen_from(&self, senders: &[std::net::IpAddr]) -> Vec<String> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(peer, _)| senders.is_empty() || peer.is_some_and(|p| senders.contains(&p)))
            .map(|(_, text)| text.clone())
            .collect()
    }
}

/// Binds `addr`, waiting while another test run holds it (port 53).
fn bind_retry<T>(addr: &str, bind: impl Fn(&str) -> std::io::Result<T>) -> T {
    let deadline = Instant::now() + Duration::from_mins(2);
    loop {
        match bind(addr) {
            Ok(s) => return s,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot bind {addr}: {e}");
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

#[test]
fn a_debian_agent_reaches_no_host_address_and_no_resolver() {
    if !ready() {
        return;
    }
    let _ = bb_testkit::debian::image();
    let f = fixture("deb");
    let hosts = host_ipv4s();
    assert!(!hosts.is_empty());
    let tap = Tap::new();
    // A host service on 0.0.0.0, and one on each host address (bridge
    // gateways included) on a port of its own.
    let any = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let any_port = any.local_addr().unwrap().port();
    tap.tcp(any);
    let mut targets = Vec::new();
    for h in &hosts {
        targets.push(format!("{h}:{any_port}"));
        let l = std::net::TcpListener::bind(format!("{h}:0")).unwrap();
        targets.push(l.local_addr().unwrap().to_string());
        tap.tcp(l);
    }
    // A resolver of the test on every host address: UDP and TCP port 53.
    tap.udp(bind_retry("0.0.0.0:53", |a| std::net::UdpSocket::bind(a)));
    tap.tcp(bind_retry("0.0.0.0:53", |a| std::net::TcpListener::bind(a)));
    let nonce = format!(
        "leak{}x{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let mut script =
        String::from("echo '== route'; ip -4 route; ip -6 route; echo '== addr'; ip addr\n");
    // The agent's own network's gateway: the first address of its subnet.
    script.push_str("gw=$(ip -4 route | awk '/ dev / && !/default/ {split($1,a,\"/\"); split(a[1],o,\".\"); print o[1]\".\"o[2]\".\"o[3]\".\"o[4]+1; exit}')\n");
    let _ = writeln!(
        script,
        "echo '== gw'; echo $gw; bb-probe tcp $gw:{any_port} --timeout-ms 500; bb-probe udp $gw:53 --timeout-ms 500"
    );
    script.push_str("echo '== tcp'\n");
    for t in &targets {
        let _ = writeln!(script, "bb-probe tcp {t} --timeout-ms 500");
        let _ = writeln!(
            script,
            "curl -sS -m 2 --noproxy '*' -o /dev/null -w '%{{http_code}}\\n' http://{t}/ || true"
        );
    }
    script.push_str("echo '== dns'\n");
    let _ = writeln!(script, "getent hosts {nonce}-sys.example; echo getent=$?");
    let _ = writeln!(
        script,
        "dig +tries=1 +time=1 @127.0.0.11 {nonce}-docker.example | grep -E 'status|ANSWER' "
    );
    for h in hosts.iter().chain(std::iter::once(&"$gw".to_owned())) {
        let _ = writeln!(
            script,
            "dig +tries=1 +time=1 @{h} {nonce}-direct.example >/dev/null; echo dig-{h}=$?"
        );
        let _ = writeln!(
            script,
            "dig +tcp +tries=1 +time=1 @{h} {nonce}-tcp.example >/dev/null; echo digtcp-{h}=$?"
        );
    }
    script.push_str("echo '== whoami'; id -un\necho '== end'\n");
    let (code, out, err, took) = run(
        &f,
        &["start", "deb", "--yes", "--", "/bin/bash", "-c", &script],
    );
    eprintln!("launch + run took {took:?}\nstdout:\n{out}\nstderr:\n{err}");
    assert_eq!(code, 0, "{out}{err}");
    // Every way out is checked and every one found is reported at once.
    let mut open = Vec::new();
    let route = section(&out, "route");
    if route.contains("default") {
        open.push(format!("the agent has a default route:\n{route}"));
    }
    if section(&out, "addr").contains("inet6") {
        open.push(format!("the agent has IPv6:\n{}", section(&out, "addr")));
    }
    for line in section(&out, "tcp")
        .lines()
        .chain(section(&out, "gw").lines())
        .filter(|l| l.contains("connected") || l.trim().parse::<u16>().is_ok_and(|c| c > 0))
    {
        open.push(format!("a host listener answered: {line}"));
    }
    if !section(&out, "whoami").contains("agent") {
        open.push(format!("not the image's user: {}", section(&out, "whoami")));
    }
    // Give late packets a moment, then: nothing reached the host.
    std::thread::sleep(Duration::from_millis(500));
    let agent_ips: Vec<std::net::IpAddr> = section(&out, "addr")
        .lines()
        .filter_map(|l| l.trim().strip_prefix("inet "))
        .filter_map(|a| a.split('/').next()?.parse().ok())
        .filter(|ip: &std::net::IpAddr| !ip.is_loopback())
        .collect();
    open.extend(
        tap.seen_from(&agent_ips)
            .into_iter()
            .map(|hit| format!("the host saw: {hit}")),
    );
    assert!(
        open.is_empty(),
        "the bottle is open ({} finding(s)):\n{}",
        open.len(),
        open.join("\n")
    );
    assert_eq!(leftovers_after_teardown(&f, "deb"), Vec::<String>::new());
}

/// Every address of bottle `slug`'s containers (the agent has one of its
/// own where it has no network holder).
fn addresses(slug: &str) -> Vec<String> {
    let mut out = Vec::new();
    for c in ["net", "bundle", "agent"].map(|part| format!("bb-{slug}-{part}")) {
        let found = docker(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            &c,
        ]);
        let ips = String::from_utf8_lossy(&found.stdout);
        out.extend(ips.split_whitespace().map(str::to_owned));
    }
    out
}

#[test]
fn two_bottles_stay_apart_and_a_group_sigint_runs_the_agents_trap() {
    if !ready() {
        return;
    }
    let f = fixture("pair");
    let (mut a, slug_a) = start_sleeping(&f, "pair-a");
    // B's agent traps SIGINT; its bot-bottle leads its own process group,
    // as a shell would make it.
    let script =
        "trap 'echo TRAPPED; exit 5' INT; echo ready; while :; do /bin/busybox sleep 0.2; done";
    let b = bot_bottle(
        &f,
        &[
            "start",
            "e2e",
            "--yes",
            "--label",
            "pair-b",
            "--",
            "/bin/busybox",
            "sh",
            "-c",
            script,
        ],
    )
    .process_group(0)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let slug_b = wait_running(&f, "pair-b");

    // A cannot reach any of B's addresses, nor B's bundle ports.
    let b_addrs = addresses(&slug_b);
    assert!(!b_addrs.is_empty());
    // What is wrong is collected, so one run reports every finding.
    let mut wrong = Vec::new();
    for ip in &b_addrs {
        for port in ["9099", "53", "22"] {
            let out = docker(&[
                "exec",
                &format!("bb-{slug_a}-agent"),
                "/bin/bb-probe",
                "tcp",
                &format!("{ip}:{port}"),
                "--timeout-ms",
                "500",
            ]);
            let text = String::from_utf8_lossy(&out.stdout);
            if text.contains("connected") {
                wrong.push(format!("A reached B at {ip}:{port}: {text}"));
            }
        }
    }

    // Ctrl-C as a terminal would send it: SIGINT to B's whole group.
    let pid = b.id();
    let status = Command::new("kill")
        .args(["-INT", "--", &format!("-{pid}")])
        .status()
        .unwrap();
    assert!(status.success());
    let out = b.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if out.status.code() != Some(130) {
        wrong.push(format!(
            "an interrupted run exits 130, not {:?}\nstdout:\n{stdout}\nstderr:\n{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    if !stdout.contains("TRAPPED") {
        wrong.push(format!("the agent's trap did not run:\n{stdout}"));
    }
    let left = leftovers_after_teardown(&f, "pair-b");
    if !left.is_empty() {
        wrong.push(format!("B left {left:?}"));
    }

    // A is untouched, and SIGTERM to its bot-bottle alone exits 143.
    assert!(
        !bottle_leftovers(&f, "pair-a").is_empty(),
        "{}",
        wrong.join("\n")
    );
    Command::new("kill")
        .args(["-TERM", &a.id().to_string()])
        .status()
        .unwrap();
    let status = a.wait().unwrap();
    if status.code() != Some(143) {
        wrong.push(format!(
            "SIGTERM to A's bot-bottle: exit {:?}, not 143",
            status.code()
        ));
    }
    let left = leftovers_after_teardown(&f, "pair-a");
    if !left.is_empty() {
        wrong.push(format!("A left {left:?}"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// One measured launch of the Debian agent running `date`: total time to
/// the exit status, time to the agent's command, time until the detached
/// teardown left nothing, and the launch's phase lines.
struct Launch {
    total: f64,
    to_command: f64,
    teardown: f64,
    phases: String,
}

fn measured_launch(f: &Fixture) -> Launch {
    let nanos = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    };
    let began = nanos();
    let start = Instant::now();
    let out = bot_bottle(
        f,
        &[
            "start",
            "deb",
            "--yes",
            "--label",
            "timing",
            "--",
            "/bin/date",
            "+%s%N",
        ],
    )
    .env("BOT_BOTTLE_TIMING", "1")
    .output()
    .unwrap();
    let total = start.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    let ran: u128 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let exited = Instant::now();
    assert_eq!(leftovers_after_teardown(f, "timing"), Vec::<String>::new());
    #[allow(clippy::cast_precision_loss)]
    let to_command = (ran - began) as f64 / 1e9;
    Launch {
        total,
        to_command,
        teardown: exited.elapsed().as_secs_f64(),
        phases: err
            .lines()
            .filter_map(|l| l.strip_prefix("timing "))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// Launch time of the Debian agent: cold (this launch's bundle and agent
/// images removed first) and warm (10 runs). Not part of the suite (it
/// removes images and measures, asserting nothing about time); run with
/// `cargo test -p bot-bottle --test docker_e2e launch_timing -- --ignored --nocapture`.
#[test]
#[ignore = "measurement: removes this launch's cached images"]
fn launch_timing() {
    if !ready() {
        return;
    }
    let _ = bb_testkit::debian::image();
    let f = fixture("timing");
    // A first launch names the images it uses (its phase line); exactly
    // those are removed for the cold one.
    let first = measured_launch(&f);
    // `  images BUNDLE AGENT: 0.123s`
    let images: Vec<String> = first
        .phases
        .lines()
        .find_map(|l| l.trim().strip_prefix("images "))
        .unwrap_or_default()
        .split_whitespace()
        .filter(|t| t.starts_with("bot-bottle-"))
        .map(|t| t.trim_end_matches(':').to_owned())
        .collect();
    assert_eq!(images.len(), 2, "{}", first.phases);
    for image in &images {
        docker_ok(&["rmi", image]);
    }
    let cold = measured_launch(&f);
    let mut warm: Vec<Launch> = (0..10).map(|_| measured_launch(&f)).collect();
    warm.sort_by(|a, b| a.total.total_cmp(&b.total));
    let stats = |pick: fn(&Launch) -> f64| {
        let mut v: Vec<f64> = warm.iter().map(pick).collect();
        v.sort_by(f64::total_cmp);
        format!("{:.2}/{:.2}/{:.2}", v[0], v[v.len() / 2], v[v.len() - 1])
    };
    eprintln!(
        "LAUNCH-TIMING (Debian agent, `date`) cold: total {:.2}s, to the agent's command {:.2}s, teardown done {:.2}s after exit\n\
         LAUNCH-TIMING warm (min/median/max of {}): total {}s, to the agent's command {}s, teardown done {}s after exit\n\
         phases of the median warm launch:\n{}",
        cold.total,
        cold.to_command,
        cold.teardown,
        warm.len(),
        stats(|l| l.total),
        stats(|l| l.to_command),
        stats(|l| l.teardown),
        warm[warm.len() / 2].phases
    );
}

#[test]
fn sigterm_to_bot_bottle_stops_the_agent_and_tears_down() {
    if !ready() {
        return;
    }
    let f = fixture("term");
    let (mut launch, _slug) = start_sleeping(&f, "term");
    let status = Command::new("kill")
        .args(["-TERM", &launch.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_mins(1);
    while launch.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "bot-bottle did not end after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(leftovers_after_teardown(&f, "term"), Vec::<String>::new());
}

/// `bot-bottle supervise list --json` until it holds a proposal not in
/// `seen`; returns it.
fn wait_proposal(f: &Fixture, seen: &[String]) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_mins(3);
    loop {
        let (code, out, err, _) = run(f, &["supervise", "list", "--json"]);
        assert_eq!(code, 0, "{err}");
        let list: serde_json::Value = serde_json::from_str(&out).unwrap();
        if let Some(p) = list
            .as_array()
            .unwrap()
            .iter()
            .find(|p| !seen.iter().any(|s| p["id"] == s.as_str()))
        {
            return p.clone();
        }
        assert!(Instant::now() < deadline, "no new proposal arrived: {out}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Agent `sup`: the busybox agent in a bottle with supervise on (the
/// default) and no routes.
fn sup_agent(f: &Fixture) {
    write(
        &f.home.join(".bot-bottle/bottles/sup.md"),
        "---\nagent_provider:\n  template: e2e\n---\n",
    );
    write(
        &f.home.join(".bot-bottle/agents/sup.md"),
        "---\nbottle: sup\n---\nYou are a supervise test.\n",
    );
}

/// The agent of the supervise e2e (busybox sh, MCP over busybox wget):
/// refused, asks with `allow`, waits until the host answers, asks for a
/// second host and waits for that proposal's answer with
/// `proposal-status`, then tries the second host.
fn supervise_agent_script() -> String {
    let allowed = r"routes:\n  - host: upstream.test\n    allow_private: true\n";
    let also =
        r"routes:\n  - host: upstream.test\n    allow_private: true\n  - host: rejected.test\n";
    format!(
        r#"mcp() {{ /bin/busybox wget -q -Y off -O - --header 'Content-Type: application/json' --header 'Accept: application/json, text/event-stream' --header 'MCP-Protocol-Version: 2025-06-18' --post-data "$1" http://supervise:9100/mcp; }}
echo '== refused'; /bin/bb-probe https https://upstream.test/hello; echo; echo rc=$?
echo '== init'; mcp '{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"e2e","version":"1"}}}}}}'; echo
mcp '{{"jsonrpc":"2.0","method":"notifications/initialized"}}' >/dev/null 2>&1
echo '== allow'; mcp '{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"allow","arguments":{{"routes_yaml":"{allowed}","justification":"the e2e upstream serves /hello"}}}}}}'; echo
echo '== allowed'
i=0; while [ $i -lt 240 ]; do out=$(/bin/bb-probe https https://upstream.test/hello); case "$out" in *status=200*) break;; esac; i=$((i+1)); sleep 0.5; done; echo "$out"
echo '== second'; second=$(mcp '{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"allow","arguments":{{"routes_yaml":"{also}","justification":"and rejected.test"}}}}}}'); echo "$second"
id=$(echo "$second" | /bin/busybox sed -n 's/.*Proposal \([0-9a-f-]*\).*/\1/p')
echo '== second-status'
i=0; while [ $i -lt 6 ]; do st=$(mcp "{{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{{\"name\":\"proposal-status\",\"arguments\":{{\"id\":\"$id\",\"wait_seconds\":30}}}}}}"); case "$st" in *rejected*) break;; esac; i=$((i+1)); done; echo "$st"
echo '== rejected-host'; /bin/bb-probe https https://rejected.test/; echo; echo rc=$?
echo '== end'
"#
    )
}

/// The life of a proposal through the real bundle: the agent is refused a
/// host, asks for it with `allow` over MCP (busybox wget, JSON-RPC), the
/// operator approves with `bot-bottle supervise approve`, egress reloads
/// (SIGHUP through bb-init) and the agent's next request reaches the
/// upstream. A second proposal, rejected, changes nothing and the agent
/// reads the rejection with `proposal-status`. The audit log verifies.
#[test]
fn an_approved_allow_opens_the_host_live_and_a_rejected_one_changes_nothing() {
    if !ready() {
        return;
    }
    let f = fixture("sup");
    sup_agent(&f);
    let script = supervise_agent_script();
    let launch = bot_bottle(
        &f,
        &[
            "start",
            "sup",
            "--yes",
            "--",
            "/bin/busybox",
            "sh",
            "-c",
            &script,
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();

    // The operator: approve the first proposal.
    let first = wait_proposal(&f, &[]);
    assert_eq!(first["tool"], "allow", "{first}");
    let slug = first["bottle_slug"].as_str().unwrap().to_owned();
    let first_id = first["id"].as_str().unwrap().to_owned();
    let (code, out, err, took) = run(&f, &["supervise", "approve", &first_id, "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["status"], "approved", "{answer}");
    assert!(
        answer["notes"]
            .as_str()
            .unwrap()
            .contains("egress reloaded"),
        "{answer}"
    );
    eprintln!("approve with a live egress reload took {took:?}");
    let routes_file = f
        .home
        .join(".bot-bottle/state")
        .join(&slug)
        .join("routes.yaml");
    let live = std::fs::read_to_string(&routes_file).unwrap();
    assert!(live.contains("upstream.test"), "{live}");

    // Reject the second: the live routes stay as they are.
    let second = wait_proposal(&f, std::slice::from_ref(&first_id));
    let second_id = second["id"].as_str().unwrap().to_owned();
    let (code, out, err, _) = run(
        &f,
        &[
            "supervise",
            "reject",
            &second_id,
            "--reason",
            "rejected.test is not needed",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(std::fs::read_to_string(&routes_file).unwrap(), live);

    let done = launch.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&done.stdout).into_owned();
    let err = String::from_utf8_lossy(&done.stderr).into_owned();
    assert_eq!(
        done.status.code(),
        Some(0),
        "stdout:\n{out}\nstderr:\n{err}"
    );
    assert!(section(&out, "refused").contains("status=403"), "{out}");
    assert!(section(&out, "allow").contains(&first_id), "{out}");
    assert!(section(&out, "allowed").contains("status=200"), "{out}");
    assert!(section(&out, "second-status").contains("rejected"), "{out}");
    assert!(
        section(&out, "second-status").contains("rejected.test is not needed"),
        "{out}"
    );
    assert!(
        section(&out, "rejected-host").contains("status=403"),
        "{out}"
    );
    let logs = docker_ok(&["logs", &f.upstream]);
    assert!(logs.contains("path=/hello"), "{logs}");

    // Two decisions, one chain that verifies.
    let (code, out, err, _) = run(&f, &["supervise", "verify", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["entries"], 2, "{v}");
    assert_eq!(leftovers_after_teardown(&f, "sup"), Vec::<String>::new());
}

/// An approval egress refuses to load (here: a route whose token the
/// bundle was never given) leaves the old routes running and on disk, the
/// bundle up, and the proposal `failed` with egress's reason. The bottle
/// has no supervise server: the operator side needs only the queue.
#[test]
fn a_reload_egress_refuses_keeps_the_old_routes_and_fails_the_proposal() {
    if !ready() {
        return;
    }
    let f = fixture("refuse");
    let (mut launch, slug) = start_sleeping(&f, "refuse");
    let state = f.home.join(".bot-bottle/state").join(&slug);
    let live = std::fs::read_to_string(state.join("routes.yaml")).unwrap();
    let bad = "routes:\n  - host: more.test\n    auth_scheme: Bearer\n    token_env: EGRESS_TOKEN_NOT_IN_THE_BUNDLE\n";
    let proposal = bb_supervise::Proposal::new(
        &slug,
        bb_supervise::Tool::Allow,
        bad.into(),
        "more.test needs a token".into(),
        Some(&live),
    )
    .unwrap();
    bb_supervise::Queue::open(state.join("queue"))
        .unwrap()
        .submit(&proposal)
        .unwrap();
    let (code, out, err, _) = run(
        &f,
        &["supervise", "approve", proposal.id.as_str(), "--json"],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer["status"], "failed", "{answer}");
    let notes = answer["notes"].as_str().unwrap();
    assert!(
        notes.contains("egress refused") && notes.contains("EGRESS_TOKEN_NOT_IN_THE_BUNDLE"),
        "{notes}"
    );
    assert_eq!(
        std::fs::read_to_string(state.join("routes.yaml")).unwrap(),
        live,
        "the old routes are put back"
    );
    assert!(!state.join("supervise/routes.yaml").exists());
    let running = docker_ok(&[
        "container",
        "inspect",
        "--format",
        "{{.State.Running}}",
        &format!("bb-{slug}-bundle"),
    ]);
    assert_eq!(running.trim(), "true", "the reload signal stopped nothing");
    let (code, out, err, _) = run(&f, &["supervise", "verify", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("\"entries\":1"), "{out}");

    let status = Command::new("kill")
        .args(["-TERM", &launch.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_mins(1);
    while launch.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "bot-bottle did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(leftovers_after_teardown(&f, "refuse"), Vec::<String>::new());
}

/// Queues a proposal in `slug`'s queue as its server would and approves
/// it with `bot-bottle supervise approve --json`; returns the answer.
fn queue_and_approve(
    f: &Fixture,
    slug: &str,
    tool: bb_supervise::Tool,
    file: &str,
    current: Option<&str>,
) -> String {
    let state = f.home.join(".bot-bottle/state").join(slug);
    let p = bb_supervise::Proposal::new(slug, tool, file.into(), "e2e".into(), current).unwrap();
    bb_supervise::Queue::open(state.join("queue"))
        .unwrap()
        .submit(&p)
        .unwrap();
    let (code, out, err, _) = run(f, &["supervise", "approve", p.id.as_str(), "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    out
}

/// Proposals approved while their bottle is stopped (committed) are kept,
/// and `resume` applies them: the approved routes (the host the bottle was
/// launched without is reachable) and the approved `capability-block`
/// Dockerfile (the agent is rebuilt from it, not booted from the commit).
#[test]
fn approvals_for_a_stopped_bottle_apply_on_resume() {
    if !ready() {
        return;
    }
    let f = fixture("resup");
    sup_agent(&f);
    let script = "while [ ! -e /work/stop ]; do /bin/busybox sleep 0.2; done";
    let first = bot_bottle(
        &f,
        &[
            "start",
            "sup",
            "--yes",
            "--label",
            "resup",
            "--",
            "/bin/busybox",
            "sh",
            "-c",
            script,
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let slug = wait_running(&f, "resup");
    let agent_image = docker_ok(&[
        "container",
        "inspect",
        "--format",
        "{{.Config.Image}}",
        &format!("bb-{slug}-agent"),
    ]);
    let (code, out, err, _) = run(&f, &["commit", &slug]);
    assert_eq!(code, 0, "commit: {out}{err}");
    docker_ok(&[
        "exec",
        &format!("bb-{slug}-agent"),
        "/bin/busybox",
        "touch",
        "/work/stop",
    ]);
    assert!(first.wait_with_output().unwrap().status.success());
    assert_eq!(
        engine_leftovers_after_teardown(&f, "resup"),
        Vec::<String>::new()
    );

    let state = f.home.join(".bot-bottle/state").join(&slug);
    let live = std::fs::read_to_string(state.join("routes.yaml")).unwrap();
    let out = queue_and_approve(
        &f,
        &slug,
        bb_supervise::Tool::Allow,
        "routes:\n  - host: upstream.test\n    allow_private: true\n",
        Some(&live),
    );
    assert!(out.contains("not running"), "{out}");

    let dockerfile = format!(
        "FROM {}\nRUN [\"/bin/busybox\", \"touch\", \"/capability-added\"]\n",
        agent_image.trim()
    );
    let out = queue_and_approve(
        &f,
        &slug,
        bb_supervise::Tool::CapabilityBlock,
        &dockerfile,
        None,
    );
    assert!(out.contains("resume"), "{out}");

    let (code, out, err, _) = run(
        &f,
        &[
            "resume",
            &slug,
            "--yes",
            "--",
            "/bin/busybox",
            "sh",
            "-c",
            "/bin/bb-probe https https://upstream.test/hello; echo; /bin/busybox ls /capability-added",
        ],
    );
    assert_eq!(code, 0, "resume: {out}{err}");
    assert!(err.contains("approved in `bot-bottle supervise`"), "{err}");
    assert!(
        err.contains("rebuilding the agent from the Dockerfile"),
        "{err}"
    );
    assert!(out.contains("status=200"), "{out}\n{err}");
    assert!(out.contains("/capability-added"), "{out}\n{err}");
    assert!(
        state.join("supervise/image/Dockerfile.applied").is_file(),
        "the Dockerfile is used once"
    );
    let (code, out, err, _) = run(&f, &["rm-snapshot", &slug, "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// Runs `ssh-keygen` for an ed25519 key pair at `path` (and `path.pub`).
fn keygen(path: &Path) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (apt-get install openssh-client)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes a container of the test's own when dropped.
struct Gone(String);

impl Drop for Gone {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.0]);
    }
}

/// The git gate end to end: the Debian agent (real `git`) clones and pushes
/// through the gate to an sshd + git upstream container of ours. A clean
/// push arrives, a push carrying a token-shaped secret does not, and the
/// push key is nowhere in the agent's reach.
#[test]
#[allow(clippy::too_many_lines)] // one scenario, read top to bottom
fn a_push_through_the_gate_lands_clean_and_a_secret_never_does() {
    if !ready() {
        return;
    }
    let _ = bb_testkit::debian::image();
    let f = fixture("gate");
    let keys = f.tmp.path().join("gate-keys");
    std::fs::create_dir_all(&keys).unwrap();
    keygen(&keys.join("hostkey"));
    keygen(&keys.join("push_key"));
    let host_pub = std::fs::read_to_string(keys.join("hostkey.pub")).unwrap();
    let push_priv = std::fs::read_to_string(keys.join("push_key")).unwrap();
    // A distinctive line of the private key: what scan-fs looks for.
    let needle = push_priv.lines().nth(2).unwrap().to_owned();
    let hex: String = needle.bytes().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    });

    // The upstream: sshd + a bare repo with one commit, root by key only.
    let name = format!("bb-e2e-gitup-{}", std::process::id());
    let _ = docker(&["rm", "-f", &name]);
    let setup = "set -e; mkdir -p /run/sshd /root/.ssh; \
        cp /keys/push_key.pub /root/.ssh/authorized_keys; chmod 700 /root/.ssh; \
        chmod 600 /root/.ssh/authorized_keys; cp /keys/hostkey /etc/ssh/gate_host; \
        chmod 600 /etc/ssh/gate_host; git init -q --bare -b main /srv/app.git; \
        git init -q -b main /tmp/w; cd /tmp/w; \
        git -c user.name=u -c user.email=u@e commit -q --allow-empty -m init; \
        git push -q /srv/app.git main; \
        exec /usr/sbin/sshd -D -e -h /etc/ssh/gate_host -o PermitRootLogin=prohibit-password \
        -o PasswordAuthentication=no -o StrictModes=no";
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--network",
        &f.network,
        "--network-alias",
        "gitup.test",
        "-v",
        &format!("{}:/keys:ro", keys.display()),
        &bb_testkit::debian::image(),
        "/bin/bash",
        "-c",
        setup,
    ]);
    let _gone = Gone(name.clone());
    let up_log = || {
        let o = docker(&["logs", &name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let head = |r: &str| {
        let o = docker(&[
            "exec",
            &name,
            "git",
            "--git-dir=/srv/app.git",
            "log",
            "--format=%s",
            r,
        ]);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    // Wait for the bare repo and sshd.
    let start = Instant::now();
    while !head("main").contains("init") {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "upstream never came up:\n{}",
            up_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let host_key = host_pub
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    write(
        &f.home.join(".bot-bottle/bottles/gate.md"),
        &format!(
            "---\nagent_provider:\n  template: deb\nsupervise: false\ngit-gate:\n  user:\n    name: E2E Bot\n    email: e2e@example.com\n  repos:\n    app:\n      url: ssh://root@gitup.test:22/srv/app.git\n      key:\n        provider: static\n        path: {}\n      host_key: \"{host_key}\"\n---\n",
            keys.join("push_key").display()
        ),
    );
    write(
        &f.home.join(".bot-bottle/agents/gate.md"),
        "---\nbottle: gate\n---\n",
    );
    let secret = format!("ghp_{}", "Zq7T2mK9xW4bN8vR3cL6pY1sD5fH0jG2aE9u");
    let script = format!(
        "cd /tmp && git clone -q ssh://root@gitup.test:22/srv/app.git app; echo clone=$?\n\
         cd /tmp/app\n\
         echo hello > a.txt && git add a.txt && git commit -qm clean-change && git push -q origin HEAD:main 2>&1; echo clean=$?\n\
         echo \"token = {secret}\" > b.txt && git add b.txt && git commit -qm secret-change\n\
         echo '== push'; git push origin HEAD:main 2>&1; echo secret=$?\n\
         echo '== scan'; bb-probe scan-fs {hex} /; echo rc=$?\n\
         echo '== end'\n"
    );
    let (code, out, err, took) = run(
        &f,
        &["start", "gate", "--yes", "--", "/bin/bash", "-c", &script],
    );
    eprintln!("launch + run took {took:?}\nstdout:\n{out}\nstderr:\n{err}");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("clone=0"),
        "{out}{err}\nupstream:\n{}",
        up_log()
    );
    assert!(out.contains("clean=0"), "{out}{err}");
    assert_eq!(head("main").lines().next(), Some("clean-change"));
    let push = section(&out, "push");
    assert!(out.contains("secret=1"), "{push}");
    assert!(
        push.contains("github"),
        "the refusal names the rule: {push}"
    );
    assert!(
        !push.contains(&secret),
        "the refusal shows the secret: {push}"
    );
    assert!(!head("main").contains("secret-change"));
    let scan = section(&out, "scan");
    assert!(scan.contains("clean") && scan.contains("rc=0"), "{scan}");
    assert_eq!(leftovers_after_teardown(&f, "gate"), Vec::<String>::new());
}
