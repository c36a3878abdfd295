//! `cleanup`: removes what bottles that are gone left behind, after a
//! preview and a y/N.

use std::process::ExitCode;

use crate::paths::Paths;

/// `cleanup` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Container backend.
    #[arg(long)]
    backend: Option<String>,
}

pub(super) fn run(paths: &Paths, args: &Args) -> anyhow::Result<ExitCode> {
    let backend = crate::backend::select(args.backend.as_deref(), paths)?;
    let orphans = backend.orphans()?;
    if orphans.is_empty() {
        println!("nothing to clean up");
        return Ok(ExitCode::SUCCESS);
    }
    println!("left behind by bottles that are no longer running:");
    for r in &orphans {
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
    backend.remove(&orphans)?;
    println!("removed {} item(s)", orphans.len());
    Ok(ExitCode::SUCCESS)
}
