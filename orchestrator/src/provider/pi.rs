//! The `pi-models` generator: pi's `~/.pi/agent/models.json` and the model
//! host's route, from `agent_provider.settings`.
//!
//! Defaults give an Ollama-compatible endpoint. The settings keys are the
//! earlier bot-bottle's: `api_key_env` names the API key by the secret rule
//! ([`crate::env::SecretRef`]: an `env:` entry or a host variable) and
//! egress injects it as a Bearer token while models.json carries only the
//! placeholder; `api_key` is written into models.json as is (a dummy for a
//! server that ignores it); `max_tokens_field`, `supports_developer_role`
//! and `supports_reasoning_effort` fill pi's `compat` block.

use std::collections::BTreeMap;

use bb_egress::policy::{LogLevel, RouteSpec, RoutesConfig};
use serde_json::json;
use serde_norway::Value;

use super::{AgentFile, PlannedRoute, Rendered, RouteCredential};

const KEYS: &[&str] = &[
    "provider",
    "base_url",
    "api",
    "api_key",
    "api_key_env",
    "models",
    "context_window",
    "max_tokens",
    "max_tokens_field",
    "supports_developer_role",
    "supports_reasoning_effort",
];

/// The provider id of the default endpoint, which gets a dummy key.
const DEFAULT_PROVIDER: &str = "ollama";

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
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("agent_provider.settings.{key}: expected a positive integer")),
        Some(_) => Err(format!(
            "agent_provider.settings.{key}: expected a positive integer"
        )),
    }
}

fn boolean(settings: &BTreeMap<String, Value>, key: &str) -> Result<bool, String> {
    match settings.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(format!(
            "agent_provider.settings.{key}: expected true or false"
        )),
    }
}

/// Adds models.json, the model route and `--models` to `out`.
// Each settings key is read and checked in turn, then models.json and the
// route are built from them: one linear derivation.
#[allow(clippy::too_many_lines)]
pub(super) fn generate(
    home: &str,
    settings: Option<&BTreeMap<String, Value>>,
    out: &mut Rendered,
) -> Result<(), String> {
    let empty = BTreeMap::new();
    let settings = settings.unwrap_or(&empty);
    if let Some(k) = settings.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!(
            "agent_provider.settings: unknown key {} (expected one of: {})",
            crate::manifest::frontmatter::shown_key(k),
            KEYS.join(", ")
        ));
    }
    let provider = string(settings, "provider", DEFAULT_PROVIDER)?;
    let base_url = string(settings, "base_url", "http://ollama:11434/v1")?;
    let api = string(settings, "api", "openai-completions")?;
    let api_key_env = match settings.get("api_key_env") {
        None => None,
        Some(Value::String(s)) => {
            crate::env::SecretRef::parse(s)
                .map_err(|m| format!("agent_provider.settings.api_key_env: {m}"))?;
            Some(s.clone())
        }
        Some(_) => {
            return Err(
                "agent_provider.settings.api_key_env: expected a string (the variable holding the key)"
                    .into(),
            );
        }
    };
    let api_key = match settings.get("api_key") {
        None => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => {
            return Err("agent_provider.settings.api_key: expected a non-empty string".into());
        }
    };
    if api_key.is_some() && api_key_env.is_some() {
        return Err(
            "agent_provider.settings: set `api_key` (written into models.json) or `api_key_env` (injected by egress), not both"
                .into(),
        );
    }
    let max_tokens_field = string(settings, "max_tokens_field", "max_tokens")?;
    if max_tokens_field != "max_tokens" && max_tokens_field != "max_completion_tokens" {
        return Err(
            "agent_provider.settings.max_tokens_field: expected `max_tokens` or `max_completion_tokens`"
                .into(),
        );
    }
    let supports_developer_role = boolean(settings, "supports_developer_role")?;
    let supports_reasoning_effort = boolean(settings, "supports_reasoning_effort")?;
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
    // As the earlier bot-bottle: the written key, else the placeholder for
    // an injected one, else a dummy for the default (Ollama ignores it).
    let api_key = match (&api_key, &api_key_env) {
        (Some(k), _) => Some(k.as_str()),
        (None, Some(_)) => Some(crate::plan::PLACEHOLDER),
        (None, None) if provider == DEFAULT_PROVIDER => Some("ollama"),
        (None, None) => None,
    };
    let mut entry = json!({
        "baseUrl": base_url,
        "api": api,
        "compat": {
            "supportsDeveloperRole": supports_developer_role,
            "supportsReasoningEffort": supports_reasoning_effort,
            "maxTokensField": max_tokens_field,
        },
        "models": models.iter().map(|m| json!({
            "id": m, "name": m,
            "contextWindow": context_window.saturating_sub(max_tokens).max(1),
            "maxTokens": max_tokens,
        })).collect::<Vec<_>>(),
    });
    if let (Some(k), Some(obj)) = (api_key, entry.as_object_mut()) {
        obj.insert("apiKey".into(), k.into());
    }
    let payload = json!({ "providers": { provider.clone(): entry } });
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
        credential: api_key_env.map(|e| ("Bearer".to_owned(), RouteCredential::ApiKeyEnv(e))),
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
