//! `list available` and `list active`.

use std::process::ExitCode;

use crate::manifest::Loader;
use crate::paths::Paths;

/// Prints agent names without parsing their files.
pub(super) fn available(paths: &Paths) -> ExitCode {
    let loader = Loader::new(paths.clone());
    if let Some(w) = loader.trust_warning() {
        eprintln!("warning: {w}");
    }
    for w in loader.misnamed_files() {
        eprintln!("warning: {w}");
    }
    let agents = loader.available_agents();
    if agents.is_empty() {
        println!(
            "no agents yet: write one with `bot-bottle init` (agents live in {} and {})",
            paths.home_agents_dir().display(),
            paths.cwd_agents_dir().display()
        );
    }
    for a in agents {
        println!("{}\t{}", a.name, a.file.display());
    }
    ExitCode::SUCCESS
}

/// Prints running bottles.
pub(super) fn active(paths: &Paths, backend: Option<&str>) -> anyhow::Result<ExitCode> {
    let backend = super::select_backend(backend, paths)?;
    let bottles = backend.list_active()?;
    if bottles.is_empty() {
        println!("no active bottles ({} backend)", backend.name());
    }
    for b in bottles {
        println!("{}\t{}\t{}", b.slug, b.agent, b.status);
    }
    Ok(ExitCode::SUCCESS)
}
