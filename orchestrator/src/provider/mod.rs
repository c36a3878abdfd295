//! Agent providers (SPEC §6): what runs in the agent container and what it
//! needs. claude, codex and pi ship in `contrib/`; a plugin is a folder
//! `~/.bot-bottle/contrib/<name>/` with a `Dockerfile` and a
//! `provider.yaml` in the same declarative format the built-ins use
//! (docs/providers.md), so a plugin can do whatever a built-in does.

mod pi;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::manifest::{ProviderSpec, valid_name};
use crate::paths::Paths;

/// A provider's declarative description (`provider.yaml`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderDef {
    /// The CLI and its fixed arguments.
    pub command: Vec<String>,
    /// Arguments that turn off the CLI's own permission prompts.
    #[serde(default)]
    pub bypass_args: Vec<String>,
    /// Arguments that continue the last session (`resume`).
    #[serde(default)]
    pub resume_args: Vec<String>,
    /// The agent user's home in the image.
    pub home: String,
    /// The user the CLI runs as (default: the image's `USER`).
    #[serde(default)]
    pub user: Option<String>,
    /// Where the workspace is (`--cwd` copies the host's here).
    pub workdir: String,
    /// How the agent's prompt is delivered.
    #[serde(default)]
    pub prompt: Option<PromptDef>,
    /// Fixed, non-secret environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Egress routes the CLI needs.
    #[serde(default)]
    pub routes: Vec<RouteDef>,
    /// Set to `egress-placeholder` when the provider's credential is in use.
    #[serde(default)]
    pub placeholder_env: Vec<String>,
    /// Names never passed to the agent from a bottle's `env:`.
    #[serde(default)]
    pub hidden_env: Vec<String>,
    /// A host login forwarded through egress (`forward_host_credentials`).
    #[serde(default)]
    pub host_credentials: Option<HostCredentials>,
    /// A built-in generator adding files, routes and arguments from
    /// `agent_provider.settings`.
    #[serde(default)]
    pub generator: Option<Generator>,
    /// Files written into the agent.
    #[serde(default)]
    pub files: Vec<FileDef>,
    /// Where the agent's `skills:` folders are copied (default
    /// `{home}/.claude/skills`).
    #[serde(default)]
    pub skills_dir: Option<String>,
    /// How the CLI is told about the supervise MCP server (unless the
    /// bottle says `supervise: false`).
    #[serde(default)]
    pub supervise: Option<SuperviseDef>,
}

/// `supervise:` of a provider: where the CLI reads its MCP servers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuperviseDef {
    /// The file's format.
    pub register: McpRegistration,
    /// The file (`{home}` expands). When `files` writes it too, the server
    /// is added to that content; otherwise the file holds only the server.
    pub file: String,
}

/// The MCP configuration formats a provider can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum McpRegistration {
    /// Claude Code's `.claude.json`: `mcpServers.supervise = {type: http, url}`.
    ClaudeJson,
    /// Codex's `config.toml`: a `[mcp_servers.supervise]` table with `url`.
    CodexToml,
}

/// The supervise server's URL as the agent reaches it.
#[must_use]
pub fn supervise_url() -> String {
    format!(
        "http://{}:{}/mcp",
        crate::plan::SUPERVISE_HOST,
        crate::plan::SUPERVISE_PORT
    )
}

/// The MCP server name the supervise server is registered under.
pub const SUPERVISE_SERVER_NAME: &str = "supervise";

/// Appended to the agent's prompt (after a blank line) when supervise runs
/// and the provider registers it: the tools exist and when to use them.
pub const SUPERVISE_PROMPT: &str = "## bot-bottle supervise\n\n\
You run in a bot-bottle: network access goes through an egress proxy that allows only the \
hosts on its allowlist, and this image has only the tools it was built with. When egress \
refuses a request (a 403 from bot-bottle egress) or you need a tool the image lacks, do not \
try to get around it: use the `supervise` MCP server. `list-egress-routes` shows the live \
allowlist; `allow` (or `egress-block`, right after a refusal) proposes a WHOLE new routes.yaml \
(the live routes plus your change) with a justification; `capability-block` proposes a whole \
new agent Dockerfile, applied on the next resume. A human reviews every proposal; \
`proposal-status` with the proposal's id (and wait_seconds up to 50) tells you the decision.\n";

/// `prompt:` of a provider.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptDef {
    /// Where the prompt file goes in the agent.
    pub file: String,
    /// Arguments added when there is a prompt (`{prompt_file}` expands).
    #[serde(default)]
    pub args: Vec<String>,
}

/// One provider route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteDef {
    /// The host.
    pub host: String,
    /// Which credential egress injects (`auth_token`), if any.
    #[serde(default)]
    pub auth: Option<CredentialRef>,
    /// `Bearer` or `token` (default `Bearer`).
    #[serde(default)]
    pub scheme: Option<String>,
}

/// A provider credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialRef {
    /// `agent_provider.auth_token` of the bottle.
    AuthToken,
}

/// `host_credentials:`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostCredentials {
    /// JSON file on the host (`~` is the operator's home).
    pub file: String,
    /// JSON pointer to the token in it.
    pub json_pointer: String,
    /// `Bearer` or `token`.
    pub scheme: String,
    /// Hosts egress injects it for.
    pub hosts: Vec<String>,
}

/// Built-in generators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Generator {
    /// pi's `models.json` and model-host route from `settings`.
    #[serde(rename = "pi-models")]
    PiModels,
}

/// One file written into the agent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDef {
    /// Absolute path in the agent (placeholders expand).
    pub path: String,
    /// Octal mode (default `0644`).
    #[serde(default)]
    pub mode: Option<String>,
    /// Content (placeholders expand).
    pub content: String,
}

/// Where a provider's image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerfileSource {
    /// A built-in's Dockerfile, compiled in.
    Embedded(&'static str),
    /// A file on disk; its folder is the build context.
    File(PathBuf),
}

/// A provider found by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    /// Its name (`claude`, or the plugin folder's name).
    pub name: String,
    /// Whether it ships with bot-bottle.
    pub builtin: bool,
    /// Its description.
    pub def: ProviderDef,
    /// Its image.
    pub dockerfile: DockerfileSource,
}

/// Loading a provider failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProviderError {
    /// No built-in and no plugin of that name.
    #[error("unknown agent_provider template `{name}`: built-ins are claude, codex, pi; plugins are folders in {} ({})", dir.display(), if available.is_empty() { "none installed".to_owned() } else { format!("installed: {}", available.join(", ")) })]
    Unknown {
        /// The name asked for.
        name: String,
        /// The plugin folder.
        dir: PathBuf,
        /// Plugins present.
        available: Vec<String>,
    },
    /// A plugin folder is missing a file or has a bad one.
    #[error("{}: {message}", path.display())]
    Plugin {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A plugin tries to take a built-in's name.
    #[error("{}: a plugin cannot be named `{name}`: that is a built-in provider", dir.display())]
    Shadows {
        /// The plugin folder.
        dir: PathBuf,
        /// The name.
        name: String,
    },
}

const BUILTINS: &[(&str, &str, &str)] = &[
    (
        "claude",
        include_str!("../../../contrib/claude/provider.yaml"),
        include_str!("../../../contrib/claude/Dockerfile"),
    ),
    (
        "codex",
        include_str!("../../../contrib/codex/provider.yaml"),
        include_str!("../../../contrib/codex/Dockerfile"),
    ),
    (
        "pi",
        include_str!("../../../contrib/pi/provider.yaml"),
        include_str!("../../../contrib/pi/Dockerfile"),
    ),
];

/// Largest `provider.yaml` read.
pub const MAX_PROVIDER_YAML_BYTES: usize = 64 * 1024;

/// Parses a `provider.yaml`; `path` names it in errors.
pub fn parse_def(path: &Path, text: &str) -> Result<ProviderDef, ProviderError> {
    if text.len() > MAX_PROVIDER_YAML_BYTES {
        return Err(ProviderError::Plugin {
            path: path.to_owned(),
            message: format!(
                "larger than {} KiB; a provider description is a small file",
                MAX_PROVIDER_YAML_BYTES / 1024
            ),
        });
    }
    crate::manifest::frontmatter::check_events(text, 1).map_err(|e| ProviderError::Plugin {
        path: path.to_owned(),
        message: format!("line {}: {}", e.line.unwrap_or(0), e.message),
    })?;
    let def: ProviderDef = serde_norway::from_str(text).map_err(|e| ProviderError::Plugin {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let bad = |message: String| ProviderError::Plugin {
        path: path.to_owned(),
        message,
    };
    if def.command.is_empty() || def.command[0].is_empty() {
        return Err(bad("`command`: must name the CLI to run".into()));
    }
    for (key, p) in [("home", &def.home), ("workdir", &def.workdir)] {
        if !p.starts_with('/') {
            return Err(bad(format!(
                "`{key}`: `{p}` must be an absolute path in the agent"
            )));
        }
    }
    for (i, f) in def.files.iter().enumerate() {
        if !f.path.starts_with('/') && !f.path.starts_with("{home}") {
            return Err(bad(format!(
                "`files[{i}].path`: `{}` must be absolute (or start with {{home}})",
                f.path
            )));
        }
        if let Some(mode) = &f.mode
            && u32::from_str_radix(mode, 8).map_or(true, |m| m > 0o777)
        {
            return Err(bad(format!(
                "`files[{i}].mode`: `{mode}` is not an octal file mode like \"0600\""
            )));
        }
    }
    for (i, r) in def.routes.iter().enumerate() {
        if let Some(s) = &r.scheme
            && s != "Bearer"
            && s != "token"
        {
            return Err(bad(format!(
                "`routes[{i}].scheme`: `{s}` is not `Bearer` or `token`"
            )));
        }
    }
    for name in def
        .env
        .keys()
        .chain(&def.placeholder_env)
        .chain(&def.hidden_env)
    {
        if !crate::env::valid_env_name(name) {
            return Err(bad(format!("`{name}` is not an environment variable name")));
        }
    }
    Ok(def)
}

/// Finds provider `name`: a built-in, or the plugin folder of that name.
/// Only that one provider's files are read.
pub fn find(paths: &Paths, name: &str) -> Result<Provider, ProviderError> {
    let plugin_dir = paths.contrib_dir().join(name);
    if let Some((_, yaml, dockerfile)) = BUILTINS.iter().find(|(n, _, _)| *n == name) {
        if plugin_dir.is_dir() {
            return Err(ProviderError::Shadows {
                dir: plugin_dir,
                name: name.to_owned(),
            });
        }
        let def = parse_def(Path::new(&format!("contrib/{name}/provider.yaml")), yaml)?;
        return Ok(Provider {
            name: name.to_owned(),
            builtin: true,
            def,
            dockerfile: DockerfileSource::Embedded(dockerfile),
        });
    }
    if !valid_name(name) || !plugin_dir.is_dir() {
        return Err(ProviderError::Unknown {
            name: name.to_owned(),
            dir: paths.contrib_dir(),
            available: plugin_names(paths),
        });
    }
    let yaml_path = plugin_dir.join("provider.yaml");
    let text = crate::manifest::read(&yaml_path).map_err(|e| ProviderError::Plugin {
        path: yaml_path.clone(),
        message: format!("cannot read the plugin's provider description: {e}"),
    })?;
    let def = parse_def(&yaml_path, &text)?;
    let dockerfile = plugin_dir.join("Dockerfile");
    if !dockerfile.is_file() {
        return Err(ProviderError::Plugin {
            path: dockerfile,
            message: "a plugin needs a Dockerfile next to provider.yaml".into(),
        });
    }
    Ok(Provider {
        name: name.to_owned(),
        builtin: false,
        def,
        dockerfile: DockerfileSource::File(dockerfile),
    })
}

/// Names of installed plugins (folders with a `provider.yaml`).
#[must_use]
pub fn plugin_names(paths: &Paths) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(paths.contrib_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("provider.yaml").is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| valid_name(n))
        .collect();
    names.sort();
    names
}

/// Colours a bottle can be labelled with, and their ANSI codes.
pub const COLORS: &[(&str, &str)] = &[
    ("red", "31"),
    ("green", "32"),
    ("yellow", "33"),
    ("blue", "34"),
    ("magenta", "35"),
    ("cyan", "36"),
];

/// What the plan needs from the bottle to render a provider.
#[derive(Debug, Clone)]
pub struct RenderInput<'a> {
    /// The bottle's provider settings.
    pub spec: &'a ProviderSpec,
    /// The bottle's label.
    pub label: &'a str,
    /// The bottle's colour (one of [`COLORS`]).
    pub color: &'a str,
    /// Whether the agent has a prompt.
    pub has_prompt: bool,
    /// Whether the supervise server runs (and is registered with the CLI).
    pub supervise: bool,
}

/// Where a provider route's secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteCredential {
    /// `agent_provider.auth_token`.
    AuthToken,
    /// The host login file (`host_credentials`).
    HostLogin,
    /// pi's `settings.api_key_env` as written: named by the secret rule
    /// ([`crate::env::SecretRef`]), an `env:` entry or a host variable.
    ApiKeyEnv(String),
}

/// A provider route after rendering.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRoute {
    /// The route, without credentials (the plan adds them).
    pub route: bb_egress::policy::RouteSpec,
    /// Injected credential: scheme and source.
    pub credential: Option<(String, RouteCredential)>,
}

/// A file for the agent's filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentFile {
    /// Absolute path in the agent.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// Content (never a secret: secrets stay in egress).
    pub content: Vec<u8>,
}

/// A provider rendered for one bottle.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// The command with bypass and prompt arguments.
    pub command: Vec<String>,
    /// The command for `resume`.
    pub resume_command: Vec<String>,
    /// Where the prompt is written, when there is one.
    pub prompt_path: Option<String>,
    /// Files for the agent.
    pub files: Vec<AgentFile>,
    /// Non-secret env for the agent (fixed env and placeholders).
    pub env: BTreeMap<String, String>,
    /// Routes with their credentials.
    pub routes: Vec<PlannedRoute>,
    /// Names the bottle's env may not hand to the agent.
    pub hidden_env: Vec<String>,
}

fn expand(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_owned();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

impl Provider {
    /// The provider's share of a launch plan.
    pub fn render(&self, input: &RenderInput<'_>) -> Result<Rendered, String> {
        let def = &self.def;
        let color_ansi = COLORS
            .iter()
            .find(|(c, _)| *c == input.color)
            .map_or("34", |(_, a)| a);
        let prompt_path = def
            .prompt
            .as_ref()
            .filter(|_| input.has_prompt)
            .map(|p| expand(&p.file, &[("home", &def.home)]));
        let theme = "dark";
        let vars: Vec<(&str, &str)> = vec![
            ("home", def.home.as_str()),
            ("workdir", def.workdir.as_str()),
            ("label", input.label),
            ("color", input.color),
            ("color_ansi", color_ansi),
            ("theme", theme),
            ("prompt_file", prompt_path.as_deref().unwrap_or("")),
        ];
        let mut command: Vec<String> = def.command.clone();
        command.extend(def.bypass_args.iter().cloned());
        let mut resume_command = command.clone();
        resume_command.extend(def.resume_args.iter().cloned());
        if let (Some(p), Some(_)) = (&def.prompt, &prompt_path) {
            command.extend(p.args.iter().map(|a| expand(a, &vars)));
        }
        let mut files = Vec::new();
        for f in &def.files {
            let mode = f
                .mode
                .as_deref()
                .map_or(0o644, |m| u32::from_str_radix(m, 8).unwrap_or(0o600));
            files.push(AgentFile {
                path: expand(&f.path, &vars),
                mode,
                content: expand(&f.content, &vars).into_bytes(),
            });
        }
        let mut env = def.env.clone();
        let auth_token = input.spec.auth_token.is_some();
        let mut routes = Vec::new();
        for r in &def.routes {
            let credential = match r.auth {
                Some(CredentialRef::AuthToken) if auth_token => Some((
                    r.scheme.clone().unwrap_or_else(|| "Bearer".into()),
                    RouteCredential::AuthToken,
                )),
                _ => None,
            };
            routes.push(PlannedRoute {
                route: bb_egress::policy::RouteSpec::new(r.host.clone()),
                credential,
            });
        }
        let forward = input.spec.forward_host_credentials.unwrap_or(false);
        if forward {
            let Some(hc) = &def.host_credentials else {
                return Err(format!(
                    "provider `{}` has no host credentials to forward",
                    self.name
                ));
            };
            for host in &hc.hosts {
                let cred = Some((hc.scheme.clone(), RouteCredential::HostLogin));
                if let Some(r) = routes.iter_mut().find(|r| r.route.host == *host) {
                    r.credential = cred;
                } else {
                    routes.push(PlannedRoute {
                        route: bb_egress::policy::RouteSpec::new(host.clone()),
                        credential: cred,
                    });
                }
            }
        }
        if auth_token || forward {
            for name in &def.placeholder_env {
                env.insert(name.clone(), crate::plan::PLACEHOLDER.into());
            }
        }
        let mut rendered = Rendered {
            command,
            resume_command,
            prompt_path,
            files,
            env,
            routes,
            hidden_env: def.hidden_env.clone(),
        };
        if let Some(Generator::PiModels) = def.generator {
            pi::generate(&def.home, input.spec.settings.as_ref(), &mut rendered)?;
        }
        if let (true, Some(sup)) = (input.supervise, &def.supervise) {
            register_supervise(sup, &def.home, &mut rendered.files)?;
        }
        Ok(rendered)
    }
}

/// Adds the supervise server to the CLI's MCP configuration file, editing
/// the provider's own content for that file when `files` writes it.
fn register_supervise(
    sup: &SuperviseDef,
    home: &str,
    files: &mut Vec<AgentFile>,
) -> Result<(), String> {
    let path = expand(&sup.file, &[("home", home)]);
    let url = supervise_url();
    let existing = files.iter().position(|f| f.path == path);
    let current = existing.map_or_else(String::new, |i| {
        String::from_utf8_lossy(&files[i].content).into_owned()
    });
    let content = match sup.register {
        McpRegistration::ClaudeJson => {
            let mut doc: serde_json::Value = if current.trim().is_empty() {
                serde_json::json!({})
            } else {
                serde_json::from_str(&current)
                    .map_err(|e| format!("supervise.file `{path}`: not JSON ({e})"))?
            };
            let Some(obj) = doc.as_object_mut() else {
                return Err(format!("supervise.file `{path}`: not a JSON object"));
            };
            let servers = obj
                .entry("mcpServers")
                .or_insert_with(|| serde_json::json!({}));
            let Some(servers) = servers.as_object_mut() else {
                return Err(format!(
                    "supervise.file `{path}`: `mcpServers` is not an object"
                ));
            };
            servers.insert(
                SUPERVISE_SERVER_NAME.to_owned(),
                serde_json::json!({"type": "http", "url": url}),
            );
            let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
            text.push('\n');
            text
        }
        McpRegistration::CodexToml => {
            let table = format!("[mcp_servers.{SUPERVISE_SERVER_NAME}]");
            if current.lines().any(|l| l.trim() == table) {
                return Err(format!("supervise.file `{path}`: already has {table}"));
            }
            let mut text = current;
            if !text.is_empty() && !text.ends_with('\n') {
                text.push('\n');
            }
            if !text.is_empty() {
                text.push('\n');
            }
            // `proposal-status` waits at most 50 s, under this timeout.
            let _ = write!(text, "{table}\nurl = \"{url}\"\ntool_timeout_sec = 60\n");
            text
        }
    };
    match existing {
        Some(i) => files[i].content = content.into_bytes(),
        None => files.push(AgentFile {
            path,
            mode: 0o600,
            content: content.into_bytes(),
        }),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
