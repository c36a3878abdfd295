//! Compiled matchers and the decision function (SPEC §3 steps 1–3, 5, 6).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use proptest::prelude::*;

use super::*;
use crate::dlp::{Detector, DetectorSet};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

const NO_HEADERS: &[(&str, &str)] = &[];

fn policy(yaml: &str) -> Policy {
    Policy::from_yaml(yaml).unwrap_or_else(|e| panic!("rejected:\n{e}\n--- input:\n{yaml}"))
}

/// One route for `a.example` with the given extra route keys.
fn one_route(extra: &str) -> Policy {
    let mut s = String::from("routes:\n  - host: a.example\n");
    for line in extra.lines() {
        s.push_str("    ");
        s.push_str(line);
        s.push('\n');
    }
    policy(&s)
}

/// Decides a request; `target` is `path[?query]`.
fn send<'p>(
    p: &'p Policy,
    via: Via,
    host: &str,
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Decision<'p> {
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    };
    p.decide(&Request {
        via,
        host,
        port,
        method,
        path,
        query,
        headers: &headers,
    })
}

/// A request through CONNECT on 443 to `a.example`.
fn https<'p>(p: &'p Policy, method: &str, target: &str, headers: &[(&str, &str)]) -> Decision<'p> {
    send(p, Via::Connect, "a.example", 443, method, target, headers)
}

fn get<'p>(p: &'p Policy, target: &str) -> Decision<'p> {
    https(p, "GET", target, NO_HEADERS)
}

#[track_caller]
fn forwarded(d: Decision<'_>) -> Forward<'_> {
    match d {
        Decision::Forward(f) => f,
        other => panic!("expected Forward, got {other:?}"),
    }
}

#[track_caller]
fn blocked(d: &Decision<'_>) -> BlockReason {
    match d {
        Decision::Block(b) => b.reason.clone(),
        other => panic!("expected Block, got {other:?}"),
    }
}

#[track_caller]
fn assert_forward(d: &Decision<'_>) {
    assert!(
        matches!(d, Decision::Forward(_)),
        "expected Forward, got {d:?}"
    );
}

// ---------------------------------------------------------------------------
// The Headers impl for slices
// ---------------------------------------------------------------------------

#[test]
fn slice_headers_match_names_case_insensitively_and_stop_early() {
    let hs: &[(&str, &[u8])] = &[
        ("Accept", b"a"),
        ("x", b"1"),
        ("ACCEPT", b"b"),
        ("accept", b"c"),
    ];
    let mut seen = Vec::new();
    let found = hs.any_value("accept", &mut |v| {
        seen.push(v.to_vec());
        v == b"b"
    });
    assert!(found);
    assert_eq!(seen, [b"a".to_vec(), b"b".to_vec()]);
    assert!(!hs.any_value("missing", &mut |_| true));
}

#[test]
fn headers_from_slices_vecs_and_arrays_make_a_request() {
    let p = one_route("matches:\n  - headers: [{name: k, value: v}]");
    let slice: &[(&str, &str)] = &[("K", "v")];
    let vec: Vec<(String, Vec<u8>)> = vec![("k".into(), b"v".to_vec())];
    let array = [("k", "v"), ("other", "x")];
    let sources: [&dyn Headers; 3] = [&slice, &vec, &array];
    for headers in sources {
        let req = Request {
            via: Via::Connect,
            host: "a.example",
            port: 443,
            method: "GET",
            path: "/",
            query: None,
            headers,
        };
        assert_forward(&p.decide(&req));
    }
}

// ---------------------------------------------------------------------------
// Matchers
// ---------------------------------------------------------------------------

#[test]
fn no_matches_allows_everything() {
    let p = one_route("");
    for (method, target) in [
        ("GET", "/"),
        ("DELETE", "/anything/at/all?x=1"),
        ("PATCH", "*"),
    ] {
        assert_forward(&https(&p, method, target, &[("x-any", "thing")]));
    }
}

#[test]
fn an_empty_match_entry_is_a_config_error() {
    // `{}` would accept every request; the parser refuses it.
    assert!(Policy::from_yaml("routes:\n  - host: a.example\n    matches:\n      - {}\n").is_err());
}

#[test]
fn prefix_paths() {
    let p = one_route("matches:\n  - paths: [{value: /api/}]");
    for ok in ["/api/", "/api/x", "/api/x/y?q=1", "/api//x"] {
        assert_forward(&get(&p, ok));
    }
    for no in ["/api", "/apix", "/API/x", "/", "/x/api/", "api/"] {
        assert_eq!(blocked(&get(&p, no)), BlockReason::NoMatch, "{no}");
    }
    // A prefix is a plain byte prefix, not a segment prefix.
    let p = one_route("matches:\n  - paths: [{type: prefix, value: /api}]");
    assert_forward(&get(&p, "/apiary"));
}

#[test]
fn exact_paths() {
    let p = one_route("matches:\n  - paths: [{type: exact, value: /health}]");
    assert_forward(&get(&p, "/health"));
    // The query is not part of the path.
    assert_forward(&get(&p, "/health?verbose=1"));
    for no in ["/health/", "/healthz", "/Health", "/", "/health/x"] {
        assert_eq!(blocked(&get(&p, no)), BlockReason::NoMatch, "{no}");
    }
}

#[test]
fn regex_paths_match_the_whole_path() {
    let p = one_route("matches:\n  - paths: [{type: regex, value: \"/u/[0-9]+\"}]");
    assert_forward(&get(&p, "/u/12"));
    for no in ["/u/12/x", "/x/u/12", "/u/", "/u/12a"] {
        assert_eq!(blocked(&get(&p, no)), BlockReason::NoMatch, "{no}");
    }
    // An alternation is grouped before anchoring: each branch must match whole.
    let p = one_route("matches:\n  - paths: [{type: regex, value: \"/a|/b\"}]");
    assert_forward(&get(&p, "/a"));
    assert_forward(&get(&p, "/b"));
    for no in ["/a/x", "/x/b", "/ab"] {
        assert_eq!(blocked(&get(&p, no)), BlockReason::NoMatch, "{no}");
    }
    // Anchors written by the operator are harmless.
    let p = one_route("matches:\n  - paths: [{type: regex, value: \"^/v1/.*$\"}]");
    assert_forward(&get(&p, "/v1/models"));
    assert_eq!(blocked(&get(&p, "/v2/v1/")), BlockReason::NoMatch);
}

#[test]

fn a_regex_rule_cannot_escape_its_anchoring() {
    for value in ["/api)|(.*", "/api)|(?:.*"] {
        let yaml = format!(
            "routes:\n  - host: a.example\n    matches:\n      - paths: [{{type: regex, value: \"{value}\"}}]\n"
        );
        // Either the rule is refused at load, or it only matches `/api`.
        if let Ok(p) = Policy::from_yaml(&yaml) {
            assert_eq!(blocked(&get(&p, "/admin")), BlockReason::NoMatch, "{value}");
        }
    }
}

#[test]
fn any_path_of_an_entry_may_match() {
    let p = one_route(
        "matches:\n  - paths: [{value: /a/}, {type: exact, value: /b}, {type: regex, value: \"/c[0-9]\"}]",
    );
    for ok in ["/a/1", "/b", "/c7"] {
        assert_forward(&get(&p, ok));
    }
    for no in ["/b/1", "/c", "/d"] {
        assert_eq!(blocked(&get(&p, no)), BlockReason::NoMatch, "{no}");
    }
}

#[test]
fn methods_are_upper_cased_at_load_and_any_may_match() {
    let p = one_route("matches:\n  - methods: [get, Head]");
    assert_forward(&https(&p, "GET", "/", NO_HEADERS));
    assert_forward(&https(&p, "HEAD", "/", NO_HEADERS));
    for no in ["POST", "DELETE", "GETX"] {
        assert_eq!(
            blocked(&https(&p, no, "/", NO_HEADERS)),
            BlockReason::NoMatch,
            "{no}"
        );
    }
}

#[test]
fn exact_headers() {
    let p = one_route("matches:\n  - headers: [{name: X-Api, value: v1}]");
    assert_forward(&https(&p, "GET", "/", &[("x-api", "v1")]));
    assert_forward(&https(&p, "GET", "/", &[("X-API", "v1")]));
    // Any of several values of the header may match.
    assert_forward(&https(&p, "GET", "/", &[("x-api", "v0"), ("X-Api", "v1")]));
    for hs in [
        &[("x-api", "V1")][..],
        &[("x-api", "v1 ")],
        &[("x-api", "v10")],
        &[("x-other", "v1")],
        &[],
    ] {
        assert_eq!(
            blocked(&https(&p, "GET", "/", hs)),
            BlockReason::NoMatch,
            "{hs:?}"
        );
    }
}

#[test]
fn exact_header_with_empty_value() {
    let p = one_route("matches:\n  - headers: [{name: x-empty, value: \"\"}]");
    assert_forward(&https(&p, "GET", "/", &[("x-empty", "")]));
    assert_eq!(
        blocked(&https(&p, "GET", "/", NO_HEADERS)),
        BlockReason::NoMatch
    );
}

#[test]
fn regex_headers_match_the_whole_value() {
    let p = one_route(
        "matches:\n  - headers: [{name: content-type, value: \"application/(json|xml)\", type: regex}]",
    );
    assert_forward(&https(
        &p,
        "POST",
        "/",
        &[("Content-Type", "application/json")],
    ));
    assert_forward(&https(
        &p,
        "POST",
        "/",
        &[
            ("content-type", "text/plain"),
            ("content-type", "application/xml"),
        ],
    ));
    for v in [
        "application/json; charset=utf-8",
        "xapplication/json",
        "application/yaml",
    ] {
        assert_eq!(
            blocked(&https(&p, "POST", "/", &[("content-type", v)])),
            BlockReason::NoMatch,
            "{v}"
        );
    }
}

#[test]
fn regex_headers_never_match_non_utf8_values() {
    let p = one_route("matches:\n  - headers: [{name: x, value: \".*\", type: regex}]");
    let hs: &[(&str, &[u8])] = &[("x", b"\xff\xfe")];
    let req = Request {
        via: Via::Connect,
        host: "a.example",
        port: 443,
        method: "GET",
        path: "/",
        query: None,
        headers: &hs,
    };
    assert_eq!(blocked(&p.decide(&req)), BlockReason::NoMatch);
}

#[test]
fn all_headers_of_an_entry_must_match() {
    let p = one_route(
        "matches:\n  - headers:\n      - {name: a, value: \"1\"}\n      - {name: b, value: \"[0-9]+\", type: regex}",
    );
    assert_forward(&https(&p, "GET", "/", &[("a", "1"), ("b", "42")]));
    for hs in [
        &[("a", "1")][..],
        &[("b", "42")],
        &[("a", "1"), ("b", "x")],
        &[("a", "2"), ("b", "1")],
    ] {
        assert_eq!(
            blocked(&https(&p, "GET", "/", hs)),
            BlockReason::NoMatch,
            "{hs:?}"
        );
    }
}

#[test]
fn paths_methods_and_headers_of_one_entry_must_all_match() {
    let p = one_route(
        "matches:\n  - paths: [{value: /w/}]\n    methods: [POST]\n    headers: [{name: x, value: y}]",
    );
    assert_forward(&https(&p, "POST", "/w/1", &[("x", "y")]));
    assert_eq!(
        blocked(&https(&p, "GET", "/w/1", &[("x", "y")])),
        BlockReason::NoMatch
    );
    assert_eq!(
        blocked(&https(&p, "POST", "/r/1", &[("x", "y")])),
        BlockReason::NoMatch
    );
    assert_eq!(
        blocked(&https(&p, "POST", "/w/1", NO_HEADERS)),
        BlockReason::NoMatch
    );
}

#[test]
fn any_entry_may_match() {
    let p = one_route(
        "matches:\n  - {methods: [GET], paths: [{value: /read}]}\n  - {methods: [POST], paths: [{value: /write}]}",
    );
    assert_forward(&https(&p, "GET", "/read", NO_HEADERS));
    assert_forward(&https(&p, "POST", "/write", NO_HEADERS));
    // Conditions do not mix across entries.
    assert_eq!(
        blocked(&https(&p, "GET", "/write", NO_HEADERS)),
        BlockReason::NoMatch
    );
    assert_eq!(
        blocked(&https(&p, "POST", "/read", NO_HEADERS)),
        BlockReason::NoMatch
    );
}

#[test]
fn hand_built_config_with_a_bad_regex_is_refused_with_the_parsers_error() {
    // Not a matcher that rejects everything: the policy is never built, and
    // the error names the route and key as for a file.
    let mut route = RouteSpec::new("a.example");
    route.matches = Some(vec![MatchEntry {
        paths: vec![PathMatch {
            kind: PathKind::Regex,
            value: "(".into(),
        }],
        ..MatchEntry::default()
    }]);
    let e = Policy::new(RoutesConfig {
        routes: vec![route],
        log: LogLevel::default(),
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "routes[0] (host \"a.example\"): matches[0].paths[0].value: invalid regex \"(\": unclosed group"
    );
}

/// A policy with one route whose one `matches` entry has these paths (built
/// directly, so any string can be a value).
fn path_policy(entries: Vec<PathMatch>) -> Policy {
    let mut route = RouteSpec::new("a.example");
    route.matches = Some(vec![MatchEntry {
        paths: entries,
        ..MatchEntry::default()
    }]);
    Policy::new(RoutesConfig {
        routes: vec![route],
        log: LogLevel::default(),
    })
    .unwrap()
}

/// Paths without dots, `%` or backslashes, so no dot-segment, git or `DoH`
/// rule and no percent-decoding can interfere with the matcher under test.
const PATH_CHARS: &str = "/[ab/é~-]{0,6}";

fn arb_path_pair() -> impl Strategy<Value = (String, String)> {
    (PATH_CHARS, PATH_CHARS, prop::bool::ANY).prop_map(|(rule, other, extend)| {
        // Half the time the request extends the rule, so hits are common.
        let path = if extend {
            format!("{rule}{}", &other[1..])
        } else {
            other
        };
        (rule, path)
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn prefix_matcher_equals_starts_with((rule, path) in arb_path_pair()) {
        let p = path_policy(vec![PathMatch { kind: PathKind::Prefix, value: rule.clone() }]);
        let allowed = matches!(get(&p, &path), Decision::Forward(_));
        prop_assert_eq!(allowed, path.starts_with(&rule));
    }

    #[test]
    fn exact_matcher_equals_equality((rule, path) in arb_path_pair()) {
        let p = path_policy(vec![PathMatch { kind: PathKind::Exact, value: rule.clone() }]);
        let allowed = matches!(get(&p, &path), Decision::Forward(_));
        prop_assert_eq!(allowed, path == rule);
    }

    #[test]
    fn path_list_is_any_of(
        rules in prop::collection::vec((PATH_CHARS, prop::bool::ANY), 1..4),
        path in PATH_CHARS,
    ) {
        let entries = rules
            .iter()
            .map(|(v, exact)| PathMatch {
                kind: if *exact { PathKind::Exact } else { PathKind::Prefix },
                value: v.clone(),
            })
            .collect();
        let p = path_policy(entries);
        let expected = rules
            .iter()
            .any(|(v, exact)| if *exact { path == *v } else { path.starts_with(v.as_str()) });
        prop_assert_eq!(matches!(get(&p, &path), Decision::Forward(_)), expected);
    }

    #[test]
    fn exact_header_matcher_is_any_value_equal(
        want in "[a-c]{0,3}",
        values in prop::collection::vec("[a-c]{0,3}", 0..4),
    ) {
        let mut route = RouteSpec::new("a.example");
        route.matches = Some(vec![MatchEntry {
            headers: vec![HeaderMatch { name: "x-h".into(), value: want.clone(), kind: ValueKind::Exact }],
            ..MatchEntry::default()
        }]);
        let p = Policy::new(RoutesConfig { routes: vec![route], log: LogLevel::default() }).unwrap();
        let hs: Vec<(&str, &str)> = values.iter().map(|v| ("X-H", v.as_str())).collect();
        let allowed = matches!(https(&p, "GET", "/", &hs), Decision::Forward(_));
        prop_assert_eq!(allowed, values.contains(&want));
    }

    /// A request to a host no route names is always refused, whatever else it carries.
    #[test]
    fn unknown_hosts_are_always_blocked(
        host in "[a-z]{1,8}\\.[a-z]{2,3}",
        path in "/[a-z/.%]{0,10}",
        port in any::<u16>(),
    ) {
        prop_assume!(host != "a.example");
        let p = one_route("");
        let d = send(&p, Via::Connect, &host, port, "GET", &path, NO_HEADERS);
        prop_assert_eq!(blocked(&d), BlockReason::NoRoute);
        prop_assert!(p.check_connect(&host, port).is_err());
    }
}

// ---------------------------------------------------------------------------
// Route lookup and ports
// ---------------------------------------------------------------------------

#[test]
fn no_route_blocks() {
    let p = policy("routes:\n  - host: a.example\n");
    let d = send(&p, Via::Connect, "B.Example", 443, "GET", "/", NO_HEADERS);
    let Decision::Block(b) = d else {
        panic!("expected Block, got {d:?}");
    };
    assert_eq!(b.reason, BlockReason::NoRoute);
    assert_eq!(b.host, "b.example", "the block names the host, lower-cased");
    // Subdomains and parents are different hosts.
    for host in ["x.a.example", "example", "a.example.evil"] {
        assert_eq!(
            blocked(&send(&p, Via::Connect, host, 443, "GET", "/", NO_HEADERS)),
            BlockReason::NoRoute,
            "{host}"
        );
    }
    // An empty config denies everything.
    let p = policy("routes: []\n");
    assert_eq!(blocked(&get(&p, "/")), BlockReason::NoRoute);
}

#[test]
fn host_lookup_is_case_insensitive() {
    let p = policy("routes:\n  - host: b.example\n  - host: A.Example\n");
    let f = forwarded(send(
        &p,
        Via::Connect,
        "A.EXAMPLE",
        443,
        "GET",
        "/",
        NO_HEADERS,
    ));
    assert_eq!(f.route_index, 1);
    assert_eq!(f.route.host, "a.example");
    assert_eq!(
        p.route("a.EXAMPLE").map(|r| r.host.as_str()),
        Some("a.example")
    );
    assert_eq!(
        p.route("b.example").map(|r| r.host.as_str()),
        Some("b.example")
    );
    assert!(p.route("c.example").is_none());
}

#[test]
fn default_ports_depend_on_how_the_request_arrived() {
    let p = one_route("");
    assert_forward(&send(
        &p,
        Via::Connect,
        "a.example",
        443,
        "GET",
        "/",
        NO_HEADERS,
    ));
    assert_forward(&send(
        &p,
        Via::PlainHttp,
        "a.example",
        80,
        "GET",
        "/",
        NO_HEADERS,
    ));
    for (via, port) in [
        (Via::Connect, 80),
        (Via::Connect, 8443),
        (Via::PlainHttp, 443),
        (Via::PlainHttp, 8080),
    ] {
        assert_eq!(
            blocked(&send(&p, via, "a.example", port, "GET", "/", NO_HEADERS)),
            BlockReason::PortNotAllowed { port },
            "{via:?} {port}"
        );
    }
}

#[test]
fn explicit_ports_replace_the_defaults() {
    let p = one_route("ports: [8443, 80]");
    for via in [Via::Connect, Via::PlainHttp] {
        assert_forward(&send(&p, via, "a.example", 8443, "GET", "/", NO_HEADERS));
        assert_forward(&send(&p, via, "a.example", 80, "GET", "/", NO_HEADERS));
        assert_eq!(
            blocked(&send(&p, via, "a.example", 443, "GET", "/", NO_HEADERS)),
            BlockReason::PortNotAllowed { port: 443 }
        );
    }
}

#[test]
fn check_connect() {
    let p = policy("routes:\n  - host: a.example\n  - host: b.example\n    ports: [8443]\n");
    let r = p.check_connect("A.Example", 443).expect("allowed");
    assert_eq!(r.host, "a.example");
    assert_eq!(
        p.check_connect("a.example", 8443).unwrap_err(),
        Block {
            host: "a.example".into(),
            reason: BlockReason::PortNotAllowed { port: 8443 }
        }
    );
    assert_eq!(
        p.check_connect("b.example", 8443).expect("allowed").host,
        "b.example"
    );
    assert_eq!(
        p.check_connect("b.example", 443).unwrap_err().reason,
        BlockReason::PortNotAllowed { port: 443 }
    );
    assert_eq!(
        p.check_connect("C.example", 443).unwrap_err(),
        Block {
            host: "c.example".into(),
            reason: BlockReason::NoRoute
        }
    );
    // Introspection is plain HTTP only: no certificate is minted for it.
    assert_eq!(
        p.check_connect("_egress.local", 443).unwrap_err().reason,
        BlockReason::UnknownIntrospectionPath
    );
}

// ---------------------------------------------------------------------------
// Git over HTTPS
// ---------------------------------------------------------------------------

/// Method, `path[?query]`, headers.
type Case = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const PUSHES: &[Case] = &[
    ("POST", "/org/repo.git/git-receive-pack", &[]),
    ("POST", "/org/repo.git/git-receive-pack/", &[]),
    ("POST", "/org/repo/git-receive-pack", &[]),
    (
        "GET",
        "/org/repo.git/info/refs?service=git-receive-pack",
        &[],
    ),
    (
        "GET",
        "/org/repo.git/info/refs/?service=git-receive-pack",
        &[],
    ),
    (
        "GET",
        "/org/repo.git/info/refs?x=1&service=git-receive-pack",
        &[],
    ),
    (
        "GET",
        "/org/repo.git/info/refs?service=git-upload-pack&service=git-receive-pack",
        &[],
    ),
    // Percent-encoded variants.
    ("POST", "/org/repo.git/git%2Dreceive%2Dpack", &[]),
    ("POST", "/org/repo.git/git%2dreceive%2dpack", &[]),
    ("POST", "/org/repo.git%2Fgit-receive-pack", &[]),
    (
        "GET",
        "/org/repo.git/info/refs?service=git%2Dreceive%2Dpack",
        &[],
    ),
    (
        "GET",
        "/org/repo.git/info/refs?%73ervice=git-receive-pack",
        &[],
    ),
    (
        "GET",
        "/org/repo.git/info%2Frefs?service=git-receive-pack",
        &[],
    ),
    (
        "GET",
        "/org/repo.git/%69nfo/refs?service=git-receive-pack",
        &[],
    ),
    // By media type, on any path.
    (
        "POST",
        "/anything",
        &[("Content-Type", "application/x-git-receive-pack-request")],
    ),
    (
        "POST",
        "/anything",
        &[("content-type", "Application/X-Git-Receive-Pack-Request")],
    ),
    (
        "POST",
        "/anything",
        &[("Accept", "application/x-git-receive-pack-result")],
    ),
    // Push wins over fetch when a request claims both.
    (
        "POST",
        "/org/repo.git/git-upload-pack",
        &[("content-type", "application/x-git-receive-pack-request")],
    ),
    // Spellings a slash-merging, dot-resolving or case-folding backend
    // reads as the endpoint.
    (
        "GET",
        "/org/repo.git/info//refs?service=git-receive-pack",
        &[],
    ),
    (
        "GET",
        "/org/repo.git//info/refs?service=git-receive-pack",
        &[],
    ),
    (
        "GET",
        "/org/repo.git/INFO/Refs?Service=GIT-RECEIVE-PACK",
        &[],
    ),
    (
        "GET",
        "/org/repo.git/info/refs;x=1?service=git-receive-pack",
        &[],
    ),
    (
        "GET",
        "/org/repo.git/info\\refs?service=git-receive-pack",
        &[],
    ),
    (
        "GET",
        "/org/repo.git/info%252Frefs?service=git%252Dreceive-pack",
        &[],
    ),
    ("POST", "/org/repo.git//git-receive-pack", &[]),
    ("POST", "/org/repo.git/Git-Receive-Pack", &[]),
    ("POST", "/org/repo.git/git-receive-pack;v=2", &[]),
];

const FETCHES: &[Case] = &[
    (
        "GET",
        "/org/repo.git/info/refs?service=git-upload-pack",
        &[],
    ),
    ("GET", "/org/repo/info/refs?service=git-upload-pack", &[]),
    ("POST", "/org/repo.git/git-upload-pack", &[]),
    ("POST", "/org/repo.git/git%2Dupload%2Dpack", &[]),
    (
        "GET",
        "/org/repo.git/info/refs?service=git%2dupload%2dpack",
        &[],
    ),
    (
        "POST",
        "/x",
        &[("content-type", "application/x-git-upload-pack-request")],
    ),
    (
        "POST",
        "/x",
        &[("accept", "application/x-git-upload-pack-result")],
    ),
    (
        "GET",
        "/org/repo.git/info//refs?service=git-upload-pack",
        &[],
    ),
    (
        "GET",
        "/org/repo.git/info/refs?service=GIT-UPLOAD-PACK",
        &[],
    ),
    ("POST", "//org/repo.git//git-upload-pack//", &[]),
    ("POST", "/org/repo.git/a/b/../../git-upload-pack", &[]),
];

#[test]
fn git_push_is_always_blocked() {
    for git in ["", "git: {fetch: true}"] {
        for extra in ["", "\nmatches:\n  - paths: [{value: /}]"] {
            let p = one_route(&format!("{git}{extra}"));
            for (method, target, headers) in PUSHES {
                assert_eq!(
                    blocked(&https(&p, method, target, headers)),
                    BlockReason::GitPush,
                    "{git:?}{extra:?}: {method} {target} {headers:?}"
                );
            }
        }
    }
}

/// Dot segments are refused as ambiguous when the route has `matches`;
/// without, they are resolved before the git rules.
#[test]
fn git_endpoints_behind_dot_segments_are_git() {
    let p = one_route("git: {fetch: true}");
    for target in [
        "/org/repo.git/info/./refs?service=git-receive-pack",
        "/org/repo.git/info/x/../refs?service=git-receive-pack",
        "/org/repo.git/git-receive-pack/.",
        "/org/repo.git/x/%2e%2e/git-receive-pack",
    ] {
        assert_eq!(blocked(&get(&p, target)), BlockReason::GitPush, "{target}");
    }
}

#[test]
fn git_fetch_is_blocked_unless_the_route_allows_it() {
    let closed = one_route("");
    let open = one_route("git: {fetch: true}");
    let explicit_false = one_route("git: {fetch: false}");
    for (method, target, headers) in FETCHES {
        let what = format!("{method} {target} {headers:?}");
        assert_eq!(
            blocked(&https(&closed, method, target, headers)),
            BlockReason::GitFetch,
            "{what}"
        );
        assert_eq!(
            blocked(&https(&explicit_false, method, target, headers)),
            BlockReason::GitFetch,
            "{what}"
        );
        assert_forward(&https(&open, method, target, headers));
    }
}

#[test]
fn non_git_lookalikes_are_not_git() {
    let p = one_route("");
    for target in [
        "/docs/git-receive-pack.html",
        "/git-receive-pack-notes/x",
        "/org/repo.git/info/refs",
        "/org/repo.git/other?service=git-receive-pack",
        "/org/repo.git/info/refs?services=git-receive-pack",
    ] {
        assert_forward(&get(&p, target));
    }
    assert_forward(&https(
        &p,
        "POST",
        "/",
        &[("content-type", "application/x-git-other")],
    ));
}

// ---------------------------------------------------------------------------
// DNS over HTTPS
// ---------------------------------------------------------------------------

#[test]
fn dns_over_https_is_blocked_even_on_an_allowed_host() {
    for extra in ["", "matches:\n  - paths: [{value: /}]"] {
        let p = one_route(extra);
        for target in [
            "/dns-query",
            "/dns-query?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB",
            "/DNS-Query",
            "/dns-query/",
            "/resolver/dns-query",
            "/dns%2Dquery",
            "/resolver//dns-query",
            "/dns-query;v=1",
            // RFC 8484 GET on any path, and the JSON API.
            "/anything?dns=AAABAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB",
            "/?x=1&dns=q80BAAABAAAAAAAAA3d3dwdleGFtcGxlA2NvbQAAAQAB",
            "/resolve?name=example.com&type=A",
            "/api/v1/Resolve?name=example.com",
            "/q?ct=application/dns-json&name=example.com",
        ] {
            assert_eq!(
                blocked(&get(&p, target)),
                BlockReason::DnsOverHttps,
                "{extra:?} {target}"
            );
        }
        for (name, value) in [
            ("Content-Type", "application/dns-message"),
            ("accept", "application/dns-message"),
            ("Accept", "application/dns-json"),
            ("accept", "text/html, Application/DNS-JSON;q=0.9"),
            ("content-type", "application/dns-message; charset=binary"),
            ("accept", "application/dns-udpwireformat"),
        ] {
            assert_eq!(
                blocked(&https(&p, "POST", "/", &[(name, value)])),
                BlockReason::DnsOverHttps,
                "{extra:?} {name}: {value}"
            );
        }
    }
    let p = one_route("");
    assert_forward(&get(&p, "/dns-query-docs"));
    assert_forward(&get(&p, "/docs/dns-query/intro"));
    assert_forward(&get(&p, "/resolve"));
    assert_forward(&get(&p, "/search?name=example.com&type=A"));
    assert_forward(&get(&p, "/settings?dns=off"));
    assert_forward(&get(&p, "/a//b/./c"));
    assert_forward(&https(&p, "GET", "/", &[("accept", "application/json")]));
}

// ---------------------------------------------------------------------------
// Dot segments
// ---------------------------------------------------------------------------

#[test]
fn dot_segments_are_blocked_when_the_route_has_matches() {
    let p = one_route("matches:\n  - paths: [{value: /api/}]");
    for target in [
        "/api/../admin",
        "/api/..",
        "/api/./x",
        "/api/%2e%2e/admin",
        "/api/%2E%2e/admin",
        "/api/.%2E/admin",
        "/api/%2e/admin",
        "/api%2F..%2Fadmin",
        "/api/..\\admin",
        "/api/%5c..%5cadmin",
        "/api/x/..?q=1",
    ] {
        assert_eq!(
            blocked(&get(&p, target)),
            BlockReason::AmbiguousPath,
            "{target}"
        );
    }
    // Dots inside a segment are fine.
    for target in [
        "/api/.well-known",
        "/api/..foo",
        "/api/a..b/c.d",
        "/api/...",
        "/api/%2e%2e%2e",
    ] {
        assert_forward(&get(&p, target));
    }
}

#[test]
fn dot_segments_with_path_parameters_are_blocked() {
    let p = one_route("matches:\n  - paths: [{value: /api/}]");
    for target in [
        "/api/..;/admin",
        "/api/..;x=1/admin",
        "/api/%2e%2e;/admin",
        "/api/.;/x",
    ] {
        assert_eq!(
            blocked(&get(&p, target)),
            BlockReason::AmbiguousPath,
            "{target}"
        );
    }
}

#[test]
fn dot_segments_pass_when_there_is_no_prefix_rule_to_walk_around() {
    let p = one_route("");
    assert_forward(&get(&p, "/a/../b"));
    assert_forward(&get(&p, "/a/%2e%2e/b"));
}

// ---------------------------------------------------------------------------
// Introspection
// ---------------------------------------------------------------------------

#[test]
fn introspection() {
    let p = policy("routes:\n  - host: a.example\n    ports: [8443]\n");
    for host in ["_egress.local", "_EGRESS.Local"] {
        for via in [Via::PlainHttp, Via::Connect] {
            let d = send(&p, via, host, 80, "GET", "/allowlist", NO_HEADERS);
            assert!(matches!(d, Decision::Introspect), "{host} {via:?}: {d:?}");
        }
        let d = send(
            &p,
            Via::PlainHttp,
            host,
            80,
            "GET",
            "/allowlist?x=1",
            NO_HEADERS,
        );
        assert!(matches!(d, Decision::Introspect), "{d:?}");
    }
    for target in [
        "/",
        "/allowlist/",
        "/allowlistx",
        "/Allowlist",
        "/x/allowlist",
        "/allowlist/../x",
    ] {
        let d = send(
            &p,
            Via::PlainHttp,
            "_egress.local",
            80,
            "GET",
            target,
            NO_HEADERS,
        );
        let Decision::Block(b) = d else {
            panic!("{target}: expected Block, got {d:?}");
        };
        assert_eq!(b.reason, BlockReason::UnknownIntrospectionPath, "{target}");
        assert_eq!(b.host, "_egress.local");
    }
    assert_eq!(p.introspection_json(), p.config().to_json());
    let json: serde_json::Value = serde_json::from_str(&p.introspection_json()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"routes": [{"host": "a.example", "ports": [8443]}]})
    );
}

// ---------------------------------------------------------------------------
// What a Forward carries
// ---------------------------------------------------------------------------

#[test]
fn forward_carries_the_route_and_its_detectors() {
    let p = policy(
        r"
routes:
  - host: all.example
  - host: off.example
    dlp: {outbound_detectors: false, inbound_detectors: false}
  - host: known.example
    auth_scheme: Bearer
    token_env: EGRESS_TOKEN_K
    dlp: {outbound_detectors: [known_secrets], inbound_detectors: [naive_injection_detection]}
  - host: tokens.example
    dlp: {outbound_detectors: [token_patterns]}
  - host: both.example
    dlp: {outbound_detectors: [known_secrets, token_patterns], inbound_detectors: false}
",
    );
    let go = |host: &str| forwarded(send(&p, Via::Connect, host, 443, "GET", "/", NO_HEADERS));
    let cases = [
        (
            "all.example",
            0,
            DetectorSet::OUTBOUND,
            DetectorSet::INBOUND,
        ),
        ("off.example", 1, DetectorSet::NONE, DetectorSet::NONE),
        (
            "known.example",
            2,
            DetectorSet::of(&[Detector::KnownSecrets]),
            DetectorSet::INBOUND,
        ),
        (
            "tokens.example",
            3,
            DetectorSet::of(&[Detector::TokenPatterns]),
            DetectorSet::INBOUND,
        ),
        ("both.example", 4, DetectorSet::OUTBOUND, DetectorSet::NONE),
    ];
    for (host, index, outbound, inbound) in cases {
        let f = go(host);
        assert_eq!(f.route_index, index, "{host}");
        assert_eq!(f.route.host, host);
        assert_eq!(f.outbound, outbound, "{host}");
        assert_eq!(f.inbound, inbound, "{host}");
    }
    assert_eq!(
        DetectorSet::OUTBOUND,
        DetectorSet::of(&[Detector::TokenPatterns, Detector::KnownSecrets])
    );
    assert!(!DetectorSet::OUTBOUND.contains(Detector::NaiveInjectionDetection));
    assert!(DetectorSet::INBOUND.contains(Detector::NaiveInjectionDetection));

    assert_eq!(
        go("known.example").auth(),
        Some(Auth {
            scheme: AuthScheme::Bearer,
            token_env: "EGRESS_TOKEN_K"
        })
    );
    assert_eq!(go("all.example").auth(), None);
}

// ---------------------------------------------------------------------------
// Block messages
// ---------------------------------------------------------------------------

#[test]
fn agent_message_names_the_host_and_how_to_ask_for_more() {
    let p = one_route("");
    let d = send(
        &p,
        Via::Connect,
        "Other.Example",
        443,
        "GET",
        "/",
        NO_HEADERS,
    );
    let Decision::Block(b) = d else {
        panic!("expected Block, got {d:?}");
    };
    assert_eq!(
        b.agent_message(),
        "bot-bottle egress blocked this request to other.example: the host is not on the egress allowlist.\n\
         To see what is allowed, call the supervise tool `list-egress-routes` \
         (or GET http://_egress.local/allowlist). To ask for more, call \
         `allow` with a proposed routes.yaml and a justification; a human reviews it.\n"
    );
    let b = Block {
        host: "a.example".into(),
        reason: BlockReason::GitPush,
    };
    let m = b.agent_message();
    assert!(m.contains("a.example"), "{m}");
    assert!(m.contains("push through git-gate"), "{m}");
    assert!(
        m.contains("list-egress-routes") && m.contains("`allow`"),
        "{m}"
    );
}

#[test]
fn block_reasons_have_tags_and_messages() {
    let cases = [
        (
            BlockReason::NoRoute,
            "no-route",
            "the host is not on the egress allowlist",
        ),
        (
            BlockReason::PortNotAllowed { port: 8443 },
            "port-not-allowed",
            "port 8443 is not among the route's ports",
        ),
        (
            BlockReason::NoMatch,
            "no-match",
            "no `matches` entry of the host's route accepts this method, path and headers",
        ),
        (
            BlockReason::AmbiguousPath,
            "ambiguous-path",
            "the path contains '.' or '..' segments",
        ),
        (
            BlockReason::GitPush,
            "git-push",
            "git push over HTTPS is never allowed; push through git-gate",
        ),
        (
            BlockReason::GitFetch,
            "git-fetch",
            "git fetch/clone over HTTPS is not allowed for this host; use git-gate or set git.fetch: true on the route",
        ),
        (
            BlockReason::DnsOverHttps,
            "dns-over-https",
            "DNS over HTTPS is not allowed",
        ),
        (
            BlockReason::UnknownIntrospectionPath,
            "unknown-introspection-path",
            "_egress.local only serves /allowlist",
        ),
    ];
    for (reason, tag, text) in cases {
        assert_eq!(reason.tag(), tag);
        assert_eq!(reason.to_string(), text);
    }
}

#[test]
fn request_debug_never_prints_headers_or_query() {
    let hs = [("authorization", "Bearer sk-secret-value")];
    let req = Request {
        via: Via::Connect,
        host: "a.example",
        port: 443,
        method: "GET",
        path: "/p",
        query: Some("token=sk-query-secret"),
        headers: &hs,
    };
    let shown = format!("{req:?}");
    assert!(
        !shown.contains("sk-secret-value") && !shown.contains("sk-query-secret"),
        "{shown}"
    );
    assert!(
        shown.contains("a.example") && shown.contains("/p"),
        "{shown}"
    );
}

#[test]
fn credentials_are_never_injected_over_plain_http() {
    let p = Policy::from_yaml(
        "routes:\n  - host: a.example\n    ports: [80, 443]\n    auth_scheme: Bearer\n    token_env: EGRESS_TOKEN_A\n",
    )
    .unwrap();
    let headers: Vec<(&str, &str)> = Vec::new();
    let req = Request {
        via: Via::PlainHttp,
        host: "a.example",
        port: 80,
        method: "GET",
        path: "/",
        query: None,
        headers: &headers,
    };
    match p.decide(&req) {
        Decision::Block(b) => assert_eq!(b.reason, BlockReason::CleartextAuth),
        other => panic!("expected a block, got {other:?}"),
    }
    let tls = Request {
        via: Via::Connect,
        port: 443,
        ..req
    };
    assert!(matches!(p.decide(&tls), Decision::Forward(_)));
}

// ---------------------------------------------------------------------------
// Path normalisation for the git and DoH rules
// ---------------------------------------------------------------------------

#[test]
fn normalisation_reads_the_path_as_the_most_lenient_backend_would() {
    for (raw, want) in [
        ("/", "/"),
        ("", "/"),
        ("//a///b/", "/a/b"),
        ("/a/./b/../c", "/a/c"),
        ("/../../a", "/a"),
        ("/a%2Fb", "/a/b"),
        ("/a%252Fb", "/a/b"),
        ("/a\\b", "/a/b"),
        ("/a;x=1/B;y", "/a/b"),
        ("/Info/REFS", "/info/refs"),
    ] {
        assert_eq!(normalize_path(raw), want, "{raw:?}");
    }
}

/// Git and `DoH` endpoints (path, query) and what each must be refused as.
const ENDPOINTS: &[(&str, &str, BlockReason)] = &[
    (
        "/o/r.git/info/refs",
        "service=git-receive-pack",
        BlockReason::GitPush,
    ),
    ("/o/r.git/git-receive-pack", "", BlockReason::GitPush),
    (
        "/o/r.git/info/refs",
        "service=git-upload-pack",
        BlockReason::GitFetch,
    ),
    ("/o/r.git/git-upload-pack", "", BlockReason::GitFetch),
    ("/dns-query", "", BlockReason::DnsOverHttps),
    (
        "/p/resolve",
        "name=example.com&type=A",
        BlockReason::DnsOverHttps,
    ),
];

/// One disguise a lenient backend sees through.
#[derive(Debug, Clone)]
enum Disguise {
    DoubleSlash(usize),
    DotSegment(usize),
    DotDot(usize),
    Percent(usize),
    DoublePercent(usize),
    Upper(usize),
    Param(usize),
}

fn disguise(path: &str, d: &Disguise) -> String {
    let slashes: Vec<usize> = path.match_indices('/').map(|(i, _)| i).collect();
    let at = |n: usize| slashes[n % slashes.len()];
    let by_slash = matches!(
        d,
        Disguise::DoubleSlash(_)
            | Disguise::DotSegment(_)
            | Disguise::DotDot(_)
            | Disguise::Param(_)
    );
    if by_slash && slashes.is_empty() {
        // An earlier disguise encoded the only slash.
        return path.to_owned();
    }
    match d {
        Disguise::DoubleSlash(n) => format!("{}/{}", &path[..at(*n)], &path[at(*n)..]),
        Disguise::DotSegment(n) => format!("{}/.{}", &path[..at(*n)], &path[at(*n)..]),
        Disguise::DotDot(n) => format!("{}/zz/..{}", &path[..at(*n)], &path[at(*n)..]),
        Disguise::Percent(n) | Disguise::DoublePercent(n) => {
            let i = n % path.len();
            let c = path.as_bytes()[i];
            if c == b'%' {
                // Nesting escapes deeper than any backend decodes proves nothing.
                return path.to_owned();
            }
            let enc = if matches!(d, Disguise::Percent(_)) {
                format!("%{c:02X}")
            } else {
                format!("%25{c:02X}")
            };
            format!("{}{enc}{}", &path[..i], &path[i + 1..])
        }
        Disguise::Upper(n) => {
            let i = n % path.len();
            format!("{}{}", &path[..i], path[i..].to_ascii_uppercase())
        }
        Disguise::Param(n) => {
            let end = slashes
                .get(n % slashes.len() + 1)
                .copied()
                .unwrap_or(path.len());
            format!("{};p=1{}", &path[..end], &path[end..])
        }
    }
}

fn arb_disguise() -> impl Strategy<Value = Disguise> {
    (0usize..7, 0usize..64).prop_map(|(k, n)| match k {
        0 => Disguise::DoubleSlash(n),
        1 => Disguise::DotSegment(n),
        2 => Disguise::DotDot(n),
        3 => Disguise::Percent(n),
        4 => Disguise::DoublePercent(n),
        5 => Disguise::Upper(n),
        _ => Disguise::Param(n),
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Normalising twice changes nothing.
    #[test]
    fn normalisation_is_idempotent(path in "[/a-zA-Z.%25\\\\;2F]{0,16}") {
        let once = normalize_path(&path);
        prop_assert_eq!(normalize_path(&once), once);
    }

    /// However a git or `DoH` endpoint is disguised, it is refused for the
    /// same reason as its plain spelling.
    #[test]
    fn disguised_endpoints_are_refused_like_the_plain_ones(
        which in 0..ENDPOINTS.len(),
        disguises in prop::collection::vec(arb_disguise(), 1..4),
    ) {
        let (path, query, reason) = &ENDPOINTS[which];
        let mut p = (*path).to_owned();
        for d in &disguises {
            p = disguise(&p, d);
        }
        let target = if query.is_empty() { p.clone() } else { format!("{p}?{query}") };
        let policy = one_route("");
        let d = get(&policy, &target);
        prop_assert_eq!(blocked(&d), reason.clone(), "{}", target);
    }
}
