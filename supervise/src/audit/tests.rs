#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

fn decision(n: usize) -> Decision {
    Decision {
        who: "op".into(),
        bottle: "dev-39f9ff".into(),
        id: ProposalId::parse(&format!("p-{n}")).unwrap(),
        tool: Tool::Allow,
        status: if n.is_multiple_of(2) {
            Status::Approved
        } else {
            Status::Rejected
        },
        reason: format!("reason {n} \"quoted\"\nsecond line"),
        diff: unified_diff(
            "routes: []\n",
            &format!("routes:\n  - host: h{n}.example\n"),
            "live",
            "proposed",
        ),
        final_file_hash: n.is_multiple_of(2).then(|| sha256_hex(b"x")),
    }
}

fn log_with(n: usize) -> (tempfile::TempDir, AuditLog) {
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::new(tmp.path().join("audit"));
    for i in 0..n {
        log.append(decision(i)).unwrap();
    }
    (tmp, log)
}

fn problem(e: AuditError) -> Problem {
    match e {
        AuditError::Broken { problem, .. } => problem,
        other => panic!("expected a broken chain, got {other}"),
    }
}

#[test]
fn an_empty_log_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let v = AuditLog::new(tmp.path()).verify().unwrap();
    assert!(v.entries.is_empty());
    assert_eq!(v.head_hash, GENESIS);
}

#[test]
fn appends_chain_and_verify() {
    let (_tmp, log) = log_with(3);
    let v = log.verify().unwrap();
    assert_eq!(v.entries.len(), 3);
    assert_eq!(v.entries[0].prev, GENESIS);
    assert_eq!(v.entries[1].prev, v.entries[0].hash());
    assert_eq!(v.entries[2].prev, v.entries[1].hash());
    assert_eq!(v.head_hash, v.entries[2].hash());
    assert_eq!(v.entries[2].seq, 3);
    assert!(v.entries[0].diff.contains("+  - host: h0.example"));
    assert_eq!(v.entries[1].status, Status::Rejected);
    for f in [LOG_FILE, HEAD_FILE] {
        let mode = fs::metadata(log.dir().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
}

#[test]
fn dropping_the_last_record_is_caught_by_the_head() {
    let (_tmp, log) = log_with(3);
    let text = fs::read_to_string(log.log_path()).unwrap();
    let keep: Vec<&str> = text.lines().take(2).collect();
    fs::write(log.log_path(), format!("{}\n", keep.join("\n"))).unwrap();
    assert_eq!(
        problem(log.verify().unwrap_err()),
        Problem::Truncated { head: 3, log: 2 }
    );
    // And nobody appends to it.
    assert!(matches!(
        log.append(decision(9)).unwrap_err(),
        AuditError::Broken { .. }
    ));
}

#[test]
fn removing_the_head_is_caught() {
    let (_tmp, log) = log_with(2);
    fs::remove_file(log.dir().join(HEAD_FILE)).unwrap();
    assert_eq!(
        problem(log.verify().unwrap_err()),
        Problem::HeadMissing { log: 2 }
    );
}

#[test]
fn a_rewritten_log_of_the_same_length_is_caught_by_the_head() {
    let (_tmp, log) = log_with(2);
    let head = fs::read(log.dir().join(HEAD_FILE)).unwrap();
    // A whole new, internally valid chain of two entries.
    let (_tmp2, other) = log_with(0);
    other.append(decision(5)).unwrap();
    other.append(decision(6)).unwrap();
    fs::copy(other.log_path(), log.log_path()).unwrap();
    fs::write(log.dir().join(HEAD_FILE), head).unwrap();
    assert_eq!(
        problem(log.verify().unwrap_err()),
        Problem::HeadMismatch { count: 2 }
    );
}

#[test]
fn an_interrupted_append_is_reported_then_repaired_by_the_next() {
    let (_tmp, log) = log_with(2);
    let head = fs::read(log.dir().join(HEAD_FILE)).unwrap();
    log.append(decision(2)).unwrap();
    // As if the appender died after the record, before the head.
    fs::write(log.dir().join(HEAD_FILE), head).unwrap();
    assert_eq!(
        problem(log.verify().unwrap_err()),
        Problem::HeadBehind { head: 2, log: 3 }
    );
    log.append(decision(3)).unwrap();
    assert_eq!(log.verify().unwrap().entries.len(), 4);
}

#[test]
fn a_symlinked_log_is_refused() {
    let (tmp, log) = log_with(1);
    let elsewhere = tmp.path().join("elsewhere");
    fs::rename(log.log_path(), &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, log.log_path()).unwrap();
    assert!(log.verify().is_err());
    assert!(log.append(decision(1)).is_err());
}

#[test]
fn concurrent_threads_never_interleave_records() {
    let (_tmp, log) = log_with(0);
    std::thread::scope(|s| {
        for t in 0..4 {
            let dir = log.dir().to_owned();
            s.spawn(move || {
                // Each thread its own handle: flock is per open file.
                let mine = AuditLog::new(dir);
                for i in 0..15 {
                    mine.append(decision(t * 100 + i)).unwrap();
                }
            });
        }
    });
    let v = log.verify().unwrap();
    assert_eq!(v.entries.len(), 60);
}

/// Set in the child processes of the test below.
const CHILD_ENV: &str = "BB_SUPERVISE_AUDIT_TEST_CHILD";

#[test]
fn concurrent_processes_never_interleave_records() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        let log = AuditLog::new(dir);
        for i in 0..20 {
            log.append(decision(i)).unwrap();
        }
        return;
    }
    let (_tmp, log) = log_with(0);
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "audit::tests::concurrent_processes_never_interleave_records",
                    "--test-threads=1",
                ])
                .env(CHILD_ENV, log.dir())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let v = log.verify().unwrap();
    assert_eq!(v.entries.len(), 80, "four processes of twenty appends each");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any change to any one byte of the log is detected.
    #[test]
    fn any_byte_edit_is_detected(n in 1usize..5, pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let (_tmp, log) = log_with(n);
        let mut bytes = fs::read(log.log_path()).unwrap();
        let i = pos.index(bytes.len());
        prop_assume!(bytes[i] != byte);
        bytes[i] = byte;
        fs::write(log.log_path(), &bytes).unwrap();
        prop_assert!(log.verify().is_err());
    }

    /// Cutting the log anywhere short of its end is detected.
    #[test]
    fn any_truncation_is_detected(n in 1usize..5, pos in any::<prop::sample::Index>()) {
        let (_tmp, log) = log_with(n);
        let bytes = fs::read(log.log_path()).unwrap();
        let cut = pos.index(bytes.len());
        fs::write(log.log_path(), &bytes[..cut]).unwrap();
        prop_assert!(log.verify().is_err());
    }

    /// Any reordering of the records, or dropping any one, is detected.
    #[test]
    fn any_reorder_or_drop_is_detected(
        n in 2usize..6,
        perm in any::<u64>(),
        drop in any::<prop::sample::Index>(),
    ) {
        let (_tmp, log) = log_with(n);
        let text = fs::read_to_string(log.log_path()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // A permutation other than the identity, from the seed.
        let mut order: Vec<usize> = (0..n).collect();
        let mut s = perm;
        for i in (1..n).rev() {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            order.swap(i, usize::try_from(s >> 33).unwrap() % (i + 1));
        }
        if order.iter().enumerate().all(|(i, &j)| i == j) {
            order.swap(0, 1);
        }
        let shuffled: String = order.iter().map(|&i| lines[i].to_owned() + "\n").collect();
        fs::write(log.log_path(), shuffled).unwrap();
        prop_assert!(log.verify().is_err(), "reordered {order:?}");

        let d = drop.index(n);
        let dropped: String = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != d)
            .map(|(_, l)| (*l).to_owned() + "\n")
            .collect();
        fs::write(log.log_path(), dropped).unwrap();
        prop_assert!(log.verify().is_err(), "dropped line {}", d + 1);
    }

    /// Whatever bytes the chain checker is handed, it never panics, and it
    /// accepts only what re-serialises to the same bytes.
    #[test]
    fn check_chain_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(v) = check_chain(&bytes) {
            let again: Vec<u8> = v.entries.iter().flat_map(Entry::line).collect();
            prop_assert_eq!(again, bytes);
        }
    }
}
