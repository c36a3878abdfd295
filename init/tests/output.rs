//! Daemon output: each line prefixed with `[name] `, stdout to stdout and
//! stderr to stderr, partial tails flushed, long lines chunked, and lines of
//! concurrent daemons never mixed.

mod support;

use nix::sys::signal::Signal;
use support::{IDLE, Root, Stream};

#[test]
fn stdout_and_stderr_lines_are_prefixed_separately() {
    let root = Root::new();
    root.script(
        "bb-egress",
        "echo 'out one'\n\
         echo 'err one' >&2\n\
         echo 'out two'\n\
         printf 'err tail' >&2\n\
         printf 'out tail'\n\
         exit 3",
    );
    let done = root.run(&["egress"]);
    assert_eq!(done.code, Some(3), "{done:#?}");
    assert_eq!(
        done.stdout,
        ["[egress] out one", "[egress] out two", "[egress] out tail"]
    );
    assert_eq!(
        done.lines_of(Stream::Stderr, "[egress] "),
        ["[egress] err one", "[egress] err tail"]
    );
    // bb-init's own lines go to stderr only.
    done.assert_line_where(
        Stream::Stderr,
        "starting with [init] started egress",
        |line| line.starts_with("[init] started egress (pid "),
    );
}

#[test]
fn long_lines_come_out_in_16_kib_chunks() {
    let root = Root::new();
    root.script(
        "bb-egress",
        "head -c 40000 /dev/zero | tr '\\0' a\necho\necho after\nexit 1",
    );
    let done = root.run(&["egress"]);
    assert_eq!(done.code, Some(1), "{done:#?}");
    let chunk = |len| format!("[egress] {}", "a".repeat(len));
    assert_eq!(
        done.stdout,
        [
            chunk(16384),
            chunk(16384),
            chunk(40000 - 2 * 16384),
            "[egress] after".to_owned(),
        ]
    );
}

#[test]
fn lines_of_concurrent_daemons_never_interleave() {
    const LINES: usize = 2000;
    let root = Root::new();
    for (binary, name) in [("bb-egress", "egress"), ("bb-supervise", "supervise")] {
        root.script(
            binary,
            &format!(
                "trap 'exit 0' TERM\n\
                 pad=0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnopqrstuvwxyz\n\
                 i=0\n\
                 while [ $i -lt {LINES} ]; do echo \"{name} $i $pad$pad\"; i=$((i+1)); done\n\
                 echo '{name} done'\n\
                 {IDLE}"
            ),
        );
    }
    let mut init = root.start(&["egress", "supervise"], &[]);
    init.wait_for(Stream::Stdout, "[egress] egress done");
    init.wait_for(Stream::Stdout, "[supervise] supervise done");
    init.signal(Signal::SIGTERM);
    let done = init.finish();
    assert_eq!(done.code, Some(0), "{done:#?}");

    let pad = "0123456789abcdefghijklmnopqrstuvwxyz".repeat(4);
    for name in ["egress", "supervise"] {
        let prefix = format!("[{name}] ");
        let mut expected: Vec<String> = (0..LINES)
            .map(|i| format!("{prefix}{name} {i} {pad}"))
            .collect();
        expected.push(format!("{prefix}{name} done"));
        assert_eq!(done.lines_of(Stream::Stdout, &prefix), expected);
    }
    assert_eq!(done.stdout.len(), 2 * (LINES + 1), "stray or mixed lines");
}
