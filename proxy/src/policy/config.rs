//! The routes.yaml model (SPEC §2): strict parsing, validation, and
//! serialisation back to the same field names with defaults omitted.
//!
//! Parsing goes through an untyped YAML tree rather than `#[derive]`d serde
//! structs so that every error can name the route index, its host and the
//! full key path, and so that one pass reports every error in the file
//! instead of stopping at the first.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;
use serde_norway::Value;

/// How much the proxy logs (`log:` in routes.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum LogLevel {
    /// `0`: no per-request lines.
    Off,
    /// `1` (default): one line per blocked request.
    #[default]
    Blocked,
    /// `2`: one line per request, allowed or blocked.
    All,
}

impl LogLevel {
    /// The number used in routes.yaml.
    #[must_use]
    pub fn as_u8(self) -> u8 {
        match self {
            Self::Off => 0,
            Self::Blocked => 1,
            Self::All => 2,
        }
    }
}

/// The scheme of an injected `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: token <token>` (GitHub/Gitea style).
    Token,
}

impl AuthScheme {
    /// The word used in routes.yaml and in the header.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::Token => "token",
        }
    }
}

/// Credentials the proxy injects for a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// Header scheme.
    pub scheme: AuthScheme,
    /// Name of the proxy-process environment variable holding the token.
    pub token_env: String,
}

/// How a path matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PathKind {
    /// The request path starts with the value (plain byte prefix).
    #[default]
    Prefix,
    /// The request path equals the value.
    Exact,
    /// The value is a regex that must match the whole request path.
    Regex,
}

/// How a header matcher compares values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValueKind {
    /// The header value equals the given value.
    #[default]
    Exact,
    /// The value is a regex that must match the whole header value.
    Regex,
}

/// One `matches[].paths[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathMatch {
    /// Comparison kind.
    pub kind: PathKind,
    /// Literal path, prefix or regex source.
    pub value: String,
}

/// One `matches[].headers[]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderMatch {
    /// Header name, lower-cased at load.
    pub name: String,
    /// Literal value or regex source.
    pub value: String,
    /// Comparison kind.
    pub kind: ValueKind,
}

/// One `matches[]` entry: every list present must accept the request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MatchEntry {
    /// Any may match; empty means any path.
    pub paths: Vec<PathMatch>,
    /// Any may match (upper-cased at load); empty means any method.
    pub methods: Vec<String>,
    /// All must match; empty means no header condition.
    pub headers: Vec<HeaderMatch>,
}

pub use crate::dlp::{DetectorName, InboundDetector, OutboundDetector};

/// Per-route detector selection (`dlp.outbound_detectors` / `dlp.inbound_detectors`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DetectorChoice<D> {
    /// Key absent: every detector of this direction runs.
    #[default]
    All,
    /// `false`: none run.
    Off,
    /// A list: only these run (non-empty, no duplicates).
    Only(Vec<D>),
}

impl<D: DetectorName> DetectorChoice<D> {
    /// Whether `detector` runs under this choice.
    #[must_use]
    pub fn enables(&self, detector: D) -> bool {
        match self {
            Self::All => true,
            Self::Off => false,
            Self::Only(list) => list.contains(&detector),
        }
    }

    /// The engine's detector set for this choice.
    #[must_use]
    pub fn set(&self) -> crate::dlp::DetectorSet {
        crate::dlp::DetectorSet::of_names(D::ALL.iter().copied().filter(|d| self.enables(*d)))
    }
}

/// One validated route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Exact host name, lower-cased.
    pub host: String,
    /// Injected credentials, if any.
    pub auth: Option<Auth>,
    /// `None`: every request to the host is accepted; `Some`: at least one
    /// entry must accept it (never empty).
    pub matches: Option<Vec<MatchEntry>>,
    /// `git.fetch: true`.
    pub git_fetch: bool,
    /// Reachable ports; `None` means the defaults (443 via CONNECT, 80 plain).
    pub ports: Option<Vec<u16>>,
    /// Whether the host may resolve to loopback/private/link-local addresses.
    pub allow_private: bool,
    /// Outbound DLP selection.
    pub outbound: DetectorChoice<OutboundDetector>,
    /// Inbound DLP selection.
    pub inbound: DetectorChoice<InboundDetector>,
}

impl Route {
    /// A route for `host` with every default.
    #[must_use]
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            auth: None,
            matches: None,
            git_fetch: false,
            ports: None,
            allow_private: false,
            outbound: DetectorChoice::All,
            inbound: DetectorChoice::All,
        }
    }
}

/// A whole validated routes.yaml.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoutesConfig {
    /// The routes, in file order.
    pub routes: Vec<Route>,
    /// Log level.
    pub log: LogLevel,
}

/// The host the proxy answers itself (SPEC §3 introspection). No route may claim it.
pub const INTROSPECTION_HOST: &str = "_egress.local";

/// What is wrong with one place in a routes file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The text is not YAML.
    #[error("YAML syntax error{}: {message}", match .line { Some(l) => format!(" at line {l}"), None => String::new() })]
    Syntax {
        /// 1-based line, when the parser knows it.
        line: Option<usize>,
        /// The parser's message.
        message: String,
    },
    /// A key this format does not have.
    #[error("unknown key (expected one of: {expected})")]
    UnknownKey {
        /// The keys allowed here.
        expected: &'static str,
    },
    /// A required key is absent.
    #[error("missing required key")]
    Missing,
    /// A value of the wrong YAML type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the key takes.
        expected: &'static str,
        /// A short description of what was there.
        found: String,
    },
    /// A regex that does not compile.
    #[error("invalid regex {source_text:?}: {message}")]
    BadRegex {
        /// The regex as written.
        source_text: String,
        /// The compiler's message.
        message: String,
    },
    /// A second route for a host.
    #[error("duplicate host {host:?}; routes[{first}] already defines it")]
    DuplicateHost {
        /// The host.
        host: String,
        /// Index of the first route with it.
        first: usize,
    },
    /// A detector name that does not exist for this direction.
    #[error("unknown detector {name:?} (expected one of: {expected})")]
    UnknownDetector {
        /// The name as written.
        name: String,
        /// The detectors allowed here.
        expected: &'static str,
    },
    /// A value that has the right type but breaks a rule.
    #[error("{0}")]
    Invalid(String),
}

/// One error, with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Route index, when the error is inside `routes[i]`.
    pub route: Option<usize>,
    /// That route's host, when it has a readable one.
    pub host: Option<String>,
    /// The key path inside the route (or from the top level), e.g. `matches[0].paths[1].value`.
    pub key: String,
    /// What is wrong.
    pub kind: ConfigErrorKind,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.route, &self.host) {
            (Some(i), Some(h)) => write!(f, "routes[{i}] (host {h:?})")?,
            (Some(i), None) => write!(f, "routes[{i}]")?,
            (None, _) => {}
        }
        if !self.key.is_empty() {
            if self.route.is_some() {
                f.write_str(": ")?;
            }
            f.write_str(&self.key)?;
        }
        if self.route.is_some() || !self.key.is_empty() {
            f.write_str(": ")?;
        }
        write!(f, "{}", self.kind)
    }
}

impl std::error::Error for ConfigError {}

/// Every error found in a routes file (never empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Regexes in routes are compiled with this size limit so a hostile or
/// careless pattern cannot take the proxy's memory.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a route regex so it must match the whole subject.
///
/// The source is compiled on its own first: wrapping an invalid source such
/// as `/api)|(.*` in `^(?:…)$` would otherwise yield a valid regex that
/// matches every path.
pub(crate) fn compile_full_match(src: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(src)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()?;
    regex::RegexBuilder::new(&format!("^(?:{src})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
}

impl RoutesConfig {
    /// Parses and validates routes.yaml text, reporting every error found.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigErrors> {
        let doc: Value = match serde_norway::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                return Err(ConfigErrors(vec![ConfigError {
                    route: None,
                    host: None,
                    key: String::new(),
                    kind: ConfigErrorKind::Syntax {
                        line: e.location().map(|l| l.line()),
                        message: e.to_string(),
                    },
                }]));
            }
        };
        let mut p = Parser::default();
        let cfg = p.document(&doc);
        if p.errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigErrors(p.errors))
        }
    }

    /// The introspection/serialisation form: routes.yaml field names, defaults omitted.
    #[must_use]
    pub fn to_wire(&self) -> WireConfig<'_> {
        WireConfig {
            routes: self.routes.iter().map(WireRoute::from).collect(),
            log: (self.log != LogLevel::default()).then_some(self.log.as_u8()),
        }
    }

    /// Serialises back to routes.yaml.
    pub fn to_yaml(&self) -> Result<String, serde_norway::Error> {
        serde_norway::to_string(&self.to_wire())
    }

    /// Serialises to the JSON served at `_egress.local/allowlist`.
    #[must_use]
    pub fn to_json(&self) -> String {
        // Serialising plain strings, numbers and lists into JSON cannot fail.
        serde_json::to_string_pretty(&self.to_wire()).unwrap_or_default()
    }
}

/// Serialisable view of [`RoutesConfig`] in routes.yaml field names.
#[derive(Debug, Serialize)]
pub struct WireConfig<'a> {
    routes: Vec<WireRoute<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<u8>,
}

#[derive(Debug, Serialize)]
struct WireRoute<'a> {
    host: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_scheme: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token_env: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    matches: Option<Vec<WireMatch<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    git: Option<WireGit>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ports: Option<&'a [u16]>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    allow_private: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    dlp: Option<WireDlp>,
}

#[derive(Debug, Serialize)]
struct WireGit {
    fetch: bool,
}

#[derive(Debug, Serialize)]
struct WireMatch<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    paths: Vec<WirePath<'a>>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    methods: &'a [String],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    headers: Vec<WireHeader<'a>>,
}

#[derive(Debug, Serialize)]
struct WirePath<'a> {
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    value: &'a str,
}

#[derive(Debug, Serialize)]
struct WireHeader<'a> {
    name: &'a str,
    value: &'a str,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
}

#[derive(Debug, Serialize)]
struct WireDlp {
    #[serde(skip_serializing_if = "Option::is_none")]
    outbound_detectors: Option<WireDetectors>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inbound_detectors: Option<WireDetectors>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum WireDetectors {
    Off(bool),
    Only(Vec<&'static str>),
}

fn wire_detectors<D: DetectorName>(c: &DetectorChoice<D>) -> Option<WireDetectors> {
    match c {
        DetectorChoice::All => None,
        DetectorChoice::Off => Some(WireDetectors::Off(false)),
        DetectorChoice::Only(v) => Some(WireDetectors::Only(v.iter().map(|d| d.name()).collect())),
    }
}

impl<'a> From<&'a Route> for WireRoute<'a> {
    fn from(r: &'a Route) -> Self {
        let outbound = wire_detectors(&r.outbound);
        let inbound = wire_detectors(&r.inbound);
        WireRoute {
            host: &r.host,
            auth_scheme: r.auth.as_ref().map(|a| a.scheme.as_str()),
            token_env: r.auth.as_ref().map(|a| a.token_env.as_str()),
            matches: r.matches.as_ref().map(|ms| {
                ms.iter()
                    .map(|m| WireMatch {
                        paths: m
                            .paths
                            .iter()
                            .map(|p| WirePath {
                                kind: match p.kind {
                                    PathKind::Prefix => None,
                                    PathKind::Exact => Some("exact"),
                                    PathKind::Regex => Some("regex"),
                                },
                                value: &p.value,
                            })
                            .collect(),
                        methods: &m.methods,
                        headers: m
                            .headers
                            .iter()
                            .map(|h| WireHeader {
                                name: &h.name,
                                value: &h.value,
                                kind: match h.kind {
                                    ValueKind::Exact => None,
                                    ValueKind::Regex => Some("regex"),
                                },
                            })
                            .collect(),
                    })
                    .collect()
            }),
            git: r.git_fetch.then_some(WireGit { fetch: true }),
            ports: r.ports.as_deref(),
            allow_private: r.allow_private,
            dlp: (outbound.is_some() || inbound.is_some()).then_some(WireDlp {
                outbound_detectors: outbound,
                inbound_detectors: inbound,
            }),
        }
    }
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

const TOP_KEYS: &str = "routes, log";
const ROUTE_KEYS: &str = "host, auth_scheme, token_env, matches, git, ports, allow_private, dlp";
const MATCH_KEYS: &str = "paths, methods, headers";
const PATH_KEYS: &str = "type, value";
const HEADER_KEYS: &str = "name, value, type";
const GIT_KEYS: &str = "fetch";
const DLP_KEYS: &str = "outbound_detectors, inbound_detectors";

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => {
            let short: String = s.chars().take(60).collect();
            if short.len() < s.len() {
                format!("string {short:?}…")
            } else {
                format!("string {short:?}")
            }
        }
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("tagged value {}", t.tag),
    }
}

#[derive(Default)]
struct Parser {
    errors: Vec<ConfigError>,
    route: Option<usize>,
    host: Option<String>,
}

/// Key path helper: `join("matches[0]", "paths")` → `matches[0].paths`.
fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_owned()
    } else {
        format!("{base}.{key}")
    }
}

impl Parser {
    fn err(&mut self, key: impl Into<String>, kind: ConfigErrorKind) {
        self.errors.push(ConfigError {
            route: self.route,
            host: self.host.clone(),
            key: key.into(),
            kind,
        });
    }

    fn wrong(&mut self, key: &str, expected: &'static str, v: &Value) {
        self.err(
            key,
            ConfigErrorKind::WrongType {
                expected,
                found: describe(v),
            },
        );
    }

    /// Returns the entries of a mapping with string keys, reporting unknown keys.
    fn mapping<'v>(
        &mut self,
        key: &str,
        v: &'v Value,
        allowed: &'static str,
    ) -> Option<Vec<(&'v str, &'v Value)>> {
        let Value::Mapping(m) = v else {
            self.wrong(key, "a mapping", v);
            return None;
        };
        let mut out = Vec::with_capacity(m.len());
        for (k, val) in m {
            let Some(ks) = k.as_str() else {
                self.wrong(key, "string keys", k);
                continue;
            };
            if allowed.split(", ").any(|a| a == ks) {
                out.push((ks, val));
            } else {
                self.err(
                    join(key, ks),
                    ConfigErrorKind::UnknownKey { expected: allowed },
                );
            }
        }
        Some(out)
    }

    fn string<'v>(&mut self, key: &str, v: &'v Value) -> Option<&'v str> {
        if let Value::String(s) = v {
            Some(s)
        } else {
            self.wrong(key, "a string", v);
            None
        }
    }

    fn boolean(&mut self, key: &str, v: &Value) -> Option<bool> {
        if let Value::Bool(b) = v {
            Some(*b)
        } else {
            self.wrong(key, "true or false", v);
            None
        }
    }

    /// A non-empty list.
    fn list<'v>(&mut self, key: &str, v: &'v Value) -> Option<&'v [Value]> {
        match v {
            Value::Sequence(s) if s.is_empty() => {
                self.err(
                    key,
                    ConfigErrorKind::Invalid("empty list; omit the key instead".into()),
                );
                None
            }
            Value::Sequence(s) => Some(s),
            _ => {
                self.wrong(key, "a list", v);
                None
            }
        }
    }

    fn document(&mut self, doc: &Value) -> RoutesConfig {
        let mut cfg = RoutesConfig::default();
        if matches!(doc, Value::Null) {
            self.err("routes", ConfigErrorKind::Missing);
            return cfg;
        }
        let Some(entries) = self.mapping("", doc, TOP_KEYS) else {
            return cfg;
        };
        let mut saw_routes = false;
        for (k, v) in entries {
            match k {
                "log" => match v.as_u64() {
                    Some(0) => cfg.log = LogLevel::Off,
                    Some(1) => cfg.log = LogLevel::Blocked,
                    Some(2) => cfg.log = LogLevel::All,
                    _ => self.wrong("log", "0, 1 or 2", v),
                },
                "routes" => {
                    saw_routes = true;
                    match v {
                        Value::Sequence(seq) => cfg.routes = self.routes(seq),
                        _ => self.wrong("routes", "a list", v),
                    }
                }
                _ => unreachable!("mapping() filters keys"),
            }
        }
        if !saw_routes {
            self.err("routes", ConfigErrorKind::Missing);
        }
        cfg
    }

    fn routes(&mut self, seq: &[Value]) -> Vec<Route> {
        let mut out = Vec::with_capacity(seq.len());
        let mut first_index: HashMap<String, usize> = HashMap::new();
        for (i, v) in seq.iter().enumerate() {
            self.route = Some(i);
            self.host = v
                .get("host")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase);
            let (host, route) = self.route_entry(v);
            // Duplicates are checked on every readable host, even of a route
            // with other errors, so one run reports them all.
            if let Some(host) = host {
                if let Some(&first) = first_index.get(&host) {
                    self.err("host", ConfigErrorKind::DuplicateHost { host, first });
                    continue;
                }
                first_index.insert(host, i);
            }
            out.extend(route);
        }
        self.route = None;
        self.host = None;
        out
    }

    /// Parses one route; returns its valid host (if any) and the route (if
    /// it had no error).
    fn route_entry(&mut self, v: &Value) -> (Option<String>, Option<Route>) {
        let before = self.errors.len();
        let Some(entries) = self.mapping("", v, ROUTE_KEYS) else {
            return (None, None);
        };
        let mut route = Route::new(String::new());
        let mut host = None;
        let (mut scheme, mut token_env) = (None, None);
        for (k, val) in entries {
            match k {
                "host" => host = self.host_value(val),
                "auth_scheme" => {
                    scheme = match val.as_str() {
                        Some("Bearer") => Some(AuthScheme::Bearer),
                        Some("token") => Some(AuthScheme::Token),
                        _ => {
                            self.wrong(k, "\"Bearer\" or \"token\"", val);
                            None
                        }
                    }
                }
                "token_env" => token_env = self.env_name(k, val),
                "matches" => route.matches = self.matches(val),
                "git" => {
                    if let Some(g) = self.mapping("git", val, GIT_KEYS) {
                        for (_, f) in g {
                            route.git_fetch = self.boolean("git.fetch", f).unwrap_or(false);
                        }
                    }
                }
                "ports" => route.ports = self.ports(val),
                "allow_private" => route.allow_private = self.boolean(k, val).unwrap_or(false),
                "dlp" => {
                    if let Some(d) = self.mapping("dlp", val, DLP_KEYS) {
                        for (dk, dv) in d {
                            let key = join("dlp", dk);
                            if dk == "outbound_detectors" {
                                route.outbound = self.detectors(&key, dv);
                            } else {
                                route.inbound = self.detectors(&key, dv);
                            }
                        }
                    }
                }
                _ => unreachable!("mapping() filters keys"),
            }
        }
        let has_scheme = v.get("auth_scheme").is_some();
        let has_env = v.get("token_env").is_some();
        match (scheme, token_env) {
            (Some(scheme), Some(token_env)) => route.auth = Some(Auth { scheme, token_env }),
            _ if has_scheme && !has_env => self.err(
                "token_env",
                ConfigErrorKind::Invalid("auth_scheme needs token_env".into()),
            ),
            _ if has_env && !has_scheme => self.err(
                "auth_scheme",
                ConfigErrorKind::Invalid("token_env needs auth_scheme".into()),
            ),
            _ => {}
        }
        if v.get("host").is_none() {
            self.err("host", ConfigErrorKind::Missing);
        }
        let Some(host) = host else {
            return (None, None);
        };
        route.host.clone_from(&host);
        (Some(host), (self.errors.len() == before).then_some(route))
    }

    fn host_value(&mut self, v: &Value) -> Option<String> {
        let s = self.string("host", v)?;
        let host = s.to_ascii_lowercase();
        let problem = if host.is_empty() {
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
            hostname_problem(&host)
        };
        if let Some(p) = problem {
            self.err("host", ConfigErrorKind::Invalid(p));
            return None;
        }
        Some(host)
    }

    fn env_name(&mut self, key: &str, v: &Value) -> Option<String> {
        let s = self.string(key, v)?;
        let ok = s
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if ok {
            Some(s.to_owned())
        } else {
            self.err(
                key,
                ConfigErrorKind::Invalid(format!(
                    "{s:?} is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"
                )),
            );
            None
        }
    }

    fn ports(&mut self, v: &Value) -> Option<Vec<u16>> {
        let items = self.list("ports", v)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, p) in items.iter().enumerate() {
            let key = format!("ports[{i}]");
            match p
                .as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n > 0)
            {
                Some(n) if out.contains(&n) => {
                    self.err(
                        key,
                        ConfigErrorKind::Invalid(format!("port {n} listed twice")),
                    );
                }
                Some(n) => out.push(n),
                None => self.wrong(&key, "a port number 1-65535", p),
            }
        }
        Some(out)
    }

    fn detectors<D: DetectorName>(&mut self, key: &str, v: &Value) -> DetectorChoice<D> {
        let expected: &'static str = if D::ALL.len() == 2 {
            "token_patterns, known_secrets"
        } else {
            "naive_injection_detection"
        };
        match v {
            Value::Bool(false) => DetectorChoice::Off,
            Value::Sequence(items) if items.is_empty() => {
                self.err(
                    key,
                    ConfigErrorKind::Invalid(
                        "empty list; write false to turn these detectors off".into(),
                    ),
                );
                DetectorChoice::Off
            }
            Value::Sequence(items) => {
                let mut out: Vec<D> = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let ikey = format!("{key}[{i}]");
                    let Some(name) = self.string(&ikey, item) else {
                        continue;
                    };
                    match D::ALL.iter().find(|d| d.name() == name) {
                        Some(d) if out.contains(d) => self.err(
                            ikey,
                            ConfigErrorKind::Invalid(format!("detector {name:?} listed twice")),
                        ),
                        Some(d) => out.push(*d),
                        None => self.err(
                            ikey,
                            ConfigErrorKind::UnknownDetector {
                                name: name.to_owned(),
                                expected,
                            },
                        ),
                    }
                }
                DetectorChoice::Only(out)
            }
            _ => {
                self.wrong(key, "false or a list of detector names", v);
                DetectorChoice::All
            }
        }
    }

    fn matches(&mut self, v: &Value) -> Option<Vec<MatchEntry>> {
        let items = self.list("matches", v)?;
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let base = format!("matches[{i}]");
            let Some(entries) = self.mapping(&base, item, MATCH_KEYS) else {
                continue;
            };
            if item
                .as_mapping()
                .is_some_and(serde_norway::Mapping::is_empty)
            {
                self.err(
                    &base,
                    ConfigErrorKind::Invalid(
                        "an empty entry accepts every request; give paths, methods or headers, \
                         or omit matches"
                            .into(),
                    ),
                );
                continue;
            }
            let mut entry = MatchEntry::default();
            for (k, val) in entries {
                let key = join(&base, k);
                let Some(list) = self.list(&key, val) else {
                    continue;
                };
                for (j, x) in list.iter().enumerate() {
                    let ikey = format!("{key}[{j}]");
                    match k {
                        "paths" => entry.paths.extend(self.path(&ikey, x)),
                        "methods" => entry.methods.extend(self.method(&ikey, x)),
                        _ => entry.headers.extend(self.header(&ikey, x)),
                    }
                }
            }
            out.push(entry);
        }
        Some(out)
    }

    fn path(&mut self, key: &str, v: &Value) -> Option<PathMatch> {
        let before = self.errors.len();
        let entries = self.mapping(key, v, PATH_KEYS)?;
        let mut kind = Some(PathKind::Prefix);
        let mut value = None;
        let mut saw_value = false;
        for (k, val) in entries {
            let fkey = join(key, k);
            if k == "type" {
                kind = match val.as_str() {
                    Some("prefix") => Some(PathKind::Prefix),
                    Some("exact") => Some(PathKind::Exact),
                    Some("regex") => Some(PathKind::Regex),
                    _ => {
                        self.wrong(&fkey, "\"prefix\", \"exact\" or \"regex\"", val);
                        None
                    }
                };
            } else {
                saw_value = true;
                value = self.string(&fkey, val).map(str::to_owned);
            }
        }
        let vkey = join(key, "value");
        if !saw_value {
            self.err(&vkey, ConfigErrorKind::Missing);
        }
        match (kind, &value) {
            (Some(PathKind::Regex), Some(v)) => {
                self.regex(&vkey, v);
            }
            (_, Some(v)) if !v.starts_with('/') => self.err(
                vkey,
                ConfigErrorKind::Invalid(format!("path {v:?} must start with '/'")),
            ),
            _ => {}
        }
        if self.errors.len() > before {
            return None;
        }
        Some(PathMatch {
            kind: kind?,
            value: value?,
        })
    }

    fn method(&mut self, key: &str, v: &Value) -> Option<String> {
        let s = self.string(key, v)?;
        if s.is_empty() || !s.bytes().all(is_token_byte) {
            self.err(
                key,
                ConfigErrorKind::Invalid(format!("{s:?} is not an HTTP method")),
            );
            return None;
        }
        Some(s.to_ascii_uppercase())
    }

    fn header(&mut self, key: &str, v: &Value) -> Option<HeaderMatch> {
        let before = self.errors.len();
        let entries = self.mapping(key, v, HEADER_KEYS)?;
        let (mut name, mut value, mut kind) = (None, None, Some(ValueKind::Exact));
        let (mut saw_name, mut saw_value) = (false, false);
        for (k, val) in entries {
            let fkey = join(key, k);
            match k {
                "name" => {
                    saw_name = true;
                    name = self.string(&fkey, val);
                }
                "value" => {
                    saw_value = true;
                    value = self.string(&fkey, val);
                }
                _ => {
                    kind = match val.as_str() {
                        Some("exact") => Some(ValueKind::Exact),
                        Some("regex") => Some(ValueKind::Regex),
                        _ => {
                            self.wrong(&fkey, "\"exact\" or \"regex\"", val);
                            None
                        }
                    }
                }
            }
        }
        if !saw_name {
            self.err(join(key, "name"), ConfigErrorKind::Missing);
        }
        if !saw_value {
            self.err(join(key, "value"), ConfigErrorKind::Missing);
        }
        if let Some(n) = name
            && (n.is_empty() || !n.bytes().all(is_token_byte))
        {
            self.err(
                join(key, "name"),
                ConfigErrorKind::Invalid(format!("{n:?} is not an HTTP header name")),
            );
        }
        if let (Some(ValueKind::Regex), Some(v)) = (kind, value) {
            self.regex(&join(key, "value"), v);
        }
        if self.errors.len() > before {
            return None;
        }
        Some(HeaderMatch {
            name: name?.to_ascii_lowercase(),
            value: value?.to_owned(),
            kind: kind?,
        })
    }

    fn regex(&mut self, key: &str, src: &str) -> Option<()> {
        match compile_full_match(src) {
            Ok(_) => Some(()),
            Err(e) => {
                // The regex crate's message spans several lines and shows our
                // `^(?:…)$` wrapper; report the user's pattern and the cause.
                let message = match regex::Regex::new(src) {
                    Err(regex::Error::Syntax(text)) => text
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map_or_else(String::new, |l| {
                            l.trim().trim_start_matches("error: ").to_owned()
                        }),
                    _ => e.to_string(),
                };
                self.err(
                    key,
                    ConfigErrorKind::BadRegex {
                        source_text: src.to_owned(),
                        message,
                    },
                );
                None
            }
        }
    }
}

/// RFC 7230 `tchar`.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
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

#[cfg(test)]
mod tests;
