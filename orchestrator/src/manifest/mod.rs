//! Manifests (SPEC §4): agent and bottle files, the `extends:` chain, and
//! strict validation with errors naming the file, key and value.
//!
//! Only the chosen agent and its bottle chain are read: a broken file for
//! another agent never stops a launch.

pub mod frontmatter;
pub mod layer;
pub mod routes;
pub mod ssh;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;
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
    #[error(
        "no {kind} named `{name}`: looked for {}{}",
        list_paths(searched),
        near_misses(name, near)
    )]
    NotFound {
        /// `agent` or `bottle`.
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// Every path tried.
        searched: Vec<PathBuf>,
        /// Files that differ only in case (`Dev.md`), which are never read.
        near: Vec<PathBuf>,
    },
    /// A file bigger than a manifest (or its frontmatter, or its prompt)
    /// may be.
    #[error("{}: {what} is larger than {} KiB; a manifest is a small text file (is this the right file?)", path.display(), limit / 1024)]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// `the file`, `the frontmatter` or `the prompt`.
        what: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
    /// A bottle whose real path is outside `~/.bot-bottle` (a symlink out).
    #[error(
        "{} resolves to {}, outside {}: a bottle decides where credentials go, so bottles are read only from inside {} (copy the file in, or make {} itself the link)",
        path.display(), target.display(), root.display(), root.display(), root.display()
    )]
    OutsideConfig {
        /// The bottle file as named.
        path: PathBuf,
        /// Where it really is.
        target: PathBuf,
        /// `~/.bot-bottle`.
        root: PathBuf,
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

fn near_misses(name: &str, near: &[PathBuf]) -> String {
    use std::fmt::Write as _;
    near.iter().fold(String::new(), |mut out, p| {
        let _ = write!(
            out,
            "; found {}, which is never read: manifest file names are lower-case, [a-z][a-z0-9-]*.md (rename it to {name}.md)",
            p.display()
        );
        out
    })
}

/// Files in `dir` whose name is `<name>.md` ignoring ASCII case, but not
/// exactly (`Dev.md`, `dev.MD` for `dev`).
fn case_variants(dir: &Path, name: &str) -> Vec<PathBuf> {
    let want = format!("{name}.md");
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e.file_name().to_str()?.to_owned();
            (n != want && n.eq_ignore_ascii_case(&want)).then(|| e.path())
        })
        .collect();
    out.sort();
    out
}

/// Largest manifest file read, frontmatter and body.
pub const MAX_FILE_BYTES: usize = 512 * 1024;
/// Largest frontmatter.
pub const MAX_FRONTMATTER_BYTES: usize = 64 * 1024;
/// Largest agent prompt (the body of an agent file).
pub const MAX_PROMPT_BYTES: usize = 256 * 1024;

/// Whether a directory entry named `file_name` is one bot-bottle would
/// read: `[a-z][a-z0-9-]*.md`.
#[must_use]
pub fn manifest_file_name(file_name: &str) -> bool {
    file_name.strip_suffix(".md").is_some_and(valid_name)
}

/// The message of a serde error without the value it met: serde writes
/// `invalid type: string "hunter2", expected a boolean`, and a value in a
/// manifest may be a secret pasted in the wrong place. The key path and
/// the expected type stay.
#[must_use]
pub fn without_values(message: &str) -> String {
    fn kind(unexpected: &str) -> &'static str {
        const KINDS: &[(&str, &str)] = &[
            ("string", "a string"),
            ("integer", "an integer"),
            ("floating point", "a number"),
            ("boolean", "a boolean"),
            ("character", "a character"),
            ("unit", "null"),
            ("sequence", "a list"),
            ("map", "a mapping"),
            ("byte array", "bytes"),
            ("bytes", "bytes"),
            ("enum", "a tagged value"),
            ("option", "a value"),
        ];
        KINDS
            .iter()
            .find(|(p, _)| unexpected.starts_with(p))
            .map_or("a value", |(_, k)| k)
    }
    for marker in ["invalid type: ", "invalid value: "] {
        if let Some(at) = message.find(marker) {
            let rest = &message[at + marker.len()..];
            return match rest.rfind(", expected ") {
                Some(e) => format!("{}{marker}{}{}", &message[..at], kind(rest), &rest[e..]),
                None => format!("{}{marker}{} (not shown)", &message[..at], kind(rest)),
            };
        }
    }
    if let Some(at) = message.find("unknown variant `") {
        let rest = &message[at..];
        let expected = rest.find(", expected ").map_or("", |e| &rest[e..]);
        return format!("{}not one of the allowed values{expected}", &message[..at]);
    }
    if let Some(at) = message.find("unknown field `") {
        let rest = &message[at + "unknown field `".len()..];
        if let Some(end) = rest.find('`') {
            return format!(
                "{}unknown field {}{}",
                &message[..at],
                frontmatter::shown_key(&rest[..end]),
                &rest[end + 1..]
            );
        }
    }
    message.to_owned()
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
    if split.yaml.len() > MAX_FRONTMATTER_BYTES {
        return Err(ManifestError::TooLarge {
            path: path.to_owned(),
            what: "the frontmatter",
            limit: MAX_FRONTMATTER_BYTES,
        });
    }
    frontmatter::check_events(split.yaml, split.yaml_first_line).map_err(|e| {
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
    // Defence in depth for the duplicate-key rule: the parser serde reads
    // with refuses a repeated mapping key itself; should it ever see keys
    // the event check did not, its verdict stands.
    if let Err(e) = serde_norway::from_str::<serde_norway::Value>(yaml)
        && e.to_string().contains("duplicate entry")
    {
        return Err(ManifestError::Syntax {
            path: path.to_owned(),
            line: e.location().map(|l| l.line() + split.yaml_first_line - 1),
            message: "a key appears twice in one mapping (as YAML parsers read it); quote the keys of this mapping".into(),
        });
    }
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
            message: without_values(&message),
        }
    })?;
    Ok((value, split.body.to_owned()))
}

/// Reads a manifest: at most [`MAX_FILE_BYTES`], UTF-8 (a leading
/// byte-order mark is dropped; anything else that is not UTF-8 is an error
/// with its line and column).
pub(crate) fn read(path: &Path) -> Result<String, ManifestError> {
    let io = |source| ManifestError::Io {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(ManifestError::TooLarge {
            path: path.to_owned(),
            what: "the file",
            limit: MAX_FILE_BYTES,
        });
    }
    decode(path, bytes)
}

/// UTF-8 text of a manifest file, or an error placing the first bad byte.
pub(crate) fn decode(path: &Path, mut bytes: Vec<u8>) -> Result<String, ManifestError> {
    let syntax = |line: usize, message: String| ManifestError::Syntax {
        path: path.to_owned(),
        line: Some(line),
        message,
    };
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Err(syntax(
            1,
            "the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8".into(),
        ));
    }
    // Editors on Windows start UTF-8 files with a byte-order mark; it is
    // not part of the text.
    if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
        bytes.drain(..3);
    }
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.split(|&b| b == b'\n').count();
        let line_start = good.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        // Columns count characters; everything before the bad byte is UTF-8.
        let column = String::from_utf8_lossy(&good[line_start..]).chars().count() + 1;
        syntax(
            line,
            format!("column {column}: this byte is not UTF-8 text (a manifest is UTF-8; was the file saved in another encoding?)"),
        )
    })
}

/// A repo after merging, with every field present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repo {
    /// The upstream URL.
    pub url: String,
    /// The push key.
    pub key: RepoKey,
    /// The pinned SSH host key as written; `None`: the operator's
    /// `~/.ssh/known_hosts` is consulted when the bottle is planned.
    pub host_key: Option<String>,
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

    /// Files in the manifest folders that are never read because of their
    /// name (`MyAgent.md`, `dev.yaml`), each with a warning naming it.
    /// Hidden files and editor backups (`~`, `.swp`) are left alone.
    #[must_use]
    pub fn misnamed_files(&self) -> Vec<String> {
        let mut out = Vec::new();
        for dir in [
            self.paths.bottles_dir(),
            self.paths.home_agents_dir(),
            self.paths.cwd_agents_dir(),
        ] {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut names: Vec<(String, PathBuf)> = entries
                .flatten()
                .filter(|e| e.path().is_file())
                .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
                .filter(|(n, _)| {
                    !n.starts_with('.')
                        && !n.ends_with('~')
                        && !Path::new(n)
                            .extension()
                            .is_some_and(|e| e.eq_ignore_ascii_case("swp"))
                        && !manifest_file_name(n)
                })
                .collect();
            names.sort();
            for (name, path) in names {
                let lower = name.to_ascii_lowercase();
                let hint = if manifest_file_name(&lower) {
                    format!(" (rename it to {lower})")
                } else {
                    String::new()
                };
                out.push(format!(
                    "{} is never read: manifest file names match [a-z][a-z0-9-]*.md{hint}",
                    path.display()
                ));
            }
        }
        out
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
                near: [self.paths.cwd_agents_dir(), self.paths.home_agents_dir()]
                    .iter()
                    .flat_map(|d| case_variants(d, name))
                    .collect(),
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
                near,
            } => ManifestError::Invalid {
                path: agent.file.clone(),
                key: "bottle".into(),
                message: format!(
                    "no bottle named `{name}` (looked for {}){}",
                    list_paths(&searched),
                    near_misses(&name, &near)
                ),
            },
            ManifestError::BadName { kind: "bottle", .. } => ManifestError::Invalid {
                path: agent.file.clone(),
                key: "bottle".into(),
                message: "not a valid bottle name: names match [a-z][a-z0-9-]*".into(),
            },
            other => other,
        })?;
        let git_user = bottle.git_user.overlay(&agent.git_user);
        let mut warnings: Vec<String> = self.trust_warning().into_iter().collect();
        warnings.extend(self.misnamed_files());
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
        let prompt = body.trim_start_matches(['\r', '\n']).to_owned();
        if prompt.len() > MAX_PROMPT_BYTES {
            return Err(ManifestError::TooLarge {
                path: file,
                what: "the prompt (the body after the frontmatter)",
                limit: MAX_PROMPT_BYTES,
            });
        }
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
            prompt,
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
        if !path.is_file() {
            return Err(ManifestError::NotFound {
                kind: "bottle",
                name: name.to_owned(),
                searched: vec![path],
                near: case_variants(&self.paths.bottles_dir(), name),
            });
        }
        // The trust boundary is where the file really is: a link (of the
        // file or of `bottles/`) out of `~/.bot-bottle` would let whatever
        // owns the target, a cloned repository say, decide where
        // credentials go.
        let root = self.paths.config_dir();
        let io = |source| ManifestError::Io {
            path: path.clone(),
            source,
        };
        let target = path.canonicalize().map_err(io)?;
        let real_root = root.canonicalize().map_err(io)?;
        if !target.starts_with(&real_root) {
            return Err(ManifestError::OutsideConfig { path, target, root });
        }
        Ok(path)
    }

    /// Reads the chain of bottle layers, `name` first.
    pub fn load_chain(&self, name: &str) -> Result<Vec<(PathBuf, BottleLayer)>, ManifestError> {
        let mut chain: Vec<(PathBuf, BottleLayer)> = Vec::new();
        let mut names = vec![name.to_owned()];
        let mut next = Some(name.to_owned());
        while let Some(current) = next.take() {
            let file = match self.bottle_file(&current) {
                Ok(f) => f,
                Err(ManifestError::NotFound {
                    name,
                    searched,
                    near,
                    ..
                }) if !chain.is_empty() => {
                    let (child, _) = &chain[chain.len() - 1];
                    return Err(ManifestError::Invalid {
                        path: child.clone(),
                        key: "extends".into(),
                        message: format!(
                            "no bottle named `{name}` (looked for {}){}",
                            list_paths(&searched),
                            near_misses(&name, &near)
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
                        message: "not a bottle name ([a-z][a-z0-9-]*)".into(),
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
        template: layer::DEFAULT_TEMPLATE.into(),
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
        let repo = Repo {
            url: r.url.clone().ok_or_else(|| missing("url"))?,
            key: r.key.clone().ok_or_else(|| missing("key"))?,
            host_key: r.host_key.clone(),
        };
        // Each field may come from another file; judged together here.
        let url = ssh::GitUrl::parse(&repo.url).map_err(|m| ManifestError::Invalid {
            path: head.clone(),
            key: format!("git-gate.repos.{repo_name}.url"),
            message: m,
        })?;
        if let Some(hk) = &repo.host_key {
            ssh::parse_host_key(hk, &url).map_err(|m| ManifestError::Invalid {
                path: head.clone(),
                key: format!("git-gate.repos.{repo_name}.host_key"),
                message: m,
            })?;
        }
        if repo.key.provider == KeyProvider::Gitea {
            url.owner_repo().map_err(|m| ManifestError::Invalid {
                path: head.clone(),
                key: format!("git-gate.repos.{repo_name}.url"),
                message: m,
            })?;
        }
        repos.insert(repo_name.clone(), repo);
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

/// Checks one bottle file on its own. Messages name the key, never a value
/// that could be a secret.
// A flat list of independent key checks.
#[allow(clippy::too_many_lines)]
fn check_layer(file: &Path, layer: &BottleLayer) -> Result<(), ManifestError> {
    if let Some(parent) = &layer.extends
        && !valid_name(parent)
    {
        return Err(invalid(
            file,
            "extends",
            "not a bottle name ([a-z][a-z0-9-]*)",
        ));
    }
    for (key, value) in layer.env.iter().flatten() {
        if !crate::env::valid_env_name(key) {
            return Err(invalid(
                file,
                format!("env.{key}"),
                "is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)",
            ));
        }
        crate::env::EnvSource::parse(value).map_err(|m| invalid(file, format!("env.{key}"), m))?;
    }
    if let Some(p) = &layer.agent_provider {
        if !valid_name(&p.template) {
            return Err(invalid(
                file,
                "agent_provider.template",
                "not a provider name ([a-z][a-z0-9-]*)",
            ));
        }
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
            crate::env::SecretRef::parse(token)
                .map_err(|m| invalid(file, "agent_provider.auth_token", m))?;
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
                "is not a repo name ([a-z][a-z0-9-]*)",
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
                    let Some(token) = &key.forge_token_env else {
                        return Err(invalid(
                            file,
                            format!("{k}.forge_token_env"),
                            "required for provider `gitea`: the host variable holding the forge API token",
                        ));
                    };
                    crate::env::SecretRef::parse(token)
                        .map_err(|m| invalid(file, format!("{k}.forge_token_env"), m))?;
                    if let Some(api) = &key.api_url {
                        crate::forge::check_api_url(api)
                            .map_err(|m| invalid(file, format!("{k}.api_url"), m))?;
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
        if let Some(url) = &repo.url {
            ssh::GitUrl::parse(url)
                .map_err(|m| invalid(file, format!("git-gate.repos.{name}.url"), m))?;
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
