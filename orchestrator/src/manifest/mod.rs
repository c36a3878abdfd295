//! Manifests (SPEC §4): agent and bottle files, the `extends:` chain, and
//! strict validation with errors naming the file, key and value.
//!
//! Only the chosen agent and its bottle chain are read: a broken file for
//! another agent never stops a launch.

pub mod frontmatter;
pub mod layer;
pub mod routes;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::paths::Paths;
pub use layer::{
    AgentGitGate, AgentLayer, BottleLayer, EgressLayer, GitGateLayer, GitUserLayer, KeyProvider,
    LimitLayer, LimitsLayer, ProviderSpec, RepoKey, RepoLayer, merge,
};

/// What went wrong loading a manifest. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// No agent or bottle file of that name.
    #[error("no {kind} named `{name}`: looked for {}", list_paths(searched))]
    NotFound {
        /// `agent` or `bottle`.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// Every path tried.
        searched: Vec<PathBuf>,
    },
    /// A name that cannot be a manifest file name.
    #[error(
        "{kind} name `{name}` is not valid: names match [a-z][a-z0-9-]* (the file is <name>.md)"
    )]
    BadName {
        /// `agent` or `bottle`.
        kind: &'static str,
        /// The offending name.
        name: String,
    },
    /// Frontmatter, YAML syntax or refused YAML features.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// Line in the file.
        line: Option<usize>,
        /// What is wrong.
        message: String,
    },
    /// A key with a wrong, unknown or missing value.
    #[error("{}: `{key}`: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Dotted key path (`egress.routes[2].role`).
        key: String,
        /// What is wrong, naming the value.
        message: String,
    },
    /// `extends:` loops.
    #[error("`extends:` cycle: {}", chain.join(" -> "))]
    Cycle {
        /// The bottle names around the loop.
        chain: Vec<String>,
    },
    /// Two routes for one host along a chain.
    #[error("egress host `{host}` is declared twice: in {} and in {} (one route per host)", first.display(), second.display())]
    DuplicateHost {
        /// The host.
        host: String,
        /// Where it was first declared.
        first: PathBuf,
        /// The second declaration.
        second: PathBuf,
    },
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `name` can be a manifest name (`[a-z][a-z0-9-]*`).
#[must_use]
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A file's frontmatter parsed into `T`, plus its body.
pub(crate) fn parse_file<T: DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<(T, String), ManifestError> {
    let split = frontmatter::split(text).map_err(|e| ManifestError::Syntax {
        path: path.to_owned(),
        line: e.line,
        message: e.message,
    })?;
    frontmatter::refuse_indirection(split.yaml, split.yaml_first_line).map_err(|e| {
        ManifestError::Syntax {
            path: path.to_owned(),
            line: e.line,
            message: e.message,
        }
    })?;
    // An empty frontmatter is an empty mapping, not YAML null.
    let yaml = if split.yaml.trim().is_empty() {
        "{}"
    } else {
        split.yaml
    };
    let value: T = serde_norway::from_str(yaml).map_err(|e| {
        let line = e.location().map(|l| l.line() + split.yaml_first_line - 1);
        let mut message = e.to_string();
        // serde_norway appends its own (frontmatter-relative) position;
        // the file-relative line is reported instead.
        if let Some(at) = message.rfind(" at line ") {
            message.truncate(at);
        }
        ManifestError::Syntax {
            path: path.to_owned(),
            line,
            message,
        }
    })?;
    Ok((value, split.body.to_owned()))
}

fn read(path: &Path) -> Result<String, ManifestError> {
    std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: path.to_owned(),
        source,
    })
}

/// A repo after merging, with every field present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    /// The upstream URL.
    pub url: String,
    /// The push key.
    pub key: RepoKey,
    /// The pinned SSH host key.
    pub host_key: String,
}

/// One egress route with the file that declared it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcedRoute {
    /// The declaring file.
    pub file: PathBuf,
    /// The route in manifest form.
    pub route: routes::ManifestRoute,
}

/// A bottle with its whole `extends:` chain applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Bottle {
    /// The bottle's name.
    pub name: String,
    /// Files of the chain, the bottle first, its root ancestor last.
    pub chain: Vec<PathBuf>,
    /// The merged layer (what the chain flattens to).
    pub merged: BottleLayer,
    /// Env entries with the file that set each (the nearest one).
    pub env_source: BTreeMap<String, PathBuf>,
    /// The provider (default: `claude`).
    pub provider: ProviderSpec,
    /// Merged git identity.
    pub git_user: GitUserLayer,
    /// Upstream repos by name.
    pub repos: BTreeMap<String, Repo>,
    /// Egress routes, the root ancestor's first.
    pub routes: Vec<SourcedRoute>,
    /// routes.yaml `log` level.
    pub log: Option<u8>,
    /// Whether supervise runs.
    pub supervise: bool,
}

/// An agent file.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    /// The agent's name.
    pub name: String,
    /// Its file.
    pub file: PathBuf,
    /// The bottle it runs in.
    pub bottle: String,
    /// Skill folder names.
    pub skills: Vec<String>,
    /// Its git identity overlay.
    pub git_user: GitUserLayer,
    /// The body: the agent's prompt.
    pub prompt: String,
}

/// An agent with its bottle, ready to plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The agent.
    pub agent: Agent,
    /// Its bottle.
    pub bottle: Bottle,
    /// The git identity after the agent's overlay.
    pub git_user: GitUserLayer,
    /// Things the operator should know (the trust-boundary warning).
    pub warnings: Vec<String>,
}

/// Reads manifests for one operator and working directory.
#[derive(Debug, Clone)]
pub struct Loader {
    paths: Paths,
}

/// Where an available agent was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEntry {
    /// The agent's name.
    pub name: String,
    /// Its file (the working directory's when both exist).
    pub file: PathBuf,
    /// Whether it comes from `./.bot-bottle/agents`.
    pub from_cwd: bool,
}

impl Loader {
    /// A loader for `paths`.
    #[must_use]
    pub fn new(paths: Paths) -> Self {
        Self { paths }
    }

    /// The paths this loader reads.
    #[must_use]
    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The trust-boundary warning, when `./.bot-bottle/bottles/` exists.
    #[must_use]
    pub fn trust_warning(&self) -> Option<String> {
        let dir = self.paths.cwd_bottles_dir();
        // Run from the home folder, `./.bot-bottle/bottles` *is* the trusted one.
        let same = |a: &Path, b: &Path| {
            a.canonicalize()
                .ok()
                .is_some_and(|a| b.canonicalize().ok().is_some_and(|b| a == b))
        };
        if same(&dir, &self.paths.bottles_dir()) {
            return None;
        }
        dir.is_dir().then(|| {
            format!(
                "ignoring {}: bottles are read only from {} (a cloned repository must not be able to change where credentials go)",
                dir.display(),
                self.paths.bottles_dir().display()
            )
        })
    }

    /// Every agent name on disk, without parsing any file.
    #[must_use]
    pub fn available_agents(&self) -> Vec<AgentEntry> {
        let mut out: BTreeMap<String, AgentEntry> = BTreeMap::new();
        for (dir, from_cwd) in [
            (self.paths.home_agents_dir(), false),
            (self.paths.cwd_agents_dir(), true),
        ] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let file = entry.path();
                let Some(name) = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| n.strip_suffix(".md"))
                else {
                    continue;
                };
                if valid_name(name) && file.is_file() {
                    out.insert(
                        name.to_owned(),
                        AgentEntry {
                            name: name.to_owned(),
                            file: file.clone(),
                            from_cwd,
                        },
                    );
                }
            }
        }
        out.into_values().collect()
    }

    /// The file for agent `name`: the working directory's wins.
    pub fn agent_file(&self, name: &str) -> Result<PathBuf, ManifestError> {
        if !valid_name(name) {
            return Err(ManifestError::BadName {
                kind: "agent",
                name: name.to_owned(),
            });
        }
        let candidates = [
            self.paths.cwd_agents_dir().join(format!("{name}.md")),
            self.paths.home_agents_dir().join(format!("{name}.md")),
        ];
        candidates
            .iter()
            .find(|p| p.is_file())
            .cloned()
            .ok_or_else(|| ManifestError::NotFound {
                kind: "agent",
                name: name.to_owned(),
                searched: candidates.to_vec(),
            })
    }

    /// Loads agent `name` and its bottle chain.
    pub fn load(&self, name: &str) -> Result<Loaded, ManifestError> {
        let agent = self.load_agent(name)?;
        let bottle = self.load_bottle(&agent.bottle).map_err(|e| match e {
            ManifestError::NotFound {
                kind: "bottle",
                name,
                searched,
            } => ManifestError::Invalid {
                path: agent.file.clone(),
                key: "bottle".into(),
                message: format!(
                    "no bottle named `{name}` (looked for {})",
                    list_paths(&searched)
                ),
            },
            ManifestError::BadName {
                kind: "bottle",
                name,
            } => ManifestError::Invalid {
                path: agent.file.clone(),
                key: "bottle".into(),
                message: format!(
                    "`{name}` is not a valid bottle name: names match [a-z][a-z0-9-]*"
                ),
            },
            other => other,
        })?;
        let git_user = bottle.git_user.overlay(&agent.git_user);
        let warnings = self.trust_warning().into_iter().collect();
        Ok(Loaded {
            agent,
            bottle,
            git_user,
            warnings,
        })
    }

    /// Loads one agent file.
    pub fn load_agent(&self, name: &str) -> Result<Agent, ManifestError> {
        let file = self.agent_file(name)?;
        let (layer, body): (AgentLayer, String) = parse_file(&file, &read(&file)?)?;
        let skills = layer.skills.unwrap_or_default();
        for (i, skill) in skills.iter().enumerate() {
            if skill.is_empty() || skill.contains(['/', '\\']) || skill.starts_with('.') {
                return Err(ManifestError::Invalid {
                    path: file,
                    key: format!("skills[{i}]"),
                    message: format!(
                        "`{skill}` is not a skill folder name (a folder directly under ~/.claude/skills/)"
                    ),
                });
            }
        }
        Ok(Agent {
            name: name.to_owned(),
            bottle: layer.bottle,
            skills,
            git_user: layer.git_gate.and_then(|g| g.user).unwrap_or_default(),
            prompt: body.trim_start_matches(['\r', '\n']).to_owned(),
            file,
        })
    }

    fn bottle_file(&self, name: &str) -> Result<PathBuf, ManifestError> {
        if !valid_name(name) {
            return Err(ManifestError::BadName {
                kind: "bottle",
                name: name.to_owned(),
            });
        }
        let path = self.paths.bottles_dir().join(format!("{name}.md"));
        if path.is_file() {
            Ok(path)
        } else {
            Err(ManifestError::NotFound {
                kind: "bottle",
                name: name.to_owned(),
                searched: vec![path],
            })
        }
    }

    /// Reads the chain of bottle layers, `name` first.
    pub fn load_chain(&self, name: &str) -> Result<Vec<(PathBuf, BottleLayer)>, ManifestError> {
        let mut chain: Vec<(PathBuf, BottleLayer)> = Vec::new();
        let mut names = vec![name.to_owned()];
        let mut next = Some(name.to_owned());
        while let Some(current) = next.take() {
            let file = match self.bottle_file(&current) {
                Ok(f) => f,
                Err(ManifestError::NotFound { name, searched, .. }) if !chain.is_empty() => {
                    let (child, _) = &chain[chain.len() - 1];
                    return Err(ManifestError::Invalid {
                        path: child.clone(),
                        key: "extends".into(),
                        message: format!(
                            "no bottle named `{name}` (looked for {})",
                            list_paths(&searched)
                        ),
                    });
                }
                Err(e) => return Err(e),
            };
            let (layer, _body): (BottleLayer, String) = parse_file(&file, &read(&file)?)?;
            if let Some(parent) = &layer.extends {
                if !valid_name(parent) {
                    return Err(ManifestError::Invalid {
                        path: file,
                        key: "extends".into(),
                        message: format!("`{parent}` is not a bottle name ([a-z][a-z0-9-]*)"),
                    });
                }
                if names.contains(parent) {
                    names.push(parent.clone());
                    return Err(ManifestError::Cycle { chain: names });
                }
                names.push(parent.clone());
                next = Some(parent.clone());
            }
            chain.push((file, layer));
        }
        Ok(chain)
    }

    /// Loads bottle `name` with its chain merged and validated.
    pub fn load_bottle(&self, name: &str) -> Result<Bottle, ManifestError> {
        let chain = self.load_chain(name)?;
        resolve_chain(name, &chain)
    }
}

/// Merges a chain (`name`'s file first) and validates the result.
// Per-file checks, the merge and the whole-bottle checks in one pass, so
// every error can still name the file it comes from.
#[allow(clippy::too_many_lines)]
pub fn resolve_chain(
    name: &str,
    chain: &[(PathBuf, BottleLayer)],
) -> Result<Bottle, ManifestError> {
    // Per-file checks first so errors name the file that has the problem.
    let mut routes: Vec<SourcedRoute> = Vec::new();
    let mut env_source: BTreeMap<String, PathBuf> = BTreeMap::new();
    for (file, layer) in chain.iter().rev() {
        check_layer(file, layer)?;
        for (i, value) in layer
            .egress
            .iter()
            .flat_map(|e| e.routes.iter().flatten())
            .enumerate()
        {
            let route = routes::ManifestRoute::parse(value, i).map_err(|(key, message)| {
                ManifestError::Invalid {
                    path: file.clone(),
                    key,
                    message,
                }
            })?;
            if let Some(first) = routes
                .iter()
                .find(|r| r.route.host.eq_ignore_ascii_case(&route.host))
            {
                return Err(ManifestError::DuplicateHost {
                    host: route.host,
                    first: first.file.clone(),
                    second: file.clone(),
                });
            }
            routes.push(SourcedRoute {
                file: file.clone(),
                route,
            });
        }
        for key in layer.env.iter().flat_map(BTreeMap::keys) {
            env_source.insert(key.clone(), file.clone());
        }
    }
    let mut merged = BottleLayer::default();
    for (_, layer) in chain.iter().rev() {
        merged = merge(&merged, layer);
    }
    merged.extends = None;
    let head = chain.first().map(|(f, _)| f.clone()).unwrap_or_default();

    let provider = merged.agent_provider.clone().unwrap_or(ProviderSpec {
        template: "claude".into(),
        dockerfile: None,
        auth_token: None,
        forward_host_credentials: None,
        settings: None,
    });
    let mut repos = BTreeMap::new();
    for (repo_name, r) in merged
        .git_gate
        .iter()
        .flat_map(|g| g.repos.iter().flatten())
    {
        let missing = |field: &str| ManifestError::Invalid {
            path: head.clone(),
            key: format!("git-gate.repos.{repo_name}.{field}"),
            message: "required, and not set by this bottle or any bottle it extends".into(),
        };
        repos.insert(
            repo_name.clone(),
            Repo {
                url: r.url.clone().ok_or_else(|| missing("url"))?,
                key: r.key.clone().ok_or_else(|| missing("key"))?,
                host_key: r.host_key.clone().ok_or_else(|| missing("host_key"))?,
            },
        );
    }
    // A route's token must name an env entry of the merged bottle.
    let env = merged.env.clone().unwrap_or_default();
    for r in &routes {
        if let Some(auth) = &r.route.auth
            && !env.contains_key(&auth.token_ref)
        {
            return Err(ManifestError::Invalid {
                path: r.file.clone(),
                key: format!("egress.routes[{}].auth.token_ref", r.route.index),
                message: format!(
                    "`{}` (route for `{}`) names no `env:` entry of this bottle or any bottle it extends",
                    auth.token_ref, r.route.host
                ),
            });
        }
    }
    Ok(Bottle {
        name: name.to_owned(),
        chain: chain.iter().map(|(f, _)| f.clone()).collect(),
        env_source,
        provider,
        git_user: merged
            .git_gate
            .as_ref()
            .and_then(|g| g.user.clone())
            .unwrap_or_default(),
        repos,
        routes,
        log: merged.egress.as_ref().and_then(|e| e.log),
        supervise: merged.supervise.unwrap_or(true),
        merged,
    })
}

fn invalid(path: &Path, key: impl Into<String>, message: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        path: path.to_owned(),
        key: key.into(),
        message: message.into(),
    }
}

/// Checks one bottle file on its own.
// A flat list of independent key checks.
#[allow(clippy::too_many_lines)]
fn check_layer(file: &Path, layer: &BottleLayer) -> Result<(), ManifestError> {
    if let Some(parent) = &layer.extends
        && !valid_name(parent)
    {
        return Err(invalid(
            file,
            "extends",
            format!("`{parent}` is not a bottle name ([a-z][a-z0-9-]*)"),
        ));
    }
    for (key, value) in layer.env.iter().flatten() {
        if !crate::env::valid_env_name(key) {
            return Err(invalid(
                file,
                format!("env.{key}"),
                format!("`{key}` is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)"),
            ));
        }
        crate::env::EnvSource::parse(value).map_err(|m| invalid(file, format!("env.{key}"), m))?;
    }
    if let Some(p) = &layer.agent_provider {
        // Built-ins are judged here; a plugin's capabilities are known only
        // once its provider.yaml is read (LaunchPlan::new checks those).
        if p.forward_host_credentials.is_some() && matches!(p.template.as_str(), "claude" | "pi") {
            return Err(invalid(
                file,
                "agent_provider.forward_host_credentials",
                format!(
                    "only the codex template forwards host credentials (template is `{}`)",
                    p.template
                ),
            ));
        }
        if p.settings.is_some() && matches!(p.template.as_str(), "claude" | "codex") {
            return Err(invalid(
                file,
                "agent_provider.settings",
                format!(
                    "only the pi template takes settings (template is `{}`)",
                    p.template
                ),
            ));
        }
        if let Some(token) = &p.auth_token {
            crate::env::EnvSource::parse(token)
                .map_err(|m| invalid(file, "agent_provider.auth_token", m))?;
        }
        if !valid_name(&p.template) {
            return Err(invalid(
                file,
                "agent_provider.template",
                format!("`{}` is not a provider name ([a-z][a-z0-9-]*)", p.template),
            ));
        }
    }
    if let Some(log) = layer.egress.as_ref().and_then(|e| e.log)
        && log > 2
    {
        return Err(invalid(
            file,
            "egress.log",
            format!("{log} is not a log level (0 off, 1 blocked only, 2 everything)"),
        ));
    }
    for (name, repo) in layer.git_gate.iter().flat_map(|g| g.repos.iter().flatten()) {
        if !valid_name(name) {
            return Err(invalid(
                file,
                format!("git-gate.repos.{name}"),
                format!("`{name}` is not a repo name ([a-z][a-z0-9-]*)"),
            ));
        }
        if let Some(key) = &repo.key {
            let k = format!("git-gate.repos.{name}.key");
            match key.provider {
                KeyProvider::Static => {
                    if key.path.is_none() {
                        return Err(invalid(
                            file,
                            format!("{k}.path"),
                            "required for provider `static`",
                        ));
                    }
                    if key.forge_token_env.is_some() || key.api_url.is_some() {
                        return Err(invalid(file, k, "provider `static` takes only `path`"));
                    }
                }
                KeyProvider::Gitea => {
                    if key.forge_token_env.is_none() || key.api_url.is_none() {
                        return Err(invalid(
                            file,
                            k,
                            "provider `gitea` needs `forge_token_env` and `api_url`",
                        ));
                    }
                    if key.path.is_some() {
                        return Err(invalid(
                            file,
                            format!("{k}.path"),
                            "provider `gitea` mints its key; `path` is for `static`",
                        ));
                    }
                }
            }
        }
        if let Some(url) = &repo.url
            && (url.is_empty() || url.chars().any(char::is_whitespace))
        {
            return Err(invalid(
                file,
                format!("git-gate.repos.{name}.url"),
                format!("`{url}` is not a git URL"),
            ));
        }
    }
    Ok(())
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.file.display())
    }
}

#[cfg(test)]
mod tests;
