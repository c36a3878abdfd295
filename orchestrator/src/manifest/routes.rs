//! Egress routes in the manifest form and their translation to routes.yaml.
//!
//! A manifest route is a routes.yaml route (SPEC §2) with one difference:
//! credentials are `auth: {scheme, token_ref}`, where `token_ref` names the
//! secret by the one rule of [`crate::env::SecretRef`] (an `env:` entry or a
//! host variable), instead of `auth_scheme` + `token_env`. The plan maps
//! each `token_ref` to an `EGRESS_TOKEN_*` variable that only the proxy
//! sees. Everything else is read into the proxy's own
//! [`RouteSpec`], by the proxy's own deserializer and checks, so the
//! manifest and the proxy can never disagree on what a route means.

use bb_egress::policy::{AuthScheme, ConfigErrorKind, RouteSpec, field_names};
use serde_norway::{Mapping, Value};

/// The keys of `RouteSpec` a manifest writes differently (`auth:` instead).
const ROUTES_YAML_AUTH: &[&str] = &["auth_scheme", "token_env"];

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
    /// Everything else, as the proxy reads it (no credentials yet).
    pub spec: RouteSpec,
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
                    Value::String(h) if !h.is_empty() => {
                        host = Some(h.clone());
                        rest.insert(k.clone(), v.clone());
                    }
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
                k if ROUTES_YAML_AUTH.contains(&k) => {
                    return Err((
                        at(key),
                        format!(
                            "`{key}` is the routes.yaml form; a manifest writes `auth: {{scheme: Bearer, token_ref: <env entry>}}`"
                        ),
                    ));
                }
                // Every other key is the proxy's to judge.
                _ => {
                    rest.insert(k.clone(), v.clone());
                }
            }
        }
        let host = host.ok_or_else(|| (at("host"), "missing required key".to_owned()))?;
        // The proxy's deserializer and checks judge everything else
        // (unknown keys, matches, regexes, detectors, ports) and name the
        // key at fault.
        let spec = RouteSpec::from_value(&Value::Mapping(rest)).map_err(|errors| {
            let first = &errors.0[0];
            let key = if first.key.is_empty() {
                at("")
            } else {
                at(&first.key)
            };
            let message = match &first.kind {
                ConfigErrorKind::UnknownKey { .. } if !first.key.contains(['.', '[']) => {
                    format!("unknown key (expected one of: {})", manifest_keys())
                }
                kind => format!("host `{host}`: {kind}"),
            };
            (key, message)
        })?;
        Ok(ManifestRoute {
            index,
            host,
            auth,
            spec,
        })
    }

    /// This route for routes.yaml, its secret in variable `token_env`.
    #[must_use]
    pub fn to_spec(&self, token_env: Option<&str>) -> RouteSpec {
        let mut spec = self.spec.clone();
        if let (Some(auth), Some(env)) = (&self.auth, token_env) {
            // `parse_auth` only lets `Bearer` and `token` through; anything
            // else would leave `token_env` alone, which validation refuses.
            spec.auth_scheme = AuthScheme::from_name(&auth.scheme);
            spec.token_env = Some(env.to_owned());
        }
        spec
    }
}

/// The keys a manifest route may have: the proxy's, with `auth` for its
/// two credential keys.
fn manifest_keys() -> String {
    let mut keys = vec!["host", "auth"];
    keys.extend(
        field_names::<RouteSpec>()
            .iter()
            .filter(|k| **k != "host" && !ROUTES_YAML_AUTH.contains(k)),
    );
    keys.join(", ")
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
