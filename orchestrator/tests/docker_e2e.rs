//! End to end on a real Docker engine: `bot-bottle start --yes -- CMD`
//! launches a bottle whose agent is a `FROM scratch` image (Debian's
//! busybox-static plus `bb-probe`), and an HTTPS test upstream of ours
//! (`bb-testupstream`, test CA) sits on the bundle's outer network.
//!
//! Runs whenever a Docker engine answers; says loudly when it skips. With
//! `BB_E2E_REQUIRE_DOCKER=1` (set by `.ci/run`) a missing engine or
//! busybox is a failure instead.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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
    let mut c = Command::new(env!("CARGO_BIN_EXE_bot-bottle"));
    c.args(args)
        .current_dir(f.tmp.path().join("project"))
        .env("HOME", &f.home)
        .env("E2E_UPSTREAM_TOKEN", UPSTREAM_TOKEN)
        .env("BOT_BOTTLE_BUNDLE_BIN_DIR", &f.bins)
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
        left.extend(entries.flatten().map(|e| e.path().display().to_string()));
    }
    left
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
    assert_eq!(bottle_leftovers(&f, "e2e"), Vec::<String>::new());

    // Warm cache: the same launch again, for the timing.
    let (code, _, err, warm) = run(&f, &["start", "e2e", "--yes", "--", "/bin/busybox", "true"]);
    assert_eq!(code, 0, "{err}");
    eprintln!(
        "E2E-TIMING cold={:.2}s warm={:.2}s",
        cold.as_secs_f64(),
        warm.as_secs_f64()
    );
    assert_eq!(bottle_leftovers(&f, "e2e"), Vec::<String>::new());
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
    let left: Vec<String> = bottle_leftovers(&f, "snap")
        .into_iter()
        .filter(|l| !l.contains("/.bot-bottle/state/"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    // With the snapshot gone, resume says so and boots a rebuilt image.
    docker_ok(&["rmi", &format!("bot-bottle-commit/{slug}:latest")]);
    let (code, out, err, _) = run(
        &f,
        &["resume", &slug, "--yes", "--", "/bin/busybox", "true"],
    );
    assert_eq!(code, 0, "resume without the image: {out}{err}");
    assert!(err.contains("is gone; rebuilding"), "{err}");
}

/// Waits until `list active` shows a running bottle whose slug starts with
/// `prefix`; returns its slug.
fn wait_running(f: &Fixture, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_mins(3);
    loop {
        let (_, out, _, _) = run(f, &["list", "active"]);
        if let Some(line) = out
            .lines()
            .find(|l| l.starts_with(&format!("{prefix}-")) && l.ends_with("running"))
        {
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
    assert_eq!(bottle_leftovers(&f, "half"), Vec::<String>::new());
    // The token went to docker by name only, never as a value on argv.
    let argv = std::fs::read_to_string(&argv_log).unwrap();
    assert!(argv.contains("-e EGRESS_TOKEN_UPSTREAM_TOKEN"), "{argv}");
    assert!(
        !argv.contains(UPSTREAM_TOKEN),
        "a token value was on a docker command line"
    );
}

#[test]
fn doctor_checks_isolation_and_cleanup_removes_what_a_killed_launch_left() {
    if !ready() {
        return;
    }
    let f = fixture("clean");
    let (mut launch, slug) = start_sleeping(&f, "killed");

    // doctor inspects the running bottle's isolation.
    let (_, out, err, _) = run(&f, &["doctor"]);
    let line = out
        .lines()
        .find(|l| l.contains(&format!("isolation of {slug}")))
        .unwrap_or_else(|| panic!("{out}{err}"));
    assert!(line.starts_with("ok"), "{line}");

    // bot-bottle dies without tearing down; the agent then stops.
    launch.kill().unwrap();
    let _ = launch.wait();
    docker_ok(&["stop", "-t", "1", &format!("bb-{slug}-agent")]);
    assert!(!bottle_leftovers(&f, "killed").is_empty());

    // Without a terminal, cleanup previews and asks for --yes.
    let (code, out, err, _) = run(&f, &["cleanup"]);
    assert_ne!(code, 0);
    assert!(
        out.contains(&format!("bb-{slug}-agent")) && err.contains("--yes"),
        "{out}{err}"
    );
    assert!(
        !bottle_leftovers(&f, "killed").is_empty(),
        "nothing is removed without --yes"
    );
    let (code, out, err, _) = run(&f, &["cleanup", "--yes"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(bottle_leftovers(&f, "killed"), Vec::<String>::new());
}

/// Launch time, cold (bundle and agent images removed first) and warm.
/// Not part of the suite (it removes cached images); run with
/// `cargo test -p bot-bottle --test docker_e2e launch_timing -- --ignored --nocapture`.
#[test]
#[ignore = "measurement: removes cached images"]
fn launch_timing() {
    if !ready() {
        return;
    }
    let f = fixture("timing");
    let images = docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    for image in images
        .lines()
        .filter(|i| i.starts_with("bot-bottle-bundle:") || i.starts_with("bot-bottle-agent-e2e:"))
    {
        docker_ok(&["rmi", "-f", image]);
    }
    let args = [
        "start",
        "e2e",
        "--yes",
        "--label",
        "timing",
        "--",
        "/bin/busybox",
        "true",
    ];
    let (code, _, err, cold) = run(&f, &args);
    assert_eq!(code, 0, "{err}");
    let mut warm = Vec::new();
    for _ in 0..5 {
        let (code, _, err, took) = run(&f, &args);
        assert_eq!(code, 0, "{err}");
        warm.push(took.as_secs_f64());
    }
    warm.sort_by(f64::total_cmp);
    eprintln!(
        "LAUNCH-TIMING cold={:.2}s warm(min/median/max of 5)={:.2}/{:.2}/{:.2}s",
        cold.as_secs_f64(),
        warm[0],
        warm[2],
        warm[4]
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
    assert_eq!(bottle_leftovers(&f, "term"), Vec::<String>::new());
}
