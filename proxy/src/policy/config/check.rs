//! What the schema types cannot say: host names, regexes, methods and
//! header names, pairs of keys, duplicates and empty lists. The same checks
//! run on a parsed file and on a configuration built in code, and the
//! matchers are compiled here, once: a config that passes carries its
//! compiled regexes on into the [`super::super::Policy`].

use std::collections::HashMap;

use super::de::{Anchor, Issue, Path, Seg};
use super::{
    ConfigErrorKind, DetectorChoice, DetectorName, EMPTY_LIST, INTROSPECTION_HOST, MatchEntry,
    PORT, PathKind, RouteSpec, RoutesConfig, ValueKind,
};

/// Regexes in routes are compiled with this size limit so a hostile or
/// careless pattern cannot take the proxy's memory.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Per route: its compiled `matches` (`None` when the route has none).
pub(crate) type CompiledRoutes = Vec<Option<Vec<CompiledMatch>>>;

/// A compiled `matches[]` entry.
#[derive(Debug, Clone)]
pub(crate) struct CompiledMatch {
    pub(crate) paths: Vec<PathMatcher>,
    pub(crate) methods: Vec<String>,
    pub(crate) headers: Vec<(String, ValueMatcher)>,
}

/// A compiled path matcher.
#[derive(Debug, Clone)]
pub(crate) enum PathMatcher {
    Prefix(String),
    Exact(String),
    Regex(regex::Regex),
}

/// A compiled header value matcher.
#[derive(Debug, Clone)]
pub(crate) enum ValueMatcher {
    Exact(Vec<u8>),
    Regex(regex::Regex),
}

/// Hosts seen so far, for the duplicate check.
#[derive(Debug, Default)]
pub(crate) struct Hosts(HashMap<String, usize>);

/// Checks a whole configuration; returns the compiled matchers (complete
/// only when no issue was added).
pub(crate) fn config(cfg: &RoutesConfig, issues: &mut Vec<Issue>) -> CompiledRoutes {
    let mut hosts = Hosts::default();
    cfg.routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let base = [Seg::Key("routes".into()), Seg::Index(i)];
            route(r, &base, issues, &mut hosts)
        })
        .collect()
}

fn at(base: &[Seg], rest: &[Seg]) -> Path {
    let mut p = base.to_vec();
    p.extend_from_slice(rest);
    p
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_owned())
}

fn invalid(msg: impl Into<String>) -> ConfigErrorKind {
    ConfigErrorKind::Invalid(msg.into())
}

/// Checks one route at `base`; returns its compiled matchers.
pub(crate) fn route(
    r: &RouteSpec,
    base: &[Seg],
    issues: &mut Vec<Issue>,
    hosts: &mut Hosts,
) -> Option<Vec<CompiledMatch>> {
    let host = r.host.to_ascii_lowercase();
    match host_problem(&host) {
        Some(p) => issues.push(Issue::at(at(base, &[key("host")]), invalid(p))),
        None => {
            if let Some(Seg::Index(i)) = base.last() {
                if let Some(&first) = hosts.0.get(&host) {
                    issues.push(Issue {
                        path: at(base, &[key("host")]),
                        anchor: Anchor::EndOfRoute,
                        kind: ConfigErrorKind::DuplicateHost { host, first },
                    });
                } else {
                    hosts.0.insert(host, *i);
                }
            }
        }
    }
    match (&r.auth_scheme, &r.token_env) {
        (Some(_), None) => issues.push(Issue::at(
            at(base, &[key("token_env")]),
            invalid("auth_scheme needs token_env"),
        )),
        (None, Some(_)) => issues.push(Issue::at(
            at(base, &[key("auth_scheme")]),
            invalid("token_env needs auth_scheme"),
        )),
        _ => {}
    }
    if let Some(name) = &r.token_env
        && !is_env_name(name)
    {
        issues.push(Issue::at(
            at(base, &[key("token_env")]),
            invalid(format!(
                "{name:?} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
            )),
        ));
    }
    let compiled = r.matches.as_ref().map(|entries| {
        if entries.is_empty() {
            issues.push(Issue::at(at(base, &[key("matches")]), invalid(EMPTY_LIST)));
        }
        entries
            .iter()
            .enumerate()
            .map(|(j, m)| entry(m, &at(base, &[key("matches"), Seg::Index(j)]), issues))
            .collect()
    });
    if let Some(ports) = &r.ports {
        if ports.is_empty() {
            issues.push(Issue::at(at(base, &[key("ports")]), invalid(EMPTY_LIST)));
        }
        for (k, &p) in ports.iter().enumerate() {
            let path = at(base, &[key("ports"), Seg::Index(k)]);
            if p == 0 {
                issues.push(Issue::at(
                    path,
                    ConfigErrorKind::WrongType {
                        expected: PORT.into(),
                        found: "number 0".into(),
                    },
                ));
            } else if ports[..k].contains(&p) {
                issues.push(Issue::at(path, invalid(format!("port {p} listed twice"))));
            }
        }
    }
    detectors(
        &r.dlp.outbound_detectors,
        &at(base, &[key("dlp"), key("outbound_detectors")]),
        issues,
    );
    detectors(
        &r.dlp.inbound_detectors,
        &at(base, &[key("dlp"), key("inbound_detectors")]),
        issues,
    );
    compiled
}

fn detectors<D: DetectorName>(choice: &DetectorChoice<D>, path: &Path, issues: &mut Vec<Issue>) {
    let DetectorChoice::Only(list) = choice else {
        return;
    };
    if list.is_empty() {
        issues.push(Issue::at(
            path.clone(),
            invalid("empty list; write false to turn these detectors off"),
        ));
    }
    for (i, d) in list.iter().enumerate() {
        if list[..i].contains(d) {
            issues.push(Issue::at(
                at(path, &[Seg::Index(i)]),
                invalid(format!("detector {:?} listed twice", d.name())),
            ));
        }
    }
}

/// Checks and compiles one `matches[]` entry at `base`.
fn entry(m: &MatchEntry, base: &Path, issues: &mut Vec<Issue>) -> CompiledMatch {
    if m.paths.is_empty() && m.methods.is_empty() && m.headers.is_empty() {
        issues.push(Issue::at(
            base.clone(),
            invalid(
                "an empty entry accepts every request; give paths, methods or headers, \
                 or omit matches",
            ),
        ));
    }
    let mut out = CompiledMatch {
        paths: Vec::with_capacity(m.paths.len()),
        methods: Vec::with_capacity(m.methods.len()),
        headers: Vec::with_capacity(m.headers.len()),
    };
    for (k, p) in m.paths.iter().enumerate() {
        let vpath = at(base, &[key("paths"), Seg::Index(k), key("value")]);
        match p.kind {
            PathKind::Regex => {
                if let Some(re) = regex(&p.value, vpath, issues) {
                    out.paths.push(PathMatcher::Regex(re));
                }
            }
            kind => {
                if !p.value.starts_with('/') {
                    issues.push(Issue::at(
                        vpath,
                        invalid(format!("path {:?} must start with '/'", p.value)),
                    ));
                }
                out.paths.push(if kind == PathKind::Exact {
                    PathMatcher::Exact(p.value.clone())
                } else {
                    PathMatcher::Prefix(p.value.clone())
                });
            }
        }
    }
    for (k, method) in m.methods.iter().enumerate() {
        if method.is_empty() || !method.bytes().all(is_token_byte) {
            issues.push(Issue::at(
                at(base, &[key("methods"), Seg::Index(k)]),
                invalid(format!("{method:?} is not an HTTP method")),
            ));
        }
        out.methods.push(method.to_ascii_uppercase());
    }
    for (k, h) in m.headers.iter().enumerate() {
        let hbase = at(base, &[key("headers"), Seg::Index(k)]);
        if h.name.is_empty() || !h.name.bytes().all(is_token_byte) {
            issues.push(Issue::at(
                at(&hbase, &[key("name")]),
                invalid(format!("{:?} is not an HTTP header name", h.name)),
            ));
        }
        let name = h.name.to_ascii_lowercase();
        match h.kind {
            ValueKind::Exact => out
                .headers
                .push((name, ValueMatcher::Exact(h.value.as_bytes().to_vec()))),
            ValueKind::Regex => {
                if let Some(re) = regex(&h.value, at(&hbase, &[key("value")]), issues) {
                    out.headers.push((name, ValueMatcher::Regex(re)));
                }
            }
        }
    }
    out
}

/// Compiles a route regex so it must match the whole subject, or reports
/// why it cannot be.
fn regex(src: &str, path: Path, issues: &mut Vec<Issue>) -> Option<regex::Regex> {
    match compile_full_match(src) {
        Ok(re) => Some(re),
        Err(message) => {
            issues.push(Issue::at(
                path,
                ConfigErrorKind::BadRegex {
                    source_text: src.to_owned(),
                    message,
                },
            ));
            None
        }
    }
}

/// The source is checked on its own first: wrapping an invalid source such
/// as `/api)|(.*` in `^(?:…)$` would otherwise yield a valid regex that
/// matches every path. Only the wrapped regex is compiled.
fn compile_full_match(src: &str) -> Result<regex::Regex, String> {
    if let Err(e) = regex_syntax::Parser::new().parse(src) {
        // The parser's message spans several lines (the pattern, a caret
        // line, then the cause); report the cause.
        let text = e.to_string();
        return Err(text
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map_or_else(String::new, |l| {
                l.trim().trim_start_matches("error: ").to_owned()
            }));
    }
    regex::RegexBuilder::new(&format!("^(?:{src})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| e.to_string())
}

/// RFC 7230 `tchar`.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_env_name(s: &str) -> bool {
    s.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// What is wrong with a (lower-cased) route host, if anything.
fn host_problem(host: &str) -> Option<String> {
    if host.is_empty() {
        Some("host is empty".to_owned())
    } else if host.contains('*') {
        Some("wildcards are not supported; list each host".to_owned())
    } else if host == INTROSPECTION_HOST {
        Some(format!(
            "{INTROSPECTION_HOST} is answered by the proxy itself"
        ))
    } else if host.parse::<std::net::IpAddr>().is_ok() {
        None
    } else {
        hostname_problem(host)
    }
}

fn hostname_problem(host: &str) -> Option<String> {
    if host.len() > 253 {
        return Some("host is longer than 253 characters".into());
    }
    if host.ends_with('.') {
        return Some(format!("{host:?}: drop the trailing dot"));
    }
    for label in host.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Some(format!(
                "{host:?} is not a valid host name (label {label:?})"
            ));
        }
    }
    None
}
