//! `doctor`: checks what a launch needs and says exactly what to fix.

use std::process::ExitCode;

use crate::backend::Check;
use crate::manifest::Loader;
use crate::paths::Paths;

pub(super) fn run(paths: &Paths, backend: Option<&str>) -> anyhow::Result<ExitCode> {
    // An unknown backend is a usage error (64), like in every command.
    let backend = super::select_backend(backend, paths)?;
    let mut checks = Vec::new();
    let config = paths.config_dir();
    checks.push(Check {
        what: "config folder".into(),
        ok: paths.bottles_dir().is_dir(),
        detail: if paths.bottles_dir().is_dir() {
            format!("{}", config.display())
        } else {
            format!(
                "{} is missing: mkdir -p {} and write a bottle (docs/manifest.md)",
                paths.bottles_dir().display(),
                paths.bottles_dir().display()
            )
        },
    });
    let agents = Loader::new(paths.clone()).available_agents();
    checks.push(Check {
        what: "agents".into(),
        ok: !agents.is_empty(),
        detail: if agents.is_empty() {
            "none found: run `bot-bottle init`".into()
        } else {
            format!("{} found", agents.len())
        },
    });
    for w in Loader::new(paths.clone()).misnamed_files() {
        checks.push(Check {
            what: "file names".into(),
            ok: true,
            detail: format!("warning: {w}"),
        });
    }
    let skills = paths.skills_dir();
    checks.push(Check {
        what: "skills folder".into(),
        ok: true,
        detail: if skills.is_dir() {
            skills.display().to_string()
        } else {
            format!(
                "{} absent (only needed for agents with `skills:`)",
                skills.display()
            )
        },
    });
    if let Some(w) = Loader::new(paths.clone()).trust_warning() {
        checks.push(Check {
            what: "working directory".into(),
            ok: true,
            detail: w,
        });
    }
    checks.extend(backend.doctor());
    let mut failed = false;
    for c in &checks {
        failed |= !c.ok;
        println!(
            "{} {:<22} {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.what,
            c.detail
        );
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
