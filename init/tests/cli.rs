//! The command line: usage and configuration errors exit 64 before any
//! daemon starts, and each daemon gets the argv from the compiled-in table.

mod support;

use support::{IDLE, Root, Stream};

/// An egress that leaves a mark when it runs, so a test can tell it never did.
fn marking_egress(root: &Root) {
    let marker = root.join("egress-ran");
    root.script(
        "bb-egress",
        &format!("touch '{}'\n{IDLE}", marker.display()),
    );
}

#[test]
fn help_prints_usage_and_exits_0() {
    let root = Root::new();
    let done = root.run(&["--help"]);
    assert_eq!(done.code, Some(0), "{done:#?}");
    done.assert_line(Stream::Stdout, "usage: bb-init [--root DIR] DAEMON...");
}

#[test]
fn unknown_daemon_exits_64_naming_it_before_starting_anything() {
    let root = Root::new();
    marking_egress(&root);
    let done = root.run(&["egress", "frobnicator"]);
    assert_eq!(done.code, Some(64), "{done:#?}");
    assert_eq!(
        done.stderr,
        ["[init] error: unknown daemon \"frobnicator\" (known: egress, git-gate, supervise)"]
    );
    assert!(done.stdout.is_empty(), "{done:#?}");
    assert!(!root.join("egress-ran").exists(), "egress was started");
}

#[test]
fn missing_binary_exits_64_naming_daemon_and_path_before_starting_anything() {
    let root = Root::new();
    marking_egress(&root);
    let done = root.run(&["egress", "supervise"]);
    assert_eq!(done.code, Some(64), "{done:#?}");
    let path = root.join("bb/bb-supervise");
    assert_eq!(
        done.stderr,
        [format!(
            "[init] error: daemon \"supervise\": binary {} not found",
            path.display()
        )]
    );
    assert!(!root.join("egress-ran").exists(), "egress was started");
}

#[test]
fn non_executable_binary_exits_64() {
    let root = Root::new();
    root.file("bb/bb-gitgate", "#!/bin/sh\n");
    let done = root.run(&["git-gate"]);
    assert_eq!(done.code, Some(64), "{done:#?}");
    assert_eq!(
        done.stderr,
        [format!(
            "[init] error: daemon \"git-gate\": binary {} not executable",
            root.join("bb/bb-gitgate").display()
        )]
    );
}

#[test]
fn duplicate_or_no_daemon_exits_64() {
    let root = Root::new();
    marking_egress(&root);
    let done = root.run(&["egress", "egress"]);
    assert_eq!(done.code, Some(64), "{done:#?}");
    assert_eq!(
        done.stderr,
        ["[init] error: daemon \"egress\" is named twice"]
    );

    let done = root.run(&[]);
    assert_eq!(done.code, Some(64), "{done:#?}");
    assert_eq!(done.stderr.len(), 1, "{done:#?}");
    assert!(
        done.stderr[0].starts_with("[init] error: no daemon named"),
        "{done:#?}"
    );
    assert!(!root.join("egress-ran").exists(), "egress was started");
}

#[test]
fn upstream_ca_is_passed_only_when_the_file_exists() {
    let root = Root::new();
    // Exits 0 on its own, which bb-init reports as a failure (70).
    root.script("bb-egress", "echo \"args: $*\"");
    let r = root.path().display().to_string();
    let base = format!(
        "[egress] args: --routes {r}/bb/config/routes.yaml --ca {r}/bb/ca --listen 0.0.0.0:9099"
    );

    let done = root.run(&["egress"]);
    assert_eq!(done.code, Some(70), "{done:#?}");
    assert_eq!(done.stdout, std::slice::from_ref(&base));

    root.file("bb/config/upstream-ca.pem", "not really a PEM\n");
    let done = root.run(&["egress"]);
    assert_eq!(done.code, Some(70), "{done:#?}");
    assert_eq!(
        done.stdout,
        [format!(
            "{base} --upstream-ca {r}/bb/config/upstream-ca.pem"
        )]
    );
}

#[test]
fn git_gate_and_supervise_get_their_table_argv() {
    let root = Root::new();
    let ready = root.join("supervise-ready");
    let ready = ready.display();
    root.script(
        "bb-supervise",
        &format!("echo \"args: $*\"\ntouch '{ready}'\n{IDLE}"),
    );
    // Fails only once supervise has printed, so its line is not cut short.
    root.script(
        "bb-gitgate",
        &format!("while [ ! -e '{ready}' ]; do sleep 0.05; done\necho \"args: $*\"\nexit 1"),
    );
    let r = root.path().display().to_string();
    let done = root.run(&["supervise", "git-gate"]);
    assert_eq!(done.code, Some(1), "{done:#?}");
    done.assert_line(
        Stream::Stdout,
        &format!("[supervise] args: --state {r}/bb/state --listen 0.0.0.0:9100 --egress-proxy http://127.0.0.1:9099"),
    );
    done.assert_line(
        Stream::Stdout,
        &format!("[git-gate] args: --config {r}/bb/config/gitgate.yaml --listen 0.0.0.0:9418 --http-listen 0.0.0.0:9420 --secrets-stdin"),
    );
}
