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

use crate::env::{EnvError, EnvSource, Part, Prompter, Redacted, SecretRef};
use crate::manifest::ssh::{GitUrl, HostKey};
use crate::manifest::{KeyProvider, Loaded};
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
/// Where the bundle mounts each repo's push key (`<dir>/<repo name>`).
pub const GATE_KEYS_DIR: &str = "/bb/config/git-keys";
/// The git gate's writable state in the bundle (mirrors, spooled packs).
pub const GATE_STATE_DIR: &str = "/bb/gitgate-state";
/// The supervise queue as the bundle sees it.
pub const BUNDLE_QUEUE_DIR: &str = "/bb/state/queue";
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
    /// A bottle `env:` entry, named by a secret field.
    Env {
        /// The entry.
        key: String,
        /// Its value's source.
        source: EnvSource,
    },
    /// Written at a secret field itself (`agent_provider.auth_token`,
    /// `egress.routes[<host>].auth.token_ref`, …): a host variable (bare
    /// name or `${VAR}`), `?prompt`, or a literal.
    Field {
        /// The manifest field, as errors and the plan name it.
        field: String,
        /// The value's source.
        source: EnvSource,
    },
    /// A token in a JSON file on the host.
    HostFile {
        /// The file.
        path: PathBuf,
        /// JSON pointer to the token.
        pointer: String,
    },
}

impl SecretSource {
    /// Where the secret comes from, never its value.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Env { key, source } => format!("env `{key}` = {}", source.describe()),
            Self::Field { field, source } => format!("{field} = {}", source.describe()),
            Self::HostFile { path, pointer } => {
                format!("host login {} ({pointer})", path.display())
            }
        }
    }

    /// What names this secret in errors and the host-variable report.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::Env { key, .. } => format!("env.{key}"),
            Self::Field { field, .. } => field.clone(),
            Self::HostFile { path, .. } => path.display().to_string(),
        }
    }

    /// Whether two sources yield the same value (the field naming it aside).
    fn same_value(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Field { source: a, .. }, Self::Field { source: b, .. }) => a == b,
            _ => self == other,
        }
    }

    /// The env source behind it, when there is one.
    fn env_source(&self) -> Option<&EnvSource> {
        match self {
            Self::Env { source, .. } | Self::Field { source, .. } => Some(source),
            Self::HostFile { .. } => None,
        }
    }

    /// Resolves the value.
    pub fn resolve(
        &self,
        host: &dyn Fn(&str) -> Option<String>,
        prompter: &mut dyn Prompter,
    ) -> Result<Redacted<String>, ResolveError> {
        match self {
            Self::Env { key, source } => Ok(source.resolve(key, host, prompter)?),
            Self::Field { field, source } => Ok(source.resolve(field, host, prompter)?),
            Self::HostFile { path, pointer } => read_host_login(path, pointer),
        }
    }
}

/// The API base and the forge token's source of gitea repo `repo` of
/// `bottle`, by the rules a launch plans them with. `cleanup` revokes the
/// deploy keys of a killed launch with it: the token comes from where the
/// manifest says, and the API base must still be the recorded one.
pub fn forge_repo(
    bottle: &crate::manifest::Bottle,
    repo: &str,
) -> Result<(String, SecretSource), PlanError> {
    let head = bottle
        .chain
        .first()
        .map_or_else(String::new, |p| p.display().to_string());
    let bad = |m: String| PlanError::Invalid(format!("{head}: git-gate.repos.{repo}: {m}"));
    let r = bottle
        .repos
        .get(repo)
        .ok_or_else(|| bad("no longer in the bottle".into()))?;
    let (KeyProvider::Gitea, Some(raw)) = (r.key.provider, r.key.forge_token_env.as_deref()) else {
        return Err(bad(
            "no longer a gitea deploy key with a forge_token_env".into()
        ));
    };
    let mut env = BTreeMap::new();
    for (k, v) in bottle.merged.env.clone().unwrap_or_default() {
        let src = EnvSource::parse(&v)
            .map_err(|m| PlanError::Invalid(format!("{head}: env.{k}: {m}")))?;
        env.insert(k, src);
    }
    let field = format!("git-gate.repos.{repo}.key.forge_token_env");
    let secret =
        SecretRef::parse(raw).map_err(|m| PlanError::Invalid(format!("{head}: {field}: {m}")))?;
    let (_, source) = secret_source(&field, &secret, &env, "forge");
    let api_url = match &r.key.api_url {
        Some(u) => u.clone(),
        None => crate::forge::default_api_url(
            &GitUrl::parse(&r.url).map_err(|m| bad(format!("url: {m}")))?,
        ),
    };
    Ok((api_url, source))
}

/// A secret field's value as the plan uses it: where it comes from and the
/// `EGRESS_TOKEN_*`-style name it suggests (the variable's name for a bare
/// name or a lone `${VAR}`, otherwise `fallback`).
fn secret_source(
    field: &str,
    secret: &SecretRef,
    env: &BTreeMap<String, EnvSource>,
    fallback: &str,
) -> (String, SecretSource) {
    match secret {
        SecretRef::Name(n) => {
            let source = match env.get(n) {
                Some(src) => SecretSource::Env {
                    key: n.clone(),
                    source: src.clone(),
                },
                None => SecretSource::Field {
                    field: field.to_owned(),
                    source: EnvSource::Interpolated(vec![Part::Var(n.clone())]),
                },
            };
            (n.clone(), source)
        }
        SecretRef::Source(src) => {
            let name = match src {
                EnvSource::Interpolated(parts) => match parts.as_slice() {
                    [Part::Var(v)] => v.clone(),
                    _ => fallback.to_owned(),
                },
                _ => fallback.to_owned(),
            };
            (
                name,
                SecretSource::Field {
                    field: field.to_owned(),
                    source: src.clone(),
                },
            )
        }
        SecretRef::Literal(l) => (
            fallback.to_owned(),
            SecretSource::Field {
                field: field.to_owned(),
                source: EnvSource::Literal(l.clone()),
            },
        ),
    }
}

/// The warning for a secret written into a manifest.
fn literal_warning(field: &str, file: &Path, value: &str) -> String {
    format!(
        "{field} ({}) holds a secret written into the manifest ({} chars): anyone who can read the file can read it; keep it in a host variable and write its name instead (see docs/manifest.md, \"Naming a secret\")",
        file.display(),
        value.chars().count()
    )
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

/// One git upstream served by the gate: what `bb-gitgate`'s `gate.yaml`
/// needs (`url`, `key_file`, `host_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitUpstream {
    /// The repo's name.
    pub name: String,
    /// The real upstream, as written.
    pub url: String,
    /// It parsed: user, host, port, path.
    pub ssh: GitUrl,
    /// The URL the agent's git uses instead.
    pub gate_url: String,
    /// Where the push key comes from.
    pub key: PushKey,
    /// The pinned host key (strict checking).
    pub host_key: HostKey,
    /// Where the host key was found.
    pub host_key_origin: HostKeyOrigin,
}

impl GitUpstream {
    /// The private key file the gate pushes with.
    #[must_use]
    pub fn key_file(&self) -> &Path {
        match &self.key {
            PushKey::Static { path } => path,
            PushKey::Gitea { key_file, .. } => key_file,
        }
    }
}

/// Where a repo's push key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushKey {
    /// A private key file of the operator's.
    Static {
        /// The file (`~/` expanded).
        path: PathBuf,
    },
    /// A Gitea deploy key minted at launch ([`crate::forge`]), revoked at
    /// teardown.
    Gitea {
        /// The API base (`https://host/api/v1`).
        api_url: String,
        /// The forge repository's owner.
        owner: String,
        /// The forge repository's name.
        name: String,
        /// The forge token.
        token: SecretSource,
        /// Where the minted private key is written (0600, state folder).
        key_file: PathBuf,
    },
}

/// Where a pinned host key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostKeyOrigin {
    /// The repo's `host_key` in the bottle.
    Manifest,
    /// The operator's `known_hosts` file, at this line.
    KnownHosts {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
    },
}

/// A manifest file read for the plan, and where it really is when it is a
/// symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadFile {
    /// The path as looked up.
    pub path: PathBuf,
    /// The link's target, when the file is a symlink.
    pub target: Option<PathBuf>,
}

impl ReadFile {
    fn of(path: &Path) -> Self {
        let link = path
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink());
        Self {
            path: path.to_owned(),
            target: link.then(|| path.canonicalize().ok()).flatten(),
        }
    }
}

/// One host variable a plan reads, and the fields that read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostVarUse {
    /// The variable.
    pub var: String,
    /// What reads it (`env.GITHUB_TOKEN`, `agent_provider.auth_token`).
    pub read_by: Vec<String>,
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
    /// The git gate's keys (minted deploy keys, 0600).
    #[must_use]
    pub fn git_gate_dir(&self) -> PathBuf {
        self.root.join("git-gate")
    }
    /// The rendered gate.yaml, mounted read-only at
    /// `/bb/config/gitgate.yaml`.
    #[must_use]
    pub fn gate_file(&self) -> PathBuf {
        self.root.join("gitgate.yaml")
    }
    /// The git gate's mirrors, mounted writable at [`GATE_STATE_DIR`].
    #[must_use]
    pub fn gate_state_dir(&self) -> PathBuf {
        self.root.join("gitgate-state")
    }

    /// Creates the folders: 0700, so secrets under them are the owner's.
    pub fn create(&self) -> std::io::Result<()> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        for dir in [
            self.root.clone(),
            self.queue_dir(),
            self.agent_files_dir(),
            self.git_gate_dir(),
            self.gate_state_dir(),
        ] {
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

#[derive(serde::Serialize)]
struct GateYaml<'a> {
    repos: BTreeMap<&'a str, GateRepo>,
    supervise_queue: &'a str,
    bottle_slug: &'a str,
    state_dir: &'a str,
}

#[derive(serde::Serialize)]
struct GateRepo {
    url: String,
    key_file: String,
    host_key: String,
}

impl LaunchPlan {
    /// The git gate's `gate.yaml` (`bb-gitgate`'s format), with paths as
    /// the bundle sees them; `None` when the bottle declares no repos.
    /// Holds no secret: keys are named by path.
    #[must_use]
    pub fn gate_yaml(&self) -> Option<String> {
        if self.git_upstreams.is_empty() {
            return None;
        }
        let repos = self
            .git_upstreams
            .iter()
            .map(|g| {
                let ssh = &g.ssh;
                let user = ssh.user.as_deref().unwrap_or("git");
                let host = if ssh.host.contains(':') {
                    format!("[{}]", ssh.host)
                } else {
                    ssh.host.clone()
                };
                // The form as written decides the path git would send: an
                // ssh:// URL's is absolute, an scp-like one's as written.
                let url = if g.url.contains("://") {
                    format!(
                        "ssh://{user}@{host}:{}/{}",
                        ssh.port.unwrap_or(22),
                        ssh.path
                    )
                } else {
                    format!("{user}@{host}:{}", ssh.path)
                };
                let repo = GateRepo {
                    url,
                    key_file: format!("{GATE_KEYS_DIR}/{}", g.name),
                    host_key: g.host_key.line.clone(),
                };
                (g.name.as_str(), repo)
            })
            .collect();
        let yaml = GateYaml {
            repos,
            supervise_queue: BUNDLE_QUEUE_DIR,
            bottle_slug: &self.slug,
            state_dir: GATE_STATE_DIR,
        };
        serde_norway::to_string(&yaml).ok()
    }
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
    pub files_read: Vec<ReadFile>,
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
        // pi's `api_key` goes into the agent's models.json as written (the
        // earlier bot-bottle's meaning, for dummy keys); a real key there is
        // said so.
        let mut provider_warnings = Vec::new();
        if let Some(serde_norway::Value::String(k)) =
            spec.settings.as_ref().and_then(|s| s.get("api_key"))
            && crate::env::looks_like_credential(k)
        {
            provider_warnings.push(format!(
                "agent_provider.settings.api_key ({}) looks like a real key and is written into the agent's models.json, where the agent can read it; name it with `api_key_env` instead and egress injects it",
                bottle.chain[0].display()
            ));
        }
        let rendered = provider
            .render(&RenderInput {
                spec: &bottle.provider,
                label: &label,
                color: &color,
                has_prompt: !agent.prompt.trim().is_empty(),
                supervise: bottle.supervise,
            })
            .map_err(|m| bad(format!("{}: {m}", bottle.chain[0].display())))?;

        let env = bottle.merged.env.clone().unwrap_or_default();
        let mut parsed_env = BTreeMap::new();
        let mut warnings = loaded.warnings.clone();
        warnings.extend(provider_warnings);
        for (k, v) in &env {
            let src = EnvSource::parse(v).map_err(|m| bad(format!("env.{k}: {m}")))?;
            if let EnvSource::Literal(l) = &src
                && crate::env::looks_like_credential(l)
            {
                let file = bottle
                    .env_source
                    .get(k)
                    .map_or(bottle.chain[0].as_path(), PathBuf::as_path);
                warnings.push(literal_warning(&format!("env.{k}"), file, l));
            }
            parsed_env.insert(k.clone(), src);
        }
        // Every field naming a secret goes by one rule (SecretRef); a
        // secret written into the manifest is used, with a warning.
        let head = bottle.chain[0].clone();
        let mut secret_field =
            |field: &str, raw: &str, fallback: &str| -> Result<(String, SecretSource), PlanError> {
                let secret = SecretRef::parse(raw)
                    .map_err(|m| bad(format!("{}: {field}: {m}", head.display())))?;
                if let SecretRef::Literal(l) = &secret {
                    warnings.push(literal_warning(field, &head, l));
                }
                Ok(secret_source(field, &secret, &parsed_env, fallback))
            };

        // Routes: the manifest's, then the provider's (a manifest route for
        // the same host wins, so an operator can narrow a provider route).
        let mut token_env: Vec<TokenEnv> = Vec::new();
        let mut add_token = |name: String, source: SecretSource| -> Result<String, PlanError> {
            if let Some(existing) = token_env.iter().find(|t| t.name == name) {
                if !existing.source.same_value(&source) {
                    return Err(PlanError::Invalid(format!(
                        "two credentials map to the proxy variable {name} ({} and {}); name one differently",
                        existing.source.label(),
                        source.label()
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
        // Env entries named by a secret field: egress gets the value, the
        // agent the placeholder.
        let mut token_refs: Vec<String> = Vec::new();
        let note_env = |source: &SecretSource, refs: &mut Vec<String>| {
            if let SecretSource::Env { key, .. } = source {
                refs.push(key.clone());
            }
        };
        for r in &bottle.routes {
            let token = match &r.route.auth {
                Some(a) => {
                    let field = format!("egress.routes[{}].auth.token_ref", r.route.host);
                    let (name, source) = secret_field(&field, &a.token_ref, &r.route.host)?;
                    note_env(&source, &mut token_refs);
                    Some(add_token(token_env_name(&name), source)?)
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
                        let (_, source) =
                            secret_field("agent_provider.auth_token", raw, "agent_provider")?;
                        note_env(&source, &mut token_refs);
                        (token_env_name("agent_provider"), source)
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
                    RouteCredential::ApiKeyEnv(raw) => {
                        let (name, source) =
                            secret_field("agent_provider.settings.api_key_env", raw, &host)?;
                        note_env(&source, &mut token_refs);
                        (token_env_name(&name), source)
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
        // Forge tokens (gitea deploy keys) go to bot-bottle alone, at launch.
        let mut forge_tokens: BTreeMap<String, SecretSource> = BTreeMap::new();
        for (name, repo) in &bottle.repos {
            if let (KeyProvider::Gitea, Some(raw)) =
                (repo.key.provider, repo.key.forge_token_env.as_deref())
            {
                let field = format!("git-gate.repos.{name}.key.forge_token_env");
                let (_, source) = secret_field(&field, raw, "forge")?;
                note_env(&source, &mut token_refs);
                forge_tokens.insert(name.clone(), source);
            }
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
        let known_hosts = paths.home().join(".ssh").join("known_hosts");
        for (name, repo) in &bottle.repos {
            let gate_url = format!("http://{GIT_GATE_HOST}:{GIT_GATE_PORT}/{name}.git");
            let _ = writeln!(
                gitconfig,
                "[url \"{gate_url}\"]\n\tinsteadOf = {}",
                gitconfig_quote(&repo.url)
            );
            let at = |field: &str, m: String| {
                bad(format!(
                    "{}: git-gate.repos.{name}.{field}: {m}",
                    bottle.chain[0].display()
                ))
            };
            // The loader checked the URL and host key; parsed again here.
            let ssh = GitUrl::parse(&repo.url).map_err(|m| at("url", m))?;
            let (host_key, host_key_origin) = if let Some(hk) = &repo.host_key {
                (
                    crate::manifest::ssh::parse_host_key(hk, &ssh)
                        .map_err(|m| at("host_key", m))?,
                    HostKeyOrigin::Manifest,
                )
            } else {
                let text = std::fs::read_to_string(&known_hosts).unwrap_or_default();
                let (line, key) = crate::manifest::ssh::find_known_host(&text, &ssh)
                        .ok_or_else(|| {
                            at(
                                "host_key",
                                format!(
                                    "not set, and {} pins no key for {}; check the host's fingerprint, then pin it with\n    {}\n  or write the key as `host_key:` in the bottle",
                                    known_hosts.display(),
                                    ssh.known_hosts_name(),
                                    ssh.keyscan_command(&known_hosts)
                                ),
                            )
                        })?;
                (
                    key,
                    HostKeyOrigin::KnownHosts {
                        file: known_hosts.clone(),
                        line,
                    },
                )
            };
            let key = match repo.key.provider {
                KeyProvider::Static => {
                    let p = expand_home(paths, repo.key.path.as_deref().unwrap_or_default());
                    if !p.is_file() {
                        warnings.push(format!(
                            "git-gate.repos.{name}.key.path: {} does not exist yet",
                            p.display()
                        ));
                    }
                    PushKey::Static { path: p }
                }
                KeyProvider::Gitea => {
                    let (owner, repo_name) = ssh.owner_repo().map_err(|m| at("url", m))?;
                    PushKey::Gitea {
                        api_url: repo
                            .key
                            .api_url
                            .clone()
                            .unwrap_or_else(|| crate::forge::default_api_url(&ssh)),
                        owner,
                        name: repo_name,
                        token: forge_tokens
                            .get(name)
                            .cloned()
                            .ok_or_else(|| at("key.forge_token_env", "required".into()))?,
                        key_file: state.git_gate_dir().join(format!("{name}.key")),
                    }
                }
            };
            git_upstreams.push(GitUpstream {
                name: name.clone(),
                url: repo.url.clone(),
                ssh,
                gate_url,
                key,
                host_key,
                host_key_origin,
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
            let mut prompt = agent.prompt.clone();
            if bottle.supervise && provider.def.supervise.is_some() {
                if !prompt.ends_with('\n') {
                    prompt.push('\n');
                }
                prompt.push('\n');
                prompt.push_str(crate::provider::SUPERVISE_PROMPT);
            }
            files.push(AgentFile {
                path: p.clone(),
                mode: 0o600,
                content: prompt.into_bytes(),
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
        let mut files_read = vec![ReadFile::of(&agent.file)];
        files_read.extend(bottle.chain.iter().map(|p| ReadFile::of(p)));
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

    /// Resolves every secret: token values for egress, forge tokens for
    /// deploy keys, and the agent's manifest env. Asks `?prompt` values
    /// through `prompter`.
    pub fn resolve_secrets(
        &self,
        host: &dyn Fn(&str) -> Option<String>,
        prompter: &mut dyn Prompter,
    ) -> Result<Secrets, ResolveError> {
        let mut tokens = Vec::new();
        for t in &self.token_env {
            let value = t.source.resolve(host, prompter)?;
            if value.expose().is_empty() {
                return Err(ResolveError::Empty(t.source.describe()));
            }
            tokens.push((t.name.clone(), value));
        }
        let mut forge_tokens = Vec::new();
        for g in &self.git_upstreams {
            if let PushKey::Gitea { token, .. } = &g.key {
                let value = token.resolve(host, prompter)?;
                if value.expose().is_empty() {
                    return Err(ResolveError::Empty(token.describe()));
                }
                forge_tokens.push((g.name.clone(), value));
            }
        }
        let mut agent_env = Vec::new();
        for (k, v) in &self.agent_env {
            let value = match v {
                AgentEnvValue::Fixed(s) => Redacted::new(s.clone()),
                AgentEnvValue::Manifest(src) => src.resolve(k, host, prompter)?,
            };
            agent_env.push((k.clone(), value));
        }
        Ok(Secrets {
            tokens,
            agent_env,
            forge_tokens,
        })
    }

    /// Checks that every secret would resolve, as the launch would, without
    /// asking anything: a `?prompt` passes only when there is a terminal to
    /// ask on. The dry run and `start` (before its confirmation) call it, so
    /// both fail the same way before any launch step.
    pub fn check_secrets(
        &self,
        host: &dyn Fn(&str) -> Option<String>,
        interactive: bool,
    ) -> Result<(), ResolveError> {
        self.resolve_secrets(host, &mut crate::env::WouldAsk { interactive })
            .map(drop)
    }

    /// Every host variable the plan reads at launch, with what reads it.
    #[must_use]
    pub fn host_vars(&self) -> Vec<HostVarUse> {
        let mut uses: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut add = |src: &EnvSource, by: String| {
            for v in src.host_vars() {
                let list = uses.entry(v.to_owned()).or_default();
                if !list.contains(&by) {
                    list.push(by.clone());
                }
            }
        };
        for t in &self.token_env {
            if let Some(src) = t.source.env_source() {
                add(src, t.source.label());
            }
        }
        for g in &self.git_upstreams {
            if let PushKey::Gitea { token, .. } = &g.key
                && let Some(src) = token.env_source()
            {
                add(src, token.label());
            }
        }
        for (k, v) in &self.agent_env {
            if let AgentEnvValue::Manifest(src) = v {
                add(src, format!("env.{k}"));
            }
        }
        uses.into_iter()
            .map(|(var, read_by)| HostVarUse { var, read_by })
            .collect()
    }

    /// The host variables and host files the plan reads, each said to be
    /// set or not — never a value.
    #[must_use]
    pub fn host_report(&self, host: &dyn Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        let vars = self.host_vars();
        if vars.is_empty() {
            out.push_str("  host variables read at launch: none\n");
        } else {
            out.push_str("  host variables read at launch (values never shown):\n");
            for u in &vars {
                let state = match host(&u.var) {
                    Some(v) if v.is_empty() => "set, empty",
                    Some(_) => "set",
                    None => "NOT SET",
                };
                let _ = writeln!(
                    out,
                    "    {}: {state} (read by {})",
                    u.var,
                    u.read_by.join(", ")
                );
            }
        }
        for t in &self.token_env {
            if let SecretSource::HostFile { path, .. } = &t.source {
                let state = if path.is_file() { "present" } else { "MISSING" };
                let _ = writeln!(
                    out,
                    "  host file read at launch: {} ({state})",
                    path.display()
                );
            }
        }
        out
    }
}

/// Resolved values for one launch.
#[derive(Debug)]
pub struct Secrets {
    /// `EGRESS_TOKEN_*` values for the bundle.
    pub tokens: Vec<(String, Redacted<String>)>,
    /// The agent's whole environment.
    pub agent_env: Vec<(String, Redacted<String>)>,
    /// Forge tokens by repo name, for minting and revoking deploy keys;
    /// they go to no container.
    pub forge_tokens: Vec<(String, Redacted<String>)>,
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
    // The preflight summary, section by section in the order it prints.
    #[allow(clippy::too_many_lines)]
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "bottle {} — agent `{}` in bottle `{}` (label \"{}\", {})",
            self.slug, self.agent, self.bottle, self.label, self.color
        )?;
        writeln!(f, "  manifests read:")?;
        for p in &self.files_read {
            match &p.target {
                Some(t) => writeln!(f, "    {} -> {}", p.path.display(), t.display())?,
                None => writeln!(f, "    {}", p.path.display())?,
            }
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
                let push = match &g.key {
                    PushKey::Static { path } => format!("file {}", path.display()),
                    PushKey::Gitea {
                        api_url,
                        owner,
                        name,
                        ..
                    } => format!(
                        "Gitea deploy key minted at launch via {api_url} for {owner}/{name}, revoked at teardown"
                    ),
                };
                let origin = match &g.host_key_origin {
                    HostKeyOrigin::Manifest => "the bottle".to_owned(),
                    HostKeyOrigin::KnownHosts { file, line } => {
                        format!("{} line {line}", file.display())
                    }
                };
                writeln!(f, "    {} -> {}", g.gate_url, g.url)?;
                writeln!(
                    f,
                    "      push key: {push}; host key {} from {origin}",
                    g.host_key.algorithm
                )?;
                if let PushKey::Gitea { token, .. } = &g.key {
                    writeln!(f, "      forge token <- {}", token.describe())?;
                }
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
