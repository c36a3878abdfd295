//! The operator TUI.

use crate::backend::Backend;
use crate::paths::Paths;

/// Runs the TUI until the operator quits.
pub fn run(_paths: &Paths, _backend: &dyn Backend) -> anyhow::Result<()> {
    anyhow::bail!("todo")
}
