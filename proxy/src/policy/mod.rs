//! The egress policy: the routes.yaml model, its compiled matchers, and the
//! decision function. No I/O and no async runtime: the orchestrator and
//! git-gate use this module with the server feature off.

mod config;
mod decision;
mod path;

use std::collections::HashMap;

pub use config::{
    Auth, AuthScheme, ConfigError, ConfigErrorKind, ConfigErrors, DetectorChoice, DetectorName,
    DlpSpec, GitSpec, HeaderMatch, INTROSPECTION_HOST, InboundDetector, LogLevel, MatchEntry,
    OutboundDetector, PathKind, PathMatch, RouteSpec, RoutesConfig, ValueKind, field_names,
};
pub use decision::{Block, BlockReason, Decision, Forward, Headers, Request, Via};
pub use path::normalize as normalize_path;

use config::{CompiledMatch, CompiledRoutes, PathMatcher, ValueMatcher};

/// A validated routes file with its matchers compiled and hosts indexed.
#[derive(Debug, Clone)]
pub struct Policy {
    config: RoutesConfig,
    index: HashMap<String, usize>,
    /// Per route: `None` when the route has no `matches`.
    compiled: CompiledRoutes,
}

impl Policy {
    /// Parses, validates and compiles routes.yaml text (each regex is
    /// compiled once, while validating).
    pub fn from_yaml(text: &str) -> Result<Self, ConfigErrors> {
        let (config, compiled) = config::parse(text)?;
        Ok(Self::assemble(config, compiled))
    }

    /// Validates and compiles a configuration built in code; every error
    /// is reported as for a file.
    pub fn new(config: RoutesConfig) -> Result<Self, ConfigErrors> {
        let (config, compiled) = config.compile()?;
        Ok(Self::assemble(config, compiled))
    }

    fn assemble(config: RoutesConfig, compiled: CompiledRoutes) -> Self {
        let index = config
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| (r.host.clone(), i))
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
    pub fn route(&self, host: &str) -> Option<&RouteSpec> {
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

impl CompiledMatch {
    fn accepts(&self, req: &Request<'_>) -> bool {
        let path_ok = self.paths.is_empty()
            || self.paths.iter().any(|p| match p {
                PathMatcher::Prefix(v) => req.path.starts_with(v.as_str()),
                PathMatcher::Exact(v) => req.path == v,
                PathMatcher::Regex(r) => r.is_match(req.path),
            });
        let method_ok = self.methods.is_empty() || self.methods.iter().any(|m| m == req.method);
        path_ok
            && method_ok
            && self.headers.iter().all(|(name, vm)| {
                req.headers.any_value(name, &mut |v| match vm {
                    ValueMatcher::Exact(want) => v == want.as_slice(),
                    ValueMatcher::Regex(r) => std::str::from_utf8(v).is_ok_and(|s| r.is_match(s)),
                })
            })
    }
}

#[cfg(test)]
mod tests;
