//! Fuzzes what the supervise server does with an agent's JSON-RPC message.
//!
//! The input is one HTTP body as the agent would POST it to `/mcp`. It is
//! parsed as rmcp parses it (`ClientJsonRpcMessage`); a `tools/call` for a
//! proposal tool then has its arguments read with the server's own serde
//! types and checks (`bb_supervise::tools`), and a prepared proposal is
//! submitted to a real queue folder. Invariants:
//! - nothing panics, whatever the bytes;
//! - a call that is refused leaves the queue empty (nothing queued);
//! - a routes proposal is queued only when egress's own parser accepts its
//!   file, and it lists at least one change against the live routes;
//! - an invalid routes file is refused with errors that each name a key or
//!   a route, and the refusal says nothing was queued;
//! - what was queued reads back from the queue as exactly the proposal
//!   made, passes `Proposal::validate`, and is the one pending proposal.

#![no_main]

use std::sync::OnceLock;

use bb_egress::policy::RoutesConfig;
use bb_supervise::Tool;
use bb_supervise::queue::Queue;
use bb_supervise::tools::{self, CapabilityArgs, RoutesArgs, StatusArgs, ToolError};
use libfuzzer_sys::fuzz_target;

const LIVE: &str = "routes:\n  - host: pypi.org\n";

fn queue() -> &'static (tempfile::TempDir, Queue) {
    static Q: OnceLock<(tempfile::TempDir, Queue)> = OnceLock::new();
    Q.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path().join("queue")).unwrap();
        (dir, q)
    })
}

fn clear(q: &Queue) {
    for entry in std::fs::read_dir(q.dir()).unwrap().flatten() {
        if entry.file_name() != "processed" {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // rmcp's parser must take any bytes without panicking.
    let _ = serde_json::from_slice::<rmcp::model::ClientJsonRpcMessage>(data);
    let Ok(msg) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if msg["method"] != "tools/call" {
        return;
    }
    let name = msg["params"]["name"].as_str().unwrap_or_default();
    let args = msg["params"]
        .get("arguments")
        .cloned()
        .unwrap_or(serde_json::Value::Object(serde_json::Map::new()));
    let (_, q) = queue();
    clear(q);
    let prepared = match name {
        "allow" | "egress-block" => {
            let tool = if name == "allow" { Tool::Allow } else { Tool::EgressBlock };
            let Ok(a) = serde_json::from_value::<RoutesArgs>(args) else {
                assert!(q.pending().proposals.is_empty());
                return;
            };
            let yaml = a.routes_yaml.clone();
            let result = tools::prepare_routes(tool, a, "fuzz-bottle", Some(LIVE));
            match &result {
                Ok(p) => {
                    assert_eq!(
                        RoutesConfig::from_yaml(&p.proposal.proposed_file).ok(),
                        RoutesConfig::from_yaml(&yaml).ok()
                    );
                    assert!(RoutesConfig::from_yaml(&yaml).is_ok());
                    assert!(!p.changes.is_empty());
                }
                Err(ToolError::InvalidRoutes(errors)) => {
                    assert!(RoutesConfig::from_yaml(&yaml).is_err());
                    assert!(!errors.0.is_empty());
                    for e in &errors.0 {
                        assert!(e.route.is_some() || !e.key.is_empty() || !e.to_string().is_empty());
                    }
                    let msg = ToolError::InvalidRoutes(errors.clone()).to_string();
                    assert!(msg.contains("nothing was queued"));
                }
                Err(_) => {}
            }
            result
        }
        "capability-block" => {
            let Ok(a) = serde_json::from_value::<CapabilityArgs>(args) else {
                return;
            };
            tools::prepare_capability(a, "fuzz-bottle", None)
        }
        "proposal-status" => {
            if let Ok(a) = serde_json::from_value::<StatusArgs>(args) {
                if let Ok((id, wait)) = tools::parse_status(&a) {
                    assert!(wait <= tools::MAX_WAIT_SECONDS);
                    // An id never names a path outside the queue.
                    assert!(!id.as_str().contains(['/', '.']));
                    assert!(matches!(
                        q.proposal(&id),
                        Err(bb_supervise::QueueError::NotFound { .. })
                    ));
                }
            }
            return;
        }
        _ => return,
    };
    match prepared {
        Ok(p) => {
            p.proposal.validate().unwrap();
            q.submit(&p.proposal).unwrap();
            let pending = q.pending();
            assert!(pending.problems.is_empty(), "{:?}", pending.problems);
            assert_eq!(pending.proposals, vec![p.proposal.clone()]);
            assert_eq!(q.proposal(&p.proposal.id).unwrap(), p.proposal);
            let _ = tools::queued_text(&p);
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(q.pending().proposals.is_empty(), "a refused call queued something");
        }
    }
});
