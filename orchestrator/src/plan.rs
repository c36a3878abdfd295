//! The launch plan: everything `start` needs, computed without touching a
//! container runtime, and printed as the preflight summary.
//!
//! A plan holds where each secret comes from ([`SecretSource`]), never a
//! secret: values are resolved by [`LaunchPlan::resolve_secrets`] at launch
//! into [`Redacted`] and go to the container runtime through its process
//! environment. `Debug` and `Display` of a plan are therefore safe to print.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bb_egress::policy::{AuthScheme, LogLevel, RoutesConfig};

use crate::env::{EnvError, EnvSource, Prompter, Redacted};
use crate::manifest::{KeyProvider, Loaded, RepoKey};
use crate::paths::Paths;
use crate::provider::{AgentFile, DockerfileSource, Provider, RenderInput, RouteCredential};

/// What the agent sees in place of a credential egress adds on the way out.
pub const PLACEHOLDER: &str = "egress-placeholder";
/// The bundle's name on the agent's network, and the proxy's port.
pub const EGRESS_HOST: &str = "egress";
/// The proxy's port in the bundle.
pub const EGRESS_PORT: u16 = 9099;
/// The git gate's name on the agent's network.
pub const GIT_GATE_HOST: &str = "git-gate";
/// The git gate's smart-HTTP port (SPEC §1; 9418 is its git daemon).
pub const GIT_GATE_PORT: u16 = 9420;
/// The supervise server's name on the agent's network.
pub const SUPERVISE_HOST: &str = "supervise";
/// The supervise server's port.
pub const SUPERVISE_PORT: u16 = 9100;
/// The bottle CA in the agent.
pub const AGENT_CA_PATH: &str = "/etc/bot-bottle/ca.pem";
/// The agent's system trust bundle (ours appended).
pub const AGENT_TRUST_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A daemon of the sidecar bundle (names as `bb-init` takes them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Daemon {
    /// The egress proxy; always.
    Egress,
    /// The git gate; when the bottle declares repos.
    GitGate,
    /// The supervise server; unless `supervise: false`.
    Supervise,
}

impl Daemon {
    /// The name `bb-init` knows it by.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Egress => "egress",
            Self::GitGate => "git-gate",
            Self::Supervise => "supervise",
        }
    }
}

/// Where a secret comes from; resolved only at launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A bottle `env:` entry.
    Env {
        /// The entry.
        key: String,
        /// Its value's source.
        source: EnvSource,
    },
    /// `agent_provider.auth_token`.
    ProviderToken(EnvSource),
    /// A token in a JSON file on the host.
    HostFile {
        /// The file.
        path: PathBuf,
        /// JSON pointer to the token.
        pointer: String,
    },
}

impl SecretSource {
    fn describe(&self) -> String {
        match self {
            Self::Env { key, source } => format!("env `{key}` = {}", source.describe()),
            Self::ProviderToken(s) => format!("agent_provider.auth_token = {}", s.describe()),
            Self::HostFile { path, pointer } => {
                format!("host login {} ({pointer})", path.display())
            }
        }
    }
}

/// A variable only the egress proxy gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEnv {
    /// `EGRESS_TOKEN_*`.
    pub name: String,
    /// Where its value comes from.
    pub source: SecretSource,
}

/// A variable of the agent's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEnvValue {
    /// Set by bot-bottle (proxy URLs, CA paths, placeholders, provider env).
    Fixed(String),
    /// From the bottle's `env:`; may be a secret, so never shown.
    Manifest(EnvSource),
}

/// One git upstream served by the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitUpstream {
    /// The repo's name.
    pub name: String,
    /// The real upstream.
    pub url: String,
    /// The URL the agent's git uses instead.
    pub gate_url: String,
    /// The push key.
    pub key: RepoKey,
    /// The pinned host key.
    pub host_key: String,
}

/// The per-bottle state folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLayout {
    /// `~/.bot-bottle/state/<slug>` (0700).
    pub root: PathBuf,
}

impl StateLayout {
    /// The bottle CA (`bb-egress ca init`), mounted into the bundle.
    #[must_use]
    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }
    /// The rendered routes.yaml, mounted read-only.
    #[must_use]
    pub fn routes_file(&self) -> PathBuf {
        self.root.join("routes.yaml")
    }
    /// The supervise queue.
    #[must_use]
    pub fn queue_dir(&self) -> PathBuf {
        self.root.join("queue")
    }
    /// Metadata for `resume`, `list active` and `commit`.
    #[must_use]
    pub fn meta_file(&self) -> PathBuf {
        self.root.join("bottle.json")
    }
    /// Staging for files copied into the agent (0600).
    #[must_use]
    pub fn agent_files_dir(&self) -> PathBuf {
        self.root.join("agent")
    }

    /// Creates the folders: 0700, so secrets under them are the owner's.
    pub fn create(&self) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        for dir in [self.root.clone(), self.queue_dir(), self.agent_files_dir()] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }

    /// Writes `name` under the state folder with mode 0600.
    pub fn write_private(&self, path: &Path, content: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(content)
    }
}

/// The image the agent runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePlan {
    /// The provider name.
    pub provider: String,
    /// Where the Dockerfile comes from.
    pub dockerfile: DockerfileSource,
}

/// Everything `start` does, decided up front.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchPlan {
    /// Unique per launch: label-derived with a random suffix.
    pub slug: String,
    /// Shown in the agent's status line.
    pub label: String,
    /// The label's colour.
    pub color: String,
    /// The agent's name.
    pub agent: String,
    /// The bottle's name.
    pub bottle: String,
    /// Manifest files read, agent first.
    pub files_read: Vec<PathBuf>,
    /// The agent image.
    pub image: ImagePlan,
    /// State folder.
    pub state: StateLayout,
    /// routes.yaml for the proxy (names of token variables, no values).
    pub routes_yaml: String,
    /// Variables only egress gets.
    pub token_env: Vec<TokenEnv>,
    /// The agent's environment.
    pub agent_env: BTreeMap<String, AgentEnvValue>,
    /// Bundle daemons to start.
    pub daemons: Vec<Daemon>,
    /// Git upstreams behind the gate.
    pub git_upstreams: Vec<GitUpstream>,
    /// The agent's `~/.gitconfig`.
    pub gitconfig: String,
    /// Files written into the agent (provider files, prompt, gitconfig).
    pub files: Vec<AgentFile>,
    /// The agent's home.
    pub home: String,
    /// The agent's working directory.
    pub workdir: String,
    /// The user the CLI runs as.
    pub user: Option<String>,
    /// The provider CLI with its arguments.
    pub command: Vec<String>,
    /// The CLI for `resume`.
    pub resume_command: Vec<String>,
    /// Skills: name and host folder.
    pub skills: Vec<(String, PathBuf)>,
    /// Where skills go in the agent.
    pub skills_dir: String,
    /// `--cwd`: the host folder copied into `workdir`.
    pub workspace: Option<PathBuf>,
    /// Memory and pids limits of the agent and the bundle.
    pub limits: crate::backend::Limits,
    /// Things the operator should read.
    pub warnings: Vec<String>,
}

/// Options of `start` that shape the plan.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Label (default: the agent's name).
    pub label: Option<String>,
    /// Colour (default: blue).
    pub color: Option<String>,
    /// Copy this folder into the agent's workdir.
    pub workspace: Option<PathBuf>,
    /// A fixed slug (tests, `resume`); otherwise derived with a random suffix.
    pub slug: Option<String>,
}

/// Planning failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// Anything the operator must fix, with the place named.
    #[error("{0}")]
    Invalid(String),
}

fn slugify(label: &str) -> String {
    let mut out = String::new();
    for c in label.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    let out = if out.len() > 24 {
        out[..24].trim_end_matches('-')
    } else {
        out
    };
    if out.is_empty() {
        "bottle".to_owned()
    } else {
        out.to_owned()
    }
}

/// A random suffix for slugs (uniqueness, not secrecy).
fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    format!("{:06x}", h.finish() & 0xff_ffff)
}

/// Whether `label` is acceptable (it is written into agent config files).
#[must_use]
pub fn valid_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 40
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _.-".contains(c))
}

/// `EGRESS_TOKEN_<NAME>` for a credential name.
#[must_use]
pub fn token_env_name(name: &str) -> String {
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{}{upper}", crate::env_vars::EGRESS_TOKEN_PREFIX)
}

impl LaunchPlan {
    /// Plans launching `loaded` with `provider`.
    // One linear derivation (routes, env, git, files) that reads best top
    // to bottom; each step feeds the next, so splitting it would mostly
    // pass state around.
    #[allow(clippy::too_many_lines)]
    pub fn new(
        paths: &Paths,
        loaded: &Loaded,
        provider: &Provider,
        opts: &PlanOptions,
    ) -> Result<Self, PlanError> {
        let bottle = &loaded.bottle;
        let agent = &loaded.agent;
        let bad = PlanError::Invalid;
        let label = opts.label.clone().unwrap_or_else(|| agent.name.clone());
        if !valid_label(&label) {
            return Err(bad(format!(
                "label `{label}`: use up to 40 letters, digits, spaces, `_`, `.` or `-`"
            )));
        }
        let color = opts.color.clone().unwrap_or_else(|| "blue".into());
        if !crate::provider::COLORS.iter().any(|(c, _)| *c == color) {
            let names: Vec<&str> = crate::provider::COLORS.iter().map(|(c, _)| *c).collect();
            return Err(bad(format!(
                "colour `{color}`: choose one of {}",
                names.join(", ")
            )));
        }
        let slug = match &opts.slug {
            Some(s) => s.clone(),
            None => format!("{}-{}", slugify(&label), random_suffix()),
        };
        let state = StateLayout {
            root: paths.state_root().join(&slug),
        };
        let spec = &bottle.provider;
        if spec.forward_host_credentials == Some(true) && provider.def.host_credentials.is_none() {
            return Err(bad(format!(
                "{}: agent_provider.forward_host_credentials: provider `{}` declares no host_credentials to forward",
                bottle.chain[0].display(),
                provider.name
            )));
        }
        if spec.settings.is_some() && provider.def.generator.is_none() {
            return Err(bad(format!(
                "{}: agent_provider.settings: provider `{}` takes no settings (it has no generator)",
                bottle.chain[0].display(),
                provider.name
            )));
        }
        let rendered = provider
            .render(&RenderInput {
                spec: &bottle.provider,
                label: &label,
                color: &color,
                has_prompt: !agent.prompt.trim().is_empty(),
            })
            .map_err(|m| bad(format!("{}: {m}", bottle.chain[0].display())))?;

        let env = bottle.merged.env.clone().unwrap_or_default();
        let mut parsed_env = BTreeMap::new();
        for (k, v) in &env {
            parsed_env.insert(
                k.clone(),
                EnvSource::parse(v).map_err(|m| bad(format!("env.{k}: {m}")))?,
            );
        }

        // Routes: the manifest's, then the provider's (a manifest route for
        // the same host wins, so an operator can narrow a provider route).
        let mut token_env: Vec<TokenEnv> = Vec::new();
        let mut add_token = |name: String, source: SecretSource| -> Result<String, PlanError> {
            if let Some(existing) = token_env.iter().find(|t| t.name == name) {
                if existing.source != source {
                    return Err(PlanError::Invalid(format!(
                        "two credentials map to the proxy variable {name}; rename one env entry"
                    )));
                }
            } else {
                token_env.push(TokenEnv {
                    name: name.clone(),
                    source,
                });
            }
            Ok(name)
        };
        let mut specs = Vec::new();
        let mut hosts: Vec<String> = Vec::new();
        let mut token_refs: Vec<String> = Vec::new();
        for r in &bottle.routes {
            let token = match &r.route.auth {
                Some(a) => {
                    token_refs.push(a.token_ref.clone());
                    let source = SecretSource::Env {
                        key: a.token_ref.clone(),
                        source: parsed_env[&a.token_ref].clone(),
                    };
                    Some(add_token(token_env_name(&a.token_ref), source)?)
                }
                None => None,
            };
            hosts.push(r.route.host.to_ascii_lowercase());
            specs.push(r.route.to_spec(token.as_deref()));
        }
        for r in &rendered.routes {
            let host = r.route.host.to_ascii_lowercase();
            if hosts.contains(&host) {
                continue;
            }
            let mut spec = r.route.clone();
            if let Some((scheme, cred)) = &r.credential {
                let (name, source) = match cred {
                    RouteCredential::AuthToken => {
                        let raw = bottle.provider.auth_token.as_deref().unwrap_or_default();
                        let src = EnvSource::parse(raw)
                            .map_err(|m| bad(format!("agent_provider.auth_token: {m}")))?;
                        (
                            token_env_name("agent_provider"),
                            SecretSource::ProviderToken(src),
                        )
                    }
                    RouteCredential::HostLogin => {
                        let hc = provider.def.host_credentials.as_ref().ok_or_else(|| {
                            bad("host credentials without a host_credentials entry".into())
                        })?;
                        let path = hc.file.strip_prefix("~/").map_or_else(
                            || PathBuf::from(&hc.file),
                            |rest| paths.home().join(rest),
                        );
                        (
                            token_env_name("host_login"),
                            SecretSource::HostFile {
                                path,
                                pointer: hc.json_pointer.clone(),
                            },
                        )
                    }
                    RouteCredential::EnvEntry(key) => {
                        let Some(src) = parsed_env.get(key) else {
                            return Err(bad(format!(
                                "{}: agent_provider.settings.api_key_env: `{key}` names no `env:` entry of the bottle",
                                bottle.chain[0].display()
                            )));
                        };
                        token_refs.push(key.clone());
                        (
                            token_env_name(key),
                            SecretSource::Env {
                                key: key.clone(),
                                source: src.clone(),
                            },
                        )
                    }
                };
                let name = add_token(name, source)?;
                spec.auth_scheme = Some(AuthScheme::from_name(scheme).ok_or_else(|| {
                    bad(format!(
                        "`{scheme}` is not an auth scheme (Bearer or token)"
                    ))
                })?);
                spec.token_env = Some(name);
            }
            hosts.push(host);
            specs.push(spec);
        }
        // The proxy's own type, checked by the proxy's own rules: what is
        // written is exactly what bb-egress will load.
        let parsed = RoutesConfig {
            routes: specs,
            log: bottle.log.and_then(LogLevel::from_u8).unwrap_or_default(),
        }
        .validate()
        .map_err(|e| bad(format!("the rendered routes.yaml does not load: {e}")))?;
        let routes_yaml = format!(
            "# routes.yaml for bottle {slug} (agent {}, bottle {}); written by bot-bottle.\n{}",
            agent.name,
            bottle.name,
            parsed
                .to_yaml()
                .map_err(|e| bad(format!("rendering routes.yaml: {e}")))?
        );

        // The agent's environment.
        let mut warnings = loaded.warnings.clone();
        let mut agent_env: BTreeMap<String, AgentEnvValue> = BTreeMap::new();
        let proxy = format!("http://{EGRESS_HOST}:{EGRESS_PORT}");
        for k in [
            "HTTPS_PROXY",
            "HTTP_PROXY",
            "https_proxy",
            "http_proxy",
            "ALL_PROXY",
        ] {
            agent_env.insert(k.into(), AgentEnvValue::Fixed(proxy.clone()));
        }
        let no_proxy = format!("localhost,127.0.0.1,{GIT_GATE_HOST},{SUPERVISE_HOST}");
        agent_env.insert("NO_PROXY".into(), AgentEnvValue::Fixed(no_proxy.clone()));
        agent_env.insert("no_proxy".into(), AgentEnvValue::Fixed(no_proxy));
        agent_env.insert(
            "SSL_CERT_FILE".into(),
            AgentEnvValue::Fixed(AGENT_TRUST_BUNDLE.into()),
        );
        agent_env.insert(
            "REQUESTS_CA_BUNDLE".into(),
            AgentEnvValue::Fixed(AGENT_TRUST_BUNDLE.into()),
        );
        agent_env.insert(
            "CURL_CA_BUNDLE".into(),
            AgentEnvValue::Fixed(AGENT_TRUST_BUNDLE.into()),
        );
        agent_env.insert(
            "NODE_EXTRA_CA_CERTS".into(),
            AgentEnvValue::Fixed(AGENT_CA_PATH.into()),
        );
        agent_env.insert("BOT_BOTTLE_SLUG".into(), AgentEnvValue::Fixed(slug.clone()));
        agent_env.insert(
            "BOT_BOTTLE_LABEL".into(),
            AgentEnvValue::Fixed(label.clone()),
        );
        for (k, v) in &rendered.env {
            agent_env.insert(k.clone(), AgentEnvValue::Fixed(v.clone()));
        }
        for (k, src) in &parsed_env {
            if token_refs.contains(k) {
                // The secret goes to egress; the agent sees a placeholder so
                // tools that insist on the variable still start.
                agent_env.insert(k.clone(), AgentEnvValue::Fixed(PLACEHOLDER.into()));
            } else if rendered.hidden_env.contains(k) {
                warnings.push(format!(
                    "env `{k}` is not given to the agent: provider `{}` keeps that credential in egress (use agent_provider.auth_token)",
                    provider.name
                ));
            } else if agent_env.contains_key(k) {
                return Err(bad(format!(
                    "env `{k}` ({}): bot-bottle sets that variable itself",
                    bottle
                        .env_source
                        .get(k)
                        .map_or_else(String::new, |p| p.display().to_string())
                )));
            } else {
                agent_env.insert(k.clone(), AgentEnvValue::Manifest(src.clone()));
            }
        }

        // Git: upstreams behind the gate and the agent's gitconfig.
        let mut git_upstreams = Vec::new();
        let mut gitconfig = String::new();
        if loaded.git_user.name.is_some() || loaded.git_user.email.is_some() {
            gitconfig.push_str("[user]\n");
            if let Some(n) = &loaded.git_user.name {
                let _ = writeln!(gitconfig, "\tname = {}", gitconfig_quote(n));
            }
            if let Some(e) = &loaded.git_user.email {
                let _ = writeln!(gitconfig, "\temail = {}", gitconfig_quote(e));
            }
        }
        for (name, repo) in &bottle.repos {
            let gate_url = format!("http://{GIT_GATE_HOST}:{GIT_GATE_PORT}/{name}.git");
            let _ = writeln!(
                gitconfig,
                "[url \"{gate_url}\"]\n\tinsteadOf = {}",
                gitconfig_quote(&repo.url)
            );
            if let KeyProvider::Static = repo.key.provider
                && let Some(p) = &repo.key.path
            {
                let p = expand_home(paths, p);
                if !p.is_file() {
                    warnings.push(format!(
                        "git-gate.repos.{name}.key.path: {} does not exist yet",
                        p.display()
                    ));
                }
            }
            git_upstreams.push(GitUpstream {
                name: name.clone(),
                url: repo.url.clone(),
                gate_url,
                key: repo.key.clone(),
                host_key: repo.host_key.clone(),
            });
        }

        let mut daemons = vec![Daemon::Egress];
        if !git_upstreams.is_empty() {
            daemons.push(Daemon::GitGate);
        }
        if bottle.supervise {
            daemons.push(Daemon::Supervise);
        }

        let mut files = rendered.files.clone();
        if let Some(p) = &rendered.prompt_path {
            files.push(AgentFile {
                path: p.clone(),
                mode: 0o600,
                content: agent.prompt.clone().into_bytes(),
            });
        }
        if !gitconfig.is_empty() {
            files.push(AgentFile {
                path: format!("{}/.gitconfig", provider.def.home),
                mode: 0o644,
                content: gitconfig.clone().into_bytes(),
            });
        }

        let mut skills = Vec::new();
        for s in &agent.skills {
            let dir = paths.skills_dir().join(s);
            if !dir.is_dir() {
                return Err(bad(format!(
                    "{}: skills: `{s}` is not a folder at {}",
                    agent.file.display(),
                    dir.display()
                )));
            }
            skills.push((s.clone(), dir));
        }
        if let Some(w) = &opts.workspace
            && !w.is_dir()
        {
            return Err(bad(format!("--cwd: {} is not a folder", w.display())));
        }
        // The workspace copy must never carry the operator's bot-bottle
        // state (other bottles' CA keys) or home into the agent.
        if let Some(w) = &opts.workspace {
            let w = w.canonicalize().unwrap_or_else(|_| w.clone());
            let home = paths
                .home()
                .canonicalize()
                .unwrap_or_else(|_| paths.home().to_path_buf());
            if home.starts_with(&w) {
                return Err(bad(format!(
                    "--cwd: refusing to copy {} into the agent: it holds your home and {} (bottle CA keys, manifests); run from a project folder",
                    w.display(),
                    paths.config_dir().display()
                )));
            }
        }
        let dockerfile = match &bottle.provider.dockerfile {
            Some(d) => {
                let base = bottle.chain[0].parent().unwrap_or(Path::new("."));
                let path = base.join(expand_home(paths, d));
                if !path.is_file() {
                    return Err(bad(format!(
                        "{}: agent_provider.dockerfile: {} is not a file",
                        bottle.chain[0].display(),
                        path.display()
                    )));
                }
                DockerfileSource::File(path)
            }
            None => provider.dockerfile.clone(),
        };
        let limits = crate::backend::Limits::from_layer(bottle.merged.limits.as_ref())
            .map_err(|m| bad(format!("{}: {m}", bottle.chain[0].display())))?;
        let mut files_read = vec![agent.file.clone()];
        files_read.extend(bottle.chain.iter().cloned());
        Ok(LaunchPlan {
            slug,
            label,
            color,
            agent: agent.name.clone(),
            bottle: bottle.name.clone(),
            files_read,
            image: ImagePlan {
                provider: provider.name.clone(),
                dockerfile,
            },
            state,
            routes_yaml,
            token_env,
            agent_env,
            daemons,
            git_upstreams,
            gitconfig,
            files,
            home: provider.def.home.clone(),
            workdir: provider.def.workdir.clone(),
            user: provider.def.user.clone(),
            command: rendered.command,
            resume_command: rendered.resume_command,
            skills,
            skills_dir: provider
                .def
                .skills_dir
                .as_deref()
                .unwrap_or("{home}/.claude/skills")
                .replace("{home}", &provider.def.home),
            workspace: opts.workspace.clone(),
            limits,
            warnings,
        })
    }

    /// Resolves every secret: token values for egress and the agent's
    /// manifest env. Asks `?prompt` values through `prompter`.
    pub fn resolve_secrets(
        &self,
        host: &dyn Fn(&str) -> Option<String>,
        prompter: &mut dyn Prompter,
    ) -> Result<Secrets, ResolveError> {
        let mut tokens = Vec::new();
        for t in &self.token_env {
            let value = match &t.source {
                SecretSource::Env { key, source } => source.resolve(key, host, prompter)?,
                SecretSource::ProviderToken(source) => {
                    source.resolve("agent_provider.auth_token", host, prompter)?
                }
                SecretSource::HostFile { path, pointer } => read_host_login(path, pointer)?,
            };
            if value.expose().is_empty() {
                return Err(ResolveError::Empty(t.source.describe()));
            }
            tokens.push((t.name.clone(), value));
        }
        let mut agent_env = Vec::new();
        for (k, v) in &self.agent_env {
            let value = match v {
                AgentEnvValue::Fixed(s) => Redacted::new(s.clone()),
                AgentEnvValue::Manifest(src) => src.resolve(k, host, prompter)?,
            };
            agent_env.push((k.clone(), value));
        }
        Ok(Secrets { tokens, agent_env })
    }
}

/// Resolved values for one launch.
#[derive(Debug)]
pub struct Secrets {
    /// `EGRESS_TOKEN_*` values for the bundle.
    pub tokens: Vec<(String, Redacted<String>)>,
    /// The agent's whole environment.
    pub agent_env: Vec<(String, Redacted<String>)>,
}

/// Resolving secrets failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// An env value.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// The host login file.
    #[error("{}: {message}", path.display())]
    HostLogin {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the token).
        message: String,
    },
    /// A credential resolved to nothing.
    #[error("{0} is empty")]
    Empty(String),
}

fn read_host_login(path: &Path, pointer: &str) -> Result<Redacted<String>, ResolveError> {
    let err = |message: String| ResolveError::HostLogin {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        err(format!(
            "cannot read the host login (forward_host_credentials): {e}"
        ))
    })?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err(format!("not JSON: {e}")))?;
    json.pointer(pointer)
        .and_then(serde_json::Value::as_str)
        .map(|s| Redacted::new(s.to_owned()))
        .ok_or_else(|| err(format!("no string at {pointer}; log in on the host first")))
}

fn expand_home(paths: &Paths, p: &str) -> PathBuf {
    p.strip_prefix("~/")
        .map_or_else(|| PathBuf::from(p), |rest| paths.home().join(rest))
}

fn gitconfig_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

impl fmt::Display for LaunchPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "bottle {} — agent `{}` in bottle `{}` (label \"{}\", {})",
            self.slug, self.agent, self.bottle, self.label, self.color
        )?;
        writeln!(f, "  manifests read:")?;
        for p in &self.files_read {
            writeln!(f, "    {}", p.display())?;
        }
        let image = match &self.image.dockerfile {
            DockerfileSource::Embedded(_) => {
                format!("built-in `{}` Dockerfile", self.image.provider)
            }
            DockerfileSource::File(p) => {
                format!("{} (provider `{}`)", p.display(), self.image.provider)
            }
        };
        writeln!(f, "  agent image: {image}")?;
        writeln!(
            f,
            "  agent runs: {}   (as {}, in {})",
            self.command.join(" "),
            self.user.as_deref().unwrap_or("the image's user"),
            self.workdir
        )?;
        let daemons: Vec<&str> = self.daemons.iter().map(|d| d.name()).collect();
        writeln!(f, "  sidecar daemons: {}", daemons.join(", "))?;
        writeln!(
            f,
            "  limits: agent {}; bundle {}",
            self.limits.agent, self.limits.bundle
        )?;
        writeln!(
            f,
            "  egress allowlist ({} routes):",
            self.routes_yaml.matches("- host:").count()
        )?;
        for line in self.routes_yaml.lines().filter(|l| !l.starts_with('#')) {
            writeln!(f, "    {line}")?;
        }
        if self.token_env.is_empty() {
            writeln!(f, "  credentials egress injects: none")?;
        } else {
            writeln!(
                f,
                "  credentials egress injects (the agent never sees them):"
            )?;
            for t in &self.token_env {
                writeln!(f, "    {} <- {}", t.name, t.source.describe())?;
            }
        }
        writeln!(f, "  agent environment:")?;
        for (k, v) in &self.agent_env {
            match v {
                AgentEnvValue::Fixed(s) => writeln!(f, "    {k}={s}")?,
                AgentEnvValue::Manifest(src) => writeln!(f, "    {k} <- {}", src.describe())?,
            }
        }
        if !self.git_upstreams.is_empty() {
            writeln!(f, "  git gate:")?;
            for g in &self.git_upstreams {
                writeln!(
                    f,
                    "    {} -> {} (push key: {:?})",
                    g.gate_url, g.url, g.key.provider
                )?;
            }
        }
        writeln!(f, "  files written into the agent:")?;
        for file in &self.files {
            writeln!(
                f,
                "    {} ({:o}, {} bytes)",
                file.path,
                file.mode,
                file.content.len()
            )?;
        }
        for (name, dir) in &self.skills {
            writeln!(f, "    skill {name} <- {}", dir.display())?;
        }
        if let Some(w) = &self.workspace {
            writeln!(f, "  workspace: {} copied to {}", w.display(), self.workdir)?;
        }
        writeln!(
            f,
            "  state: {} (CA, routes.yaml, supervise queue, metadata)",
            self.state.root.display()
        )?;
        for w in &self.warnings {
            writeln!(f, "  warning: {w}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
