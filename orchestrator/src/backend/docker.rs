//! The Docker backend (being built).

use super::{ActiveBottle, Backend, Check, Resource, RunRequest};
use crate::paths::Paths;
use crate::plan::{LaunchPlan, Secrets};

/// Runs bottles on a Docker engine.
#[derive(Debug, Clone)]
pub struct Docker {
    #[allow(dead_code)]
    paths: Paths,
}

impl Docker {
    /// A backend for this operator.
    #[must_use]
    pub fn new(paths: Paths) -> Self {
        Self { paths }
    }
}

impl Backend for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }
    fn launch(
        &self,
        _plan: &LaunchPlan,
        _secrets: &Secrets,
        _req: &RunRequest,
    ) -> anyhow::Result<i32> {
        anyhow::bail!("the docker backend cannot launch yet")
    }
    fn list_active(&self) -> anyhow::Result<Vec<ActiveBottle>> {
        anyhow::bail!("the docker backend cannot list yet")
    }
    fn orphans(&self) -> anyhow::Result<Vec<Resource>> {
        anyhow::bail!("the docker backend cannot clean up yet")
    }
    fn remove(&self, _resources: &[Resource]) -> anyhow::Result<()> {
        anyhow::bail!("the docker backend cannot clean up yet")
    }
    fn commit(&self, _slug: &str) -> anyhow::Result<String> {
        anyhow::bail!("the docker backend cannot commit yet")
    }
    fn doctor(&self) -> Vec<Check> {
        Vec::new()
    }
}
