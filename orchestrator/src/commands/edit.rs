//! `edit NAME`: opens the agent's file in `$VISUAL` / `$EDITOR` (`vi` only
//! on a terminal: without one it would wait for keys that never come).

use std::process::ExitCode;

use anyhow::Context as _;

use crate::env_vars::{EDITOR, VISUAL};
use crate::manifest::Loader;
use crate::paths::Paths;

pub(super) fn run(paths: &Paths, name: &str) -> anyhow::Result<ExitCode> {
    let file = Loader::new(paths.clone()).agent_file(name)?;
    let chosen = std::env::var(VISUAL)
        .ok()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| std::env::var(EDITOR).ok().filter(|s| !s.trim().is_empty()));
    let editor = match chosen {
        Some(e) => e,
        None if crate::tty::interactive() => "vi".into(),
        None => {
            return Err(super::usage(format!(
                "no editor: set VISUAL or EDITOR (there is no terminal to run vi on); the file is {}",
                file.display()
            )));
        }
    };
    // `$EDITOR` may carry arguments (`code --wait`); split on whitespace as
    // git does for simple values.
    let mut parts = editor.split_whitespace();
    let program = parts.next().context("empty editor command")?;
    let status = std::process::Command::new(program)
        .args(parts)
        .arg(&file)
        .status()
        .with_context(|| format!("cannot run editor `{program}` (set VISUAL or EDITOR)"))?;
    if !status.success() {
        anyhow::bail!(
            "editor `{program}` exited with {status}; {} unchanged by bot-bottle",
            file.display()
        );
    }
    // Re-check the file so a typo is caught now, not at launch.
    match Loader::new(paths.clone()).load(name) {
        Ok(_) => println!("{} is valid", file.display()),
        Err(e) => eprintln!("warning: {e}"),
    }
    Ok(ExitCode::SUCCESS)
}
