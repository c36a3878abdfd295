//! The egress policy: the routes.yaml model, its compiled matchers, and the
//! decision function. No I/O and no async runtime: the orchestrator and
//! git-gate use this module with the server feature off.

mod config;
mod decision;

use std::collections::HashMap;

pub use config::{
    Auth, AuthScheme, ConfigError, ConfigErrorKind, ConfigErrors, DetectorChoice, DetectorName,
    HeaderMatch, INTROSPECTION_HOST, InboundDetector, LogLevel, MatchEntry, OutboundDetector,
    PathKind, PathMatch, Route, RoutesConfig, ValueKind, WireConfig,
};
pub use decision::{Block, BlockReason, Decision, Forward, Headers, Request, Via};

use config::compile_full_match;

/// A validated routes file with its matchers compiled and hosts indexed.
#[derive(Debug, Clone)]
pub struct Policy {
    config: RoutesConfig,
    index: HashMap<String, usize>,
    /// Per route: `None` when the route has no `matches`.
    compiled: Vec<Option<Vec<CompiledMatch>>>,
}

impl Policy {
    /// Parses, validates and compiles routes.yaml text.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigErrors> {
        Ok(Self::new(RoutesConfig::from_yaml(text)?))
    }

    /// Compiles an already validated configuration.
    ///
    /// # Panics
    /// Never for a [`RoutesConfig`] produced by [`RoutesConfig::from_yaml`],
    /// which has already compiled every regex once; a hand-built config with
    /// a bad regex makes the offending matcher reject every request instead.
    #[must_use]
    pub fn new(config: RoutesConfig) -> Self {
        let index = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.host.clone(), i))
            .collect();
        let compiled = config
            .routes
            .iter()
            .map(|r| {
                r.matches
                    .as_ref()
                    .map(|ms| ms.iter().map(CompiledMatch::new).collect())
            })
            .collect();
        Self {
            config,
            index,
            compiled,
        }
    }

    /// The configuration this policy was built from.
    #[must_use]
    pub fn config(&self) -> &RoutesConfig {
        &self.config
    }

    /// The route for a host (exact, case-insensitive).
    #[must_use]
    pub fn route(&self, host: &str) -> Option<&Route> {
        let i = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            self.index.get(&host.to_ascii_lowercase())
        } else {
            self.index.get(host)
        };
        i.map(|&i| &self.config.routes[i])
    }

    /// The body served at `_egress.local/allowlist`.
    #[must_use]
    pub fn introspection_json(&self) -> String {
        self.config.to_json()
    }
}

/// A compiled `matches[]` entry.
#[derive(Debug, Clone)]
struct CompiledMatch {
    paths: Vec<PathMatcher>,
    methods: Vec<String>,
    headers: Vec<(String, ValueMatcher)>,
}

#[derive(Debug, Clone)]
enum PathMatcher {
    Prefix(String),
    Exact(String),
    Regex(Option<regex::Regex>),
}

#[derive(Debug, Clone)]
enum ValueMatcher {
    Exact(Vec<u8>),
    Regex(Option<regex::Regex>),
}

impl CompiledMatch {
    fn new(m: &MatchEntry) -> Self {
        Self {
            paths: m
                .paths
                .iter()
                .map(|p| match p.kind {
                    PathKind::Prefix => PathMatcher::Prefix(p.value.clone()),
                    PathKind::Exact => PathMatcher::Exact(p.value.clone()),
                    PathKind::Regex => PathMatcher::Regex(compile_full_match(&p.value).ok()),
                })
                .collect(),
            methods: m.methods.clone(),
            headers: m
                .headers
                .iter()
                .map(|h| {
                    let vm = match h.kind {
                        ValueKind::Exact => ValueMatcher::Exact(h.value.as_bytes().to_vec()),
                        ValueKind::Regex => ValueMatcher::Regex(compile_full_match(&h.value).ok()),
                    };
                    (h.name.clone(), vm)
                })
                .collect(),
        }
    }

    fn accepts(&self, req: &Request<'_>) -> bool {
        let path_ok = self.paths.is_empty()
            || self.paths.iter().any(|p| match p {
                PathMatcher::Prefix(v) => req.path.starts_with(v.as_str()),
                PathMatcher::Exact(v) => req.path == v,
                PathMatcher::Regex(r) => r.as_ref().is_some_and(|r| r.is_match(req.path)),
            });
        let method_ok = self.methods.is_empty() || self.methods.iter().any(|m| m == req.method);
        path_ok
            && method_ok
            && self.headers.iter().all(|(name, vm)| {
                req.headers.any_value(name, &mut |v| match vm {
                    ValueMatcher::Exact(want) => v == want.as_slice(),
                    ValueMatcher::Regex(r) => r
                        .as_ref()
                        .zip(std::str::from_utf8(v).ok())
                        .is_some_and(|(r, s)| r.is_match(s)),
                })
            })
    }
}

#[cfg(test)]
mod tests;
