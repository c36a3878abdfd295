//! Container backends. The host picks one (`--backend`, then
//! `BOT_BOTTLE_BACKEND`, then the default); a manifest never can.

pub mod docker;
pub mod limits;
pub mod owner;

pub use limits::Limits;
pub use owner::Owner;

use std::path::PathBuf;

use crate::plan::{LaunchPlan, Secrets};

/// What to run in the agent once the bottle is up.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// `-- CMD ARGS…`: run this instead of the provider CLI.
    pub command: Option<Vec<String>>,
    /// Boot from this committed image (`resume`) instead of building.
    pub image: Option<String>,
    /// Run the provider's resume command.
    pub resume: bool,
    /// Give the agent a TTY.
    pub tty: bool,
    /// Keep the state folder after teardown.
    pub preserve_state: bool,
}

/// A bottle whose agent container exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveBottle {
    /// Its slug.
    pub slug: String,
    /// Its agent container's state (`running`, `exited`…).
    pub status: String,
    /// The agent name, when recorded.
    pub agent: String,
    /// The `bot-bottle` process that launched it, when recorded.
    pub owner: Option<Owner>,
}

impl ActiveBottle {
    /// Whether the process that launched it is still there.
    #[must_use]
    pub fn owner_alive(&self) -> bool {
        self.owner.as_ref().is_some_and(Owner::alive)
    }
}

/// A committed snapshot: an image and the preserved state `resume` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The bottle.
    pub slug: String,
    /// The committed image, when it still exists.
    pub image: Option<String>,
    /// The preserved state folder, when it still exists.
    pub state: Option<PathBuf>,
    /// The agent it ran.
    pub agent: String,
}

/// Something a backend created, found by its label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// `container`, `network` or `state`.
    pub kind: &'static str,
    /// Its name or path.
    pub name: String,
    /// The bottle it belongs to.
    pub slug: String,
}

/// What asking a bottle's egress to reload its routes came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// No running bundle for that bottle (of this operator).
    NotRunning,
    /// Egress loaded the new routes.
    Reloaded,
    /// Egress refused them (or never said); the old routes still run.
    Refused(String),
}

/// One line of `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Whether it is fine.
    pub ok: bool,
    /// What was found, or exactly what to fix.
    pub detail: String,
}

/// A container backend.
pub trait Backend {
    /// Its name (`docker`).
    fn name(&self) -> &'static str;
    /// Runs a bottle to completion and tears it down; returns the agent's
    /// exit status.
    fn launch(&self, plan: &LaunchPlan, secrets: &Secrets, req: &RunRequest)
    -> anyhow::Result<i32>;
    /// Bottles of this operator (this state root) whose agent exists.
    fn list_active(&self) -> anyhow::Result<Vec<ActiveBottle>>;
    /// Containers, networks and state folders of this operator's bottles
    /// whose launching process is gone (running ones included).
    fn orphans(&self) -> anyhow::Result<Vec<Resource>>;
    /// Removes what [`Backend::orphans`] or [`Backend::snapshot_resources`]
    /// found.
    fn remove(&self, resources: &[Resource]) -> anyhow::Result<()>;
    /// Snapshots a bottle's agent to an image; returns the image name.
    fn commit(&self, slug: &str) -> anyhow::Result<String>;
    /// This operator's committed snapshots.
    fn snapshots(&self) -> anyhow::Result<Vec<Snapshot>>;
    /// What removing the snapshot of `slug` removes (image, state), or an
    /// error when its bottle is still running.
    fn snapshot_resources(&self, slug: &str) -> anyhow::Result<Vec<Resource>>;
    /// Checks the engine and isolation.
    fn doctor(&self) -> Vec<Check>;
    /// Tells a running bottle's egress to load its routes.yaml again
    /// (already written) and reports whether it took. Never waits on a
    /// bottle that is not running: that is [`Reload::NotRunning`].
    fn reload_routes(&self, slug: &str) -> anyhow::Result<Reload>;
}

/// Backends this build knows, and whether each is built in.
pub const KNOWN: &[(&str, bool)] = &[
    ("docker", true),
    ("smolmachines", false),
    ("macos-container", false),
];

/// Picks the backend: `flag`, then `BOT_BOTTLE_BACKEND`, then `docker`.
pub fn select(flag: Option<&str>, paths: &crate::paths::Paths) -> anyhow::Result<Box<dyn Backend>> {
    let from_env = std::env::var(crate::env_vars::BOT_BOTTLE_BACKEND)
        .ok()
        .filter(|s| !s.is_empty());
    let (name, origin) = match (flag, from_env.as_deref()) {
        (Some(f), _) => (f.to_owned(), "--backend"),
        (None, Some(e)) => (e.to_owned(), crate::env_vars::BOT_BOTTLE_BACKEND),
        (None, None) => ("docker".to_owned(), "the default"),
    };
    match KNOWN.iter().find(|(n, _)| *n == name) {
        Some(("docker", _)) => Ok(Box::new(docker::Docker::new(paths.clone()))),
        Some((n, _)) => anyhow::bail!(
            "backend `{n}` (from {origin}) is not built into this bot-bottle; use --backend docker"
        ),
        None => anyhow::bail!(
            "unknown backend `{name}` (from {origin}): expected one of {}",
            KNOWN.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// The state folder of `slug`.
#[must_use]
pub fn state_dir(paths: &crate::paths::Paths, slug: &str) -> PathBuf {
    paths.state_root().join(slug)
}

/// What a bottle's state folder records for `list active`, `commit` and
/// `resume` (`bottle.json`, 0600). No secret is ever in it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// The bottle.
    pub slug: String,
    /// The agent it runs.
    pub agent: String,
    /// Its label.
    pub label: String,
    /// Its colour.
    pub color: String,
    /// The committed image, once `commit` ran.
    #[serde(default)]
    pub image: Option<String>,
    /// Keep the state folder at teardown (set by `commit`).
    #[serde(default)]
    pub preserve: bool,
    /// The `bot-bottle` process running the bottle, while one does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

impl Meta {
    /// Reads `bottle.json` of `slug`.
    pub fn read(paths: &crate::paths::Paths, slug: &str) -> anyhow::Result<Self> {
        let file = state_dir(paths, slug).join("bottle.json");
        let text = std::fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
    }

    /// Writes `bottle.json` (0600) of this bottle.
    pub fn write(&self, paths: &crate::paths::Paths) -> anyhow::Result<()> {
        let layout = crate::plan::StateLayout {
            root: state_dir(paths, &self.slug),
        };
        let text = serde_json::to_vec_pretty(self)?;
        layout.write_private(&layout.meta_file(), &text)?;
        Ok(())
    }
}
