//! Fuzzes the proposal queue's file reader (`bb_supervise::Queue`).
//!
//! Queue files come from a folder a sidecar that handles agent input can
//! write, so the reader must treat them as hostile. The input is split at
//! its first 0xFF byte (when present) into a proposal file and a response
//! file for the id `fuzz-1`, both written into a real queue folder.
//! Invariants:
//! - nothing panics;
//! - a proposal the reader returns (from `pending` or `proposal`) passes
//!   `Proposal::validate`, carries the id of its file name, and is exactly
//!   what plain serde reads from the file (nothing is invented or fixed
//!   up); a file that does not parse or validate is reported as a problem
//!   and never returned;
//! - a response the reader returns carries the right id and its bounds
//!   hold; a malformed response is an error, never `None` and never a
//!   decision;
//! - a proposal with a response is not pending;
//! - a valid pending proposal can be answered once, and a second answer is
//!   refused.

#![no_main]

use std::sync::OnceLock;

use bb_supervise::queue::{MAX_TEXT_BYTES, Queue};
use bb_supervise::{Proposal, ProposalId, QueueError, Response, Status};
use libfuzzer_sys::fuzz_target;

fn queue() -> &'static (tempfile::TempDir, Queue) {
    static Q: OnceLock<(tempfile::TempDir, Queue)> = OnceLock::new();
    Q.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path().join("queue")).unwrap();
        (dir, q)
    })
}

fn clear(q: &Queue) {
    for dir in [q.dir().to_owned(), q.dir().join("processed")] {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.file_name() != "processed" {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (_, q) = queue();
    clear(q);
    let (proposal_bytes, response_bytes) = match data.iter().position(|&b| b == 0xFF) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let id = ProposalId::parse("fuzz-1").unwrap();
    std::fs::write(q.dir().join("fuzz-1.proposal.json"), proposal_bytes).unwrap();
    if let Some(r) = response_bytes {
        std::fs::write(q.dir().join("fuzz-1.response.json"), r).unwrap();
    }

    let plain: Option<Proposal> = serde_json::from_slice::<Proposal>(proposal_bytes)
        .ok()
        .filter(|p| p.id == id && p.validate().is_ok());
    let pending = q.pending();
    let read = q.proposal(&id);
    match (&plain, &read) {
        (Some(p), Ok(r)) => assert_eq!(p, r),
        (None, Err(_)) => {}
        (Some(_), Err(e)) => panic!("a valid proposal file was refused: {e}"),
        (None, Ok(r)) => panic!("an invalid proposal file was read: {r:?}"),
    }
    for p in &pending.proposals {
        p.validate().unwrap();
        assert_eq!(p.id, id);
        assert_eq!(Some(p), plain.as_ref());
    }
    if plain.is_none() {
        assert!(pending.proposals.is_empty());
        assert!(!pending.problems.is_empty(), "an invalid file went unreported");
    }

    let response = q.response(&id);
    match (&response, response_bytes) {
        (Ok(None), None) => {}
        (Ok(None), Some(_)) => panic!("a response file was ignored"),
        (Ok(Some(r)), Some(_)) => {
            assert_eq!(r.id, id);
            assert!(r.notes.len() <= MAX_TEXT_BYTES);
            assert!(!pending.proposals.iter().any(|p| p.id == id), "answered yet pending");
        }
        (Ok(Some(_)), None) => panic!("a response appeared from nowhere"),
        (Err(_), _) => {}
    }

    // A valid pending proposal can be answered exactly once.
    if let (Some(p), None) = (&plain, response_bytes) {
        let answer = Response::new(p, Status::Rejected, "fuzz".into(), None, "fuzzer").unwrap();
        q.respond(&answer).unwrap();
        assert!(matches!(
            q.respond(&answer),
            Err(QueueError::AlreadyDecided { .. } | QueueError::NotFound { .. })
        ));
        assert_eq!(q.response(&id).unwrap(), Some(answer));
        assert!(q.pending().proposals.is_empty());
    }
});
