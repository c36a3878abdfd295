//! routes.yaml parsing, validation and serialisation (SPEC §2).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::fmt::Write as _;

use proptest::prelude::*;

use super::*;
use crate::policy::Policy;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn parse(yaml: &str) -> RoutesConfig {
    RoutesConfig::from_yaml(yaml).unwrap_or_else(|e| panic!("rejected:\n{e}\n--- input:\n{yaml}"))
}

/// Every error line of a rejected file.
fn errors(yaml: &str) -> Vec<String> {
    match RoutesConfig::from_yaml(yaml) {
        Ok(cfg) => panic!("accepted {cfg:?}\n--- input:\n{yaml}"),
        Err(e) => {
            assert!(!e.0.is_empty(), "ConfigErrors must never be empty");
            let lines: Vec<String> = e.0.iter().map(ToString::to_string).collect();
            // Display of the whole set is one line per error.
            assert_eq!(e.to_string(), lines.join("\n"));
            lines
        }
    }
}

/// The single error of a rejected file.
fn error(yaml: &str) -> String {
    let mut e = errors(yaml);
    assert_eq!(e.len(), 1, "expected exactly one error, got {e:#?}");
    e.remove(0)
}

/// One route for `a.example` with the given extra keys (indented as route keys).
fn route_yaml(extra: &str) -> String {
    let mut s = String::from("routes:\n  - host: a.example\n");
    for line in extra.lines() {
        s.push_str("    ");
        s.push_str(line);
        s.push('\n');
    }
    s
}

/// The error of a single `a.example` route carrying `extra`.
fn route_error(extra: &str) -> String {
    error(&route_yaml(extra))
}

// ---------------------------------------------------------------------------
// Parsing: every key and its default
// ---------------------------------------------------------------------------

#[test]
fn minimal_route_takes_every_default() {
    let cfg = parse("routes:\n  - host: api.example.com\n");
    assert_eq!(cfg.log, LogLevel::Blocked);
    assert_eq!(cfg.log.as_u8(), 1);
    assert_eq!(cfg.routes, vec![RouteSpec::new("api.example.com")]);
    let r = &cfg.routes[0];
    assert_eq!(r.auth(), None);
    assert_eq!(r.matches, None);
    assert!(!r.git.fetch);
    assert_eq!(r.ports, None);
    assert!(!r.allow_private);
    assert_eq!(r.dlp.outbound_detectors, DetectorChoice::All);
    assert_eq!(r.dlp.inbound_detectors, DetectorChoice::All);
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one file exercising every key, checked field by field"
)]
fn every_key_is_parsed() {
    let cfg = parse(
        r#"
log: 2
routes:
  - host: API.GitHub.com
    auth_scheme: token
    token_env: EGRESS_TOKEN_GITHUB
    matches:
      - paths:
          - value: /repos/
          - type: prefix
            value: /user
          - type: exact
            value: /rate_limit
          - type: regex
            value: /orgs/[^/]+/repos
        methods: [get, Head]
        headers:
          - name: Accept
            value: application/vnd.github+json
          - name: X-GitHub-Api-Version
            value: "2022-.*"
            type: regex
          - name: x-exact
            value: v
            type: exact
      - methods: [POST]
    git:
      fetch: true
    ports: [443, 8443]
    allow_private: true
    dlp:
      outbound_detectors: [known_secrets]
      inbound_detectors: false
  - host: api.anthropic.com
    auth_scheme: Bearer
    token_env: _tok1
    dlp:
      outbound_detectors: false
      inbound_detectors: [naive_injection_detection]
  - host: 10.0.0.7
    git: {fetch: false}
    allow_private: false
    dlp:
      outbound_detectors: [known_secrets, token_patterns]
"#,
    );
    assert_eq!(cfg.log, LogLevel::All);
    assert_eq!(cfg.routes.len(), 3);

    let gh = &cfg.routes[0];
    assert_eq!(gh.host, "api.github.com", "host is lower-cased at load");
    assert_eq!(
        gh.auth(),
        Some(Auth {
            scheme: AuthScheme::Token,
            token_env: "EGRESS_TOKEN_GITHUB"
        })
    );
    let paths = vec![
        PathMatch {
            kind: PathKind::Prefix,
            value: "/repos/".into(),
        },
        PathMatch {
            kind: PathKind::Prefix,
            value: "/user".into(),
        },
        PathMatch {
            kind: PathKind::Exact,
            value: "/rate_limit".into(),
        },
        PathMatch {
            kind: PathKind::Regex,
            value: "/orgs/[^/]+/repos".into(),
        },
    ];
    let headers = vec![
        HeaderMatch {
            name: "accept".into(),
            value: "application/vnd.github+json".into(),
            kind: ValueKind::Exact,
        },
        HeaderMatch {
            name: "x-github-api-version".into(),
            value: "2022-.*".into(),
            kind: ValueKind::Regex,
        },
        HeaderMatch {
            name: "x-exact".into(),
            value: "v".into(),
            kind: ValueKind::Exact,
        },
    ];
    assert_eq!(
        gh.matches,
        Some(vec![
            MatchEntry {
                paths,
                methods: vec!["GET".into(), "HEAD".into()],
                headers,
            },
            MatchEntry {
                paths: vec![],
                methods: vec!["POST".into()],
                headers: vec![],
            },
        ])
    );
    assert!(gh.git.fetch);
    assert_eq!(gh.ports, Some(vec![443, 8443]));
    assert!(gh.allow_private);
    assert_eq!(
        gh.dlp.outbound_detectors,
        DetectorChoice::Only(vec![OutboundDetector::KnownSecrets])
    );
    assert_eq!(gh.dlp.inbound_detectors, DetectorChoice::Off);

    let anthropic = &cfg.routes[1];
    assert_eq!(
        anthropic.auth(),
        Some(Auth {
            scheme: AuthScheme::Bearer,
            token_env: "_tok1"
        })
    );
    assert_eq!(anthropic.dlp.outbound_detectors, DetectorChoice::Off);
    assert_eq!(
        anthropic.dlp.inbound_detectors,
        DetectorChoice::Only(vec![InboundDetector::NaiveInjectionDetection])
    );
    assert_eq!(anthropic.matches, None);
    assert_eq!(anthropic.ports, None);

    let ip = &cfg.routes[2];
    assert_eq!(ip.host, "10.0.0.7");
    assert!(!ip.git.fetch);
    assert!(!ip.allow_private);
    assert_eq!(
        ip.dlp.outbound_detectors,
        DetectorChoice::Only(vec![
            OutboundDetector::KnownSecrets,
            OutboundDetector::TokenPatterns
        ]),
        "list order is kept"
    );
    assert_eq!(ip.dlp.inbound_detectors, DetectorChoice::All);
}

#[test]
fn log_levels() {
    for (text, level, n) in [
        ("0", LogLevel::Off, 0),
        ("1", LogLevel::Blocked, 1),
        ("2", LogLevel::All, 2),
    ] {
        let cfg = parse(&format!("log: {text}\nroutes: []\n"));
        assert_eq!(cfg.log, level);
        assert_eq!(cfg.log.as_u8(), n);
    }
    assert_eq!(LogLevel::default(), LogLevel::Blocked);
}

#[test]
fn empty_routes_list_is_a_deny_all_config() {
    assert_eq!(parse("routes: []\n"), RoutesConfig::default());
}

#[test]
fn empty_sub_mappings_mean_defaults() {
    let cfg = parse(&route_yaml("git: {}\ndlp: {}\n"));
    let r = &cfg.routes[0];
    assert!(!r.git.fetch);
    assert_eq!(r.dlp.outbound_detectors, DetectorChoice::All);
    assert_eq!(r.dlp.inbound_detectors, DetectorChoice::All);
}

#[test]
fn an_empty_matches_entry_is_refused() {
    // `{}` would accept every request: almost certainly a mistake.
    let errors = RoutesConfig::from_yaml(&route_yaml("matches:\n  - {}\n")).unwrap_err();
    assert_eq!(
        errors.to_string(),
        "routes[0] (host \"a.example\"): matches[0]: an empty entry accepts every request; \
         give paths, methods or headers, or omit matches"
    );
}

#[test]
fn hosts_may_be_ip_addresses_and_use_underscores() {
    let cfg =
        parse("routes:\n  - host: 127.0.0.1\n  - host: \"::1\"\n  - host: my_service.internal\n");
    let hosts: Vec<&str> = cfg.routes.iter().map(|r| r.host.as_str()).collect();
    assert_eq!(hosts, ["127.0.0.1", "::1", "my_service.internal"]);
}

#[test]
fn detector_choice_enables() {
    use InboundDetector::NaiveInjectionDetection as Inj;
    use OutboundDetector::{KnownSecrets as Known, TokenPatterns as Tok};
    assert!(DetectorChoice::All.enables(Tok) && DetectorChoice::All.enables(Known));
    assert!(!DetectorChoice::Off.enables(Tok) && !DetectorChoice::Off.enables(Known));
    let only = DetectorChoice::Only(vec![Known]);
    assert!(only.enables(Known) && !only.enables(Tok));
    assert!(DetectorChoice::<InboundDetector>::All.enables(Inj));
    assert!(!DetectorChoice::<InboundDetector>::Off.enables(Inj));
    let names: Vec<&str> = OutboundDetector::ALL.iter().map(|d| d.name()).collect();
    assert_eq!(names, ["token_patterns", "known_secrets"]);
    let names: Vec<&str> = InboundDetector::ALL.iter().map(|d| d.name()).collect();
    assert_eq!(names, ["naive_injection_detection"]);
    assert_eq!(AuthScheme::Bearer.as_str(), "Bearer");
    assert_eq!(AuthScheme::Token.as_str(), "token");
}

// ---------------------------------------------------------------------------
// Validation: document level
// ---------------------------------------------------------------------------

#[test]
fn empty_document_misses_routes() {
    assert_eq!(error(""), "routes: missing required key");
    assert_eq!(error("# only a comment\n"), "routes: missing required key");
    assert_eq!(error("log: 2\n"), "routes: missing required key");
}

#[test]
fn unknown_top_level_key() {
    assert_eq!(
        errors("routes: []\nlogging: 2\n"),
        ["logging: unknown key (expected one of: routes, log)"]
    );
    // A typo of `routes` is reported as unknown and as missing.
    assert_eq!(
        errors("route:\n  - host: a.example\n"),
        [
            "route: unknown key (expected one of: routes, log)",
            "routes: missing required key",
        ]
    );
}

#[test]
fn top_level_wrong_types() {
    assert_eq!(
        error("- host: a.example\n"),
        "expected a mapping, found a list"
    );
    assert_eq!(
        error("just text\n"),
        "expected a mapping, found string \"just text\""
    );
    assert_eq!(
        error("routes:\n  host: a.example\n"),
        "routes: expected a list, found a mapping"
    );
    assert_eq!(error("routes:\n"), "routes: expected a list, found null");
    assert_eq!(
        error("routes: a.example\n"),
        "routes: expected a list, found string \"a.example\""
    );
}

#[test]
fn log_out_of_range_or_wrong_type() {
    assert_eq!(
        error("log: 3\nroutes: []\n"),
        "log: expected 0, 1 or 2, found number 3"
    );
    assert_eq!(
        error("log: -1\nroutes: []\n"),
        "log: expected 0, 1 or 2, found number -1"
    );
    assert_eq!(
        error("log: \"1\"\nroutes: []\n"),
        "log: expected 0, 1 or 2, found string \"1\""
    );
    assert_eq!(
        error("log: true\nroutes: []\n"),
        "log: expected 0, 1 or 2, found boolean true"
    );
    assert_eq!(
        error("log: 1.5\nroutes: []\n"),
        "log: expected 0, 1 or 2, found number 1.5"
    );
}

#[test]
fn yaml_syntax_errors_name_the_line() {
    let e = error("routes:\n  - host: a.example\n   bad: [\n");
    assert_eq!(
        e,
        "YAML syntax error at line 3: did not find expected '-' indicator at line 3 column 4, \
         while parsing a block collection at line 2 column 3"
    );
    let e = error("routes: [\n");
    assert_eq!(
        e,
        "YAML syntax error at line 2: did not find expected node content at line 2 column 1, \
         while parsing a flow node"
    );
    let e = error("routes:\n- host: a.example\n\tports: [1]\n");
    assert!(e.starts_with("YAML syntax error at line 3: "), "{e}");

    let Err(ConfigErrors(errs)) = RoutesConfig::from_yaml("routes: [\n") else {
        panic!("accepted");
    };
    assert!(
        matches!(&errs[0], ConfigError { route: None, host: None, key, kind: ConfigErrorKind::Syntax { line: Some(2), .. } } if key.is_empty()),
        "{errs:?}"
    );
}

#[test]
fn duplicate_mapping_keys_are_rejected() {
    assert_eq!(
        error("routes:\n- host: a.example\n  host: b.example\n"),
        "YAML syntax error at line 2: routes[0]: duplicate entry with key \"host\" at line 2 column 3"
    );
}

// ---------------------------------------------------------------------------
// Validation: route keys
// ---------------------------------------------------------------------------

#[test]
fn route_must_be_a_mapping() {
    assert_eq!(
        error("routes:\n  - a.example\n"),
        "routes[0]: expected a mapping, found string \"a.example\""
    );
    assert_eq!(
        error("routes:\n  - host: a.example\n    1: x\n"),
        "routes[0] (host \"a.example\"): expected string keys, found number 1"
    );
}

#[test]
fn unknown_route_key() {
    assert_eq!(
        route_error("port: 443"),
        "routes[0] (host \"a.example\"): port: unknown key \
         (expected one of: host, auth_scheme, token_env, matches, git, ports, allow_private, dlp)"
    );
    // The manifest form (`auth: {scheme, token_ref}`, `role`) is not routes.yaml.
    assert_eq!(
        errors(&route_yaml("auth: {scheme: Bearer}\nrole: x")),
        [
            "routes[0] (host \"a.example\"): auth: unknown key (expected one of: host, auth_scheme, token_env, matches, git, ports, allow_private, dlp)",
            "routes[0] (host \"a.example\"): role: unknown key (expected one of: host, auth_scheme, token_env, matches, git, ports, allow_private, dlp)",
        ]
    );
}

#[test]
fn unknown_nested_keys() {
    assert_eq!(
        route_error("matches:\n  - path: [{value: /a}]"),
        "routes[0] (host \"a.example\"): matches[0].path: unknown key (expected one of: paths, methods, headers)"
    );
    assert_eq!(
        route_error("matches:\n  - paths:\n      - {value: /a, kind: exact}"),
        "routes[0] (host \"a.example\"): matches[0].paths[0].kind: unknown key (expected one of: type, value)"
    );
    assert_eq!(
        route_error("matches:\n  - headers:\n      - {name: a, value: b, regex: true}"),
        "routes[0] (host \"a.example\"): matches[0].headers[0].regex: unknown key (expected one of: name, value, type)"
    );
    assert_eq!(
        route_error("git: {fetch: true, push: true}"),
        "routes[0] (host \"a.example\"): git.push: unknown key (expected one of: fetch)"
    );
    assert_eq!(
        route_error("dlp: {outbound: false}"),
        "routes[0] (host \"a.example\"): dlp.outbound: unknown key (expected one of: outbound_detectors, inbound_detectors)"
    );
}

#[test]
fn missing_host() {
    assert_eq!(
        error("routes:\n  - ports: [443]\n"),
        "routes[0]: host: missing required key"
    );
    assert_eq!(
        error("routes:\n  - {}\n"),
        "routes[0]: host: missing required key"
    );
}

#[test]
fn host_wrong_types() {
    assert_eq!(
        error("routes:\n  - host: [a.example]\n"),
        "routes[0]: host: expected a string, found a list"
    );
    assert_eq!(
        error("routes:\n  - host: 443\n"),
        "routes[0]: host: expected a string, found number 443"
    );
    assert_eq!(
        error("routes:\n  - host: {name: a.example}\n"),
        "routes[0]: host: expected a string, found a mapping"
    );
    assert_eq!(
        error("routes:\n  - host: null\n"),
        "routes[0]: host: expected a string, found null"
    );
}

#[test]
fn tagged_value_is_described_with_one_bang() {
    assert_eq!(
        error("routes:\n  - host: !custom a.example\n"),
        "routes[0] (host \"a.example\"): host: expected a string, found tagged value !custom"
    );
}

#[test]
fn invalid_hosts() {
    let cases = [
        (
            "\"*.example.com\"",
            "\"*.example.com\"",
            "wildcards are not supported; list each host",
        ),
        (
            "_egress.local",
            "\"_egress.local\"",
            "_egress.local is answered by the proxy itself",
        ),
        (
            "_EGRESS.Local",
            "\"_egress.local\"",
            "_egress.local is answered by the proxy itself",
        ),
        ("\"\"", "\"\"", "host is empty"),
        (
            "a.example.",
            "\"a.example.\"",
            "\"a.example.\": drop the trailing dot",
        ),
        (
            "a.example:443",
            "\"a.example:443\"",
            "\"a.example:443\" is not a valid host name (label \"example:443\")",
        ),
        (
            "https://a.example",
            "\"https://a.example\"",
            "\"https://a.example\" is not a valid host name (label \"https://a\")",
        ),
        (
            "-a.example",
            "\"-a.example\"",
            "\"-a.example\" is not a valid host name (label \"-a\")",
        ),
        (
            "a..example",
            "\"a..example\"",
            "\"a..example\" is not a valid host name (label \"\")",
        ),
        (
            "\"a b.example\"",
            "\"a b.example\"",
            "\"a b.example\" is not a valid host name (label \"a b\")",
        ),
    ];
    for (yaml, shown, msg) in cases {
        assert_eq!(
            error(&format!("routes:\n  - host: {yaml}\n")),
            format!("routes[0] (host {shown}): host: {msg}"),
            "host {yaml}"
        );
    }
    let long_label = "a".repeat(64);
    assert_eq!(
        error(&format!("routes:\n  - host: {long_label}.example\n")),
        format!(
            "routes[0] (host \"{long_label}.example\"): host: \"{long_label}.example\" is not a valid host name (label \"{long_label}\")"
        )
    );
    let long_host = vec!["a".repeat(60); 5].join(".");
    assert_eq!(
        error(&format!("routes:\n  - host: {long_host}\n")),
        format!("routes[0] (host \"{long_host}\"): host: host is longer than 253 characters")
    );
}

#[test]
fn duplicate_hosts_are_case_insensitive() {
    assert_eq!(
        error("routes:\n  - host: A.example\n  - host: b.example\n  - host: a.EXAMPLE\n"),
        "routes[2] (host \"a.example\"): host: duplicate host \"a.example\"; routes[0] already defines it"
    );
    // Every further duplicate names the first one.
    assert_eq!(
        errors("routes:\n  - host: a.example\n  - host: a.example\n  - host: a.example\n"),
        [
            "routes[1] (host \"a.example\"): host: duplicate host \"a.example\"; routes[0] already defines it",
            "routes[2] (host \"a.example\"): host: duplicate host \"a.example\"; routes[0] already defines it",
        ]
    );
}

#[test]
fn auth_scheme_and_token_env_go_together() {
    assert_eq!(
        route_error("auth_scheme: Bearer"),
        "routes[0] (host \"a.example\"): token_env: auth_scheme needs token_env"
    );
    assert_eq!(
        route_error("token_env: EGRESS_TOKEN"),
        "routes[0] (host \"a.example\"): auth_scheme: token_env needs auth_scheme"
    );
}

#[test]
fn bad_auth_scheme() {
    for (v, found) in [
        ("Basic", "string \"Basic\""),
        ("bearer", "string \"bearer\""),
        ("Token", "string \"Token\""),
        ("true", "boolean true"),
    ] {
        assert_eq!(
            route_error(&format!("auth_scheme: {v}\ntoken_env: T")),
            format!(
                "routes[0] (host \"a.example\"): auth_scheme: expected \"Bearer\" or \"token\", found {found}"
            )
        );
    }
}

#[test]
fn bad_token_env() {
    for name in ["1TOKEN", "MY-TOKEN", "A B", "$HOME", ""] {
        assert_eq!(
            route_error(&format!("auth_scheme: Bearer\ntoken_env: \"{name}\"")),
            format!(
                "routes[0] (host \"a.example\"): token_env: \"{name}\" is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
            )
        );
    }
    assert_eq!(
        route_error("auth_scheme: Bearer\ntoken_env: 12"),
        "routes[0] (host \"a.example\"): token_env: expected a string, found number 12"
    );
}

#[test]
fn boolean_keys_reject_strings_and_yaml_1_1_words() {
    for (v, found) in [
        ("\"true\"", "string \"true\""),
        ("yes", "string \"yes\""),
        ("on", "string \"on\""),
        ("1", "number 1"),
    ] {
        assert_eq!(
            route_error(&format!("allow_private: {v}")),
            format!(
                "routes[0] (host \"a.example\"): allow_private: expected true or false, found {found}"
            )
        );
        assert_eq!(
            route_error(&format!("git: {{fetch: {v}}}")),
            format!(
                "routes[0] (host \"a.example\"): git.fetch: expected true or false, found {found}"
            )
        );
    }
    assert_eq!(
        route_error("git: true"),
        "routes[0] (host \"a.example\"): git: expected a mapping, found boolean true"
    );
    assert_eq!(
        route_error("dlp: false"),
        "routes[0] (host \"a.example\"): dlp: expected a mapping, found boolean false"
    );
}

#[test]
fn bad_ports() {
    let e = |extra: &str| route_error(extra);
    assert_eq!(
        e("ports: 443"),
        "routes[0] (host \"a.example\"): ports: expected a list, found number 443"
    );
    assert_eq!(
        e("ports: [\"443\"]"),
        "routes[0] (host \"a.example\"): ports[0]: expected a port number 1-65535, found string \"443\""
    );
    assert_eq!(
        e("ports: [443, 0]"),
        "routes[0] (host \"a.example\"): ports[1]: expected a port number 1-65535, found number 0"
    );
    assert_eq!(
        e("ports: [70000]"),
        "routes[0] (host \"a.example\"): ports[0]: expected a port number 1-65535, found number 70000"
    );
    assert_eq!(
        e("ports: [65536]"),
        "routes[0] (host \"a.example\"): ports[0]: expected a port number 1-65535, found number 65536"
    );
    assert_eq!(
        e("ports: [-1]"),
        "routes[0] (host \"a.example\"): ports[0]: expected a port number 1-65535, found number -1"
    );
    assert_eq!(
        e("ports: [443, 80, 443]"),
        "routes[0] (host \"a.example\"): ports[2]: port 443 listed twice"
    );
    assert_eq!(
        e("ports: []"),
        "routes[0] (host \"a.example\"): ports: empty list; omit the key instead"
    );
    assert_eq!(
        parse(&route_yaml("ports: [1, 65535]")).routes[0].ports,
        Some(vec![1, 65535])
    );
}

#[test]
fn bad_detectors() {
    let r = "routes[0] (host \"a.example\")";
    assert_eq!(
        route_error("dlp: {outbound_detectors: [token_pattern]}"),
        format!(
            "{r}: dlp.outbound_detectors[0]: unknown detector \"token_pattern\" (expected one of: token_patterns, known_secrets)"
        )
    );
    assert_eq!(
        route_error("dlp: {inbound_detectors: [known_secrets]}"),
        format!(
            "{r}: dlp.inbound_detectors[0]: unknown detector \"known_secrets\" (expected one of: naive_injection_detection)"
        )
    );
    assert_eq!(
        route_error("dlp: {outbound_detectors: [naive_injection_detection]}"),
        format!(
            "{r}: dlp.outbound_detectors[0]: unknown detector \"naive_injection_detection\" (expected one of: token_patterns, known_secrets)"
        )
    );
    assert_eq!(
        route_error("dlp: {outbound_detectors: [known_secrets, token_patterns, known_secrets]}"),
        format!("{r}: dlp.outbound_detectors[2]: detector \"known_secrets\" listed twice")
    );
    assert_eq!(
        route_error("dlp: {inbound_detectors: []}"),
        format!("{r}: dlp.inbound_detectors: empty list; write false to turn these detectors off")
    );
    assert_eq!(
        route_error("dlp: {outbound_detectors: true}"),
        format!(
            "{r}: dlp.outbound_detectors: expected false or a list of detector names, found boolean true"
        )
    );
    assert_eq!(
        route_error("dlp: {outbound_detectors: token_patterns}"),
        format!(
            "{r}: dlp.outbound_detectors: expected false or a list of detector names, found string \"token_patterns\""
        )
    );
    assert_eq!(
        route_error("dlp: {outbound_detectors: [1]}"),
        format!("{r}: dlp.outbound_detectors[0]: expected a string, found number 1")
    );
}

#[test]
fn empty_lists_are_rejected() {
    let r = "routes[0] (host \"a.example\")";
    assert_eq!(
        route_error("matches: []"),
        format!("{r}: matches: empty list; omit the key instead")
    );
    for key in ["paths", "methods", "headers"] {
        assert_eq!(
            route_error(&format!("matches:\n  - {key}: []")),
            format!("{r}: matches[0].{key}: empty list; omit the key instead")
        );
    }
}

#[test]
fn matches_wrong_types() {
    let r = "routes[0] (host \"a.example\")";
    assert_eq!(
        route_error("matches: {paths: []}"),
        format!("{r}: matches: expected a list, found a mapping")
    );
    assert_eq!(
        route_error("matches: [/api]"),
        format!("{r}: matches[0]: expected a mapping, found string \"/api\"")
    );
    assert_eq!(
        route_error("matches:\n  - paths: [/api]"),
        format!("{r}: matches[0].paths[0]: expected a mapping, found string \"/api\"")
    );
    assert_eq!(
        route_error("matches:\n  - methods: GET"),
        format!("{r}: matches[0].methods: expected a list, found string \"GET\"")
    );
    assert_eq!(
        route_error("matches:\n  - methods: [1]"),
        format!("{r}: matches[0].methods[0]: expected a string, found number 1")
    );
    assert_eq!(
        route_error("matches:\n  - paths: [{value: 1}]"),
        format!("{r}: matches[0].paths[0].value: expected a string, found number 1")
    );
    assert_eq!(
        route_error("matches:\n  - headers: [{name: a, value: 1}]"),
        format!("{r}: matches[0].headers[0].value: expected a string, found number 1")
    );
}

#[test]
fn bad_paths() {
    let r = "routes[0] (host \"a.example\")";
    assert_eq!(
        route_error("matches:\n  - paths: [{value: api/v1}]"),
        format!("{r}: matches[0].paths[0].value: path \"api/v1\" must start with '/'")
    );
    assert_eq!(
        route_error("matches:\n  - paths: [{type: exact, value: \"\"}]"),
        format!("{r}: matches[0].paths[0].value: path \"\" must start with '/'")
    );
    assert_eq!(
        route_error("matches:\n  - paths: [{type: exact}]"),
        format!("{r}: matches[0].paths[0].value: missing required key")
    );
    assert_eq!(
        route_error("matches:\n  - paths: [{type: glob, value: /a}]"),
        format!(
            "{r}: matches[0].paths[0].type: expected \"prefix\", \"exact\" or \"regex\", found string \"glob\""
        )
    );
    // Regex paths need not start with '/': they are matched against the whole path.
    let cfg = parse(&route_yaml(
        "matches:\n  - paths: [{type: regex, value: \".*\"}]",
    ));
    assert_eq!(
        cfg.routes[0].matches.as_ref().unwrap()[0].paths[0],
        PathMatch {
            kind: PathKind::Regex,
            value: ".*".into()
        }
    );
}

#[test]
fn invalid_regexes() {
    let r = "routes[0] (host \"a.example\")";
    assert_eq!(
        route_error("matches:\n  - paths: [{type: regex, value: \"/a(\"}]"),
        format!("{r}: matches[0].paths[0].value: invalid regex \"/a(\": unclosed group")
    );
    assert_eq!(
        route_error("matches:\n  - paths: [{value: /ok}, {type: regex, value: \"[z-a]\"}]"),
        format!(
            "{r}: matches[0].paths[1].value: invalid regex \"[z-a]\": invalid character class range, the start must be <= the end"
        )
    );
    assert_eq!(
        route_error("matches:\n  - headers: [{name: accept, value: \"*/*\", type: regex}]"),
        format!(
            "{r}: matches[0].headers[0].value: invalid regex \"*/*\": repetition operator missing expression"
        )
    );
    // Exact header values are not regexes.
    parse(&route_yaml(
        "matches:\n  - headers: [{name: accept, value: \"*/*\"}]",
    ));
}

#[test]
fn regex_that_closes_the_wrapper_group_is_rejected() {
    // `/api)|(.*` is not a valid regex on its own, but `^(?:/api)|(.*)$` is,
    // and it matches every path (the second branch is `(.*)$`).
    let yaml = route_yaml("matches:\n  - paths: [{type: regex, value: \"/api)|(.*\"}]");
    let e = error(&yaml);
    assert!(
        e.starts_with(
            "routes[0] (host \"a.example\"): matches[0].paths[0].value: invalid regex \"/api)|(.*\": "
        ),
        "{e}"
    );
    let yaml = route_yaml("matches:\n  - headers: [{name: x, value: \"a)|(.*\", type: regex}]");
    errors(&yaml);
}

#[test]
fn bad_methods() {
    let r = "routes[0] (host \"a.example\")";
    for m in ["GET POST", "", "GE/T", "G\u{e9}T"] {
        assert_eq!(
            route_error(&format!("matches:\n  - methods: [\"{m}\"]")),
            format!("{r}: matches[0].methods[0]: {m:?} is not an HTTP method")
        );
    }
}

#[test]
fn bad_headers() {
    let r = "routes[0] (host \"a.example\")";
    assert_eq!(
        route_error("matches:\n  - headers: [{value: b}]"),
        format!("{r}: matches[0].headers[0].name: missing required key")
    );
    assert_eq!(
        route_error("matches:\n  - headers: [{name: a}]"),
        format!("{r}: matches[0].headers[0].value: missing required key")
    );
    assert_eq!(
        route_error("matches:\n  - headers: [{name: \"a b\", value: c}]"),
        format!("{r}: matches[0].headers[0].name: \"a b\" is not an HTTP header name")
    );
    assert_eq!(
        route_error("matches:\n  - headers: [{name: \"a:\", value: c}]"),
        format!("{r}: matches[0].headers[0].name: \"a:\" is not an HTTP header name")
    );
    assert_eq!(
        route_error("matches:\n  - headers: [{name: a, value: c, type: prefix}]"),
        format!(
            "{r}: matches[0].headers[0].type: expected \"exact\" or \"regex\", found string \"prefix\""
        )
    );
    assert_eq!(
        route_error("matches:\n  - headers: {name: a, value: b}"),
        format!("{r}: matches[0].headers: expected a list, found a mapping")
    );
}

// ---------------------------------------------------------------------------
// Every error of a file at once
// ---------------------------------------------------------------------------

#[test]
fn all_errors_of_a_file_are_reported_at_once() {
    let yaml = r#"
log: 3
routes:
  - host: a.example
    ports: [0]
  - host: b.example
    matches:
      - paths: [{type: regex, value: "("}]
"#;
    let e = errors(yaml);
    assert_eq!(
        e,
        [
            "log: expected 0, 1 or 2, found number 3",
            "routes[0] (host \"a.example\"): ports[0]: expected a port number 1-65535, found number 0",
            "routes[1] (host \"b.example\"): matches[0].paths[0].value: invalid regex \"(\": unclosed group",
        ]
    );
    let shown = RoutesConfig::from_yaml(yaml).unwrap_err().to_string();
    assert_eq!(shown.lines().count(), 3, "{shown}");
}

#[test]
fn several_errors_in_one_route_are_all_reported() {
    let yaml = route_yaml(
        "auth_scheme: Basic\ntoken_env: bad-name\nports: [443, 443]\nextra: 1\n\
         dlp: {outbound_detectors: [nope], inbound_detectors: []}\n\
         matches:\n  - methods: [\"A B\"]\n    paths: [{value: x}]\n    headers: [{name: a}]",
    );
    let r = "routes[0] (host \"a.example\")";
    assert_eq!(
        errors(&yaml),
        [
            format!(
                "{r}: extra: unknown key (expected one of: host, auth_scheme, token_env, matches, git, ports, allow_private, dlp)"
            ),
            format!("{r}: auth_scheme: expected \"Bearer\" or \"token\", found string \"Basic\""),
            format!(
                "{r}: token_env: \"bad-name\" is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
            ),
            format!("{r}: ports[1]: port 443 listed twice"),
            format!(
                "{r}: dlp.outbound_detectors[0]: unknown detector \"nope\" (expected one of: token_patterns, known_secrets)"
            ),
            format!(
                "{r}: dlp.inbound_detectors: empty list; write false to turn these detectors off"
            ),
            format!("{r}: matches[0].methods[0]: \"A B\" is not an HTTP method"),
            format!("{r}: matches[0].paths[0].value: path \"x\" must start with '/'"),
            format!("{r}: matches[0].headers[0].value: missing required key"),
        ]
    );
}

#[test]
fn duplicate_hosts_are_reported_alongside_other_errors() {
    let yaml =
        "routes:\n  - host: a.example\n    ports: [0]\n  - host: A.example\n    git: {fetch: 1}\n";
    assert_eq!(
        errors(yaml),
        [
            "routes[0] (host \"a.example\"): ports[0]: expected a port number 1-65535, found number 0",
            "routes[1] (host \"a.example\"): git.fetch: expected true or false, found number 1",
            "routes[1] (host \"a.example\"): host: duplicate host \"a.example\"; routes[0] already defines it",
        ]
    );
}

#[test]
fn every_error_of_one_path_or_header_entry_is_reported() {
    let r = "routes[0] (host \"a.example\")";
    assert_eq!(
        errors(&route_yaml(
            "matches:\n  - paths: [{type: glob, value: api}]"
        )),
        [
            format!(
                "{r}: matches[0].paths[0].type: expected \"prefix\", \"exact\" or \"regex\", found string \"glob\""
            ),
            format!("{r}: matches[0].paths[0].value: path \"api\" must start with '/'"),
        ]
    );
    assert_eq!(
        errors(&route_yaml("matches:\n  - headers: [{name: 1, value: 2}]")),
        [
            format!("{r}: matches[0].headers[0].name: expected a string, found number 1"),
            format!("{r}: matches[0].headers[0].value: expected a string, found number 2"),
        ]
    );
    assert_eq!(
        errors(&route_yaml(
            "matches:\n  - headers: [{name: \"a b\", value: \"(\", type: regex}]"
        )),
        [
            format!("{r}: matches[0].headers[0].name: \"a b\" is not an HTTP header name"),
            format!("{r}: matches[0].headers[0].value: invalid regex \"(\": unclosed group"),
        ]
    );
}

#[test]
fn oversized_regexes_are_rejected() {
    let e = route_error("matches:\n  - paths: [{type: regex, value: \"((a{100}){100}){100}\"}]");
    assert!(
        e.starts_with(
            "routes[0] (host \"a.example\"): matches[0].paths[0].value: invalid regex \"((a{100}){100}){100}\": "
        ),
        "{e}"
    );
    assert!(e.contains("size limit"), "{e}");
}

#[test]
fn alias_bombs_are_refused_quickly() {
    let mut yaml = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        writeln!(
            yaml,
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]"
        )
        .unwrap();
    }
    yaml.push_str("routes: *a9\n");
    let start = std::time::Instant::now();
    let e = errors(&yaml);
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
    assert!(e[0].starts_with("YAML syntax error"), "{e:?}");
}

#[test]
fn policy_from_yaml_reports_the_same_errors() {
    let yaml = "routes:\n  - host: \"*.a.example\"\n  - ports: [1]\n";
    let from_policy = Policy::from_yaml(yaml).unwrap_err();
    assert_eq!(from_policy, RoutesConfig::from_yaml(yaml).unwrap_err());
    assert_eq!(
        from_policy.to_string(),
        "routes[0] (host \"*.a.example\"): host: wildcards are not supported; list each host\n\
         routes[1]: host: missing required key"
    );
}

#[test]
fn errors_carry_structured_locations() {
    let Err(ConfigErrors(errs)) = RoutesConfig::from_yaml(
        "routes:\n  - host: ok.example\n  - host: B.example\n    ports: [0]\n",
    ) else {
        panic!("accepted");
    };
    assert_eq!(
        errs,
        [ConfigError {
            route: Some(1),
            host: Some("b.example".into()),
            key: "ports[0]".into(),
            kind: ConfigErrorKind::WrongType {
                expected: "a port number 1-65535".into(),
                found: "number 0".into()
            },
        }]
    );
}

#[test]
fn long_strings_are_shortened_in_messages() {
    let long = "x".repeat(100);
    assert_eq!(
        route_error(&format!("allow_private: {long}")),
        format!(
            "routes[0] (host \"a.example\"): allow_private: expected true or false, found string \"{}\"…",
            "x".repeat(60)
        )
    );
}

#[test]
fn a_route_with_a_bad_host_still_has_its_other_errors_reported() {
    assert_eq!(
        errors("routes:\n  - host: [a.example]\n    ports: [0]\n    git: {fetch: 1}\n"),
        [
            "routes[0]: host: expected a string, found a list",
            "routes[0]: ports[0]: expected a port number 1-65535, found number 0",
            "routes[0]: git.fetch: expected true or false, found number 1",
        ]
    );
    // A missing host, too.
    assert_eq!(
        errors("routes:\n  - ports: [0]\n"),
        [
            "routes[0]: ports[0]: expected a port number 1-65535, found number 0",
            "routes[0]: host: missing required key",
        ]
    );
}

#[test]
fn null_where_a_value_belongs_is_named() {
    assert_eq!(
        route_error("matches:"),
        "routes[0] (host \"a.example\"): matches: expected a list, found null"
    );
    assert_eq!(
        route_error("allow_private: ~"),
        "routes[0] (host \"a.example\"): allow_private: expected true or false, found null"
    );
    assert_eq!(
        route_error("dlp: {outbound_detectors: null}"),
        "routes[0] (host \"a.example\"): dlp.outbound_detectors: expected false or a list of detector names, found null"
    );
}

#[test]
fn a_list_emptied_by_its_bad_elements_is_not_reported_again() {
    // The element is at fault; the list it leaves empty is not a second error.
    assert_eq!(
        errors(&route_yaml("matches:\n  - paths: [/api]\nports: [\"x\"]")),
        [
            "routes[0] (host \"a.example\"): matches[0].paths[0]: expected a mapping, found string \"/api\"",
            "routes[0] (host \"a.example\"): ports[0]: expected a port number 1-65535, found string \"x\"",
        ]
    );
}

#[test]
fn the_schema_types_name_the_keys() {
    assert_eq!(
        field_names::<RouteSpec>(),
        [
            "host",
            "auth_scheme",
            "token_env",
            "matches",
            "git",
            "ports",
            "allow_private",
            "dlp"
        ]
    );
    assert_eq!(field_names::<RoutesConfig>(), ["routes", "log"]);
    assert_eq!(field_names::<MatchEntry>(), ["paths", "methods", "headers"]);
    assert_eq!(field_names::<PathMatch>(), ["type", "value"]);
    assert_eq!(field_names::<HeaderMatch>(), ["name", "value", "type"]);
    assert_eq!(field_names::<GitSpec>(), ["fetch"]);
    assert_eq!(
        field_names::<DlpSpec>(),
        ["outbound_detectors", "inbound_detectors"]
    );
}

#[test]
fn a_hostile_number_of_errors_is_bounded() {
    let mut yaml = String::from("routes:\n");
    for i in 0..5000 {
        writeln!(
            yaml,
            "  - host: h{i}.example\n    ports: [0, 0]\n    bad: 1"
        )
        .unwrap();
    }
    let start = std::time::Instant::now();
    let e = errors(&yaml);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(e.len(), de::MAX_ERRORS + 1);
    assert_eq!(
        e.last().unwrap(),
        &format!(
            "more than {} errors; the rest of the file was not checked",
            de::MAX_ERRORS
        )
    );
}

#[test]
fn one_route_from_a_yaml_value() {
    let value: serde_norway::Value =
        serde_norway::from_str("{host: API.example, matches: [{methods: [get]}], ports: [8443]}")
            .unwrap();
    let spec = RouteSpec::from_value(&value).unwrap();
    assert_eq!(spec.host, "api.example");
    assert_eq!(spec.matches.unwrap()[0].methods, ["GET"]);
    assert_eq!(spec.ports, Some(vec![8443]));

    let value: serde_norway::Value = serde_norway::from_str(
        "{host: a.example, colour: red, matches: [{paths: [{type: regex, value: \"(\"}]}]}",
    )
    .unwrap();
    let e = RouteSpec::from_value(&value).unwrap_err();
    let shown: Vec<String> = e.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "colour: unknown key (expected one of: host, auth_scheme, token_env, matches, git, ports, allow_private, dlp)",
            "matches[0].paths[0].value: invalid regex \"(\": unclosed group",
        ]
    );
    assert!(e.0.iter().all(|e| e.route.is_none()));
}

#[test]
fn a_config_built_in_code_gets_the_same_checks() {
    let mut a = RouteSpec::new("A.example");
    a.ports = Some(vec![0, 443, 443]);
    a.token_env = Some("X".into());
    a.matches = Some(vec![MatchEntry::default()]);
    a.dlp.inbound_detectors = DetectorChoice::Only(vec![]);
    let mut b = RouteSpec::new("a.example");
    b.auth_scheme = Some(AuthScheme::Bearer);
    let e = RoutesConfig {
        routes: vec![a, b],
        log: LogLevel::All,
    }
    .validate()
    .unwrap_err();
    let shown: Vec<String> = e.0.iter().map(ToString::to_string).collect();
    let r0 = "routes[0] (host \"a.example\")";
    let r1 = "routes[1] (host \"a.example\")";
    assert_eq!(
        shown,
        [
            format!("{r0}: auth_scheme: token_env needs auth_scheme"),
            format!(
                "{r0}: matches[0]: an empty entry accepts every request; give paths, methods or headers, or omit matches"
            ),
            format!("{r0}: ports[0]: expected a port number 1-65535, found number 0"),
            format!("{r0}: ports[2]: port 443 listed twice"),
            format!(
                "{r0}: dlp.inbound_detectors: empty list; write false to turn these detectors off"
            ),
            format!("{r1}: host: duplicate host \"a.example\"; routes[0] already defines it"),
            format!("{r1}: token_env: auth_scheme needs token_env"),
        ]
    );
    // A valid one comes back normalised, as a parsed file does.
    let mut ok = RouteSpec::new("B.Example");
    ok.matches = Some(vec![MatchEntry {
        methods: vec!["post".into()],
        ..MatchEntry::default()
    }]);
    let cfg = RoutesConfig {
        routes: vec![ok],
        log: LogLevel::default(),
    }
    .validate()
    .unwrap();
    assert_eq!(
        cfg,
        parse("routes:\n  - host: b.example\n    matches: [{methods: [POST]}]\n")
    );
}

// ---------------------------------------------------------------------------
// Serialisation
// ---------------------------------------------------------------------------

#[test]
fn defaults_are_omitted() {
    let cfg = parse(
        "log: 1\nroutes:\n  - host: a.example\n    git: {fetch: false}\n    allow_private: false\n    dlp: {}\n",
    );
    assert_eq!(cfg.to_yaml().unwrap(), "routes:\n- host: a.example\n");
    assert_eq!(
        cfg.to_json(),
        "{\n  \"routes\": [\n    {\n      \"host\": \"a.example\"\n    }\n  ]\n}"
    );
    assert_eq!(RoutesConfig::default().to_yaml().unwrap(), "routes: []\n");
}

#[test]
fn yaml_uses_routes_yaml_field_names() {
    let cfg = parse(
        r#"
log: 0
routes:
  - host: API.example.com
    auth_scheme: Bearer
    token_env: EGRESS_TOKEN_API
    matches:
      - paths:
          - {type: prefix, value: /v1/}
          - {type: exact, value: /health}
          - {type: regex, value: "/u/[0-9]+"}
        methods: [get]
        headers:
          - {name: X-Api, value: "1", type: exact}
          - {name: Accept, value: "json.*", type: regex}
      - methods: [POST]
    git: {fetch: true}
    ports: [443, 8443]
    allow_private: true
    dlp:
      outbound_detectors: [known_secrets]
      inbound_detectors: false
"#,
    );
    let expected = "\
routes:
- host: api.example.com
  auth_scheme: Bearer
  token_env: EGRESS_TOKEN_API
  matches:
  - paths:
    - value: /v1/
    - type: exact
      value: /health
    - type: regex
      value: /u/[0-9]+
    methods:
    - GET
    headers:
    - name: x-api
      value: '1'
    - name: accept
      value: json.*
      type: regex
  - methods:
    - POST
  git:
    fetch: true
  ports:
  - 443
  - 8443
  allow_private: true
  dlp:
    outbound_detectors:
    - known_secrets
    inbound_detectors: false
log: 0
";
    assert_eq!(cfg.to_yaml().unwrap(), expected);
    assert_eq!(parse(expected), cfg);
}

#[test]
fn json_for_introspection() {
    let cfg = parse(
        r#"
log: 2
routes:
  - host: api.example.com
    auth_scheme: token
    token_env: EGRESS_TOKEN_API
    matches:
      - paths: [{value: /v1/}, {type: regex, value: "/u/.*"}]
        headers: [{name: Accept, value: "a.*", type: regex}, {name: x, value: y}]
    ports: [8443]
    dlp: {outbound_detectors: false, inbound_detectors: [naive_injection_detection]}
  - host: plain.example
    git: {fetch: true}
    allow_private: true
"#,
    );
    let json: serde_json::Value = serde_json::from_str(&cfg.to_json()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "log": 2,
            "routes": [
                {
                    "host": "api.example.com",
                    "auth_scheme": "token",
                    "token_env": "EGRESS_TOKEN_API",
                    "matches": [{
                        "paths": [
                            {"value": "/v1/"},
                            {"type": "regex", "value": "/u/.*"}
                        ],
                        "headers": [
                            {"name": "accept", "value": "a.*", "type": "regex"},
                            {"name": "x", "value": "y"}
                        ]
                    }],
                    "ports": [8443],
                    "dlp": {
                        "outbound_detectors": false,
                        "inbound_detectors": ["naive_injection_detection"]
                    }
                },
                {"host": "plain.example", "git": {"fetch": true}, "allow_private": true}
            ]
        })
    );
    // The JSON is itself a valid routes.yaml (JSON is YAML), so an agent can
    // paste it into a proposal unchanged.
    assert_eq!(parse(&cfg.to_json()), cfg);
}

#[test]
fn json_names_the_token_variable_only() {
    // Only the variable name travels; the proxy's environment is never read here.
    let cfg = parse(&route_yaml(
        "auth_scheme: Bearer\ntoken_env: EGRESS_TOKEN_X",
    ));
    let json = cfg.to_json();
    assert!(json.contains("\"token_env\": \"EGRESS_TOKEN_X\""), "{json}");
}

// ---------------------------------------------------------------------------
// Round trips
// ---------------------------------------------------------------------------

const HAND_WRITTEN: &[&str] = &[
    "routes: []\n",
    "log: 0\nroutes: []\n",
    "routes:\n  - host: a.example\n",
    "routes:\n  - host: A.Example\n    ports: [80, 443]\n    allow_private: true\n",
    r"
routes:
  - host: api.github.com
    auth_scheme: token
    token_env: EGRESS_TOKEN_GITHUB
    git: {fetch: true}
    matches:
      - methods: [get, head]
        paths:
          - value: /repos/acme/
          - {type: exact, value: /user}
      - methods: [POST]
        paths: [{type: regex, value: '/repos/acme/[^/]+/issues(/\d+/comments)?'}]
        headers:
          - {name: Content-Type, value: application/json}
          - {name: X-GitHub-Api-Version, value: '2022-11-28|2026-.*', type: regex}
",
    r#"
log: 2
routes:
  - host: api.anthropic.com
    auth_scheme: Bearer
    token_env: EGRESS_TOKEN_ANTHROPIC
    dlp:
      outbound_detectors: [token_patterns]
      inbound_detectors: false
  - host: "null"
    matches: [{methods: [GET]}]
  - host: "1e5"
    dlp: {outbound_detectors: false}
  - host: "::1"
    allow_private: true
    ports: [8080]
"#,
    r#"
routes:
  - host: weird.example
    matches:
      - paths:
          - {value: "/a: b #c"}
          - {value: "/'quoted'\"double\""}
          - {value: "/caf\u00e9/\t/x"}
          - {type: exact, value: "/"}
        methods: ["~", "NULL", ".INF", "M-SEARCH"]
        headers:
          - {name: "true", value: ""}
          - {name: "null", value: "~"}
          - {name: "1", value: "yes"}
          - {name: x, value: " leading and trailing "}
          - {name: y, value: "line\nbreak"}
          - {name: z, value: "0x1F"}
"#,
];

#[test]
fn parse_serialise_parse_is_identity_on_hand_written_files() {
    for text in HAND_WRITTEN {
        let cfg = parse(text);
        let yaml = cfg.to_yaml().unwrap();
        let again = parse(&yaml);
        assert_eq!(again, cfg, "\n--- input:\n{text}\n--- serialised:\n{yaml}");
        assert_eq!(again.to_yaml().unwrap(), yaml, "serialisation is stable");
        assert_eq!(parse(&cfg.to_json()), cfg, "JSON form of:\n{text}");
    }
}

/// Regexes known to be valid, with YAML-awkward characters among them.
const REGEXES: &[&str] = &[
    ".*",
    "/v1/.*",
    "/repos/[^/]+/[^/]+/issues",
    "[a-z]+",
    "/a|/b",
    "(?i)/API/.*",
    r"/x/\d{1,3}",
    "^/anchored$",
    r"/files/[\w.-]+\.txt",
    "(foo)?bar",
    "a{2,}",
    r"\[x\]: #y",
    "- item",
    "'single' \"double\"",
    "",
];

/// Strings that a careless YAML emitter would write as something else.
const TRICKY: &[&str] = &[
    "null",
    "Null",
    "NULL",
    "~",
    "true",
    "True",
    "FALSE",
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "1",
    "-1",
    "0x10",
    "0o7",
    "1e5",
    "1.5",
    ".inf",
    "-.INF",
    ".nan",
    "1_000",
    "0123",
    "+1",
    "-",
    "?",
    ":",
    "#",
    "&a",
    "*a",
    "!a",
    "%a",
    "@a",
    "`a",
    "|",
    ">",
    "[",
    "{",
    "<<",
    "=",
    " ",
    "\t",
    "a: b",
    "a #b",
    "\u{85}",
    "\u{2028}",
    "\u{feff}x",
    "\u{0}",
    "\r\n",
];

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        1 => prop::sample::select(TRICKY).prop_map(str::to_owned),
    ]
}

fn arb_host() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9]([a-z0-9_-]{0,6}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?){0,3}",
        1 => prop::sample::select(&[
            "null", "true", "no", "1e5", "1.5", "0x10", "127.0.0.1", "::1", "fe80::1", "1",
        ][..])
        .prop_map(str::to_owned),
    ]
}

fn arb_token() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Z]{1,8}",
        1 => prop::sample::select(&["~", "NULL", ".INF", "TRUE", "-", "Y", "M-SEARCH", "#", "1", "0X1"][..])
            .prop_map(str::to_owned),
    ]
}

fn arb_path() -> impl Strategy<Value = PathMatch> {
    prop_oneof![
        arb_text().prop_map(|s| PathMatch {
            kind: PathKind::Prefix,
            value: format!("/{s}")
        }),
        arb_text().prop_map(|s| PathMatch {
            kind: PathKind::Exact,
            value: format!("/{s}")
        }),
        prop::sample::select(REGEXES).prop_map(|s| PathMatch {
            kind: PathKind::Regex,
            value: s.to_owned()
        }),
    ]
}

fn arb_header() -> impl Strategy<Value = HeaderMatch> {
    let name = prop_oneof![
        4 => "[a-z0-9-]{1,12}",
        1 => prop::sample::select(&["null", "~", "1", "true", "x-a_b", "#", "-", ".nan"][..])
            .prop_map(str::to_owned),
    ];
    let value = prop_oneof![
        arb_text().prop_map(|v| (v, ValueKind::Exact)),
        prop::sample::select(REGEXES).prop_map(|v| (v.to_owned(), ValueKind::Regex)),
    ];
    (name, value).prop_map(|(name, (value, kind))| HeaderMatch { name, value, kind })
}

fn arb_match() -> impl Strategy<Value = MatchEntry> {
    (
        prop::collection::vec(arb_path(), 0..3),
        prop::collection::vec(arb_token(), 0..3),
        prop::collection::vec(arb_header(), 0..3),
    )
        .prop_filter("an empty entry is refused", |(p, m, h)| {
            !(p.is_empty() && m.is_empty() && h.is_empty())
        })
        .prop_map(|(paths, methods, headers)| MatchEntry {
            paths,
            methods,
            headers,
        })
}

fn arb_choice<D: DetectorName + std::fmt::Debug>() -> impl Strategy<Value = DetectorChoice<D>> {
    prop_oneof![
        Just(DetectorChoice::All),
        Just(DetectorChoice::Off),
        prop::sample::subsequence(D::ALL, 1..=D::ALL.len())
            .prop_shuffle()
            .prop_map(DetectorChoice::Only),
    ]
}

fn arb_route() -> impl Strategy<Value = RouteSpec> {
    let auth = prop::option::of((
        prop_oneof![Just(AuthScheme::Bearer), Just(AuthScheme::Token)],
        prop_oneof![
            4 => "[A-Za-z_][A-Za-z0-9_]{0,12}",
            1 => prop::sample::select(&["null", "True", "NULL", "_", "Y", "no"][..]).prop_map(str::to_owned),
        ],
    ));
    let ports = prop::option::of(prop::collection::vec(1u16.., 1..4)).prop_map(|p| {
        p.map(|mut v| {
            let mut seen = std::collections::HashSet::new();
            v.retain(|p| seen.insert(*p));
            v
        })
    });
    (
        arb_host(),
        auth,
        prop::option::of(prop::collection::vec(arb_match(), 1..3)),
        any::<bool>(),
        ports,
        any::<bool>(),
        arb_choice::<OutboundDetector>(),
        arb_choice::<InboundDetector>(),
    )
        .prop_map(
            |(host, auth, matches, fetch, ports, allow_private, outbound, inbound)| RouteSpec {
                host,
                auth_scheme: auth.as_ref().map(|a| a.0),
                token_env: auth.map(|a| a.1),
                matches,
                git: GitSpec { fetch },
                ports,
                allow_private,
                dlp: DlpSpec {
                    outbound_detectors: outbound,
                    inbound_detectors: inbound,
                },
            },
        )
}

fn arb_config() -> impl Strategy<Value = RoutesConfig> {
    (
        prop::collection::vec(arb_route(), 0..5),
        prop_oneof![
            Just(LogLevel::Off),
            Just(LogLevel::Blocked),
            Just(LogLevel::All)
        ],
    )
        .prop_map(|(mut routes, log)| {
            let mut seen = std::collections::HashSet::new();
            routes.retain(|r| seen.insert(r.host.clone()));
            RoutesConfig { routes, log }
        })
}

proptest! {
    // No regression files: a failing case is printed in full instead.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn yaml_round_trip_is_identity(cfg in arb_config()) {
        let yaml = cfg.to_yaml().unwrap();
        let back = RoutesConfig::from_yaml(&yaml)
            .map_err(|e| TestCaseError::fail(format!("{e}\n--- yaml:\n{yaml}")))?;
        prop_assert_eq!(&back, &cfg, "yaml:\n{}", yaml);
    }

    /// The introspection JSON carries exactly the data of the YAML form.
    /// (Not "parse the JSON as YAML": libyaml reads U+0085 and U+2028 inside
    /// a JSON string as line breaks, so that is identity only for tamer text.)
    #[test]
    fn json_carries_the_same_data_as_yaml(cfg in arb_config()) {
        let json: serde_json::Value = serde_json::from_str(&cfg.to_json()).unwrap();
        let yaml: serde_json::Value = serde_norway::from_str(&cfg.to_yaml().unwrap()).unwrap();
        prop_assert_eq!(json, yaml);
    }

    /// Arbitrary text never panics the parser, and a rejection always says why.
    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        if let Err(e) = RoutesConfig::from_yaml(&text) {
            prop_assert!(!e.0.is_empty());
        }
    }
}
