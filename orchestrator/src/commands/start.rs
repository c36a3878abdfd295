//! `start [NAME]`: validate, print the preflight summary, confirm, launch.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::backend::RunRequest;
use crate::env::{NoTty, Prompter, TtyPrompter};
use crate::manifest::Loader;
use crate::paths::Paths;
use crate::plan::{LaunchPlan, PlanOptions};

/// `start` flags.
// Each bool is an independent command-line switch.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The agent (a picker asks when omitted on a terminal).
    name: Option<String>,
    /// Container backend (default: `BOT_BOTTLE_BACKEND`, then docker).
    #[arg(long)]
    backend: Option<String>,
    /// Copy the working directory into the agent's workspace.
    #[arg(long)]
    cwd: bool,
    /// Print the plan and check every host variable it reads, then stop;
    /// touches no container runtime (also `BOT_BOTTLE_DRY_RUN=1`).
    #[arg(long)]
    dry_run: bool,
    /// Skip the confirmation.
    #[arg(long, short = 'y')]
    yes: bool,
    /// The bottle's label (default: the agent's name).
    #[arg(long)]
    label: Option<String>,
    /// The label's colour (red, green, yellow, blue, magenta, cyan).
    #[arg(long)]
    color: Option<String>,
    /// Keep the state folder after the bottle exits.
    #[arg(long)]
    preserve_state: bool,
    /// Let the provider's remote control reach the agent (not supported yet).
    #[arg(long)]
    remote_control: bool,
    /// Run this in the agent instead of the provider CLI.
    #[arg(last = true)]
    command: Vec<String>,
}

/// Loads `name` and plans it.
pub(super) fn plan_for(
    paths: &Paths,
    name: &str,
    opts: &PlanOptions,
) -> anyhow::Result<LaunchPlan> {
    let loaded = Loader::new(paths.clone()).load(name)?;
    // The error stays a ProviderError (exit 64); the context names the file.
    let provider =
        crate::provider::find(paths, &loaded.bottle.provider.template).with_context(|| {
            format!(
                "{}: agent_provider.template",
                loaded.bottle.chain[0].display()
            )
        })?;
    Ok(LaunchPlan::new(paths, &loaded, &provider, opts)?)
}

/// `BOT_BOTTLE_DRY_RUN`: `1`/`true`/`yes` on, `0`/`false`/`no`/empty or
/// unset off, anything else a usage error (a typo must not launch).
fn dry_run_from_env() -> anyhow::Result<bool> {
    let Some(v) = std::env::var_os(crate::env_vars::BOT_BOTTLE_DRY_RUN) else {
        return Ok(false);
    };
    match v.to_str().map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        Some("1" | "true" | "yes") => Ok(true),
        Some("" | "0" | "false" | "no") => Ok(false),
        _ => Err(super::usage(format!(
            "{} must be 1 (dry run) or 0; it is something else",
            crate::env_vars::BOT_BOTTLE_DRY_RUN
        ))),
    }
}

fn host_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn pick_agent(paths: &Paths) -> anyhow::Result<String> {
    let agents = Loader::new(paths.clone()).available_agents();
    let names: Vec<&str> = agents.iter().map(|a| a.name.as_str()).collect();
    if !crate::tty::interactive() {
        return Err(super::usage(format!(
            "no agent named and no terminal to pick on: pass it, `bot-bottle start NAME` (available: {})",
            if names.is_empty() {
                "none; run `bot-bottle init`".to_owned()
            } else {
                names.join(", ")
            }
        )));
    }
    if names.is_empty() {
        return Err(super::usage("no agents yet: run `bot-bottle init`"));
    }
    for (i, n) in names.iter().enumerate() {
        eprintln!("  {}. {n}", i + 1);
    }
    let answer = crate::tty::ask("agent (number or name prefix)", names[0])?;
    if let Ok(i) = answer.parse::<usize>()
        && let Some(n) = names.get(i.wrapping_sub(1))
    {
        return Ok((*n).to_owned());
    }
    let matches: Vec<&&str> = names.iter().filter(|n| n.starts_with(&answer)).collect();
    match matches.as_slice() {
        [one] => Ok((**one).to_owned()),
        [] => Err(super::usage(format!("no agent matches `{answer}`"))),
        _ => Err(super::usage(format!(
            "`{answer}` matches several agents; type more of the name"
        ))),
    }
}

pub(super) fn run(paths: &Paths, args: Args) -> anyhow::Result<ExitCode> {
    let interactive = crate::tty::interactive();
    if args.remote_control {
        return Err(super::usage(
            "--remote-control is not supported yet: the provider's remote endpoints would need routes of their own",
        ));
    }
    let dry_run = args.dry_run || dry_run_from_env()?;
    let name = match &args.name {
        Some(n) => n.clone(),
        None => pick_agent(paths)?,
    };
    let mut opts = PlanOptions {
        label: args.label.clone(),
        color: args.color.clone(),
        workspace: args.cwd.then(|| paths.cwd().to_path_buf()),
        slug: None,
    };
    // Label and colour are asked only on a terminal, without --yes and
    // outside dry runs; otherwise the defaults (label = agent name).
    if interactive && !args.yes && !dry_run {
        if opts.label.is_none() {
            opts.label = Some(crate::tty::ask("label", &name)?);
        }
        if opts.color.is_none() {
            opts.color = Some(crate::tty::ask(
                "colour (red green yellow blue magenta cyan)",
                "blue",
            )?);
        }
    }
    let mut plan = plan_for(paths, &name, &opts)?;
    // `-- CMD` replaces the provider CLI; the summary shows what will run.
    if !args.command.is_empty() {
        plan.command.clone_from(&args.command);
    }
    if dry_run {
        // Everything a start checks before its first launch step, and the
        // same failure when something is missing.
        print!("{plan}");
        print!("{}", plan.host_report(&host_var));
        plan.check_secrets(&host_var, interactive)
            .context("a start would stop here")?;
        println!("dry run: nothing was started");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !interactive {
        return Err(super::usage(
            "no terminal to confirm on: pass --yes to start without asking (or --dry-run to see the plan)",
        ));
    }
    let backend = super::select_backend(args.backend.as_deref(), paths)?;
    eprint!("{plan}");
    eprint!("{}", plan.host_report(&host_var));
    eprintln!("  backend: {}", backend.name());
    // A missing host variable stops the launch before anything is asked
    // or created.
    plan.check_secrets(&host_var, interactive)
        .context("resolving the bottle's env and credentials")?;
    if !args.yes && !crate::tty::confirm("start this bottle?")? {
        eprintln!("not started");
        return Ok(ExitCode::from(super::exit::RUNTIME));
    }
    launch(
        &*backend,
        &plan,
        &RunRequest {
            command: (!args.command.is_empty()).then_some(args.command),
            image: None,
            resume: false,
            tty: interactive,
            preserve_state: args.preserve_state,
        },
    )
}

/// Resolves secrets and hands the plan to the backend.
pub(super) fn launch(
    backend: &dyn crate::backend::Backend,
    plan: &LaunchPlan,
    req: &RunRequest,
) -> anyhow::Result<ExitCode> {
    let mut tty = TtyPrompter;
    let mut none = NoTty;
    let prompter: &mut dyn Prompter = if crate::tty::interactive() {
        &mut tty
    } else {
        &mut none
    };
    let host = |name: &str| std::env::var(name).ok();
    let secrets = plan
        .resolve_secrets(&host, prompter)
        .context("resolving the bottle's env and credentials")?;
    let status = backend.launch(plan, &secrets, req)?;
    Ok(ExitCode::from(u8::try_from(status).unwrap_or(1)))
}
