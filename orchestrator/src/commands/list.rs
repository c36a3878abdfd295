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

/// Prints this operator's bottles: slug, agent, container state, and
/// whether the bot-bottle that launched it is still there.
pub(super) fn active(paths: &Paths, backend: Option<&str>) -> anyhow::Result<ExitCode> {
    let backend = super::select_backend(backend, paths)?;
    let bottles = backend.list_active()?;
    if bottles.is_empty() {
        println!("no active bottles ({} backend)", backend.name());
    }
    for b in bottles {
        let owner = match &b.owner {
            Some(o) if o.alive() => format!("owner {}", o.pid),
            Some(o) => format!("owner {} gone (`bot-bottle cleanup` removes it)", o.pid),
            None => "no owner recorded (`bot-bottle cleanup` removes it)".to_owned(),
        };
        println!("{}\t{}\t{}\t{owner}", b.slug, b.agent, b.status);
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints committed snapshots: slug, agent, image, preserved state.
pub(super) fn snapshots(paths: &Paths, backend: Option<&str>) -> anyhow::Result<ExitCode> {
    let backend = super::select_backend(backend, paths)?;
    let snaps = backend.snapshots()?;
    if snaps.is_empty() {
        println!("no snapshots (`bot-bottle commit SLUG` makes one)");
    }
    for s in snaps {
        println!(
            "{}\t{}\t{}\t{}",
            s.slug,
            if s.agent.is_empty() { "?" } else { &s.agent },
            s.image.as_deref().unwrap_or("(image gone)"),
            s.state
                .as_ref()
                .map_or_else(|| "(state gone)".to_owned(), |p| p.display().to_string())
        );
    }
    Ok(ExitCode::SUCCESS)
}
