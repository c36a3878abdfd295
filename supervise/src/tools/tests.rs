//! Unit and property tests of the tool checks.

#![allow(clippy::unwrap_used, reason = "tests")]

use proptest::prelude::*;

use super::*;

const LIVE: &str = "routes:\n  - host: pypi.org\n";

fn args(routes_yaml: &str, justification: &str) -> RoutesArgs {
    RoutesArgs {
        routes_yaml: routes_yaml.into(),
        justification: justification.into(),
    }
}

#[test]
fn a_valid_widening_file_becomes_a_proposal_with_its_additions() {
    let yaml = "routes:\n  - host: pypi.org\n  - host: files.pythonhosted.org\n";
    let p = prepare_routes(Tool::Allow, args(yaml, "pip install"), "b-1", Some(LIVE)).unwrap();
    assert_eq!(p.proposal.tool, Tool::Allow);
    assert_eq!(p.proposal.proposed_file, yaml);
    assert_eq!(p.proposal.bottle_slug, "b-1");
    assert_eq!(
        p.proposal.current_file_hash,
        crate::sha256_hex(LIVE.as_bytes())
    );
    assert_eq!(
        p.changes,
        vec![Change::NewHost {
            host: "files.pythonhosted.org".into()
        }]
    );
    let text = queued_text(&p);
    assert!(text.contains("+ new host files.pythonhosted.org"), "{text}");
    assert!(text.contains(PROPOSAL_STATUS), "{text}");
}

#[test]
fn an_invalid_file_names_route_host_and_key() {
    let yaml = "routes:\n  - host: pypi.org\n  - host: evil.example\n    matches:\n      - paths: [{type: regex, value: '(('}]\n";
    let e = prepare_routes(Tool::EgressBlock, args(yaml, "x"), "b", Some(LIVE)).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ToolError::InvalidRoutes(_)), "{msg}");
    assert!(msg.contains("routes[1]"), "{msg}");
    assert!(msg.contains("evil.example"), "{msg}");
    assert!(msg.contains("matches[0].paths[0].value"), "{msg}");
    assert!(msg.contains("nothing was queued"), "{msg}");
}

#[test]
fn unknown_keys_and_introspection_host_are_refused() {
    for yaml in [
        "routes:\n  - host: a.example\n    colour: red\n",
        "routes:\n  - host: _egress.local\n",
        "routes: nope\n",
        "not: [yaml",
    ] {
        let e = prepare_routes(Tool::Allow, args(yaml, "x"), "b", Some(LIVE)).unwrap_err();
        assert!(matches!(e, ToolError::InvalidRoutes(_)), "{yaml:?}: {e}");
    }
}

#[test]
fn the_live_file_again_is_no_change() {
    let e = prepare_routes(Tool::Allow, args(LIVE, "x"), "b", Some(LIVE)).unwrap_err();
    assert!(matches!(e, ToolError::NoChange), "{e}");
}

#[test]
fn blank_or_oversized_arguments_are_refused() {
    let e = prepare_routes(Tool::Allow, args("routes: []\n", "  \n"), "b", None).unwrap_err();
    assert!(
        matches!(
            e,
            ToolError::Empty {
                field: "justification"
            }
        ),
        "{e}"
    );
    let e = prepare_routes(Tool::Allow, args("", "x"), "b", None).unwrap_err();
    assert!(
        matches!(
            e,
            ToolError::Empty {
                field: "routes_yaml"
            }
        ),
        "{e}"
    );
    let big = "#".repeat(MAX_PROPOSED_FILE_BYTES + 1);
    let e = prepare_routes(Tool::Allow, args(&big, "x"), "b", None).unwrap_err();
    assert!(
        matches!(
            e,
            ToolError::TooLarge {
                field: "routes_yaml",
                ..
            }
        ),
        "{e}"
    );
    let e = prepare_capability(
        CapabilityArgs {
            dockerfile: "FROM debian\n".into(),
            justification: "j".repeat(MAX_TEXT_BYTES + 1),
        },
        "b",
        None,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            ToolError::TooLarge {
                field: "justification",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn a_missing_live_file_makes_every_route_new() {
    let p = prepare_routes(Tool::Allow, args(LIVE, "x"), "b", None).unwrap();
    assert_eq!(
        p.changes,
        vec![Change::NewHost {
            host: "pypi.org".into()
        }]
    );
}

#[test]
fn capability_proposals_keep_the_dockerfile() {
    let p = prepare_capability(
        CapabilityArgs {
            dockerfile: "FROM debian\nRUN apt-get install -y jq\n".into(),
            justification: "needs jq".into(),
        },
        "b",
        Some("FROM debian\n"),
    )
    .unwrap();
    assert_eq!(p.proposal.tool, Tool::CapabilityBlock);
    assert_eq!(
        p.proposal.current_file_hash,
        crate::sha256_hex(b"FROM debian\n")
    );
}

#[test]
fn status_arguments_are_bounded() {
    let ok = StatusArgs {
        id: "abc-1".into(),
        wait_seconds: Some(MAX_WAIT_SECONDS),
    };
    assert_eq!(parse_status(&ok).unwrap().1, MAX_WAIT_SECONDS);
    let long = StatusArgs {
        wait_seconds: Some(MAX_WAIT_SECONDS + 1),
        ..ok.clone()
    };
    assert!(matches!(
        parse_status(&long),
        Err(ToolError::WaitTooLong(_))
    ));
    let bad = StatusArgs {
        id: "../../etc/passwd".into(),
        wait_seconds: None,
    };
    assert!(matches!(parse_status(&bad), Err(ToolError::Queue(_))));
}

#[test]
fn status_reports_say_what_a_decision_means() {
    let p = prepare_capability(
        CapabilityArgs {
            dockerfile: "FROM debian\n".into(),
            justification: "x".into(),
        },
        "b",
        None,
    )
    .unwrap()
    .proposal;
    let pending = status_report(&p, None);
    assert_eq!(pending.status, "pending");
    let r = Response::new(
        &p,
        Status::Approved,
        String::new(),
        Some("FROM debian\n".into()),
        "op",
    )
    .unwrap();
    let approved = status_report(&p, Some(&r));
    assert_eq!(approved.status, "approved");
    assert!(
        approved.meaning.contains("next resume"),
        "{}",
        approved.meaning
    );
    let r = Response::new(&p, Status::Rejected, "no".into(), None, "op").unwrap();
    let rejected = status_report(&p, Some(&r));
    assert_eq!(rejected.status, "rejected");
    assert_eq!(rejected.notes.as_deref(), Some("no"));
    assert_eq!(rejected.final_file, None);
}

#[test]
fn argument_schemas_forbid_unknown_fields() {
    let schema = serde_json::to_value(schemars::schema_for!(RoutesArgs)).unwrap();
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(
        schema["required"],
        serde_json::json!(["routes_yaml", "justification"])
    );
    assert!(
        serde_json::from_value::<RoutesArgs>(serde_json::json!({
            "routes_yaml": "routes: []", "justification": "x", "extra": 1
        }))
        .is_err()
    );
}

proptest! {
    /// Whatever the agent sends, a call either fails or yields a proposal
    /// whose file egress's parser accepts and which the queue would take.
    #[test]
    fn only_valid_files_become_proposals(yaml in ".{0,200}", just in ".{0,40}") {
        if let Ok(p) = prepare_routes(Tool::Allow, args(&yaml, &just), "b", Some(LIVE)) {
            prop_assert!(RoutesConfig::from_yaml(&p.proposal.proposed_file).is_ok());
            prop_assert!(p.proposal.validate().is_ok());
            prop_assert!(!p.changes.is_empty());
        }
    }

    /// Hosts made of random labels: valid iff egress's parser says so.
    #[test]
    fn host_lists_round_trip(hosts in proptest::collection::vec("[a-z]{1,8}\\.[a-z]{2,3}", 1..5)) {
        let yaml: String = std::iter::once("routes:\n".to_owned())
            .chain(hosts.iter().map(|h| format!("  - host: {h}\n")))
            .collect();
        let parsed = RoutesConfig::from_yaml(&yaml);
        let prepared = prepare_routes(Tool::Allow, args(&yaml, "j"), "b", Some(LIVE));
        match parsed {
            Err(_) => prop_assert!(matches!(prepared, Err(ToolError::InvalidRoutes(_)))),
            Ok(cfg) if cfg == live_config(Some(LIVE)) => prop_assert!(matches!(prepared, Err(ToolError::NoChange))),
            Ok(_) => prop_assert!(prepared.is_ok()),
        }
    }
}
