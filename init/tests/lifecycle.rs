//! Lifecycle: signals forwarded, one daemon's end brings the others down
//! with its code, stubborn daemons are killed after the grace period,
//! orphans are reaped, and the egress tokens reach egress alone.

mod support;

use std::fs;
use std::path::Path;

use nix::sys::signal::Signal;
use support::{IDLE, Root, Stream, TIMEOUT};

/// A daemon that says it is ready and exits 0 on `SIGTERM`, saying so.
fn obedient(name: &str) -> String {
    format!(
        "trap 'echo \"{name} got TERM\"; exit 0' TERM\n\
         echo '{name} ready'\n\
         {IDLE}"
    )
}

/// Whether `line` is `[init] <name> (pid N) <rest>`.
fn init_says(line: &str, name: &str, rest: &str) -> bool {
    line.strip_prefix(&format!("[init] {name} (pid "))
        .and_then(|tail| tail.split_once(") "))
        .is_some_and(|(pid, tail)| pid.parse::<u32>().is_ok() && tail == rest)
}

#[test]
fn sigterm_is_forwarded_and_a_clean_stop_exits_0() {
    let root = Root::new();
    root.script("bb-egress", &obedient("egress"));
    // No trap: dies of the forwarded SIGTERM itself, which counts as clean.
    // This is also the check that daemons do not inherit bb-init's blocked
    // signal mask: if they did, `sleep` would ignore SIGTERM.
    root.script("bb-supervise", "echo 'supervise ready'\nexec sleep 1000");
    let mut init = root.start(&["egress", "supervise"], &[]);
    init.wait_for(Stream::Stdout, "[egress] egress ready");
    init.wait_for(Stream::Stdout, "[supervise] supervise ready");
    init.signal(Signal::SIGTERM);
    let done = init.finish();
    assert_eq!(done.code, Some(0), "{done:#?}");
    done.assert_line(Stream::Stdout, "[egress] egress got TERM");
    done.assert_line(
        Stream::Stderr,
        "[init] received SIGTERM; stopping the daemons",
    );
    done.assert_line_where(Stream::Stderr, "saying egress exited 0", |line| {
        init_says(line, "egress", "exited with code 0")
    });
    done.assert_line_where(Stream::Stderr, "saying supervise died of SIGTERM", |line| {
        init_says(line, "supervise", "was killed by SIGTERM")
    });
    done.assert_line(Stream::Stderr, "[init] exiting with code 0");
}

#[test]
fn sighup_is_forwarded_and_does_not_stop_anything() {
    let root = Root::new();
    root.script(
        "bb-egress",
        &format!(
            "n=0\n\
             trap 'n=$((n+1)); echo \"egress reload $n\"' HUP\n\
             trap 'exit 0' TERM\n\
             echo 'egress ready'\n\
             {IDLE}"
        ),
    );
    let mut init = root.start(&["egress"], &[]);
    init.wait_for(Stream::Stdout, "[egress] egress ready");
    init.signal(Signal::SIGHUP);
    init.wait_for(Stream::Stdout, "[egress] egress reload 1");
    // Still supervising: a second reload reaches the same daemon.
    init.signal(Signal::SIGHUP);
    init.wait_for(Stream::Stdout, "[egress] egress reload 2");
    init.signal(Signal::SIGTERM);
    let done = init.finish();
    assert_eq!(done.code, Some(0), "{done:#?}");
    done.assert_line(
        Stream::Stderr,
        "[init] received SIGHUP; forwarding (reload)",
    );
}

#[test]
fn sighup_reaches_only_egress_so_a_daemon_without_a_reload_survives_it() {
    // `bot-bottle supervise` reloads egress with SIGHUP to the bundle; the
    // supervise server (and git-gate) have no reload, and SIGHUP's default
    // action would kill them, and with them the bundle.
    let root = Root::new();
    root.script(
        "bb-egress",
        &format!(
            "trap 'echo \"egress reload\"' HUP\n\
             trap 'exit 0' TERM\n\
             echo 'egress ready'\n\
             {IDLE}"
        ),
    );
    root.script("bb-supervise", "echo 'supervise ready'\nexec sleep 1000");
    let mut init = root.start(&["egress", "supervise"], &[]);
    init.wait_for(Stream::Stdout, "[egress] egress ready");
    init.wait_for(Stream::Stdout, "[supervise] supervise ready");
    init.signal(Signal::SIGHUP);
    init.wait_for(Stream::Stdout, "[egress] egress reload");
    init.signal(Signal::SIGTERM);
    let done = init.finish();
    assert_eq!(done.code, Some(0), "{done:#?}");
    done.assert_line_where(Stream::Stderr, "saying supervise died of SIGTERM", |line| {
        init_says(line, "supervise", "was killed by SIGTERM")
    });
}

#[test]
fn a_failing_daemon_brings_the_others_down_with_its_code() {
    let root = Root::new();
    let ready = root.join("egress-ready");
    let ready = ready.display();
    root.script(
        "bb-egress",
        &format!(
            "trap 'echo \"egress stopped by init\"; exit 0' TERM\n\
             touch '{ready}'\n\
             {IDLE}"
        ),
    );
    // Fails once egress is up, so egress's trap is certainly set.
    root.script(
        "bb-supervise",
        &format!("while [ ! -e '{ready}' ]; do sleep 0.05; done\necho 'supervise failing'\nexit 3"),
    );
    let done = root.run(&["egress", "supervise"]);
    assert_eq!(done.code, Some(3), "{done:#?}");
    // Two readers copy these lines, so their order on stdout is not fixed.
    done.assert_line(Stream::Stdout, "[supervise] supervise failing");
    done.assert_line(Stream::Stdout, "[egress] egress stopped by init");
    done.assert_line_where(Stream::Stderr, "saying supervise exited 3", |line| {
        init_says(line, "supervise", "exited with code 3")
    });
    done.assert_line(
        Stream::Stderr,
        "[init] supervise is gone; stopping the others (fail closed)",
    );
    done.assert_line(Stream::Stderr, "[init] exiting with code 3");
}

#[test]
fn an_unrequested_clean_exit_is_a_failure() {
    let root = Root::new();
    root.script("bb-egress", &obedient("egress"));
    root.script("bb-gitgate", "exit 0");
    let done = root.run(&["egress", "git-gate"]);
    assert_eq!(done.code, Some(70), "{done:#?}");
    done.assert_line_where(Stream::Stderr, "saying git-gate exited 0", |line| {
        init_says(line, "git-gate", "exited with code 0")
    });
}

#[test]
fn a_daemon_killed_by_a_signal_gives_128_plus_the_signal() {
    let root = Root::new();
    root.script("bb-egress", "kill -KILL $$");
    let done = root.run(&["egress"]);
    assert_eq!(done.code, Some(128 + 9), "{done:#?}");
    done.assert_line_where(Stream::Stderr, "saying egress was killed", |line| {
        init_says(line, "egress", "was killed by SIGKILL")
    });
}

#[test]
fn daemons_ignoring_sigterm_are_killed_after_the_grace_period() {
    let root = Root::new();
    root.script(
        "bb-egress",
        &format!("trap '' TERM\necho 'egress ready'\n{IDLE}"),
    );
    let mut init = root.start(&["egress"], &[]);
    init.wait_for(Stream::Stdout, "[egress] egress ready");
    init.signal(Signal::SIGTERM);
    let done = init.finish();
    assert_eq!(done.code, Some(128 + 9), "{done:#?}");
    done.assert_line_where(Stream::Stderr, "announcing the SIGKILL", |line| {
        init_says(line, "egress", "still running after 10 s; sending SIGKILL")
    });
}

#[test]
fn egress_tokens_reach_egress_only() {
    const SECRET: &str = "s3cr3t-value-never-printed";
    let root = Root::new();
    // Each daemon reports whether the variables are set, never their values.
    for (binary, name) in [
        ("bb-egress", "egress"),
        ("bb-gitgate", "git-gate"),
        ("bb-supervise", "supervise"),
    ] {
        root.script(
            binary,
            &format!(
                "trap 'exit 0' TERM\n\
                 if [ -n \"${{EGRESS_TOKEN_GITEA+x}}\" ]; then echo '{name} token set'; else echo '{name} token unset'; fi\n\
                 if [ -n \"${{OTHER_SETTING+x}}\" ]; then echo '{name} other set'; fi\n\
                 echo '{name} ready'\n\
                 {IDLE}"
            ),
        );
    }
    let env = [("EGRESS_TOKEN_GITEA", SECRET), ("OTHER_SETTING", "x")];
    let mut init = root.start(&["egress", "git-gate", "supervise"], &env);
    for name in ["egress", "git-gate", "supervise"] {
        init.wait_for(Stream::Stdout, &format!("[{name}] {name} ready"));
    }
    init.signal(Signal::SIGTERM);
    let done = init.finish();
    assert_eq!(done.code, Some(0), "{done:#?}");
    done.assert_line(Stream::Stdout, "[egress] egress token set");
    done.assert_line(Stream::Stdout, "[git-gate] git-gate token unset");
    done.assert_line(Stream::Stdout, "[supervise] supervise token unset");
    for name in ["egress", "git-gate", "supervise"] {
        done.assert_line(Stream::Stdout, &format!("[{name}] {name} other set"));
    }
    let everything = [done.stdout.as_slice(), done.stderr.as_slice()].concat();
    assert!(
        everything.iter().all(|line| !line.contains(SECRET)),
        "a token value was printed"
    );
}

/// The pid's parent, from `/proc/<pid>/stat`, or `None` once it is gone.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces, so cut at the last ')'.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn orphans_are_adopted_and_reaped() {
    if !Path::new("/proc/self/stat").exists() {
        eprintln!("skipped: no /proc to watch the orphan in");
        return;
    }
    let root = Root::new();
    let release = root.join("release-orphan");
    // A subshell starts a helper in the background and exits at once: the
    // helper is re-parented to bb-init (PID 1 in the image, a subreaper
    // here), and must be reaped when it ends, or it stays a zombie.
    root.script(
        "bb-egress",
        &format!(
            "trap 'exit 0' TERM\n\
             (sh -c 'while [ ! -e \"$1\" ]; do sleep 0.05; done' orphan '{}' >/dev/null 2>&1 & echo \"orphan $!\")\n\
             {IDLE}",
            release.display()
        ),
    );
    let mut init = root.start(&["egress"], &[]);
    let init_pid = u32::try_from(init.pid().as_raw()).expect("positive pid");
    let line = init.wait_for_where(Stream::Stdout, "naming the orphan", |line| {
        line.starts_with("[egress] orphan ")
    });
    let orphan: u32 = line["[egress] orphan ".len()..]
        .parse()
        .expect("orphan pid");
    wait_until("bb-init adopts the orphan", || {
        parent_of(orphan) == Some(init_pid)
    });
    fs::write(&release, "").expect("release the orphan");
    // A zombie keeps its /proc entry: gone means reaped.
    wait_until("the orphan is reaped", || parent_of(orphan).is_none());
    init.signal(Signal::SIGTERM);
    let done = init.finish();
    assert_eq!(done.code, Some(0), "{done:#?}");
}

#[test]
fn the_git_gate_gets_token_values_on_stdin_only() {
    const SECRET: &str = "s3cr3t-value-for-the-gate";
    let root = Root::new();
    // The gate compares what its stdin holds with the expected records and
    // says only whether they matched; supervise's stdin must be empty.
    root.script(
        "bb-gitgate",
        &format!(
            "trap 'exit 0' TERM\n\
             got=$(tr '\\000' '\\n')\n\
             if [ \"$got\" = 'EGRESS_TOKEN_GITEA={SECRET}' ]; then echo 'git-gate records ok'; else echo 'git-gate records wrong'; fi\n\
             case \"$*\" in *--secrets-stdin*) echo 'git-gate flag ok';; esac\n\
             echo 'git-gate ready'\n\
             {IDLE}"
        ),
    );
    root.script(
        "bb-supervise",
        &format!(
            "trap 'exit 0' TERM\n\
             if [ -z \"$(cat)\" ]; then echo 'supervise stdin empty'; fi\n\
             echo 'supervise ready'\n\
             {IDLE}"
        ),
    );
    let env = [("EGRESS_TOKEN_GITEA", SECRET), ("OTHER_SETTING", "x")];
    let mut init = root.start(&["git-gate", "supervise"], &env);
    for name in ["git-gate", "supervise"] {
        init.wait_for(Stream::Stdout, &format!("[{name}] {name} ready"));
    }
    init.signal(Signal::SIGTERM);
    let done = init.finish();
    assert_eq!(done.code, Some(0), "{done:#?}");
    done.assert_line(Stream::Stdout, "[git-gate] git-gate records ok");
    done.assert_line(Stream::Stdout, "[git-gate] git-gate flag ok");
    done.assert_line(Stream::Stdout, "[supervise] supervise stdin empty");
    let everything = [done.stdout.as_slice(), done.stderr.as_slice()].concat();
    assert!(
        everything.iter().all(|line| !line.contains(SECRET)),
        "a token value was printed"
    );
}
