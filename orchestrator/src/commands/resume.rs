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
    let mut plan = super::start::plan_for(paths, &meta.agent, &opts)?;
    let rebuild = apply_supervise_approvals(&mut plan)?;
    eprint!("{plan}");
    if rebuild {
        eprintln!(
            "  rebuilding the agent from the Dockerfile approved in `bot-bottle supervise` (not the committed image)"
        );
    } else {
        eprintln!(
            "  resuming from image: {}",
            meta.image
                .as_deref()
                .unwrap_or("(none committed; rebuilding)")
        );
    }
    if !args.yes {
        if !crate::tty::interactive() {
            anyhow::bail!("no terminal to confirm on: pass --yes to resume without asking");
        }
        if !crate::tty::confirm("resume this bottle?")? {
            return Ok(ExitCode::from(1));
        }
    }
    let status = super::start::launch(
        &*backend,
        &plan,
        &RunRequest {
            command: (!args.command.is_empty()).then(|| args.command.clone()),
            // An approved capability-block Dockerfile replaces the
            // committed image: the agent is rebuilt from it.
            image: if rebuild { None } else { meta.image.clone() },
            resume: true,
            tty: crate::tty::interactive(),
            preserve_state: true,
        },
    );
    if rebuild {
        // Used once: the image built from it is what `commit` snapshots
        // from now on, so a later resume boots that commit again.
        let approved = crate::supervise::apply::approved_dockerfile(&plan.state);
        let _ = std::fs::rename(&approved, approved.with_extension("applied"));
    }
    status
}

/// Applies what `bot-bottle supervise` approved while the bottle was not
/// running (or kept for later): the approved routes.yaml replaces the
/// rendered one, and an approved Dockerfile the provider's (the returned
/// `true`: rebuild rather than boot the committed image; used for this
/// one resume, then kept as `Dockerfile.applied`). An approved
/// routes.yaml that no longer parses stops the resume (exit 64).
fn apply_supervise_approvals(plan: &mut crate::plan::LaunchPlan) -> anyhow::Result<bool> {
    use crate::supervise::apply::{approved_dockerfile, approved_routes};
    let routes = approved_routes(&plan.state);
    if let Ok(text) = std::fs::read_to_string(&routes) {
        bb_egress::policy::RoutesConfig::from_yaml(&text).map_err(|e| {
            super::usage(format!(
                "{}: the routes approved in `bot-bottle supervise` no longer load: {e}",
                routes.display()
            ))
        })?;
        eprintln!(
            "  routes: the ones approved in `bot-bottle supervise` ({})",
            routes.display()
        );
        plan.routes_yaml = text;
    }
    let dockerfile = approved_dockerfile(&plan.state);
    if dockerfile.is_file() {
        plan.image.dockerfile = crate::provider::DockerfileSource::File(dockerfile);
        return Ok(true);
    }
    Ok(false)
}
