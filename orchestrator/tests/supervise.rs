//! `bot-bottle supervise list|show|approve|reject|verify` against real queue
//! folders in a temp home, for bottles that are not running (the harness's
//! docker does not exist, so no bottle can be). The running-bottle path,
//! where egress reloads, is in `docker_e2e.rs`.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "tests")]

mod support;

use std::path::PathBuf;

use bb_supervise::queue::{Proposal, Queue, Tool};
use support::{Env, contains_all, write};

const LIVE: &str = "routes:\n  - host: api.example\n";
const PROPOSED: &str = "routes:\n  - host: api.example\n  - host: docs.example\n";

struct Bottle {
    env: Env,
    state: PathBuf,
    queue: Queue,
}

/// A bottle `dev-1a2b3c` (label `dev`, colour green) with a live routes.yaml.
fn bottle() -> Bottle {
    let env = Env::empty();
    let state = env.home.join(".bot-bottle/state/dev-1a2b3c");
    write(&state.join("routes.yaml"), LIVE);
    write(
        &state.join("bottle.json"),
        r#"{"slug":"dev-1a2b3c","agent":"dev","label":"dev","color":"green"}"#,
    );
    let queue = Queue::open(state.join("queue")).unwrap();
    Bottle { env, state, queue }
}

impl Bottle {
    fn propose(&self, tool: Tool, file: &str, current: Option<&str>) -> Proposal {
        let p = Proposal::new(
            "dev-1a2b3c",
            tool,
            file.into(),
            "the docs live on docs.example".into(),
            current,
        )
        .unwrap();
        self.queue.submit(&p).unwrap();
        p
    }

    fn routes(&self) -> String {
        std::fs::read_to_string(self.state.join("routes.yaml")).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.env.run(args);
        assert_eq!(out.code, Some(0), "{out:?}");
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out:?}"))
    }

    fn audit_entries(&self) -> u64 {
        let v = self.json(&["supervise", "verify", "--json"]);
        assert_eq!(v["ok"], true, "{v}");
        v["entries"].as_u64().unwrap()
    }
}

#[test]
fn list_and_show_a_pending_proposal_with_its_diff() {
    let b = bottle();
    let p = b.propose(Tool::Allow, PROPOSED, Some(LIVE));
    let list = b.json(&["supervise", "list", "--json"]);
    assert_eq!(list[0]["id"], p.id.as_str(), "{list}");
    assert_eq!(list[0]["label"], "dev");
    assert_eq!(list[0]["color"], "green");
    assert_eq!(list[0]["tool"], "allow");
    assert_eq!(list[0]["stale"], false);

    let out = b.env.run(&["supervise", "list"]);
    contains_all(&out.stdout, &[p.id.as_str(), "dev", "allow"]);

    // A unique prefix is enough.
    let out = b.env.run(&["supervise", "show", &p.id.as_str()[..6]]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(
        &out.stdout,
        &[
            "the docs live on docs.example",
            "+  - host: docs.example",
            "answer    (pending)",
        ],
    );
    let show = b.json(&["supervise", "show", p.id.as_str(), "--json"]);
    assert!(
        show["diff"]
            .as_str()
            .unwrap()
            .contains("+  - host: docs.example")
    );
}

#[test]
fn approving_for_a_stopped_bottle_writes_its_routes_for_resume_and_audits() {
    let b = bottle();
    let p = b.propose(Tool::Allow, PROPOSED, Some(LIVE));
    let v = b.json(&["supervise", "approve", p.id.as_str(), "--json"]);
    assert_eq!(v["status"], "approved", "{v}");
    assert!(v["notes"].as_str().unwrap().contains("not running"), "{v}");
    assert_eq!(b.routes(), PROPOSED);
    assert_eq!(
        std::fs::read_to_string(b.state.join("supervise/routes.yaml")).unwrap(),
        PROPOSED
    );
    let r = b.queue.response(&p.id).unwrap().expect("answered");
    assert_eq!(r.status, bb_supervise::Status::Approved);
    assert_eq!(r.final_file.as_deref(), Some(PROPOSED));
    assert!(b.queue.pending().proposals.is_empty());
    assert_eq!(b.audit_entries(), 1);
    let log =
        std::fs::read_to_string(b.env.home.join(".bot-bottle/audit/decisions.jsonl")).unwrap();
    contains_all(
        &log,
        &["+  - host: docs.example", p.id.as_str(), "\"approved\""],
    );

    // Already answered: a second decision is refused.
    let out = b
        .env
        .run(&["supervise", "reject", p.id.as_str(), "--reason", "no"]);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert_eq!(b.audit_entries(), 1);
}

#[test]
fn a_rejection_changes_nothing_but_is_answered_and_audited() {
    let b = bottle();
    let p = b.propose(Tool::Allow, PROPOSED, Some(LIVE));
    let out = b.env.run(&["supervise", "reject", p.id.as_str()]);
    assert_eq!(out.code, Some(64), "a reason is required: {out:?}");
    let v = b.json(&[
        "supervise",
        "reject",
        p.id.as_str(),
        "--reason",
        "docs.example is not needed",
        "--json",
    ]);
    assert_eq!(v["status"], "rejected");
    assert_eq!(b.routes(), LIVE);
    assert!(!b.state.join("supervise/routes.yaml").exists());
    let r = b.queue.response(&p.id).unwrap().expect("answered");
    assert_eq!(r.notes, "docs.example is not needed");
    assert_eq!(b.audit_entries(), 1);
}

#[test]
fn an_edited_file_is_approved_as_modified_and_an_invalid_one_changes_nothing() {
    let b = bottle();
    let p = b.propose(Tool::Allow, PROPOSED, Some(LIVE));
    let bad = b.env.home.join("bad.yaml");
    write(&bad, "routes:\n  - host: docs.example\n    bogus: 1\n");
    let out = b.env.run(&[
        "supervise",
        "approve",
        p.id.as_str(),
        "--file",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &["not valid", "bogus"]);
    assert_eq!(b.routes(), LIVE);
    assert_eq!(b.queue.pending().proposals.len(), 1);
    assert_eq!(b.audit_entries(), 0);

    let edited = "routes:\n  - host: api.example\n  - host: docs.example\n    ports: [443]\n";
    let good = b.env.home.join("good.yaml");
    write(&good, edited);
    let v = b.json(&[
        "supervise",
        "approve",
        p.id.as_str(),
        "--file",
        good.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(v["status"], "modified");
    assert_eq!(b.routes(), edited);
    assert_eq!(b.audit_entries(), 1);
}

#[test]
fn a_proposal_that_does_not_parse_is_answered_failed_and_nothing_changes() {
    let b = bottle();
    // Only the server validates before queuing; a hand-written queue file
    // is checked again here.
    let p = b.propose(Tool::EgressBlock, "routes: 7\n", Some(LIVE));
    let out = b.env.run(&["supervise", "approve", p.id.as_str()]);
    assert_eq!(out.code, Some(1), "{out:?}");
    contains_all(&out.stdout, &["failed", "not valid"]);
    assert_eq!(b.routes(), LIVE);
    let r = b.queue.response(&p.id).unwrap().expect("answered");
    assert_eq!(r.status, bb_supervise::Status::Failed);
    assert_eq!(r.final_file, None);
    assert_eq!(b.audit_entries(), 1);
}

#[test]
fn a_stale_proposal_needs_force() {
    let b = bottle();
    let p = b.propose(Tool::Allow, PROPOSED, Some("routes: []\n"));
    assert_eq!(b.json(&["supervise", "list", "--json"])[0]["stale"], true);
    let out = b.env.run(&["supervise", "approve", p.id.as_str()]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &["changed since", "--force"]);
    assert_eq!(b.routes(), LIVE);
    let v = b.json(&["supervise", "approve", p.id.as_str(), "--force", "--json"]);
    assert_eq!(v["status"], "approved");
    assert_eq!(b.routes(), PROPOSED);
}

#[test]
fn gitleaks_allow_needs_a_reason_and_cannot_be_modified() {
    let b = bottle();
    let p = b.propose(
        Tool::GitleaksAllow,
        "src/config.rs:12 generic-api-key (gitleaks:allow)\n",
        None,
    );
    let out = b.env.run(&["supervise", "approve", p.id.as_str()]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &["needs --reason"]);
    let other = b.env.home.join("x");
    write(&other, "x");
    let out = b.env.run(&[
        "supervise",
        "approve",
        p.id.as_str(),
        "--reason",
        "test fixture",
        "--file",
        other.to_str().unwrap(),
    ]);
    assert_eq!(out.code, Some(64), "{out:?}");
    assert_eq!(b.queue.pending().proposals.len(), 1);
    let v = b.json(&[
        "supervise",
        "approve",
        p.id.as_str(),
        "--reason",
        "a test fixture key, revoked",
        "--json",
    ]);
    assert_eq!(v["status"], "approved");
    assert_eq!(b.routes(), LIVE, "a push approval touches no routes");
}

#[test]
fn a_capability_block_is_kept_for_the_next_resume() {
    let b = bottle();
    let dockerfile = "FROM debian:bookworm\nRUN apt-get install -y jq\n";
    let p = b.propose(Tool::CapabilityBlock, dockerfile, None);
    let v = b.json(&["supervise", "approve", p.id.as_str(), "--json"]);
    assert_eq!(v["status"], "approved");
    assert!(v["notes"].as_str().unwrap().contains("resume"), "{v}");
    assert_eq!(
        std::fs::read_to_string(b.state.join("supervise/image/Dockerfile")).unwrap(),
        dockerfile
    );
}

#[test]
fn an_edited_audit_log_fails_verify_and_blocks_decisions() {
    let b = bottle();
    let p = b.propose(Tool::Allow, PROPOSED, Some(LIVE));
    b.json(&[
        "supervise",
        "reject",
        p.id.as_str(),
        "--reason",
        "no",
        "--json",
    ]);
    let log = b.env.home.join(".bot-bottle/audit/decisions.jsonl");
    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replace("\"no\"", "\"ok\"")).unwrap();
    let out = b.env.run(&["supervise", "verify"]);
    assert_eq!(out.code, Some(1), "{out:?}");
    contains_all(&out.stderr, &["does not verify", "line 1", "edited"]);

    let q = b.propose(Tool::Allow, PROPOSED, Some(LIVE));
    let out = b.env.run(&["supervise", "approve", q.id.as_str()]);
    assert_eq!(out.code, Some(1), "{out:?}");
    contains_all(&out.stderr, &["supervise verify"]);
    assert_eq!(b.routes(), LIVE, "nothing applied without an audit record");
    assert_eq!(b.queue.pending().proposals.len(), 1);
}

#[test]
fn foreign_files_are_reported_and_skipped() {
    let b = bottle();
    let p = b.propose(Tool::Allow, PROPOSED, Some(LIVE));
    write(&b.queue.dir().join("junk.proposal.json"), "{not json");
    write(&b.queue.dir().join("notes.txt"), "hello");
    // A second state folder without a queue is not a bottle here.
    std::fs::create_dir_all(b.env.home.join(".bot-bottle/state/other")).unwrap();
    let out = b.env.run(&["supervise", "list", "--json"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    contains_all(&out.stderr, &["junk.proposal.json", "notes.txt"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], p.id.as_str());
}

#[test]
fn the_tui_needs_a_terminal() {
    let b = bottle();
    let out = b.env.run(&["supervise"]);
    assert_eq!(out.code, Some(64), "{out:?}");
    contains_all(&out.stderr, &["needs a terminal", "supervise list"]);
}
