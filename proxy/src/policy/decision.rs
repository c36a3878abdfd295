//! The decision function: route lookup, matches, git and `DoH` rules (SPEC §3
//! steps 1–3, 5 and 6). Pure: it sees a description of a request and returns
//! a typed decision with a reason; DLP over the request's bytes is the
//! caller's next step, with the detectors the decision selects.

use std::fmt;

use percent_encoding::percent_decode_str;

use super::config::{Auth, INTROSPECTION_HOST, RouteSpec};
use super::{Policy, path};
use crate::dlp::{DetectorSet, Hit};

/// How the request reached the proxy; decides the default port set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// Inside a bumped `CONNECT` tunnel (HTTPS). Default ports: 443.
    Connect,
    /// An absolute-form plain-HTTP request. Default ports: 80.
    PlainHttp,
}

impl Via {
    fn default_port(self) -> u16 {
        match self {
            Self::Connect => 443,
            Self::PlainHttp => 80,
        }
    }
}

/// Read access to request headers, so the policy needs no HTTP library.
pub trait Headers {
    /// Calls `pred` on each value of header `name` (ASCII case-insensitive)
    /// until it returns true; returns whether any did.
    fn any_value(&self, name: &str, pred: &mut dyn FnMut(&[u8]) -> bool) -> bool;
}

fn any_pair<N: AsRef<str>, V: AsRef<[u8]>>(
    pairs: &[(N, V)],
    name: &str,
    pred: &mut dyn FnMut(&[u8]) -> bool,
) -> bool {
    pairs
        .iter()
        .filter(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
        .any(|(_, v)| pred(v.as_ref()))
}

impl<N: AsRef<str>, V: AsRef<[u8]>> Headers for &[(N, V)] {
    fn any_value(&self, name: &str, pred: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        any_pair(self, name, pred)
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> Headers for Vec<(N, V)> {
    fn any_value(&self, name: &str, pred: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        any_pair(self, name, pred)
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>, const K: usize> Headers for [(N, V); K] {
    fn any_value(&self, name: &str, pred: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        any_pair(self, name, pred)
    }
}

/// What the policy sees of a request.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// How it arrived.
    pub via: Via,
    /// Target host (any case).
    pub host: &'a str,
    /// Target port.
    pub port: u16,
    /// Method as sent.
    pub method: &'a str,
    /// Path component, without the query.
    pub path: &'a str,
    /// Query string without the `?`, if any.
    pub query: Option<&'a str>,
    /// Request headers.
    pub headers: &'a dyn Headers,
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Headers and query may carry credentials; never print them.
        f.debug_struct("Request")
            .field("via", &self.via)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("method", &self.method)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockReason {
    /// No route for the host.
    NoRoute,
    /// The route does not list this port.
    PortNotAllowed {
        /// The port asked for.
        port: u16,
    },
    /// The route has `matches` and none accepted the request.
    NoMatch,
    /// The path has `.`/`..` segments (raw or percent-encoded), which would
    /// let a prefix rule be walked around.
    AmbiguousPath,
    /// `git-receive-pack` over HTTPS.
    GitPush,
    /// `git-upload-pack` without `git.fetch: true`.
    GitFetch,
    /// A DNS-over-HTTPS request.
    DnsOverHttps,
    /// A `_egress.local` path other than `/allowlist`.
    UnknownIntrospectionPath,
    /// A request inside a bumped tunnel named a host other than the one the
    /// tunnel was opened for.
    HostMismatch,
    /// A request body the DLP engine cannot read (a `Content-Encoding`
    /// other than identity) on a route with outbound detection.
    UnscannableBody,
    /// Plain HTTP to a route that injects credentials: the token would
    /// cross the network in clear text.
    CleartextAuth,
    /// An outbound or inbound DLP detector fired.
    Dlp(Hit),
}

impl BlockReason {
    /// A short, stable tag for logs and metrics.
    #[must_use]
    pub fn tag(&self) -> &'static str {
        match self {
            Self::NoRoute => "no-route",
            Self::PortNotAllowed { .. } => "port-not-allowed",
            Self::NoMatch => "no-match",
            Self::AmbiguousPath => "ambiguous-path",
            Self::GitPush => "git-push",
            Self::GitFetch => "git-fetch",
            Self::DnsOverHttps => "dns-over-https",
            Self::UnknownIntrospectionPath => "unknown-introspection-path",
            Self::HostMismatch => "host-mismatch",
            Self::UnscannableBody => "unscannable-body",
            Self::CleartextAuth => "cleartext-auth",
            Self::Dlp(_) => "dlp",
        }
    }
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoRoute => f.write_str("the host is not on the egress allowlist"),
            Self::PortNotAllowed { port } => {
                write!(f, "port {port} is not among the route's ports")
            }
            Self::NoMatch => f.write_str("no `matches` entry of the host's route accepts this method, path and headers"),
            Self::AmbiguousPath => f.write_str("the path contains '.' or '..' segments"),
            Self::GitPush => f.write_str("git push over HTTPS is never allowed; push through git-gate"),
            Self::GitFetch => f.write_str("git fetch/clone over HTTPS is not allowed for this host; use git-gate or set git.fetch: true on the route"),
            Self::DnsOverHttps => f.write_str("DNS over HTTPS is not allowed"),
            Self::UnknownIntrospectionPath => {
                write!(f, "{INTROSPECTION_HOST} only serves /allowlist")
            }
            Self::HostMismatch => {
                f.write_str("the request's host differs from the CONNECT tunnel's host")
            }
            Self::UnscannableBody => f.write_str(
                "the request body is compressed (Content-Encoding) and cannot be scanned; send it uncompressed",
            ),
            Self::CleartextAuth => f.write_str(
                "the route injects credentials, which are never sent over plain HTTP; use https",
            ),
            Self::Dlp(hit) => write!(f, "{} detected a credential or injection ({})", hit.detector.name(), hit.rule),
        }
    }
}

/// A refused request: the reason plus the host it was for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The host asked for (lower-cased).
    pub host: String,
    /// Why.
    pub reason: BlockReason,
}

impl Block {
    /// The plain-text body of the 403 the agent receives: what happened and
    /// how to ask for more.
    #[must_use]
    pub fn agent_message(&self) -> String {
        format!(
            "bot-bottle egress blocked this request to {}: {}.\n\
             To see what is allowed, call the supervise tool `list-egress-routes` \
             (or GET http://{INTROSPECTION_HOST}/allowlist). To ask for more, call \
             `allow` with a proposed routes.yaml and a justification; a human reviews it.\n",
            self.host, self.reason
        )
    }
}

/// A request the policy lets through, with what the pipeline must do next.
#[derive(Debug, Clone, Copy)]
pub struct Forward<'p> {
    /// Index of the route in the routes file.
    pub route_index: usize,
    /// The route.
    pub route: &'p RouteSpec,
    /// Outbound detectors to run over URL, headers and body.
    pub outbound: DetectorSet,
    /// Inbound detectors to run over the response.
    pub inbound: DetectorSet,
}

impl<'p> Forward<'p> {
    /// Credentials to inject (after stripping the agent's `Authorization`).
    #[must_use]
    pub fn auth(&self) -> Option<Auth<'p>> {
        self.route.auth()
    }
}

/// The outcome of [`Policy::decide`].
#[derive(Debug, Clone)]
pub enum Decision<'p> {
    /// `_egress.local/allowlist`: answer with [`Policy::introspection_json`].
    Introspect,
    /// Pass on (after DLP).
    Forward(Forward<'p>),
    /// Refuse with a 403.
    Block(Block),
}

impl Policy {
    /// Whether a `CONNECT host:port` may be bumped at all. Called before any
    /// leaf certificate exists, so no certificate is ever minted for a host
    /// the policy does not allow.
    pub fn check_connect(&self, host: &str, port: u16) -> Result<&RouteSpec, Block> {
        let host_lc = host.to_ascii_lowercase();
        if host_lc == INTROSPECTION_HOST {
            return Err(Block {
                host: host_lc,
                reason: BlockReason::UnknownIntrospectionPath,
            });
        }
        let Some(route) = self.route(&host_lc) else {
            return Err(Block {
                host: host_lc,
                reason: BlockReason::NoRoute,
            });
        };
        if !port_allowed(route, Via::Connect, port) {
            return Err(Block {
                host: host_lc,
                reason: BlockReason::PortNotAllowed { port },
            });
        }
        Ok(route)
    }

    /// Decides a request (SPEC §3 steps 1–3, 5, 6).
    #[must_use]
    pub fn decide(&self, req: &Request<'_>) -> Decision<'_> {
        let host = req.host.to_ascii_lowercase();
        if host == INTROSPECTION_HOST {
            return if req.path == "/allowlist" {
                Decision::Introspect
            } else {
                Decision::Block(Block {
                    host,
                    reason: BlockReason::UnknownIntrospectionPath,
                })
            };
        }
        let block = |host: String, reason| Decision::Block(Block { host, reason });
        let Some(index) = self.index.get(&host).copied() else {
            return block(host, BlockReason::NoRoute);
        };
        let route = &self.config.routes[index];
        if !port_allowed(route, req.via, req.port) {
            return block(host, BlockReason::PortNotAllowed { port: req.port });
        }
        if req.via == Via::PlainHttp && route.auth().is_some() {
            return block(host, BlockReason::CleartextAuth);
        }
        let decoded_path = percent_decode_str(req.path).decode_utf8_lossy();
        if let Some(entries) = &self.compiled[index] {
            if has_dot_segment(&decoded_path) {
                return block(host, BlockReason::AmbiguousPath);
            }
            if !entries.iter().any(|m| m.accepts(req)) {
                return block(host, BlockReason::NoMatch);
            }
        }
        let segs = path::segments(req.path);
        match git_service(&segs, req.query, req.headers) {
            Some(GitService::ReceivePack) => return block(host, BlockReason::GitPush),
            Some(GitService::UploadPack) if !route.git.fetch => {
                return block(host, BlockReason::GitFetch);
            }
            _ => {}
        }
        if is_doh(&segs, req.query, req.headers) {
            return block(host, BlockReason::DnsOverHttps);
        }
        Decision::Forward(Forward {
            route_index: index,
            route,
            outbound: route.dlp.outbound_detectors.set(),
            inbound: route.dlp.inbound_detectors.set(),
        })
    }
}

fn port_allowed(route: &RouteSpec, via: Via, port: u16) -> bool {
    match &route.ports {
        Some(ports) => ports.contains(&port),
        None => port == via.default_port(),
    }
}

/// `.`/`..` segments, also with `;` path parameters (`..;`), which servlet
/// containers strip before resolving the segment.
fn has_dot_segment(path: &str) -> bool {
    path.split(['/', '\\']).any(|s| {
        let s = s.split(';').next().unwrap_or(s);
        s == "." || s == ".."
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GitService {
    UploadPack,
    ReceivePack,
}

fn service_named(name: &str) -> Option<GitService> {
    match name.trim() {
        "git-upload-pack" => Some(GitService::UploadPack),
        "git-receive-pack" => Some(GitService::ReceivePack),
        _ => None,
    }
}

/// Recognises git smart-HTTP by endpoint, `service=` query and content type,
/// on the normalised path (`segs`, lower-cased, see [`path::segments`]).
/// Push wins over fetch when a request somehow claims both.
fn git_service(segs: &[String], query: Option<&str>, headers: &dyn Headers) -> Option<GitService> {
    let mut found = None;
    let mut note = |s: Option<GitService>| {
        if s.is_some() && found != Some(GitService::ReceivePack) {
            found = s;
        }
    };
    let last = segs.last().map_or("", String::as_str);
    note(service_named(last));
    let info_refs = last == "refs" && segs.len() >= 2 && segs[segs.len() - 2] == "info";
    if info_refs {
        for (k, v) in path::query_pairs(query) {
            if k == "service" {
                note(service_named(&v));
            }
        }
    }
    for name in ["content-type", "accept"] {
        headers.any_value(name, &mut |v| {
            let v = String::from_utf8_lossy(v).to_ascii_lowercase();
            if v.contains("application/x-git-receive-pack") {
                note(Some(GitService::ReceivePack));
            } else if v.contains("application/x-git-upload-pack") {
                note(Some(GitService::UploadPack));
            }
            false
        });
    }
    found
}

/// Shortest `dns=` value taken for an RFC 8484 query: a DNS message is at
/// least 17 bytes (12 of header, 5 of the smallest question), 23 in base64url.
const MIN_DNS_PARAM: usize = 16;

fn is_base64url(v: &str) -> bool {
    v.trim_end_matches('=')
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// DNS-over-HTTPS on the normalised path (`segs`): the conventional
/// `/dns-query` endpoint, an RFC 8484 `?dns=` query on any path, the JSON
/// API's `/resolve?name=`, or a `DoH` media type (`application/dns-message`,
/// `application/dns-json`, …) in `Content-Type`, `Accept` or a query value
/// (`?ct=application/dns-json`).
fn is_doh(segs: &[String], query: Option<&str>, headers: &dyn Headers) -> bool {
    let last = segs.last().map_or("", String::as_str);
    if last == "dns-query" {
        return true;
    }
    let resolve = last == "resolve";
    let by_query = path::query_pairs(query).any(|(k, v)| {
        (k == "dns" && v.len() >= MIN_DNS_PARAM && is_base64url(&v))
            || (resolve && k == "name")
            || v.contains("application/dns")
    });
    if by_query {
        return true;
    }
    ["content-type", "accept"].iter().any(|name| {
        headers.any_value(name, &mut |v| {
            String::from_utf8_lossy(v)
                .to_ascii_lowercase()
                .contains("application/dns")
        })
    })
}
