//! `reap SLUG` (hidden): the detached end of a launch's teardown.
//!
//! Once the agent of a bottle has stopped, `start` and `resume` return its
//! exit status at once and leave the removal of the bundle, the network
//! holder, the networks and the state folder to this command, started in a
//! process group of its own with stdio closed and recorded as the bottle's
//! owner. Whatever it cannot remove carries a dead owner afterwards, so
//! `cleanup` offers it.

use std::process::ExitCode;

use crate::backend::docker::{Docker, Parts};
use crate::backend::{Meta, Owner};
use crate::paths::Paths;

/// `reap` arguments (written by the launch, not by people).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bottle.
    slug: String,
    /// A container of the bottle to remove.
    #[arg(long = "container")]
    containers: Vec<String>,
    /// A network of the bottle to remove.
    #[arg(long = "network")]
    networks: Vec<String>,
    /// Remove the bottle's state folder too (unless it was preserved).
    #[arg(long)]
    state: bool,
}

/// Whether `slug` can be a bottle's slug (what `plan` makes of a label).
fn valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && !slug.starts_with('-')
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

pub(super) fn run(paths: &Paths, args: Args) -> anyhow::Result<ExitCode> {
    // Only ever a bottle's own parts: its slug names its state folder, and
    // every container and network of it is `bb-<slug>-…`.
    if !valid_slug(&args.slug) {
        return Err(super::usage(format!(
            "`{}` is not a bottle slug",
            args.slug
        )));
    }
    let prefix = format!("bb-{}-", args.slug);
    if let Some(other) = args
        .containers
        .iter()
        .chain(&args.networks)
        .find(|n| !n.starts_with(&prefix))
    {
        return Err(super::usage(format!(
            "`{other}` is not a part of bottle {}",
            args.slug
        )));
    }
    // A Ctrl-C or hangup of the terminal it was started from must not stop
    // a teardown half-way.
    let ignored = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGHUP] {
        let _ = signal_hook::flag::register(sig, std::sync::Arc::clone(&ignored));
    }
    let docker = Docker::new(paths.clone());
    let failed = docker.remove_parts(&Parts {
        slug: args.slug.clone(),
        containers: args.containers,
        networks: args.networks,
        state: args.state,
    });
    // A preserved bottle stays, owned by nobody now.
    if let Ok(mut meta) = Meta::read(paths, &args.slug)
        && meta.owner.is_some()
        && meta.owner == Owner::current()
    {
        meta.owner = None;
        meta.write(paths)?;
    }
    for f in &failed {
        eprintln!("bot-bottle reap: {f}");
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_slugs_pass() {
        assert!(super::valid_slug("deb-1a2b"));
        assert!(super::valid_slug("1abc-x"));
        for bad in ["", "-x", "../x", "a/b", "A", "a b", "."] {
            assert!(!super::valid_slug(bad), "{bad}");
        }
    }
}
