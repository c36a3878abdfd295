//! Unit and property tests of the routes comparison.

#![allow(clippy::unwrap_used, reason = "tests")]

use proptest::prelude::*;

use super::*;

fn cfg(yaml: &str) -> RoutesConfig {
    RoutesConfig::from_yaml(yaml).expect("valid routes")
}

const LIVE: &str = "\
routes:
  - host: api.example.com
    matches:
      - paths: [{value: /v1/}]
        methods: [GET]
  - host: pypi.org
";

#[test]
fn identical_files_change_nothing() {
    assert!(compare(&cfg(LIVE), &cfg(LIVE)).is_empty());
    assert_eq!(summary(&[]), "no change from the live routes.yaml\n");
}

#[test]
fn a_new_host_is_listed_with_its_risky_settings() {
    let proposed = format!(
        "{LIVE}  - host: Files.Example.NET\n    auth_scheme: Bearer\n    token_env: FILES_TOKEN\n    git: {{fetch: true}}\n    allow_private: true\n    ports: [8443]\n    dlp: {{outbound_detectors: false}}\n"
    );
    let changes = compare(&cfg(LIVE), &cfg(&proposed));
    let host = "files.example.net".to_owned();
    assert_eq!(
        changes,
        vec![
            Change::NewHost { host: host.clone() },
            Change::Auth {
                host: host.clone(),
                scheme: "Bearer".into(),
                token_env: "FILES_TOKEN".into()
            },
            Change::GitFetch { host: host.clone() },
            Change::Ports {
                host: host.clone(),
                ports: vec![8443]
            },
            Change::AllowPrivate { host: host.clone() },
            Change::DetectorsOff {
                host,
                direction: "outbound",
                detectors: vec!["token_patterns", "known_secrets"]
            },
        ]
    );
    assert!(changes.iter().all(Change::widens));
    let text = summary(&changes);
    assert!(
        text.starts_with("adds:\n  + new host files.example.net\n"),
        "{text}"
    );
    assert!(
        text.contains("injects `Bearer` credentials from FILES_TOKEN"),
        "{text}"
    );
}

#[test]
fn widening_an_existing_route_is_listed() {
    let proposed = "\
routes:
  - host: api.example.com
    matches:
      - paths: [{value: /v1/}]
        methods: [GET]
      - paths: [{value: /v2/}]
    dlp:
      inbound_detectors: false
  - host: pypi.org
";
    assert_eq!(
        compare(&cfg(LIVE), &cfg(proposed)),
        vec![
            Change::MatchesAdded {
                host: "api.example.com".into(),
                count: 1
            },
            Change::DetectorsOff {
                host: "api.example.com".into(),
                direction: "inbound",
                detectors: vec!["naive_injection_detection"]
            },
        ]
    );
}

#[test]
fn dropping_matches_opens_the_whole_host() {
    let proposed = "routes:\n  - host: api.example.com\n  - host: pypi.org\n";
    assert_eq!(
        compare(&cfg(LIVE), &cfg(proposed)),
        vec![Change::MatchesRemoved {
            host: "api.example.com".into()
        }]
    );
}

#[test]
fn narrowing_is_listed_apart_and_does_not_widen() {
    let live = "\
routes:
  - host: api.example.com
    matches:
      - paths: [{value: /v1/}]
        methods: [GET]
      - paths: [{value: /v2/}]
  - host: pypi.org
";
    let proposed = "\
log: 2
routes:
  - host: api.example.com
    matches:
      - paths: [{value: /v1/}]
        methods: [GET]
";
    let changes = compare(&cfg(live), &cfg(proposed));
    assert_eq!(
        changes,
        vec![
            Change::Narrowed {
                host: "api.example.com".into()
            },
            Change::RemovedHost {
                host: "pypi.org".into()
            },
            Change::Log { from: 1, to: 2 },
        ]
    );
    assert!(!changes.iter().any(Change::widens));
    assert!(summary(&changes).starts_with("also changes:\n"));
}

#[test]
fn a_new_matches_entry_counts_as_widening_even_when_it_looks_narrower() {
    // `exact /v1/x` with no method list lets POST through, which the live
    // GET-only entry did not: entries are compared whole, conservatively.
    let proposed = "\
routes:
  - host: api.example.com
    matches:
      - paths: [{type: exact, value: /v1/x}]
  - host: pypi.org
";
    assert_eq!(
        compare(&cfg(LIVE), &cfg(proposed)),
        vec![Change::MatchesAdded {
            host: "api.example.com".into(),
            count: 1
        }]
    );
}

#[test]
fn swapping_the_token_of_a_route_is_an_auth_change() {
    let live = "routes:\n  - host: a.example\n    auth_scheme: token\n    token_env: A\n";
    let proposed = "routes:\n  - host: a.example\n    auth_scheme: token\n    token_env: B\n";
    assert_eq!(
        compare(&cfg(live), &cfg(proposed)),
        vec![Change::Auth {
            host: "a.example".into(),
            scheme: "token".into(),
            token_env: "B".into()
        }]
    );
}

fn arb_route() -> impl Strategy<Value = RouteSpec> {
    (
        "[a-d]\\.example",
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(proptest::collection::vec(1u16..5, 1..3)),
        any::<bool>(),
        0u8..3,
    )
        .prop_map(|(host, auth, fetch, ports, private, out)| {
            let mut r = RouteSpec::new(host);
            if auth {
                r.auth_scheme = Some(bb_egress::policy::AuthScheme::Bearer);
                r.token_env = Some("T".into());
            }
            r.git.fetch = fetch;
            r.ports = ports.map(|p| p.into_iter().map(|n| n + 440).collect());
            r.allow_private = private;
            r.dlp.outbound_detectors = match out {
                0 => DetectorChoice::All,
                1 => DetectorChoice::Off,
                _ => DetectorChoice::Only(vec![OutboundDetector::KnownSecrets]),
            };
            r
        })
}

fn arb_config() -> impl Strategy<Value = RoutesConfig> {
    proptest::collection::vec(arb_route(), 0..4).prop_map(|mut routes| {
        let mut seen = std::collections::HashSet::new();
        routes.retain(|r| seen.insert(r.host.clone()));
        // Route order means nothing to egress (one route per host).
        routes.sort_by(|a, b| a.host.cmp(&b.host));
        RoutesConfig {
            routes,
            ..RoutesConfig::default()
        }
    })
}

proptest! {
    /// No change exactly when the files are equal; every host of the
    /// proposal that the live file lacks is listed as new.
    #[test]
    fn compare_is_empty_iff_equal_and_lists_new_hosts(live in arb_config(), proposed in arb_config()) {
        let changes = compare(&live, &proposed);
        prop_assert_eq!(changes.is_empty(), live == proposed);
        prop_assert!(compare(&proposed, &proposed).is_empty());
        for r in &proposed.routes {
            let is_new = !live.routes.iter().any(|l| l.host == r.host);
            let listed = changes.contains(&Change::NewHost { host: r.host.clone() });
            prop_assert_eq!(is_new, listed);
        }
        // Widening changes come first.
        let first_narrow = changes.iter().position(|c| !c.widens()).unwrap_or(changes.len());
        prop_assert!(changes[first_narrow..].iter().all(|c| !c.widens()));
    }

    /// A proposal that only removes routes never widens.
    #[test]
    fn a_subset_never_widens(live in arb_config(), keep in proptest::collection::vec(any::<bool>(), 4)) {
        let mut proposed = live.clone();
        let mut k = keep.iter();
        proposed.routes.retain(|_| *k.next().unwrap_or(&true));
        prop_assert!(!compare(&live, &proposed).iter().any(Change::widens));
    }
}
