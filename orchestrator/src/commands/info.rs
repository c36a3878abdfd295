//! `info NAME`: the agent, its bottle chain and the plan it would launch.

use std::process::ExitCode;

use crate::paths::Paths;

pub(super) fn run(paths: &Paths, name: &str) -> anyhow::Result<ExitCode> {
    let plan = super::start::plan_for(
        paths,
        name,
        &crate::plan::PlanOptions {
            slug: Some(format!("{name}-<random>")),
            ..Default::default()
        },
    )?;
    print!("{plan}");
    Ok(ExitCode::SUCCESS)
}
