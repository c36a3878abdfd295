//! Fuzzes the audit log's chain reader (`bb_supervise::audit`).
//!
//! Two modes, by the first byte:
//! - even: the rest is a whole log handed to `check_chain`. Nothing
//!   panics, and a log it accepts is exactly its entries' lines again
//!   (nothing fixed up), numbered 1..n, each `prev` the hash before it.
//! - odd: the rest is split at 0x00 bytes into decision reasons; a real
//!   log is appended with them in a temp folder and must verify; then one
//!   byte (position and value from the input) is changed, and the log must
//!   no longer verify, whatever the byte.

#![no_main]

use bb_supervise::audit::{AuditLog, Decision, Entry, GENESIS, check_chain};
use bb_supervise::{ProposalId, Status, Tool};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        if let Ok(v) = check_chain(rest) {
            let again: Vec<u8> = v.entries.iter().flat_map(Entry::line).collect();
            assert_eq!(again, rest, "an accepted log is its entries' lines");
            let mut prev = GENESIS.to_owned();
            for (i, e) in v.entries.iter().enumerate() {
                assert_eq!(e.seq, i as u64 + 1);
                assert_eq!(e.prev, prev);
                prev = e.hash();
            }
            assert_eq!(v.head_hash, prev);
        }
        return;
    }
    if rest.len() < 3 {
        return;
    }
    let (pos, rest) = rest.split_at(2);
    let (byte, rest) = (rest[0], &rest[1..]);
    let tmp = tempfile::tempdir().unwrap();
    let log = AuditLog::new(tmp.path());
    for (i, reason) in rest.split(|&b| b == 0).take(8).enumerate() {
        log.append(Decision {
            who: "fuzz".into(),
            bottle: "fuzz-bottle".into(),
            id: ProposalId::parse(&format!("p{i}")).unwrap(),
            tool: Tool::Allow,
            status: Status::Rejected,
            reason: String::from_utf8_lossy(reason).into_owned(),
            diff: String::new(),
            final_file_hash: None,
        })
        .unwrap();
    }
    log.verify().unwrap();
    let mut bytes = std::fs::read(log.log_path()).unwrap();
    let at = usize::from(u16::from_le_bytes([pos[0], pos[1]])) % bytes.len();
    if bytes[at] == byte {
        return;
    }
    bytes[at] = byte;
    std::fs::write(log.log_path(), &bytes).unwrap();
    assert!(log.verify().is_err(), "a one-byte edit at {at} verified");
});
