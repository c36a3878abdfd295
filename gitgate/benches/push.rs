//! Push benchmark: the same large history pushed straight to the sshd
//! upstream and through the gate, in one run. Prints the gate's overhead
//! ratio, the content it scanned per second and its peak memory.
//!
//! `cargo bench -p bb-gitgate --bench push` (size with `BB_BENCH_PUSH_MB`,
//! default 64, and `BB_BENCH_PUSH_COMMITS`, default 1000; pairs of pushes
//! with `BB_BENCH_PUSH_RUNS`, default 3, the median ratio reported). The history is
//! made with `git fast-import`: source-like text files, each commit
//! rewriting a few, so the pack has real deltas and every commit a diff.
//!
//! The gate's own log (on this harness's stdout) splits its part: the
//! `push scanned` line has each step's wall and CPU time (`index_ms`,
//! `index_cpu_ms`, `scan_ms`, `scan_cpu_ms`, `refresh_ms`; `bytes` over
//! `scan_cpu_ms` is the per-core scan rate), `push forwarded` the time
//! until the upstream's report.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    reason = "a benchmark harness"
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Deterministic source-like text: identifiers, punctuation, indentation.
fn text(seed: &mut u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "let", "fn", "match", "self", "value", "buffer", "offset", "return", "Some", "None",
        "config", "parse", "error", "stream", "len", "index", "push", "iter", "map", "into",
    ];
    let mut out = Vec::with_capacity(len + 80);
    while out.len() < len {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let indent = (*seed % 4) as usize * 4;
        out.extend(std::iter::repeat_n(b' ', indent));
        for i in 0..(3 + *seed % 8) {
            let w = WORDS[((*seed >> (i * 5)) % WORDS.len() as u64) as usize];
            out.extend_from_slice(w.as_bytes());
            out.extend_from_slice(if i % 3 == 2 { b"(" } else { b" " });
        }
        out.extend_from_slice(format!("{};\n", *seed % 100_000).as_bytes());
    }
    out
}

/// Builds `commits` commits of about `total` bytes of new content in `work`.
fn make_history(work: &Path, commits: usize, total: usize) {
    common::git_ok(work, &["init", "-q", "-b", "main"]);
    let mut child = Command::new("git")
        .args(["fast-import", "--quiet"])
        .current_dir(work)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let per_commit = total / commits.max(1);
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for c in 0..commits {
        let cmd = format!(
            "commit refs/heads/main\ncommitter Bench <b@example.invalid> {} +0000\ndata 12\ncommit {c:05}\n",
            1_700_000_000 + c
        );
        // Each commit continues the branch: fast-import's default.
        stdin.write_all(cmd.as_bytes()).unwrap();
        // Four files a commit, out of 200 paths: new files and rewrites.
        for f in 0..4 {
            let path = format!("src/m{}/f{}.rs", (c * 4 + f) % 20, (c * 7 + f) % 200);
            let data = text(&mut seed, per_commit / 4);
            stdin
                .write_all(format!("M 100644 inline {path}\ndata {}\n", data.len()).as_bytes())
                .unwrap();
            stdin.write_all(&data).unwrap();
            stdin.write_all(b"\n").unwrap();
        }
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    common::git_ok(work, &["checkout", "-q", "main"]);
}

fn timed_push(work: &Path, args: &[&str], env: &[(&str, String)]) -> Duration {
    let start = Instant::now();
    let out = Command::new("git")
        .args(["push", "-q"])
        .args(args)
        .current_dir(work)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .unwrap();
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "push failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing
    // useful either: this harness only runs as a bench.
    if !std::env::args().any(|a| a == "--bench") {
        println!("push bench: run with `cargo bench -p bb-gitgate --bench push`");
        return;
    }
    let mb = env_num("BB_BENCH_PUSH_MB", 64);
    let commits = env_num("BB_BENCH_PUSH_COMMITS", 1000);
    let s = common::sshd();
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    make_history(work, commits, mb << 20);

    // Each run pushes the history twice, to fresh upstreams: straight
    // with git's own ssh to the same sshd, and through the gate. Runs
    // alternate which goes first (the first push warms the page cache
    // for the second), and the median ratio is the figure: on a shared
    // 2-core machine one pair of pushes varied from 1.2x to 1.6x.
    let runs = env_num("BB_BENCH_PUSH_RUNS", 3).max(1);
    let bare = |name: &str| {
        let path = s.dir.path().join("repos").join(format!("{name}.git"));
        common::git_ok(
            s.dir.path(),
            &["init", "-q", "--bare", path.to_str().unwrap()],
        );
        path
    };
    let pairs: Vec<(String, String)> = (0..runs)
        .map(|_| (common::unique("bench-direct"), common::unique("bench-gate")))
        .collect();
    let gated_names: Vec<&str> = pairs.iter().map(|(_, g)| g.as_str()).collect();
    let gate = common::gate(
        &gated_names,
        "max_pack_bytes: 4294967296\n",
        &[("EGRESS_TOKEN_BENCH", "bench-known-secret-0123456789abcdef")],
    );
    let ssh = format!(
        "ssh -i {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -p {}",
        s.client_key.display(),
        s.port
    );
    let (stop, sampler) = common::sample_peak_anon(gate.pid(), Duration::from_millis(10));
    let mut results = Vec::new();
    for (run, (direct, gated)) in pairs.iter().enumerate() {
        let direct_bare = bare(direct);
        let gated_bare = bare(gated);
        let direct_url = format!(
            "ssh://{}@127.0.0.1:{}{}",
            s.user,
            s.port,
            direct_bare.display()
        );
        let push_direct = || {
            timed_push(
                work,
                &[&direct_url, "main"],
                &[("GIT_SSH_COMMAND", ssh.clone())],
            )
        };
        let push_gated = || timed_push(work, &[&gate.url(gated), "main"], &[]);
        let (direct_time, gate_time) = if run % 2 == 0 {
            let d = push_direct();
            (d, push_gated())
        } else {
            let g = push_gated();
            (push_direct(), g)
        };
        assert_eq!(
            common::rev(&gated_bare, "main"),
            common::rev(&direct_bare, "main")
        );
        let ratio = gate_time.as_secs_f64() / direct_time.as_secs_f64();
        println!(
            "  run {} ({} first): direct {:.2} s, gate {:.2} s, ratio {ratio:.2}x",
            run + 1,
            if run % 2 == 0 { "direct" } else { "gate" },
            direct_time.as_secs_f64(),
            gate_time.as_secs_f64()
        );
        results.push((ratio, direct_time, gate_time));
    }
    stop.store(true, Ordering::Relaxed);
    let peak_anon = sampler.join().unwrap();
    let hwm = gate.status_bytes("VmHWM");
    results.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (ratio, direct_time, gate_time) = results[results.len() / 2];
    let content = (mb << 20) as f64;
    println!("push bench: {commits} commits, {mb} MiB of new content, median of {runs} run(s)");
    println!("  direct to sshd : {:>8.2} s", direct_time.as_secs_f64());
    println!("  through gate   : {:>8.2} s", gate_time.as_secs_f64());
    println!(
        "  overhead ratio : {ratio:>8.2}x (runs: {})",
        results
            .iter()
            .map(|r| format!("{:.2}", r.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  content / gate wall time : {:>8.1} MB/s",
        content / 1e6 / gate_time.as_secs_f64()
    );
    println!(
        "  gate peak RssAnon {} MiB, VmHWM {} MiB",
        peak_anon >> 20,
        hwm >> 20
    );
}
