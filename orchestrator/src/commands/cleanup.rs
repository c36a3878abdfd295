//! `cleanup`: removes what this operator's bottles left behind when the
//! `bot-bottle` that launched them is gone (killed, crashed, terminal
//! closed), running containers included, after a preview and a y/N; with
//! `--snapshots`, every committed snapshot too.

use std::process::ExitCode;

use crate::paths::Paths;

/// `cleanup` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Remove without asking.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Also remove every committed snapshot (image and preserved state).
    #[arg(long)]
    snapshots: bool,
    /// Container backend.
    #[arg(long)]
    backend: Option<String>,
}

pub(super) fn run(paths: &Paths, args: &Args) -> anyhow::Result<ExitCode> {
    let backend = super::select_backend(args.backend.as_deref(), paths)?;
    let mut orphans = backend.orphans()?;
    if args.snapshots {
        for s in backend.snapshots()? {
            match backend.snapshot_resources(&s.slug) {
                Ok(rs) => {
                    for r in rs {
                        if !orphans.contains(&r) {
                            orphans.push(r);
                        }
                    }
                }
                Err(e) => eprintln!("keeping snapshot {}: {e}", s.slug),
            }
        }
    }
    if orphans.is_empty() {
        println!("nothing to clean up");
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "left behind by bottles whose bot-bottle is gone{}:",
        if args.snapshots {
            ", and snapshots"
        } else {
            ""
        }
    );
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
