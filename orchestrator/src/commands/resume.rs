//! `resume SLUG`: boots a committed bottle again.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::backend::RunRequest;
use crate::paths::Paths;

/// `resume` flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bottle (see `list active` or ~/.bot-bottle/state).
    slug: String,
    /// Skip the confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Container backend.
    #[arg(long)]
    backend: Option<String>,
    /// Run this in the agent instead of the provider's resume command.
    #[arg(last = true)]
    command: Vec<String>,
}

pub(super) fn run(paths: &Paths, args: &Args) -> anyhow::Result<ExitCode> {
    // A backend this build does not know is a usage error (64), before
    // anything else is read.
    let backend = super::select_backend(args.backend.as_deref(), paths)?;
    let meta = crate::backend::Meta::read(paths, &args.slug).with_context(|| {
        format!(
            "no resumable bottle `{}`: `bot-bottle commit {}` records one",
            args.slug, args.slug
        )
    })?;
    let opts = crate::plan::PlanOptions {
        label: Some(meta.label.clone()),
        color: Some(meta.color.clone()),
        workspace: None,
        slug: Some(meta.slug.clone()),
    };
    let plan = super::start::plan_for(paths, &meta.agent, &opts)?;
    eprint!("{plan}");
    eprintln!(
        "  resuming from image: {}",
        meta.image
            .as_deref()
            .unwrap_or("(none committed; rebuilding)")
    );
    if !args.yes {
        if !crate::tty::interactive() {
            anyhow::bail!("no terminal to confirm on: pass --yes to resume without asking");
        }
        if !crate::tty::confirm("resume this bottle?")? {
            return Ok(ExitCode::from(1));
        }
    }
    super::start::launch(
        &*backend,
        &plan,
        &RunRequest {
            command: (!args.command.is_empty()).then(|| args.command.clone()),
            image: meta.image.clone(),
            resume: true,
            tty: crate::tty::interactive(),
            preserve_state: true,
        },
    )
}
