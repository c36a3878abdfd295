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
    print!("{}", plan.host_report(&|v: &str| std::env::var(v).ok()));
    Ok(ExitCode::SUCCESS)
}
