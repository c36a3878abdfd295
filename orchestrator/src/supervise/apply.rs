//! Applying an approved proposal to its bottle.
//!
//! - A routes change (`allow`, `egress-block`) is parsed again with
//!   bb-egress's own parser, then written to the bottle's routes.yaml. When
//!   the bottle runs, egress is told to reload ([`Backend::reload_routes`]);
//!   if it refuses (or does not answer), the old file is put back, the old
//!   routes keep running, and the proposal is answered `failed` with
//!   egress's reason. The approved file is also kept as
//!   `supervise/routes.yaml`, which `resume` uses instead of the routes the
//!   manifests render, so an approval outlives the run it was made in and
//!   applies to a bottle that was not running.
//! - A `capability-block` Dockerfile is kept as
//!   `supervise/image/Dockerfile`; the next `resume` rebuilds the agent
//!   from it.
//! - `gitleaks-allow` needs nothing applied: the answer is what git-gate
//!   waits for.
//!
//! The routes.yaml in the state folder is bind-mounted into the bundle as
//! a single file, and a bind mount holds the inode: a new file renamed
//! over it would never be seen by egress. So that one file is rewritten in
//! place (truncate, one write, fsync) and only then is egress signalled;
//! egress reads it only at start and on that signal, so it never reads a
//! half-written file. Should bot-bottle die mid-write, the next reload or
//! start fails closed on a file that does not parse. The kept copy under
//! `supervise/` is written whole to a temporary file and renamed.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use bb_supervise::queue::Tool;

use super::Bottle;
use crate::backend::{Backend, Reload};
use crate::plan::StateLayout;

/// What applying an approval did; its text is the note the agent reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The routes are live: egress reloaded them.
    Reloaded,
    /// The bottle is not running; the routes apply when it is resumed.
    NextResume,
    /// The Dockerfile is kept; the next `resume` rebuilds the agent from it.
    Rebuild,
    /// A `gitleaks-allow`: the push may go on.
    PushMayProceed,
}

impl fmt::Display for Applied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Reloaded => "approved: egress reloaded, the new routes are live now",
            Self::NextResume => {
                "approved: the bottle is not running; the new routes apply when it is resumed"
            }
            Self::Rebuild => {
                "approved: recorded; the agent image is rebuilt from this Dockerfile the next time the bottle is resumed (`bot-bottle commit` then `bot-bottle resume`); the running agent does not change"
            }
            Self::PushMayProceed => "approved: the push may go on",
        })
    }
}

/// The kept approved routes.yaml, which `resume` uses.
#[must_use]
pub fn approved_routes(state: &StateLayout) -> PathBuf {
    state.root.join("supervise").join("routes.yaml")
}

/// The kept approved Dockerfile, which `resume` builds from.
#[must_use]
pub fn approved_dockerfile(state: &StateLayout) -> PathBuf {
    state
        .root
        .join("supervise")
        .join("image")
        .join("Dockerfile")
}

/// Applies an approved `file` of `tool` to `bottle`. The error is the
/// reason the proposal failed (nothing changed).
pub fn apply(
    backend: &dyn Backend,
    bottle: &Bottle,
    tool: Tool,
    file: &str,
) -> Result<Applied, String> {
    match tool {
        Tool::Allow | Tool::EgressBlock => apply_routes(backend, bottle, file),
        Tool::CapabilityBlock => {
            write_atomic(&approved_dockerfile(&bottle.state), file.as_bytes())
                .map_err(|e| format!("could not keep the approved Dockerfile: {e}"))?;
            Ok(Applied::Rebuild)
        }
        _ => Ok(Applied::PushMayProceed),
    }
}

fn apply_routes(backend: &dyn Backend, bottle: &Bottle, file: &str) -> Result<Applied, String> {
    bb_egress::policy::RoutesConfig::from_yaml(file)
        .map_err(|e| format!("the approved routes.yaml is not valid, nothing changed: {e}"))?;
    let live = bottle.state.routes_file();
    let old = std::fs::read(&live).ok();
    write_in_place(&live, file.as_bytes())
        .map_err(|e| format!("could not write {}: {e}", live.display()))?;
    let restore = |why: String| {
        let put_back = match &old {
            Some(bytes) => write_in_place(&live, bytes),
            None => std::fs::remove_file(&live),
        };
        match put_back {
            Ok(()) => why,
            Err(e) => format!(
                "{why}; putting the old {} back failed too: {e}",
                live.display()
            ),
        }
    };
    let applied = match backend.reload_routes(&bottle.slug) {
        Ok(Reload::Reloaded) => Applied::Reloaded,
        Ok(Reload::NotRunning) => Applied::NextResume,
        Ok(Reload::Refused(why)) => return Err(restore(why)),
        Err(e) => return Err(restore(format!("could not reload egress: {e:#}"))),
    };
    write_atomic(&approved_routes(&bottle.state), file.as_bytes()).map_err(|e| {
        format!(
            "the routes are applied but could not be kept for `resume` in {}: {e}",
            approved_routes(&bottle.state).display()
        )
    })?;
    Ok(applied)
}

/// Rewrites `path` in place (same inode), mode 0600 when created.
fn write_in_place(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Writes `path` whole through a temporary file and a rename (0600; the
/// folders 0700).
fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".approved-")
        .tempfile_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}
