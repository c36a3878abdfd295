//! `cleanup`: removes what this operator's bottles left behind when the
//! `bot-bottle` that launched them is gone (killed, crashed, terminal
//! closed), running containers included, after a preview and a y/N; with
//! `--snapshots`, every committed snapshot too.
//!
//! Gitea deploy keys such a launch minted are revoked first, with the forge
//! token from the source the bottle's manifest names; each key's record
//! keeps its state folder until the key is revoked. Keys are revoked even
//! when the container engine does not answer (they are credentials).

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
    let listed = backend.orphans().and_then(|mut orphans| {
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
        Ok(orphans)
    });
    let keys = crate::forge::orphaned(paths);
    let (orphans, engine_error) = match listed {
        Ok(o) => (o, None),
        // Nothing of the engine can be listed; deploy keys still can be
        // revoked.
        Err(e) if !keys.is_empty() => (Vec::new(), Some(e)),
        Err(e) => return Err(e),
    };
    if orphans.is_empty() && keys.is_empty() {
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
    for (slug, k) in &keys {
        println!(
            "  deploy key {} of {}/{} at {}  (bottle {slug})",
            k.id, k.owner, k.name, k.api_url
        );
    }
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
    let (revoked, not_revoked) = revoke_keys(paths, &keys);
    // The state folder of a key not revoked stays (its record is in it).
    let removed = backend.remove(&orphans);
    for f in &not_revoked {
        eprintln!("not revoked: {f}");
    }
    if !not_revoked.is_empty() {
        eprintln!(
            "each key not revoked stays recorded in its bottle's state folder: fix the cause and run `bot-bottle cleanup` again, or delete it in the repository's settings (Deploy keys)"
        );
    }
    println!(
        "removed {} item(s){}",
        orphans.len(),
        if keys.is_empty() {
            String::new()
        } else {
            format!(", revoked {revoked} of {} deploy key(s)", keys.len())
        }
    );
    removed?;
    if let Some(e) = engine_error {
        return Err(e.context("the bottles' containers and networks could not be listed"));
    }
    Ok(if not_revoked.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(super::exit::RUNTIME)
    })
}

/// Revokes the recorded keys of every bottle in `keys`; returns how many
/// went and what failed.
fn revoke_keys(
    paths: &Paths,
    keys: &[(String, crate::forge::RecordedKey)],
) -> (usize, Vec<String>) {
    let mut slugs: Vec<&str> = keys.iter().map(|(s, _)| s.as_str()).collect();
    slugs.dedup();
    // The forge's TLS trusts what the launch trusted.
    let extra = std::env::var_os(crate::env_vars::BOT_BOTTLE_UPSTREAM_CA)
        .filter(|s| !s.is_empty())
        .map(std::path::PathBuf::from);
    let host = |name: &str| std::env::var(name).ok();
    let mut tty = crate::env::TtyPrompter;
    let mut none = crate::env::NoTty;
    let prompter: &mut dyn crate::env::Prompter = if crate::tty::interactive() {
        &mut tty
    } else {
        &mut none
    };
    let mut revoked = 0;
    let mut failed = Vec::new();
    for slug in slugs {
        match crate::forge::revoke_recorded(paths, slug, &host, prompter, extra.as_deref()) {
            Ok(n) => revoked += n,
            Err(errors) => failed.extend(errors),
        }
    }
    (revoked, failed)
}
