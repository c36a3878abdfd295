//! Egress routes in the manifest form and their translation to routes.yaml.
//!
//! A manifest route is a routes.yaml route (SPEC §2) with one difference:
//! credentials are `auth: {scheme, token_ref}`, where `token_ref` names the
//! secret by the one rule of [`crate::env::SecretRef`] (an `env:` entry or a
//! host variable), instead of `auth_scheme` + `token_env`. The plan maps
//! each `token_ref` to an `EGRESS_TOKEN_*` variable that only the proxy
//! sees. Everything else is checked by the proxy's own parser, so the
//! manifest and the proxy can never disagree on what a route means.

use bb_egress::policy::RoutesConfig;
use serde_norway::{Mapping, Value};

/// Keys a manifest route may have besides `host` and `auth`; they are
/// handed to the proxy's parser unchanged.
const PASS_THROUGH: &[&str] = &["matches", "dlp", "git", "ports", "allow_private"];

/// `auth:` of a manifest route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteAuth {
    /// `Bearer` or `token`.
    pub scheme: String,
    /// Names the secret ([`crate::env::SecretRef`]): an `env:` entry, a host
    /// variable, `${VAR}`, `?prompt`, or (with a warning) the secret itself.
    pub token_ref: String,
}

/// One route as the operator wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestRoute {
    /// Index in its file's `egress.routes`.
    pub index: usize,
    /// The host.
    pub host: String,
    /// Credentials egress injects.
    pub auth: Option<RouteAuth>,
    /// The other keys, as written.
    pub rest: Mapping,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

impl ManifestRoute {
    /// Parses `egress.routes[index]`; errors are `(key, message)`.
    pub fn parse(value: &Value, index: usize) -> Result<Self, (String, String)> {
        let at = |k: &str| {
            format!(
                "egress.routes[{index}]{}{k}",
                if k.is_empty() { "" } else { "." }
            )
        };
        let Value::Mapping(map) = value else {
            return Err((
                at(""),
                format!("expected a mapping, found {}", type_name(value)),
            ));
        };
        let mut host = None;
        let mut auth = None;
        let mut rest = Mapping::new();
        for (k, v) in map {
            let Value::String(key) = k else {
                return Err((
                    at(""),
                    format!("keys must be strings, found {}", type_name(k)),
                ));
            };
            match key.as_str() {
                "host" => match v {
                    Value::String(h) if !h.is_empty() => host = Some(h.clone()),
                    other => {
                        return Err((
                            at("host"),
                            format!("expected a hostname string, found {}", type_name(other)),
                        ));
                    }
                },
                "auth" => auth = Some(parse_auth(v).map_err(|(k, m)| (at(&k), m))?),
                "role" => {
                    return Err((at("role"), "`role` is reserved for bot-bottle's own routes and cannot be set in a manifest".into()));
                }
                "auth_scheme" | "token_env" => {
                    return Err((
                        at(key),
                        format!(
                            "`{key}` is the routes.yaml form; a manifest writes `auth: {{scheme: Bearer, token_ref: <env entry>}}`"
                        ),
                    ));
                }
                k if PASS_THROUGH.contains(&k) => {
                    rest.insert(Value::String(key.clone()), v.clone());
                }
                other => {
                    return Err((at(other), "unknown key (expected one of: host, auth, matches, dlp, git, ports, allow_private)".into()));
                }
            }
        }
        let host = host.ok_or_else(|| (at("host"), "missing required key".to_owned()))?;
        let route = ManifestRoute {
            index,
            host,
            auth,
            rest,
        };
        // The proxy's parser judges everything else (matches, regexes,
        // detectors, ports) and names the key at fault.
        let doc = route_doc(
            &[route.to_routes_yaml(route.auth.as_ref().map(|_| "EGRESS_TOKEN_CHECK"))],
            None,
        );
        let text = serde_norway::to_string(&doc).map_err(|e| (at(""), e.to_string()))?;
        if let Err(errors) = RoutesConfig::from_yaml(&text) {
            let first = &errors.0[0];
            let key = if first.key.is_empty() {
                at("")
            } else {
                at(&first.key)
            };
            return Err((key, format!("host `{}`: {}", route.host, first.kind)));
        }
        Ok(route)
    }

    /// This route in routes.yaml form, its secret in variable `token_env`.
    #[must_use]
    pub fn to_routes_yaml(&self, token_env: Option<&str>) -> Value {
        let mut out = Mapping::new();
        out.insert("host".into(), Value::String(self.host.clone()));
        if let (Some(auth), Some(env)) = (&self.auth, token_env) {
            out.insert("auth_scheme".into(), Value::String(auth.scheme.clone()));
            out.insert("token_env".into(), Value::String(env.to_owned()));
        }
        for (k, v) in &self.rest {
            out.insert(k.clone(), v.clone());
        }
        Value::Mapping(out)
    }
}

/// A routes.yaml document from routes in routes.yaml form.
#[must_use]
pub fn route_doc(routes: &[Value], log: Option<u8>) -> Value {
    let mut doc = Mapping::new();
    doc.insert("routes".into(), Value::Sequence(routes.to_vec()));
    if let Some(log) = log {
        doc.insert("log".into(), Value::Number(log.into()));
    }
    Value::Mapping(doc)
}

fn parse_auth(v: &Value) -> Result<RouteAuth, (String, String)> {
    let Value::Mapping(map) = v else {
        return Err((
            "auth".into(),
            format!(
                "expected a mapping {{scheme, token_ref}}, found {}",
                type_name(v)
            ),
        ));
    };
    let mut scheme = None;
    let mut token_ref = None;
    for (k, val) in map {
        let key = k.as_str().unwrap_or("");
        let text = match val {
            Value::String(s) => s.clone(),
            other => {
                return Err((
                    format!("auth.{key}"),
                    format!("expected a string, found {}", type_name(other)),
                ));
            }
        };
        match key {
            "scheme" => {
                if text != "Bearer" && text != "token" {
                    return Err((
                        "auth.scheme".into(),
                        "not a scheme (expected `Bearer` or `token`)".into(),
                    ));
                }
                scheme = Some(text);
            }
            "token_ref" => {
                crate::env::SecretRef::parse(&text)
                    .map_err(|m| ("auth.token_ref".to_owned(), m))?;
                token_ref = Some(text);
            }
            other => {
                return Err((
                    format!("auth.{other}"),
                    "unknown key (expected one of: scheme, token_ref)".into(),
                ));
            }
        }
    }
    Ok(RouteAuth {
        scheme: scheme
            .ok_or_else(|| ("auth.scheme".to_owned(), "missing required key".to_owned()))?,
        token_ref: token_ref.ok_or_else(|| {
            (
                "auth.token_ref".to_owned(),
                "missing required key".to_owned(),
            )
        })?,
    })
}
