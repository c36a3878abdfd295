//! The `pi-models` generator: pi's `~/.pi/agent/models.json` and the model
//! host's route, from `agent_provider.settings`.
//!
//! Defaults give an Ollama-compatible endpoint; `api_key_env` names a bottle
//! `env:` entry whose value egress injects as a Bearer token, while
//! models.json carries only the placeholder.

use std::collections::BTreeMap;

use bb_egress::policy::{LogLevel, RouteSpec, RoutesConfig};
use serde_json::json;
use serde_norway::Value;

use super::{AgentFile, PlannedRoute, Rendered, RouteCredential};

const KEYS: &[&str] = &[
    "provider",
    "base_url",
    "api",
    "api_key_env",
    "models",
    "context_window",
    "max_tokens",
];

fn string(settings: &BTreeMap<String, Value>, key: &str, default: &str) -> Result<String, String> {
    match settings.get(key) {
        None => Ok(default.to_owned()),
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(format!(
            "agent_provider.settings.{key}: expected a non-empty string"
        )),
    }
}

fn number(settings: &BTreeMap<String, Value>, key: &str, default: u64) -> Result<u64, String> {
    match settings.get(key) {
        None => Ok(default),
        Some(Value::Number(n)) => n.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            format!("agent_provider.settings.{key}: expected a positive integer, found {n}")
        }),
        Some(_) => Err(format!(
            "agent_provider.settings.{key}: expected a positive integer"
        )),
    }
}

/// Adds models.json, the model route and `--models` to `out`.
pub(super) fn generate(
    home: &str,
    settings: Option<&BTreeMap<String, Value>>,
    out: &mut Rendered,
) -> Result<(), String> {
    let empty = BTreeMap::new();
    let settings = settings.unwrap_or(&empty);
    if let Some(k) = settings.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!(
            "agent_provider.settings.{k}: unknown key (expected one of: {})",
            KEYS.join(", ")
        ));
    }
    let provider = string(settings, "provider", "ollama")?;
    let base_url = string(settings, "base_url", "http://ollama:11434/v1")?;
    let api = string(settings, "api", "openai-completions")?;
    let api_key_env = match settings.get("api_key_env") {
        None => None,
        Some(Value::String(s)) if crate::env::valid_env_name(s) => Some(s.clone()),
        Some(_) => {
            return Err(
                "agent_provider.settings.api_key_env: expected the name of an env entry".into(),
            );
        }
    };
    let models: Vec<String> = match settings.get("models") {
        None => vec!["qwen2.5-coder:7b".into()],
        Some(Value::Sequence(items)) if !items.is_empty() => items
            .iter()
            .map(|v| {
                v.as_str().map(str::to_owned).ok_or_else(|| {
                    "agent_provider.settings.models: expected a list of model names".to_owned()
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(
                "agent_provider.settings.models: expected a non-empty list of model names".into(),
            );
        }
    };
    let context_window = number(settings, "context_window", 4096)?;
    let max_tokens = number(settings, "max_tokens", 1024)?;
    let (host, port) = model_host(&base_url)?;
    let api_key = if api_key_env.is_some() {
        crate::plan::PLACEHOLDER
    } else {
        "ollama"
    };
    let payload = json!({
        "providers": {
            provider.clone(): {
                "baseUrl": base_url,
                "api": api,
                "apiKey": api_key,
                "models": models.iter().map(|m| json!({
                    "id": m, "name": m,
                    "contextWindow": context_window.saturating_sub(max_tokens).max(1),
                    "maxTokens": max_tokens,
                })).collect::<Vec<_>>(),
            }
        }
    });
    let mut content = serde_json::to_vec_pretty(&payload).map_err(|e| e.to_string())?;
    content.push(b'\n');
    out.files.push(AgentFile {
        path: format!("{home}/.pi/agent/models.json"),
        mode: 0o600,
        content,
    });
    let mut route = RouteSpec::new(host);
    // A single-label host (the default `ollama`) is a container on the
    // operator's network: it resolves to a private address, which the proxy
    // refuses unless the route allows it.
    route.allow_private = !route.host.contains('.');
    route.ports = port.map(|p| vec![p]);
    // The proxy's own checks judge the host (label lengths, characters).
    let checked = RoutesConfig {
        routes: vec![route.clone()],
        log: LogLevel::default(),
    }
    .validate();
    if let Err(errors) = checked {
        return Err(format!(
            "agent_provider.settings.base_url: `{base_url}` cannot be an egress route: {}",
            errors.0[0].kind
        ));
    }
    out.routes.push(PlannedRoute {
        route,
        credential: api_key_env.map(|e| ("Bearer".to_owned(), RouteCredential::EnvEntry(e))),
    });
    out.command.push("--models".into());
    out.command.push(
        models
            .iter()
            .map(|m| format!("{provider}/{m}"))
            .collect::<Vec<_>>()
            .join(","),
    );
    Ok(())
}

/// The host (and explicit port) of pi's `base_url`, which becomes a route.
fn model_host(base_url: &str) -> Result<(String, Option<u16>), String> {
    let url = url::Url::parse(base_url).map_err(|e| {
        format!("agent_provider.settings.base_url: `{base_url}` is not an absolute URL: {e}")
    })?;
    let host = url
        .host_str()
        .ok_or_else(|| format!("agent_provider.settings.base_url: `{base_url}` has no host"))?
        .to_owned();
    // Refuse what no route could name.
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        || host.starts_with(['.', '-'])
    {
        return Err(format!(
            "agent_provider.settings.base_url: `{base_url}` has no usable host name"
        ));
    }
    Ok((host, url.port()))
}
