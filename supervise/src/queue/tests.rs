#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;

fn queue() -> (tempfile::TempDir, Queue) {
    let tmp = tempfile::tempdir().unwrap();
    let q = Queue::open(tmp.path().join("queue")).unwrap();
    (tmp, q)
}

fn routes_proposal() -> Proposal {
    Proposal::new(
        "dev-39f9ff",
        Tool::Allow,
        "routes:\n  - host: example.com\n".into(),
        "needs example.com for the docs".into(),
        Some("routes: []\n"),
    )
    .unwrap()
}

#[test]
fn open_creates_private_folders() {
    let (_tmp, q) = queue();
    for dir in [q.dir().to_owned(), q.dir().join(PROCESSED_DIR)] {
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
}

#[test]
fn submit_then_pending_then_respond_archives_the_pair() {
    let (_tmp, q) = queue();
    let p = routes_proposal();
    q.submit(&p).unwrap();
    let file = q.dir().join(format!("{}{PROPOSAL_SUFFIX}", p.id));
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let pending = q.pending();
    assert_eq!(pending.proposals, vec![p.clone()]);
    assert!(pending.problems.is_empty(), "{:?}", pending.problems);
    assert_eq!(q.response(&p.id).unwrap(), None);

    let r = Response::new(
        &p,
        Status::Approved,
        String::new(),
        Some(p.proposed_file.clone()),
        "op",
    )
    .unwrap();
    q.respond(&r).unwrap();
    assert!(q.pending().proposals.is_empty());
    assert!(!file.exists());
    assert!(q.dir().join(PROCESSED_DIR).join(file_name(&file)).exists());
    assert_eq!(q.response(&p.id).unwrap(), Some(r.clone()));
    assert_eq!(q.proposal(&p.id).unwrap(), p);

    // A second answer loses.
    assert!(matches!(
        q.respond(&r),
        Err(QueueError::AlreadyDecided { .. })
    ));
}

#[test]
fn a_duplicate_submission_is_refused_and_changes_nothing() {
    let (_tmp, q) = queue();
    let p = routes_proposal();
    q.submit(&p).unwrap();
    let mut other = p.clone();
    other.justification = "something else".into();
    assert!(matches!(
        q.submit(&other),
        Err(QueueError::Duplicate { .. })
    ));
    assert_eq!(q.proposal(&p.id).unwrap(), p);
}

#[test]
fn racing_deciders_one_wins() {
    let (_tmp, q) = queue();
    let p = routes_proposal();
    q.submit(&p).unwrap();
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let q = q.clone();
                let p = p.clone();
                s.spawn(move || {
                    let r =
                        Response::new(&p, Status::Rejected, format!("no {i}"), None, "op").unwrap();
                    q.respond(&r)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(q.response(&p.id).unwrap().is_some());
}

#[test]
fn gitleaks_allow_rules() {
    let p = Proposal::new(
        "dev-39f9ff",
        Tool::GitleaksAllow,
        "finding 1: ...".into(),
        "git-gate".into(),
        None,
    )
    .unwrap();
    assert_eq!(p.current_file_hash, sha256_hex(p.proposed_file.as_bytes()));
    let no_reason = Response::new(&p, Status::Approved, "  ".into(), None, "op");
    assert!(matches!(
        no_reason,
        Err(QueueError::Invalid { field: "notes", .. })
    ));
    let modified = Response::new(
        &p,
        Status::Modified,
        "fixture".into(),
        Some("x".into()),
        "op",
    );
    assert!(matches!(
        modified,
        Err(QueueError::Invalid {
            field: "status",
            ..
        })
    ));
    assert!(Response::new(&p, Status::Approved, "test fixture".into(), None, "op").is_ok());
    assert!(Response::new(&p, Status::Rejected, String::new(), None, "op").is_err());
}

#[test]
fn malformed_and_foreign_files_are_reported_and_skipped() {
    let (_tmp, q) = queue();
    let good = routes_proposal();
    q.submit(&good).unwrap();
    let d = q.dir();
    fs::write(d.join("broken.proposal.json"), b"{ not json").unwrap();
    fs::write(d.join("notes.txt"), b"hello").unwrap();
    fs::write(d.join(".half.tmp"), b"{").unwrap(); // a writer's temp file: silent
    let mut wrong_id = routes_proposal();
    wrong_id.id = ProposalId::parse("other").unwrap();
    fs::write(d.join("mismatch.proposal.json"), to_json(&wrong_id)).unwrap();
    let mut extra: serde_json::Value = serde_json::to_value(routes_proposal()).unwrap();
    extra["id"] = "extra".into();
    extra["run"] = "rm -rf /".into();
    fs::write(
        d.join("extra.proposal.json"),
        serde_json::to_vec(&extra).unwrap(),
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d.join("link.proposal.json")).unwrap();
    fs::write(d.join("bad id!.response.json"), b"{}").unwrap();

    let pending = q.pending();
    assert_eq!(pending.proposals, vec![good]);
    let mut names: Vec<_> = pending
        .problems
        .iter()
        .map(|p| p.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "bad id!.response.json",
            "broken.proposal.json",
            "extra.proposal.json",
            "link.proposal.json",
            "mismatch.proposal.json",
            "notes.txt"
        ]
    );
    let link = pending
        .problems
        .iter()
        .find(|p| p.path.ends_with("link.proposal.json"))
        .unwrap();
    assert!(link.why.contains("symlink"), "{}", link.why);
}

#[test]
fn a_malformed_response_is_an_error_not_a_wait() {
    let (_tmp, q) = queue();
    let p = routes_proposal();
    q.submit(&p).unwrap();
    fs::write(
        q.dir().join(format!("{}{RESPONSE_SUFFIX}", p.id)),
        b"{\"status\": 7}",
    )
    .unwrap();
    assert!(matches!(
        q.response(&p.id),
        Err(QueueError::Malformed { .. })
    ));
}

#[test]
fn errors_never_echo_file_contents() {
    let (_tmp, q) = queue();
    let secret = "ghp_Zq8Xw2Lk5Vn7Bm4Hj6Gf3Ds1Ap9Oi0Uy2Tr5";
    fs::write(
        q.dir().join("x.proposal.json"),
        format!("{{\"id\": \"x\", \"tool\": \"{secret}\"}}"),
    )
    .unwrap();
    fs::write(
        q.dir().join("y.proposal.json"),
        format!("{{\"id\": {secret}}}"),
    )
    .unwrap();
    let pending = q.pending();
    assert_eq!(pending.problems.len(), 2);
    for problem in &pending.problems {
        assert!(!problem.to_string().contains(secret), "{problem}");
    }
}

#[test]
fn ids_cannot_name_paths() {
    for bad in ["", "../x", "a/b", "a.b", "x".repeat(65).as_str(), "é"] {
        assert!(ProposalId::parse(bad).is_err(), "{bad:?}");
    }
    let mut p = routes_proposal();
    p.id = ProposalId("../escape".into());
    // Even a hand-built id is checked when read back.
    let json = serde_json::to_string(&p).unwrap();
    assert!(serde_json::from_str::<Proposal>(&json).is_err());
}

#[test]
fn bounds_are_enforced_on_submit() {
    let (_tmp, q) = queue();
    let mut p = routes_proposal();
    p.proposed_file = "x".repeat(MAX_PROPOSED_FILE_BYTES + 1);
    assert!(matches!(
        q.submit(&p),
        Err(QueueError::Invalid {
            field: "proposed_file",
            ..
        })
    ));
    let mut p = routes_proposal();
    p.bottle_slug = "Not A Slug".into();
    assert!(q.submit(&p).is_err());
    assert!(q.pending().proposals.is_empty());
}

fn arb_tool() -> impl Strategy<Value = Tool> {
    prop::sample::select(Tool::ALL.to_vec())
}

proptest! {
    #[test]
    fn proposals_round_trip_through_the_queue(
        tool in arb_tool(),
        file in ".{0,200}",
        why in ".{0,200}",
    ) {
        let (_tmp, q) = queue();
        let p = Proposal::new("b-1", tool, file, why, None).unwrap();
        q.submit(&p).unwrap();
        prop_assert_eq!(q.pending().proposals, vec![p.clone()]);
        prop_assert_eq!(q.proposal(&p.id).unwrap(), p);
    }

    #[test]
    fn arbitrary_bytes_in_a_queue_file_never_panic_nor_list(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let (_tmp, q) = queue();
        fs::write(q.dir().join("z.proposal.json"), &bytes).unwrap();
        fs::write(q.dir().join("z.response.json"), &bytes).unwrap();
        let pending = q.pending();
        // Random bytes are never a valid proposal for id "z" with a response.
        prop_assert!(pending.proposals.is_empty());
        let _ = q.response(&ProposalId::parse("z").unwrap());
    }
}
