//! `init`: writes a new agent file (asks on a terminal; flags otherwise).

use std::process::ExitCode;

use crate::manifest::valid_name;
use crate::paths::Paths;

/// `init` flags: every question has one, so scripts never block.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The agent's name (file `<name>.md`).
    #[arg(long)]
    name: Option<String>,
    /// The bottle it runs in.
    #[arg(long)]
    bottle: Option<String>,
    /// Write into ./.bot-bottle/agents instead of ~/.bot-bottle/agents.
    #[arg(long)]
    here: bool,
}

pub(super) fn run(paths: &Paths, args: &Args) -> anyhow::Result<ExitCode> {
    let interactive = crate::tty::interactive();
    let name = match (&args.name, interactive) {
        (Some(n), _) => n.clone(),
        (None, true) => crate::tty::ask("agent name", "dev")?,
        (None, false) => {
            return Err(super::usage(
                "no terminal to ask on: pass --name NAME (and --bottle BOTTLE)",
            ));
        }
    };
    if !valid_name(&name) {
        return Err(super::usage(format!(
            "agent name `{name}` is not valid: names match [a-z][a-z0-9-]*"
        )));
    }
    let bottle = match (&args.bottle, interactive) {
        (Some(b), _) => b.clone(),
        (None, true) => crate::tty::ask("bottle", "default")?,
        (None, false) => "default".into(),
    };
    if !valid_name(&bottle) {
        return Err(super::usage(format!(
            "bottle name `{bottle}` is not valid: names match [a-z][a-z0-9-]*"
        )));
    }
    let dir = if args.here {
        paths.cwd_agents_dir()
    } else {
        paths.home_agents_dir()
    };
    std::fs::create_dir_all(&dir)?;
    let file = dir.join(format!("{name}.md"));
    let text = format!(
        "---\nbottle: {bottle}\n---\nYou are working in a bot-bottle. Describe the task here.\n"
    );
    // create_new: never overwrite an agent the operator already has.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)
    {
        Ok(mut f) => std::io::Write::write_all(&mut f, text.as_bytes())?,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(super::usage(format!(
                "{} already exists; edit it with `bot-bottle edit {name}`",
                file.display()
            )));
        }
        Err(e) => return Err(e.into()),
    }
    println!("wrote {}", file.display());
    let bottle_file = paths.bottles_dir().join(format!("{bottle}.md"));
    if !bottle_file.is_file() {
        println!(
            "note: bottle `{bottle}` does not exist yet; write {} (see docs/manifest.md)",
            bottle_file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
