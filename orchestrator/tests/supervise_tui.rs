//! The supervise TUI in a real terminal: `bot-bottle supervise` runs in a
//! tmux session on a private server socket, keys go in with `send-keys`,
//! the screen comes back with `capture-pane -p` and is asserted. The
//! bottles are not running (the harness's docker does not exist), so an
//! approval writes the routes for the next resume.
//!
//! Needs `tmux` (installed by `.ci/run`); without it the test says so and
//! passes, except under `BB_E2E_REQUIRE_DOCKER=1` (CI), where it fails.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "tests")]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bb_supervise::queue::{Proposal, Queue, Status, Tool};
use support::{Env, write};

const LIVE: &str = "routes:\n  - host: api.example\n";

struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux")
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "tui"];
        args.extend(keys);
        assert!(self.cmd(&args).status.success());
    }

    fn text(&self, text: &str) {
        assert!(
            self.cmd(&["send-keys", "-t", "tui", "-l", text])
                .status
                .success()
        );
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "tui"]).stdout).into_owned()
    }

    /// Waits until the screen shows every needle.
    #[track_caller]
    fn wait_for(&self, needles: &[&str]) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen();
            if needles.iter().all(|n| screen.contains(n)) {
                return screen;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the screen never showed {needles:?}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

fn tmux_available() -> bool {
    let found = Command::new("tmux").arg("-V").output().is_ok();
    if !found {
        let required = std::env::var("BB_E2E_REQUIRE_DOCKER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "BB_E2E_REQUIRE_DOCKER=1 but tmux is not installed"
        );
        eprintln!("SKIP: tmux is not installed; the supervise TUI test needs it");
    }
    found
}

fn bottle(env: &Env, slug: &str, label: &str, color: &str) -> (PathBuf, Queue) {
    let state = env.home.join(".bot-bottle/state").join(slug);
    write(&state.join("routes.yaml"), LIVE);
    write(
        &state.join("bottle.json"),
        format!(r#"{{"slug":"{slug}","agent":"dev","label":"{label}","color":"{color}"}}"#),
    );
    (state.clone(), Queue::open(state.join("queue")).unwrap())
}

fn propose(queue: &Queue, slug: &str, host: &str, why: &str) -> Proposal {
    let p = Proposal::new(
        slug,
        Tool::Allow,
        format!("{LIVE}  - host: {host}\n"),
        why.into(),
        Some(LIVE),
    )
    .unwrap();
    queue.submit(&p).unwrap();
    // Arrival times order the list; keep them apart.
    std::thread::sleep(Duration::from_millis(20));
    p
}

fn start(env: &Env, editor: &Path) -> Tmux {
    let socket = env.home.join("tmux.sock");
    let tmux = Tmux { socket };
    let command = format!(
        "env -i HOME='{}' PATH='{}' TERM=xterm-256color USER=tui-operator EDITOR='{}' BOT_BOTTLE_DOCKER='{}' '{}' supervise; echo \"bot-bottle exited $?\"; sleep 60",
        env.home.display(),
        std::env::var("PATH").unwrap_or_default(),
        editor.display(),
        env.home.join("no-such-docker").display(),
        env!("CARGO_BIN_EXE_bot-bottle"),
    );
    let out = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "tui",
        "-x",
        "160",
        "-y",
        "45",
        &command,
    ]);
    assert!(out.status.success(), "{out:?}");
    tmux
}

#[test]
fn approve_modify_and_reject_in_the_tui() {
    if !tmux_available() {
        return;
    }
    let env = Env::empty();
    let (front_state, front) = bottle(&env, "front-a1b2c3", "frontend", "green");
    let (back_state, back) = bottle(&env, "back-d4e5f6", "backend", "magenta");
    let p_old = propose(&back, "back-d4e5f6", "old.example", "needs old.example");
    let p_mid = propose(&front, "front-a1b2c3", "mid.example", "needs mid.example");
    let p_new = propose(&front, "front-a1b2c3", "new.example", "needs new.example");
    // The editor appends a route to whatever it is given.
    let editor = env.home.join("editor.sh");
    write(
        &editor,
        "#!/bin/sh\nprintf '  - host: edited.example\\n' >> \"$1\"\n",
    );
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let tmux = start(&env, &editor);
    // Newest first, each with its bottle's label; the diff of the selected
    // (the newest) below.
    let screen = tmux.wait_for(&["3 pending", "frontend", "backend", "+  - host: new.example"]);
    let row = |needle: &str| {
        screen
            .lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no row {needle}:\n{screen}"))
    };
    assert!(row("needs new.example") < row("needs mid.example"));
    assert!(row("needs mid.example") < row("needs old.example"));

    // Approve the newest.
    tmux.keys(&["a"]);
    tmux.wait_for(&["approved", "not running", "2 pending"]);
    let r = front.response(&p_new.id).unwrap().expect("answered");
    assert_eq!(r.status, Status::Approved);
    assert_eq!(r.decided_by, "tui-operator");
    let routes = std::fs::read_to_string(front_state.join("routes.yaml")).unwrap();
    assert!(routes.contains("new.example"), "{routes}");

    // Modify the next (now selected: mid) in $EDITOR, then approve. It
    // was made against the routes.yaml the approval just replaced, so it
    // is marked stale and approving it asks first.
    tmux.wait_for(&["+  - host: mid.example", "[stale]"]);
    tmux.keys(&["m"]);
    tmux.wait_for(&["approve anyway? y/n"]);
    tmux.keys(&["y"]);
    tmux.wait_for(&["modified", "1 pending"]);
    let r = front.response(&p_mid.id).unwrap().expect("answered");
    assert_eq!(r.status, Status::Modified);
    let routes = std::fs::read_to_string(front_state.join("routes.yaml")).unwrap();
    assert!(
        routes.contains("mid.example") && routes.contains("edited.example"),
        "{routes}"
    );

    // A proposal that arrives while the TUI runs shows up by itself.
    let p_late = propose(&back, "back-d4e5f6", "late.example", "needs late.example");
    tmux.wait_for(&["2 pending", "needs late.example"]);

    // Reject the old one with a reason: select it (the bottom row).
    tmux.keys(&["Down"]);
    tmux.wait_for(&["+  - host: old.example"]);
    tmux.keys(&["r"]);
    tmux.wait_for(&["reason for rejecting:"]);
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["a reason is required"]);
    tmux.text("old.example is not needed");
    tmux.keys(&["Enter"]);
    tmux.wait_for(&["rejected", "1 pending"]);
    let r = back.response(&p_old.id).unwrap().expect("answered");
    assert_eq!(r.status, Status::Rejected);
    assert_eq!(r.notes, "old.example is not needed");
    assert_eq!(
        std::fs::read_to_string(back_state.join("routes.yaml")).unwrap(),
        LIVE,
        "a rejection changes nothing"
    );
    assert!(back.response(&p_late.id).unwrap().is_none());

    tmux.keys(&["q"]);
    tmux.wait_for(&["bot-bottle exited 0"]);
    // Three decisions, one audit chain.
    let out = env.run(&["supervise", "verify", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["entries"], 3, "{out:?}");
}
