//! `commit [SLUG]`: snapshots a running bottle's agent for `resume`.

use std::process::ExitCode;

use crate::paths::Paths;

/// `commit` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bottle (default: the only active one).
    slug: Option<String>,
    /// Container backend.
    #[arg(long)]
    backend: Option<String>,
}

pub(super) fn run(paths: &Paths, args: &Args) -> anyhow::Result<ExitCode> {
    let backend = super::select_backend(args.backend.as_deref(), paths)?;
    let slug = if let Some(s) = &args.slug {
        s.clone()
    } else {
        let active = backend.list_active()?;
        match active.as_slice() {
            [one] => one.slug.clone(),
            [] => anyhow::bail!("no active bottle to commit"),
            many => anyhow::bail!(
                "several bottles are active; name one: {}",
                many.iter()
                    .map(|b| b.slug.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    };
    let image = backend.commit(&slug)?;
    println!("committed {slug} to {image}; `bot-bottle resume {slug}` boots it");
    Ok(ExitCode::SUCCESS)
}
