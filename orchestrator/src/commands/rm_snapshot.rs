//! `rm-snapshot SLUG...`: removes committed snapshots (the image and the
//! preserved state `resume` reads), after a preview and a y/N.

use std::process::ExitCode;

use crate::paths::Paths;

/// `rm-snapshot` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The snapshots (see `bot-bottle list snapshots`).
    #[arg(required = true)]
    slugs: Vec<String>,
    /// Remove without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Container backend.
    #[arg(long)]
    backend: Option<String>,
}

pub(super) fn run(paths: &Paths, args: &Args) -> anyhow::Result<ExitCode> {
    let backend = super::select_backend(args.backend.as_deref(), paths)?;
    let mut resources = Vec::new();
    for slug in &args.slugs {
        resources.extend(backend.snapshot_resources(slug)?);
    }
    println!("removing:");
    for r in &resources {
        println!("  {:<9} {}  (bottle {})", r.kind, r.name, r.slug);
    }
    if !args.yes {
        if !crate::tty::interactive() {
            anyhow::bail!("no terminal to confirm on: pass --yes to remove these");
        }
        if !crate::tty::confirm("remove them?")? {
            println!("nothing removed");
            return Ok(ExitCode::SUCCESS);
        }
    }
    backend.remove(&resources)?;
    println!("removed {} item(s)", resources.len());
    Ok(ExitCode::SUCCESS)
}
