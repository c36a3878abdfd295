//! The routes.yaml schema (SPEC §2): one set of serde types that the proxy
//! loads, the orchestrator builds directly, and the introspection endpoint
//! serves, in routes.yaml's own field names with defaults omitted.
//!
//! The types *are* the format: [`de`] deserialises a YAML tree into them
//! while collecting every error with its route index, host and key path,
//! and [`check`] validates what types cannot say (host names, regexes,
//! duplicates) and compiles the matchers, once.

mod check;
mod de;

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_norway::Value;

pub use crate::dlp::{DetectorName, InboundDetector, OutboundDetector};
pub(crate) use check::{CompiledMatch, CompiledRoutes, PathMatcher, ValueMatcher};
pub use de::field_names;

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

    /// The level a routes.yaml number names.
    #[must_use]
    pub fn from_u8(n: u8) -> Option<Self> {
        match n {
            0 => Some(Self::Off),
            1 => Some(Self::Blocked),
            2 => Some(Self::All),
            _ => None,
        }
    }

    #[allow(
        clippy::trivially_copy_pass_by_ref,
        reason = "serde's skip_serializing_if passes a reference"
    )]
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl Serialize for LogLevel {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.as_u8())
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Level;
        impl serde::de::Visitor<'_> for Level {
            type Value = LogLevel;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("0, 1 or 2")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<LogLevel, E> {
                u8::try_from(n)
                    .ok()
                    .and_then(LogLevel::from_u8)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Unsigned(n), &self))
            }
        }
        d.deserialize_u64(Level)
    }
}

/// The scheme of an injected `Authorization` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthScheme {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: token <token>` (GitHub/Gitea style).
    #[serde(rename = "token")]
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

    /// The scheme a routes.yaml word names.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "Bearer" => Some(Self::Bearer),
            "token" => Some(Self::Token),
            _ => None,
        }
    }
}

/// Credentials the proxy injects for a route (`auth_scheme` + `token_env`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auth<'a> {
    /// Header scheme.
    pub scheme: AuthScheme,
    /// Name of the proxy-process environment variable holding the token.
    pub token_env: &'a str,
}

/// How a path matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    /// The request path starts with the value (plain byte prefix).
    #[default]
    Prefix,
    /// The request path equals the value.
    Exact,
    /// The value is a regex that must match the whole request path.
    Regex,
}

impl PathKind {
    #[allow(
        clippy::trivially_copy_pass_by_ref,
        reason = "serde's skip_serializing_if passes a reference"
    )]
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// How a header matcher compares values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    /// The header value equals the given value.
    #[default]
    Exact,
    /// The value is a regex that must match the whole header value.
    Regex,
}

impl ValueKind {
    #[allow(
        clippy::trivially_copy_pass_by_ref,
        reason = "serde's skip_serializing_if passes a reference"
    )]
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// One `matches[].paths[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathMatch {
    /// Comparison kind.
    #[serde(rename = "type", default, skip_serializing_if = "PathKind::is_default")]
    pub kind: PathKind,
    /// Literal path, prefix or regex source.
    pub value: String,
}

/// One `matches[].headers[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    /// Header name (lower-cased at load).
    pub name: String,
    /// Literal value or regex source.
    pub value: String,
    /// Comparison kind.
    #[serde(
        rename = "type",
        default,
        skip_serializing_if = "ValueKind::is_default"
    )]
    pub kind: ValueKind,
}

/// One `matches[]` entry: every list present must accept the request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchEntry {
    /// Any may match; empty means any path.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "non_empty"
    )]
    pub paths: Vec<PathMatch>,
    /// Any may match (upper-cased at load); empty means any method.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "non_empty"
    )]
    pub methods: Vec<String>,
    /// All must match; empty means no header condition.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "non_empty"
    )]
    pub headers: Vec<HeaderMatch>,
}

/// A list key that, when written, must not be empty (absent means "any").
fn non_empty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let v = Vec::<T>::deserialize(d)?;
    if v.is_empty() {
        return Err(serde::de::Error::custom(EMPTY_LIST));
    }
    Ok(v)
}

const EMPTY_LIST: &str = "empty list; omit the key instead";

/// `git:` of a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitSpec {
    /// `true` allows smart-HTTP clone/fetch (`git-upload-pack`).
    #[serde(default)]
    pub fetch: bool,
}

impl GitSpec {
    #[allow(
        clippy::trivially_copy_pass_by_ref,
        reason = "serde's skip_serializing_if passes a reference"
    )]
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

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

    fn is_all(&self) -> bool {
        matches!(self, Self::All)
    }
}

impl<D: DetectorName + Serialize> Serialize for DetectorChoice<D> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            // Written out only when serialised on its own (a route leaves
            // the key out): the full list means the same.
            Self::All => D::ALL.serialize(s),
            Self::Off => s.serialize_bool(false),
            Self::Only(list) => list.serialize(s),
        }
    }
}

impl<'de, D: DetectorName + Deserialize<'de>> Deserialize<'de> for DetectorChoice<D> {
    fn deserialize<De: Deserializer<'de>>(d: De) -> Result<Self, De::Error> {
        struct Choice<D>(std::marker::PhantomData<D>);
        impl<'de, D: Deserialize<'de>> serde::de::Visitor<'de> for Choice<D> {
            type Value = DetectorChoice<D>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("false or a list of detector names")
            }
            fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Self::Value, E> {
                if b {
                    Err(E::invalid_value(serde::de::Unexpected::Bool(b), &self))
                } else {
                    Ok(DetectorChoice::Off)
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(d) = seq.next_element()? {
                    out.push(d);
                }
                Ok(DetectorChoice::Only(out))
            }
        }
        d.deserialize_any(Choice(std::marker::PhantomData))
    }
}

/// `dlp:` of a route.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlpSpec {
    /// Outbound (request) detectors.
    #[serde(default, skip_serializing_if = "DetectorChoice::is_all")]
    pub outbound_detectors: DetectorChoice<OutboundDetector>,
    /// Inbound (response) detectors.
    #[serde(default, skip_serializing_if = "DetectorChoice::is_all")]
    pub inbound_detectors: DetectorChoice<InboundDetector>,
}

impl DlpSpec {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// One route of routes.yaml, field for field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Exact host name (lower-cased at load).
    pub host: String,
    /// Scheme of the injected `Authorization`; comes with `token_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_scheme: Option<AuthScheme>,
    /// Proxy-process environment variable holding the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_env: Option<String>,
    /// `None`: every request to the host is accepted; `Some`: at least one
    /// entry must accept it (never empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matches: Option<Vec<MatchEntry>>,
    /// `git:` settings.
    #[serde(default, skip_serializing_if = "GitSpec::is_default")]
    pub git: GitSpec,
    /// Reachable ports; `None` means the defaults (443 via CONNECT, 80 plain).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "ports"
    )]
    pub ports: Option<Vec<u16>>,
    /// Whether the host may resolve to loopback/private/link-local (any
    /// special-purpose) addresses, or to the proxy host's own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_private: bool,
    /// DLP selection.
    #[serde(default, skip_serializing_if = "DlpSpec::is_default")]
    pub dlp: DlpSpec,
}

/// `ports:` with each element checked to be a port (1–65535).
fn ports<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u16>>, D::Error> {
    struct Port(u16);
    impl<'de> Deserialize<'de> for Port {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl serde::de::Visitor<'_> for V {
                type Value = Port;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str(PORT)
                }
                fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Port, E> {
                    u16::try_from(n)
                        .ok()
                        .filter(|&p| p > 0)
                        .map(Port)
                        .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Unsigned(n), &self))
                }
            }
            d.deserialize_u64(V)
        }
    }
    let ports = Vec::<Port>::deserialize(d)?;
    Ok(Some(ports.into_iter().map(|p| p.0).collect()))
}

const PORT: &str = "a port number 1-65535";

impl RouteSpec {
    /// A route for `host` with every default.
    #[must_use]
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            auth_scheme: None,
            token_env: None,
            matches: None,
            git: GitSpec::default(),
            ports: None,
            allow_private: false,
            dlp: DlpSpec::default(),
        }
    }

    /// The credentials to inject, when the route has both halves.
    #[must_use]
    pub fn auth(&self) -> Option<Auth<'_>> {
        Some(Auth {
            scheme: self.auth_scheme?,
            token_env: self.token_env.as_deref()?,
        })
    }

    /// Reads one route from a YAML mapping (the orchestrator's manifests
    /// embed routes) with every check a routes file gets except those
    /// across routes. Errors carry the key path inside the route; `route`
    /// and `host` are unset, as the caller knows where the route is.
    pub fn from_value(value: &Value) -> Result<Self, ConfigErrors> {
        let (spec, mut issues) = de::collect::<Self>(value);
        if let Some(spec) = &spec {
            let mut more = Vec::new();
            check::route(spec, &[], &mut more, &mut check::Hosts::default());
            keep_most_specific(&mut issues, more);
        }
        if issues.is_empty()
            && let Some(mut spec) = spec
        {
            spec.normalise();
            return Ok(spec);
        }
        sort_issues(&mut issues, &positions(value));
        Err(ConfigErrors(
            issues
                .into_iter()
                .map(|i| ConfigError {
                    route: None,
                    host: None,
                    key: key_text(&i.path),
                    kind: i.kind,
                })
                .collect(),
        ))
    }

    /// Lower-cases the host and header names, upper-cases methods.
    fn normalise(&mut self) {
        self.host.make_ascii_lowercase();
        for m in self.matches.iter_mut().flatten() {
            for method in &mut m.methods {
                method.make_ascii_uppercase();
            }
            for h in &mut m.headers {
                h.name.make_ascii_lowercase();
            }
        }
    }
}

/// A whole routes.yaml.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutesConfig {
    /// The routes, in file order.
    pub routes: Vec<RouteSpec>,
    /// Log level.
    #[serde(default, skip_serializing_if = "LogLevel::is_default")]
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
    #[error("unknown key (expected one of: {})", .expected.join(", "))]
    UnknownKey {
        /// The keys allowed here.
        expected: &'static [&'static str],
    },
    /// A required key is absent.
    #[error("missing required key")]
    Missing,
    /// A value of the wrong YAML type.
    #[error("expected {expected}, found {found}")]
    WrongType {
        /// What the key takes.
        expected: String,
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
    #[error("unknown detector {name:?} (expected one of: {})", .expected.join(", "))]
    UnknownDetector {
        /// The name as written.
        name: String,
        /// The detectors allowed here.
        expected: &'static [&'static str],
    },
    /// A value that has the right type but breaks a rule.
    #[error("{0}")]
    Invalid(String),
    /// The file has so many errors that the rest was not checked.
    #[error("more than {0} errors; the rest of the file was not checked")]
    TooManyErrors(usize),
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

impl RoutesConfig {
    /// Parses and validates routes.yaml text, reporting every error found.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigErrors> {
        parse(text).map(|(cfg, _)| cfg)
    }

    /// Validates a configuration built in code (the orchestrator builds
    /// one from manifests) with the rules and messages of a parsed file,
    /// and normalises it as loading does.
    pub fn validate(self) -> Result<Self, ConfigErrors> {
        self.compile().map(|(cfg, _)| cfg)
    }

    /// Validates, normalises and compiles: the one place matchers are built.
    pub(crate) fn compile(mut self) -> Result<(Self, CompiledRoutes), ConfigErrors> {
        let mut issues = Vec::new();
        let compiled = check::config(&self, &mut issues);
        if !issues.is_empty() {
            return Err(to_errors(issues, |i| {
                self.routes.get(i).map(|r| r.host.to_ascii_lowercase())
            }));
        }
        self.normalise();
        Ok((self, compiled))
    }

    fn normalise(&mut self) {
        for r in &mut self.routes {
            r.normalise();
        }
    }

    /// Serialises back to routes.yaml.
    pub fn to_yaml(&self) -> Result<String, serde_norway::Error> {
        serde_norway::to_string(self)
    }

    /// Serialises to the JSON served at `_egress.local/allowlist`.
    #[must_use]
    pub fn to_json(&self) -> String {
        // Serialising plain strings, numbers and lists into JSON cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// Parses, validates, normalises and compiles routes.yaml text.
pub(crate) fn parse(text: &str) -> Result<(RoutesConfig, CompiledRoutes), ConfigErrors> {
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
    // An empty document is a mapping without keys: "routes is missing".
    let doc = match doc {
        Value::Null => Value::Mapping(serde_norway::Mapping::new()),
        other => other,
    };
    let (cfg, mut issues) = de::collect::<RoutesConfig>(&doc);
    let mut compiled = CompiledRoutes::default();
    if let Some(cfg) = &cfg {
        let mut more = Vec::new();
        compiled = check::config(cfg, &mut more);
        keep_most_specific(&mut issues, more);
    }
    if issues.is_empty()
        && let Some(mut cfg) = cfg
    {
        cfg.normalise();
        return Ok((cfg, compiled));
    }
    sort_issues(&mut issues, &positions(&doc));
    if issues.len() > de::MAX_ERRORS {
        issues.truncate(de::MAX_ERRORS);
        issues.push(de::Issue::at(
            Vec::new(),
            ConfigErrorKind::TooManyErrors(de::MAX_ERRORS),
        ));
    }
    let routes = doc.get("routes").and_then(Value::as_sequence);
    Err(to_errors(issues, |i| {
        routes?
            .get(i)?
            .get("host")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
    }))
}

/// Adds the validation issues that no deserialisation error already
/// explains (a placeholder value is never judged).
fn keep_most_specific(issues: &mut Vec<de::Issue>, more: Vec<de::Issue>) {
    let kept: Vec<de::Issue> = more
        .into_iter()
        .filter(|m| !issues.iter().any(|i| de::covers(&m.path, &i.path)))
        .collect();
    issues.extend(kept);
}

fn to_errors(issues: Vec<de::Issue>, host: impl Fn(usize) -> Option<String>) -> ConfigErrors {
    ConfigErrors(
        issues
            .into_iter()
            .map(|i| {
                let (route, rest) = match i.path.as_slice() {
                    [de::Seg::Key(k), de::Seg::Index(r), rest @ ..] if k == "routes" => {
                        (Some(*r), rest)
                    }
                    all => (None, all),
                };
                ConfigError {
                    route,
                    host: route.and_then(&host),
                    key: key_text(rest),
                    kind: i.kind,
                }
            })
            .collect(),
    )
}

/// `matches[0].paths[1].value`.
fn key_text(path: &[de::Seg]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for seg in path {
        match seg {
            de::Seg::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            de::Seg::Index(i) => {
                let _ = write!(s, "[{i}]");
            }
        }
    }
    s
}

/// Preorder slots of every node: `2·index` for the node itself, and the
/// odd slot after its last descendant for its end.
type Positions = std::collections::HashMap<de::Path, (usize, usize)>;

fn positions(doc: &Value) -> Positions {
    fn walk(v: &Value, path: &mut de::Path, next: &mut usize, out: &mut Positions) {
        let start = *next;
        *next += 1;
        match v {
            Value::Sequence(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(de::Seg::Index(i));
                    walk(item, path, next, out);
                    path.pop();
                }
            }
            Value::Mapping(m) => {
                for (k, item) in m {
                    if let Value::String(k) = k {
                        path.push(de::Seg::Key(k.clone()));
                        walk(item, path, next, out);
                        path.pop();
                    }
                }
            }
            _ => {}
        }
        out.insert(path.clone(), (2 * start, 2 * (*next - 1) + 1));
    }
    let mut out = Positions::new();
    walk(doc, &mut Vec::new(), &mut 0, &mut out);
    out
}

/// Document order, as a reader meets the errors; ties keep the order found.
fn sort_issues(issues: &mut [de::Issue], index: &Positions) {
    let place = |path: &[de::Seg]| -> (usize, u8) {
        // The node, or (a missing key) the end of its nearest ancestor.
        (0..=path.len())
            .rev()
            .find_map(|n| {
                index.get(&path[..n]).map(|&(start, end)| {
                    if n == path.len() {
                        (start, 1)
                    } else {
                        (end, 1)
                    }
                })
            })
            .unwrap_or((0, 1))
    };
    issues.sort_by_key(|i| match i.anchor {
        de::Anchor::At => place(&i.path),
        de::Anchor::Parent => {
            let parent = &i.path[..i.path.len().saturating_sub(1)];
            (index.get(parent).map_or(0, |p| p.0), 0)
        }
        de::Anchor::EndOfRoute => {
            let route = &i.path[..i.path.len().min(2)];
            (index.get(route).map_or(usize::MAX, |p| p.1), 2)
        }
    });
}

#[cfg(test)]
mod tests;
