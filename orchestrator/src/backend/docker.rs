//! The Docker backend: a bottle is two networks and three containers.
//!
//! - `bb-<slug>-int`, created `--internal` with
//!   `com.docker.network.bridge.inhibit_ipv4`: the bridge has no address,
//!   so the host has none on the agent's segment.
//! - `bb-<slug>-ext` (or `BOT_BOTTLE_DOCKER_EGRESS_NETWORK`): the bundle's
//!   way out.
//! - The bundle (`FROM scratch`: `bb-init` as PID 1 and `bb-egress`), on
//!   both networks, answering as `egress`, `git-gate` and `supervise` on the
//!   internal one.
//! - The network holder `bb-<slug>-net` (the bundle image running
//!   `bb-init hold`), on the internal network only: it deletes the default
//!   route Docker gives every bridge container, answers DNS itself, and
//!   drops to `nobody`. The agent joins its namespace.
//! - The agent, created from the provider image in the holder's network
//!   namespace, with our `/etc/hosts` and `/etc/resolv.conf`, provisioned
//!   through `docker cp` archives before it starts (no shell needed in the
//!   image), then started attached once `bb-init probe` passed in that
//!   namespace.
//!
//! Secrets reach `docker` only through its process environment: `-e NAME`
//! on the command line, the value in the child's environment. Everything
//! created carries the labels `bot-bottle.slug`, `bot-bottle.root` (the
//! operator's state root: operators sharing an engine never see each
//! other's bottles) and `bot-bottle.owner` (the launching process), so
//! `cleanup` finds what a killed launch left, and a [`Teardown`] guard
//! removes it on every exit path of [`Docker::launch`]: at once on an
//! error, and once the agent has stopped through a detached
//! `bot-bottle reap` ([`Docker::remove_parts`]), so the agent's exit status
//! does not wait for Docker's removals.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

mod reload;

use super::{ActiveBottle, Backend, Check, Meta, Owner, Resource, RunRequest, Snapshot, limits};
use crate::env_vars;
use crate::paths::Paths;
use crate::plan::{AGENT_CA_PATH, AGENT_TRUST_BUNDLE, Daemon, LaunchPlan, Secrets};
use crate::provider::DockerfileSource;

/// Label on everything a bottle creates.
pub const SLUG_LABEL: &str = "bot-bottle.slug";
/// Label saying what a container is (`agent` or `bundle`).
pub const ROLE_LABEL: &str = "bot-bottle.role";
/// Label with the agent's name.
pub const AGENT_LABEL: &str = "bot-bottle.agent";
/// Label with the operator's state root: `list`, `cleanup` and `doctor`
/// only ever see objects carrying their own.
pub const ROOT_LABEL: &str = "bot-bottle.root";
/// Label with the launching process ([`Owner`], `PID:START:BOOT`).
pub const OWNER_LABEL: &str = "bot-bottle.owner";
/// Label on committed snapshot images.
pub const SNAPSHOT_LABEL: &str = "bot-bottle.snapshot";

/// How long the agent gets to act on a forwarded signal (its traps run)
/// before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The resolver the agent's `/etc/resolv.conf` names (the holder's).
const AGENT_RESOLVER: &str = "127.0.0.1:53";
/// Docker's embedded resolver in every user-network container.
const DOCKER_RESOLVER: &str = "127.0.0.11:53";
/// Where Docker's embedded resolver in a bottle forwards to: an address
/// with no route in the sealed namespace (see `start_holder`).
const DEAD_END_DNS: &str = "198.51.100.53";

/// Runs bottles on a Docker engine.
#[derive(Debug, Clone)]
pub struct Docker {
    paths: Paths,
    docker: String,
}

/// Container and network names of a bottle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The agent container.
    pub agent: String,
    /// The bundle container.
    pub bundle: String,
    /// The internal network.
    pub internal: String,
    /// The way-out network.
    pub egress: String,
    /// The network holder, whose namespace the agent joins.
    pub net: String,
}

impl Names {
    /// The names for `slug`.
    #[must_use]
    pub fn new(slug: &str) -> Self {
        Self {
            agent: format!("bb-{slug}-agent"),
            bundle: format!("bb-{slug}-bundle"),
            internal: format!("bb-{slug}-int"),
            egress: format!("bb-{slug}-ext"),
            net: format!("bb-{slug}-net"),
        }
    }
}

/// What a bottle has on the engine and on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parts {
    /// The bottle.
    pub slug: String,
    /// Its containers (agent, holder, bundle).
    pub containers: Vec<String>,
    /// Its networks, in creation order.
    pub networks: Vec<String>,
    /// Whether its state folder goes too (unless `commit` preserved it
    /// meanwhile, or a deploy key it minted is still on the forge).
    pub state: bool,
}

/// What a launch has created so far: removed when it drops (every early
/// return and error), or handed to a detached `bot-bottle reap` once the
/// agent's exit status is known ([`Teardown::hand_off`]).
struct Teardown<'a> {
    docker: &'a Docker,
    parts: Parts,
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        if self.parts.containers.is_empty() && self.parts.networks.is_empty() && !self.parts.state {
            return;
        }
        for failure in self.docker.remove_parts(&self.parts) {
            eprintln!("warning: {failure}; `bot-bottle cleanup` removes it");
        }
    }
}

impl Teardown<'_> {
    /// Removes the bottle without holding up the caller: a detached
    /// `bot-bottle reap` (its own process group, only Docker's and
    /// bot-bottle's variables in its environment) removes the parts and is
    /// recorded as the bottle's owner meanwhile, so `cleanup` leaves it be
    /// while it runs and finds whatever it could not remove once it is gone.
    /// Everything of the bottle has stopped already. Falls back to removing
    /// here when the reaper cannot start.
    fn hand_off(mut self) {
        let parts = std::mem::take(&mut self.parts);
        if parts.containers.is_empty() && parts.networks.is_empty() && !parts.state {
            return;
        }
        if std::env::var(env_vars::BOT_BOTTLE_WAIT_TEARDOWN).is_ok_and(|v| v == "1") {
            self.parts = parts;
            return;
        }
        match self.docker.spawn_reaper(&parts) {
            Ok(()) => {}
            Err(e) => {
                eprintln!("warning: cannot hand the teardown off ({e:#}); removing the bottle now");
                self.parts = parts;
            }
        }
    }
}

impl Docker {
    /// Removes a bottle's parts: the bundle side by side with the agent and
    /// then its holder (the agent is in the holder's namespace), then the
    /// networks side by side, then the state folder. Returns what could not
    /// be removed; a missing part is not a failure.
    #[must_use]
    pub fn remove_parts(&self, parts: &Parts) -> Vec<String> {
        let mut timing = Timing::new();
        let mut failed = Vec::new();
        let (chain, others): (Vec<&String>, Vec<&String>) = parts
            .containers
            .iter()
            .partition(|c| c.ends_with("-agent") || c.ends_with("-net"));
        let mut chain = chain;
        // The agent before its holder.
        chain.sort_by_key(|c| c.ends_with("-net"));
        std::thread::scope(|s| {
            let handles: Vec<_> = others
                .iter()
                .map(|c| (*c, s.spawn(|| self.remove_container(c))))
                .collect();
            for c in chain {
                if !self.remove_container(c) {
                    failed.push(format!("container {c} could not be removed"));
                }
            }
            for (c, h) in handles {
                if !h.join().unwrap_or(false) {
                    failed.push(format!("container {c} could not be removed"));
                }
            }
        });
        timing.mark("teardown: containers");
        std::thread::scope(|s| {
            let handles: Vec<_> = parts
                .networks
                .iter()
                .map(|n| (n, s.spawn(|| self.remove_network(n))))
                .collect();
            for (n, h) in handles {
                if !h.join().unwrap_or(false) {
                    failed.push(format!("network {n} could not be removed"));
                }
            }
        });
        timing.mark("teardown: networks");
        // What could not be removed keeps the state folder company (its
        // CA and routes may still be mounted in a live bundle); `cleanup`
        // offers them together.
        if parts.state && failed.is_empty() {
            let dir = super::state_dir(&self.paths, &parts.slug);
            // `commit` may have marked the bottle preserved while it ran; a
            // deploy key that could not be revoked keeps its record (and
            // the folder) for `cleanup` to retry.
            let preserved = Meta::read(&self.paths, &parts.slug).is_ok_and(|m| m.preserve);
            let pending = crate::forge::pending_keys(&dir);
            if pending > 0 {
                failed.push(format!(
                    "state {} is kept: it records {pending} deploy key(s) still on the forge",
                    dir.display()
                ));
            } else if !preserved
                && dir.exists()
                && let Err(e) = std::fs::remove_dir_all(&dir)
            {
                failed.push(format!(
                    "state {} could not be removed ({e})",
                    dir.display()
                ));
            }
        }
        failed
    }

    /// `docker rm -f -v`; true when the container is gone.
    fn remove_container(&self, name: &str) -> bool {
        let out = self.cmd().args(["rm", "-f", "-v", name]).output();
        match out {
            Ok(o) if o.status.success() => true,
            Ok(o) => String::from_utf8_lossy(&o.stderr).contains("No such container"),
            Err(_) => false,
        }
    }

    /// `docker network rm`; true when the network is gone.
    fn remove_network(&self, name: &str) -> bool {
        let out = self.cmd().args(["network", "rm", name]).output();
        match out {
            Ok(o) if o.status.success() => true,
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                err.contains("not found") || err.contains("No such network")
            }
            Err(_) => false,
        }
    }

    /// Starts `bot-bottle reap` for `parts`, detached, and records it as
    /// the bottle's owner.
    fn spawn_reaper(&self, parts: &Parts) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("cannot find the bot-bottle executable")?;
        let mut c = Command::new(exe);
        c.arg("reap").arg(&parts.slug);
        for name in &parts.containers {
            c.arg("--container").arg(name);
        }
        for name in &parts.networks {
            c.arg("--network").arg(name);
        }
        if parts.state {
            c.arg("--state");
        }
        // Nothing of the operator's environment but what reaching the same
        // engine and state root takes (no host secret goes along).
        c.env_clear();
        for (k, v) in std::env::vars_os() {
            let name = k.to_string_lossy();
            if name.starts_with("DOCKER_")
                || [
                    env_vars::HOME,
                    "PATH",
                    "XDG_RUNTIME_DIR",
                    env_vars::BOT_BOTTLE_DOCKER,
                ]
                .contains(&name.as_ref())
            {
                c.env(k, v);
            }
        }
        c.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0);
        let child = c.spawn().context("starting `bot-bottle reap`")?;
        if let Ok(mut meta) = Meta::read(&self.paths, &parts.slug) {
            // The child has not been waited for, so its /proc entry stays
            // until this process exits even if it ended already.
            meta.owner = Owner::of(child.id());
            meta.write(&self.paths)?;
        }
        Ok(())
    }
}

impl Docker {
    /// A backend for this operator.
    #[must_use]
    pub fn new(paths: Paths) -> Self {
        let docker = std::env::var(env_vars::BOT_BOTTLE_DOCKER)
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "docker".into());
        Self { paths, docker }
    }

    /// A docker command in a process group of its own: a signal to
    /// bot-bottle's group (Ctrl-C) reaches bot-bottle, which decides, and
    /// never kills a docker command half-way.
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.docker);
        c.stdin(Stdio::null()).process_group(0);
        c
    }

    /// `--label` values every object of bottle `slug` carries.
    fn labels(&self, slug: &str, owner: &str) -> Vec<String> {
        vec![
            format!("{SLUG_LABEL}={slug}"),
            self.root_label(),
            format!("{OWNER_LABEL}={owner}"),
        ]
    }

    /// `bot-bottle.root=<state root>`, the filter for this operator.
    fn root_label(&self) -> String {
        format!("{ROOT_LABEL}={}", self.paths.state_root().display())
    }

    /// Runs docker, returning stdout; the error carries stderr.
    fn output(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self
            .cmd()
            .args(args)
            .output()
            .with_context(|| format!("cannot run `{}` (is Docker installed?)", self.docker))?;
        if !out.status.success() {
            bail!(
                "`docker {}` failed: {}",
                args.first().copied().unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn quiet(&self, args: &[&str]) -> bool {
        self.cmd()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn image_exists(&self, tag: &str) -> bool {
        self.quiet(&["image", "inspect", tag])
    }

    fn has_runsc(&self) -> bool {
        self.output(&["info", "--format", "{{json .Runtimes}}"])
            .is_ok_and(|s| s.contains("\"runsc\""))
    }

    /// The folder holding the static bundle binaries.
    fn bundle_bin_dir() -> anyhow::Result<PathBuf> {
        if let Some(d) =
            std::env::var_os(env_vars::BOT_BOTTLE_BUNDLE_BIN_DIR).filter(|d| !d.is_empty())
        {
            return Ok(PathBuf::from(d));
        }
        let exe = std::env::current_exe().context("cannot find the bot-bottle executable")?;
        Ok(exe.parent().map(Path::to_path_buf).unwrap_or_default())
    }

    /// Builds (or finds by content hash) the sidecar bundle image.
    fn bundle_image(&self, daemons: &[Daemon]) -> anyhow::Result<(String, Vec<Daemon>)> {
        let dir = Self::bundle_bin_dir()?;
        let mut files: Vec<(String, Vec<u8>)> = Vec::new();
        let mut available = Vec::new();
        for (name, required) in [
            ("bb-init", true),
            ("bb-egress", true),
            ("bb-gitgate", false),
            ("bb-supervise", false),
        ] {
            let path = dir.join(name);
            if !path.is_file() {
                if required {
                    bail!(
                        "{} is missing: the bundle is built from static binaries (set {} to their folder; build them with `{}`)",
                        path.display(),
                        env_vars::BOT_BOTTLE_BUNDLE_BIN_DIR,
                        STATIC_BUILD
                    );
                }
                continue;
            }
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            if !is_static_elf(&bytes) {
                bail!(
                    "{} is not a static executable; the bundle image is FROM scratch (build with `{STATIC_BUILD}`)",
                    path.display()
                );
            }
            files.push((name.to_owned(), bytes));
        }
        for d in daemons {
            let bin = match d {
                Daemon::Egress => "bb-egress",
                Daemon::GitGate => "bb-gitgate",
                Daemon::Supervise => "bb-supervise",
            };
            if files.iter().any(|(n, _)| n == bin) {
                available.push(*d);
            }
        }
        // The proxy verifies real upstreams against the host's roots.
        let roots = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
        // The image is one layer we write ourselves and `docker import`:
        // fixed modes, owners and mtimes make the layer (its diff ID) a
        // function of the binaries alone, where `docker build` would stamp
        // the build time on the folders it creates.
        let layer = bundle_layer(&files, &roots)?;
        let changes = ["ENTRYPOINT [\"/bb/bb-init\"]", "LABEL bot-bottle.bundle=1"];
        let tag = format!(
            "bot-bottle-bundle:{}",
            content_hash(&[("layer", &layer), ("changes", changes.concat().as_bytes())])
        );
        if !self.image_exists(&tag) {
            let mut c = self.cmd();
            c.arg("import");
            for change in changes {
                c.arg("--change").arg(change);
            }
            c.args(["-", &tag])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = c.spawn().context("running docker import")?;
            child
                .stdin
                .take()
                .context("docker import stdin")?
                .write_all(&layer)?;
            let out = child.wait_with_output()?;
            if !out.status.success() {
                bail!(
                    "importing the bundle image failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
        }
        Ok((tag, available))
    }

    fn build(
        &self,
        tag: &str,
        dockerfile: &Path,
        context: &Path,
        labels: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        let mut c = self.cmd();
        c.args(["build", "-q", "-t", tag, "-f"]).arg(dockerfile);
        for (k, v) in labels {
            c.arg("--label").arg(format!("{k}={v}"));
        }
        c.arg(context);
        let out = c.output().context("running docker build")?;
        if !out.status.success() {
            bail!(
                "building image {tag} failed:\n{}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Builds (or finds by content hash) the agent image.
    fn agent_image(&self, plan: &LaunchPlan) -> anyhow::Result<String> {
        let name = &plan.image.provider;
        match &plan.image.dockerfile {
            DockerfileSource::Embedded(text) => {
                let tag = format!(
                    "bot-bottle-agent-{name}:{}",
                    content_hash(&[("Dockerfile", text.as_bytes())])
                );
                if !self.image_exists(&tag) {
                    let ctx = tempfile::Builder::new()
                        .prefix("bot-bottle-build-")
                        .tempdir()
                        .context("creating a build folder")?;
                    std::fs::write(ctx.path().join("Dockerfile"), text)?;
                    self.build(
                        &tag,
                        &ctx.path().join("Dockerfile"),
                        ctx.path(),
                        &[("bot-bottle.provider", name)],
                    )?;
                }
                Ok(tag)
            }
            DockerfileSource::File(path) => {
                let context = path.parent().map(Path::to_path_buf).unwrap_or_default();
                let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
                collect_files(&context, &context, &mut parts)?;
                let refs: Vec<(&str, &[u8])> = parts
                    .iter()
                    .map(|(n, b)| (n.as_str(), b.as_slice()))
                    .collect();
                let tag = format!("bot-bottle-agent-{name}:{}", content_hash(&refs));
                if !self.image_exists(&tag) {
                    self.build(&tag, path, &context, &[("bot-bottle.provider", name)])?;
                }
                Ok(tag)
            }
        }
    }

    /// Mints the bottle CA with `bb-egress ca init`, name-constrained to
    /// the allowlisted hosts unless supervise can add hosts later.
    fn mint_ca(plan: &LaunchPlan) -> anyhow::Result<()> {
        let ca_dir = plan.state.ca_dir();
        if ca_dir.join("ca.crt").is_file() {
            return Ok(());
        }
        let bin = Self::bundle_bin_dir()?.join("bb-egress");
        let cfg = bb_egress::policy::RoutesConfig::from_yaml(&plan.routes_yaml)
            .map_err(|e| anyhow::anyhow!("routes.yaml: {e}"))?;
        let mut c = Command::new(&bin);
        c.arg("ca").arg("init").arg(&ca_dir).stdin(Stdio::null());
        // With supervise the allowlist is not fixed for the bottle's life:
        // an approved proposal adds hosts while the agent runs, and the
        // agent already trusts this CA, so it cannot be re-minted with
        // wider constraints. Such a CA is unconstrained (its key never
        // leaves the state folder and the bundle); a bottle without
        // supervise keeps its launch routes and gets a CA constrained to
        // them (bb-egress `ca.rs`, name constraints).
        if !plan.daemons.contains(&Daemon::Supervise) {
            for r in &cfg.routes {
                c.arg("--permit").arg(&r.host);
            }
            c.arg("--permit").arg(bb_egress::policy::INTROSPECTION_HOST);
        }
        let out = c
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        if !out.status.success() {
            bail!(
                "minting the bottle CA failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Follows the bundle's output (`docker logs -f`, no polling) until
    /// egress says it listens; an exit or 30 s without it is an error that
    /// shows what the bundle printed.
    fn wait_ready(&self, container: &str) -> anyhow::Result<()> {
        const READY: &str = "bb-egress listening";
        let mut child = self
            .cmd()
            .args(["logs", "-f", container])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("following the bundle's output")?;
        let (tx, rx) = std::sync::mpsc::channel::<Option<String>>();
        let pipes: Vec<Box<dyn Read + Send>> = [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        .collect();
        let readers = pipes.len();
        for pipe in pipes {
            let tx = tx.clone();
            std::thread::spawn(move || {
                use std::io::BufRead as _;
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(Some(line)).is_err() {
                        return;
                    }
                }
                let _ = tx.send(None);
            });
        }
        drop(tx);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut text = String::new();
        let mut ended = 0;
        let ready = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Some(line)) => {
                    let found = line.contains(READY);
                    text.push_str(&line);
                    text.push('\n');
                    if found {
                        break true;
                    }
                }
                // Both pipes closed: the bundle exited (logs -f ends).
                Ok(None) => {
                    ended += 1;
                    if ended == readers {
                        break false;
                    }
                }
                Err(_) => break false,
            }
        };
        let _ = child.kill();
        let _ = child.wait();
        if ready {
            return Ok(());
        }
        let state = self
            .output(&["inspect", "-f", "{{.State.Status}}", container])
            .unwrap_or_default();
        bail!(
            "the bundle did not come up ({}):\n{}",
            state.trim(),
            text.trim()
        )
    }

    /// Reads one file out of a created container (`docker cp C:path -`).
    fn read_file(&self, container: &str, path: &str) -> Option<Vec<u8>> {
        let out = self
            .cmd()
            .args(["cp", &format!("{container}:{path}"), "-"])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let mut archive = tar::Archive::new(out.stdout.as_slice());
        let mut entry = archive.entries().ok()?.next()?.ok()?;
        let mut buf = Vec::new();
        entry.read_to_end(&mut buf).ok()?;
        Some(buf)
    }

    /// uid/gid of `user` in the container's /etc/passwd (numeric users pass).
    fn resolve_user(&self, container: &str, user: &str) -> (u64, u64) {
        if let Ok(uid) = user.parse::<u64>() {
            return (uid, uid);
        }
        let passwd = self.read_file(container, "/etc/passwd").unwrap_or_default();
        String::from_utf8_lossy(&passwd)
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() > 3 && f[0] == user)
            .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
            .unwrap_or((0, 0))
    }

    /// Writes the CA, provider files, prompt, gitconfig, skills and the
    /// workspace into the created (not yet started) agent.
    fn provision(
        &self,
        plan: &LaunchPlan,
        container: &str,
        user: Option<&str>,
    ) -> anyhow::Result<()> {
        let (uid, gid) = user.map_or((0, 0), |u| self.resolve_user(container, u));
        let ca =
            std::fs::read(plan.state.ca_dir().join("ca.crt")).context("reading the bottle CA")?;
        let mut bundle = self
            .read_file(container, AGENT_TRUST_BUNDLE)
            .unwrap_or_default();
        if !bundle.is_empty() && !bundle.ends_with(b"\n") {
            bundle.push(b'\n');
        }
        bundle.extend_from_slice(&ca);

        let mut child = self
            .cmd()
            .args(["cp", "-", &format!("{container}:/")])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("running docker cp")?;
        let stdin = child.stdin.take().context("docker cp stdin")?;
        let mut tar = Archive::new(stdin, plan.home.clone(), plan.workdir.clone(), uid, gid);
        tar.file(AGENT_CA_PATH, 0o644, &ca)?;
        tar.file(AGENT_TRUST_BUNDLE, 0o644, &bundle)?;
        tar.dir(&plan.home)?;
        tar.dir(&plan.workdir)?;
        for f in &plan.files {
            tar.file(&f.path, f.mode, &f.content)?;
        }
        for (name, dir) in &plan.skills {
            tar.tree(dir, &format!("{}/{name}", plan.skills_dir))?;
        }
        if let Some(w) = &plan.workspace {
            tar.tree(w, &plan.workdir)?;
        }
        tar.finish()?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "provisioning the agent failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }
}

/// The command that builds the bundle binaries.
pub const STATIC_BUILD: &str = "CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p bb-egress -p bb-init -p bb-gitgate -p bb-supervise";

/// A tar stream for `docker cp`, owning files under the agent's home and
/// workdir by the agent user and everything else by root.
struct Archive<W: Write> {
    builder: tar::Builder<W>,
    home: String,
    workdir: String,
    uid: u64,
    gid: u64,
    dirs: std::collections::BTreeSet<String>,
}

impl<W: Write> Archive<W> {
    fn new(w: W, home: String, workdir: String, uid: u64, gid: u64) -> Self {
        Self {
            builder: tar::Builder::new(w),
            home,
            workdir,
            uid,
            gid,
            dirs: std::collections::BTreeSet::new(),
        }
    }

    fn owner(&self, path: &str) -> (u64, u64) {
        let under = |root: &str| path == root || path.starts_with(&format!("{root}/"));
        if under(&self.home) || under(&self.workdir) {
            (self.uid, self.gid)
        } else {
            (0, 0)
        }
    }

    fn header(&self, path: &str, mode: u32, size: u64, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        let (uid, gid) = self.owner(path);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(0);
        h
    }

    /// Adds `path` and any parent not yet added.
    fn dir(&mut self, path: &str) -> anyhow::Result<()> {
        let trimmed = path.trim_end_matches('/');
        if trimmed.is_empty() || self.dirs.contains(trimmed) {
            return Ok(());
        }
        if let Some((parent, _)) = trimmed.rsplit_once('/') {
            self.dir(parent)?;
        }
        let mut h = self.header(trimmed, 0o755, 0, tar::EntryType::Directory);
        self.builder
            .append_data(&mut h, trimmed.trim_start_matches('/'), std::io::empty())?;
        self.dirs.insert(trimmed.to_owned());
        Ok(())
    }

    fn file(&mut self, path: &str, mode: u32, content: &[u8]) -> anyhow::Result<()> {
        if let Some((parent, _)) = path.rsplit_once('/') {
            self.dir(parent)?;
        }
        let mut h = self.header(path, mode, content.len() as u64, tar::EntryType::Regular);
        self.builder
            .append_data(&mut h, path.trim_start_matches('/'), content)?;
        Ok(())
    }

    /// Copies a host folder to `dest`, regular files and folders only
    /// (symlinks could point anywhere on the host).
    fn tree(&mut self, src: &Path, dest: &str) -> anyhow::Result<()> {
        self.dir(dest)?;
        let mut entries: Vec<_> = std::fs::read_dir(src)
            .with_context(|| format!("reading {}", src.display()))?
            .flatten()
            .collect();
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            let name = e.file_name().to_string_lossy().into_owned();
            let ty = e.file_type()?;
            let target = format!("{dest}/{name}");
            if ty.is_dir() {
                self.tree(&e.path(), &target)?;
            } else if ty.is_file() {
                use std::os::unix::fs::PermissionsExt;
                let mode = e.metadata()?.permissions().mode() & 0o777;
                let file = std::fs::File::open(e.path())?;
                let len = file.metadata()?.len();
                let mut h = self.header(&target, mode, len, tar::EntryType::Regular);
                self.builder
                    .append_data(&mut h, target.trim_start_matches('/'), file)?;
            }
        }
        Ok(())
    }

    fn finish(self) -> anyhow::Result<()> {
        let mut w = self.builder.into_inner()?;
        w.flush()?;
        Ok(())
    }
}

/// The bundle's single layer: `/bb/` with the binaries and mount points,
/// and the host's root CAs. Owners, modes and mtimes are fixed.
fn bundle_layer(files: &[(String, Vec<u8>)], roots: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut layer = tar::Builder::new(Vec::new());
    let mut entry = |path: &str, mode: u32, data: &[u8], dir: bool| -> std::io::Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(if dir {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_mode(mode);
        h.set_size(data.len() as u64);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        layer.append_data(&mut h, path, data)
    };
    entry("bb/", 0o755, &[], true)?;
    for sub in ["bb/config/", "bb/ca/", "bb/state/", "bb/state/queue/"] {
        entry(sub, 0o755, &[], true)?;
    }
    for (name, bytes) in files {
        entry(&format!("bb/{name}"), 0o755, bytes, false)?;
    }
    if !roots.is_empty() {
        for dir in ["etc/", "etc/ssl/", "etc/ssl/certs/"] {
            entry(dir, 0o755, &[], true)?;
        }
        entry("etc/ssl/certs/ca-certificates.crt", 0o644, roots, false)?;
    }
    layer.into_inner()
}

/// Whether an ELF executable needs no dynamic loader (no `PT_INTERP`).
#[must_use]
pub fn is_static_elf(bytes: &[u8]) -> bool {
    let u16_at = |o: usize| {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        bytes
            .get(o..o + 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if bytes.get(..5) != Some(b"\x7fELF\x02") {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).all(|i| {
        let at = usize::try_from(phoff)
            .unwrap_or(usize::MAX)
            .saturating_add(i * usize::from(phentsize));
        u32_at(at).is_some_and(|t| t != 3)
    })
}

fn content_hash(parts: &[(&str, &[u8])]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for (name, bytes) in parts {
        ctx.update(&(name.len() as u64).to_le_bytes());
        ctx.update(name.as_bytes());
        ctx.update(&(bytes.len() as u64).to_le_bytes());
        ctx.update(bytes);
    }
    ctx.finish()
        .as_ref()
        .iter()
        .take(8)
        .fold(String::new(), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.flatten().collect();
    entries.sort_by_key(std::fs::DirEntry::file_name);
    for e in entries {
        let p = e.path();
        if e.file_type()?.is_dir() {
            collect_files(root, &p, out)?;
        } else {
            let rel = p
                .strip_prefix(root)
                .unwrap_or(&p)
                .to_string_lossy()
                .into_owned();
            out.push((rel, std::fs::read(&p)?));
        }
    }
    Ok(())
}

/// Phase timings of a launch, printed to stderr when
/// [`env_vars::BOT_BOTTLE_TIMING`] is `1` (where a launch's time goes).
struct Timing {
    on: bool,
    last: Instant,
}

impl Timing {
    fn new() -> Self {
        Self {
            on: std::env::var(env_vars::BOT_BOTTLE_TIMING).is_ok_and(|v| v == "1"),
            last: Instant::now(),
        }
    }

    fn mark(&mut self, phase: &str) {
        if self.on {
            eprintln!("timing {phase}: {:.3}s", self.last.elapsed().as_secs_f64());
        }
        self.last = Instant::now();
    }
}

/// Signals that must not kill bot-bottle mid-launch. The number of the last
/// one caught is stored (0: none): the agent gets the same signal, then
/// teardown runs, and bot-bottle exits 128 + that number.
fn hold_signals() -> Arc<AtomicUsize> {
    let caught = Arc::new(AtomicUsize::new(0));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        let _ = signal_hook::flag::register_usize(
            sig,
            Arc::clone(&caught),
            usize::try_from(sig).unwrap_or(0),
        );
    }
    caught
}

/// The name `docker kill --signal` takes.
fn signal_name(sig: usize) -> &'static str {
    match sig {
        1 => "HUP",
        2 => "INT",
        _ => "TERM",
    }
}

/// Exit status for an interrupted run: 128 + the signal (130 for SIGINT,
/// 143 for SIGTERM, 129 for SIGHUP), never 0.
fn interrupted_status(sig: usize) -> i32 {
    128 + i32::try_from(sig).unwrap_or(15)
}

/// A test-only way to launch a bottle with its isolation broken on purpose
/// (the holder keeps its default route, the bridge keeps its address), so
/// the e2e suite can watch the launch probe refuse it. Read from
/// [`env_vars::BOT_BOTTLE_TEST_BREAK_ISOLATION`] in debug builds only; a
/// release build ignores it, and no manifest can set bot-bottle's
/// environment.
fn isolation_broken_for_tests() -> bool {
    cfg!(debug_assertions)
        && std::env::var(env_vars::BOT_BOTTLE_TEST_BREAK_ISOLATION).is_ok_and(|v| v == "1")
}

/// The launch probe found the bottle open; it was torn down.
#[derive(Debug, thiserror::Error)]
#[error("{}", describe_isolation_failure(slug, failures))]
pub struct IsolationError {
    /// The bottle.
    pub slug: String,
    /// The probe's `FAIL` lines (`check: detail`).
    pub failures: Vec<String>,
}

fn describe_isolation_failure(slug: &str, failures: &[String]) -> String {
    let mut out = format!(
        "the isolation probe failed in bottle {slug}; it was torn down before the agent ran:"
    );
    for f in failures {
        let _ = write!(out, "\n  FAIL {f}");
        let check = f.split(':').next().unwrap_or("");
        let advice = match check {
            "default-route" | "public-route" => {
                "the agent's namespace still routes off the box: the network holder could not remove Docker's default route (the engine must allow NET_ADMIN in a container)"
            }
            "host-reachable" => {
                "a host address answers from inside the bottle: the internal network's bridge has an address (the engine ignored com.docker.network.bridge.inhibit_ipv4) or a route leads to the host"
            }
            "ipv6" => {
                "the agent's namespace has IPv6 addresses: the engine enabled IPv6 on the bottle's internal network"
            }
            "dns-resolver" => {
                "the bottle's resolver did not answer on 127.0.0.1:53: the network holder is not running"
            }
            "dns-leak" => {
                "Docker's resolver in the bottle resolved a unique name: lookups would leave the namespace (DNS exfiltration)"
            }
            _ => "the probe could not run",
        };
        let _ = write!(out, "\n       {advice}");
    }
    out.push_str(
        "\nwhat to do: run `bot-bottle doctor` (it runs the same probe on a throw-away bottle) and do not run agents on this engine until it passes",
    );
    out
}

/// Addresses of this host that a bottle must not reach: every local IPv4
/// address (the host's own and every bridge gateway, from
/// `/proc/net/fib_trie`) and every global IPv6 address (`/proc/net/if_inet6`),
/// loopback excluded (inside the bottle it is the bottle's own).
fn host_addresses() -> Vec<std::net::IpAddr> {
    let mut out: Vec<std::net::IpAddr> = Vec::new();
    let trie = std::fs::read_to_string("/proc/net/fib_trie").unwrap_or_default();
    let mut last: Option<std::net::Ipv4Addr> = None;
    for line in trie.lines() {
        let t = line.trim_start_matches([' ', '|', '+', '-']).trim();
        if let Ok(ip) = t.parse::<std::net::Ipv4Addr>() {
            last = Some(ip);
        } else if t.contains("/32 host LOCAL")
            && let Some(ip) = last
            && !ip.is_loopback()
            && !out.contains(&ip.into())
        {
            out.push(ip.into());
        }
    }
    let v6 = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    for line in v6.lines() {
        let hex = line.split_whitespace().next().unwrap_or("");
        if let Ok(bits) = u128::from_str_radix(hex, 16) {
            let ip = std::net::Ipv6Addr::from(bits);
            // Link-local addresses need a scope to be reached at all, and
            // the probe's ipv6 check already refuses any IPv6 in the bottle.
            if !ip.is_loopback()
                && (ip.segments()[0] & 0xffc0) != 0xfe80
                && !out.contains(&ip.into())
            {
                out.push(ip.into());
            }
        }
    }
    out
}

/// The agent's `/etc/hosts`: the bundle's names and its own.
/// (`None`: not known yet, the file the agent is created with).
fn agent_hosts(bundle_ip: Option<&str>, slug: &str) -> String {
    let mut out =
        format!("127.0.0.1\tlocalhost {slug}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    if let Some(ip) = bundle_ip {
        let _ = writeln!(out, "{ip}\tegress git-gate supervise");
    }
    out
}

/// A scoped thread's result; a panic is an error naming `what`.
fn join<T>(
    handle: std::thread::ScopedJoinHandle<'_, anyhow::Result<T>>,
    what: &str,
) -> anyhow::Result<T> {
    handle
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("{what} panicked")))
}

/// The agent's `/etc/resolv.conf`: the holder's resolver, nothing else.
const AGENT_RESOLV_CONF: &str = "nameserver 127.0.0.1\noptions ndots:0 timeout:1 attempts:1\n";

/// Writes a world-readable file (the agent's hosts and resolv.conf are
/// bind-mounted read-only and read by its user; they hold no secret).
fn write_public(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    Ok(())
}

impl Docker {
    /// The internal network: no masquerade target, no address on the bridge.
    fn create_internal_network(&self, name: &str, labels: &[String]) -> anyhow::Result<()> {
        let mut args = vec!["network", "create", "--internal"];
        if !isolation_broken_for_tests() {
            args.extend(["-o", "com.docker.network.bridge.inhibit_ipv4=true"]);
        }
        for l in labels {
            args.extend(["--label", l.as_str()]);
        }
        args.push(name);
        self.output(&args)?;
        Ok(())
    }

    /// The gateway address Docker reserved on `network` (unassigned on an
    /// inhibited bridge).
    fn gateway(&self, network: &str) -> anyhow::Result<String> {
        let gw = self.output(&[
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Gateway}} {{end}}",
            network,
        ])?;
        gw.split_whitespace()
            .next()
            .map(str::to_owned)
            .with_context(|| format!("network {network} has no IPv4 subnet"))
    }

    /// `container`'s address on `network`.
    fn address(&self, container: &str, network: &str) -> anyhow::Result<String> {
        let ip = self.output(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
            container,
        ])?;
        let ip = ip.trim();
        if ip.is_empty() {
            bail!("{container} has no address on {network}");
        }
        Ok(ip.to_owned())
    }

    /// Creates the network holder of a bottle (started by the caller).
    fn create_holder(
        &self,
        names: &Names,
        image: &str,
        labels: &[String],
        slug: &str,
    ) -> anyhow::Result<()> {
        let mut c = self.cmd();
        c.args(["create", "--name", &names.net]);
        for l in labels {
            c.arg("--label").arg(l);
        }
        c.args(["--label", &format!("{ROLE_LABEL}=net")]);
        c.args(["--network", &names.internal, "--hostname", slug]);
        // Docker's embedded resolver (127.0.0.11, which the agent could
        // still ask) forwards what it does not know to --dns, from inside
        // this namespace. A documentation address (RFC 5737 TEST-NET-2) has
        // no route there once the holder sealed it, so a forward fails at
        // once. An on-link dead end (the inhibited bridge's unassigned
        // gateway) is worse: the forward waits out Docker's timeout, and
        // dockerd holds the namespace, and the holder's removal, until it
        // does (3 s of every launch's teardown).
        c.args(["--dns", DEAD_END_DNS]);
        // What `bb-init hold` needs before it drops to nobody.
        c.args(["--cap-drop", "ALL"]);
        for cap in ["NET_ADMIN", "NET_BIND_SERVICE", "SETUID", "SETGID"] {
            c.args(["--cap-add", cap]);
        }
        c.args(["--security-opt", "no-new-privileges", "--read-only"]);
        c.args([
            "--sysctl",
            "net.ipv6.conf.all.disable_ipv6=1",
            "--sysctl",
            "net.ipv6.conf.default.disable_ipv6=1",
        ]);
        c.args(limits::HOLDER.docker_args());
        c.arg(image).arg("hold");
        if isolation_broken_for_tests() {
            c.arg("--keep-routes");
        }
        run_quiet(c, "creating the network holder")
    }

    /// Runs `bb-init probe` in the namespace of bottle `names`; returns
    /// every line and whether all checks passed.
    fn probe(&self, names: &Names, gateway: Option<&str>) -> anyhow::Result<(bool, Vec<String>)> {
        let mut args: Vec<String> = ["exec", &names.net, "/bb/bb-init", "probe"]
            .map(str::to_owned)
            .to_vec();
        let mut hosts: Vec<String> = host_addresses().iter().map(ToString::to_string).collect();
        if let Some(gw) = gateway
            && !hosts.iter().any(|h| h == gw)
        {
            hosts.push(gw.to_owned());
        }
        for h in hosts {
            args.push("--host".into());
            args.push(h);
        }
        args.extend(
            [
                "--dns-ours",
                AGENT_RESOLVER,
                "--dns-silent",
                DOCKER_RESOLVER,
            ]
            .map(str::to_owned),
        );
        let out = self
            .cmd()
            .args(&args)
            .output()
            .context("running the isolation probe")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<String> = text
            .lines()
            .filter(|l| l.starts_with("isolation "))
            .map(str::to_owned)
            .collect();
        if lines.is_empty() {
            bail!(
                "the isolation probe did not run: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok((
            out.status.success() && !lines.iter().any(|l| l.contains(" FAIL ")),
            lines,
        ))
    }

    /// The FAIL lines of a probe run, as `check: detail`.
    fn failures(lines: &[String]) -> Vec<String> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix("isolation FAIL "))
            .map(str::to_owned)
            .collect()
    }

    /// Waits for the agent to stop after a forwarded signal, killing it
    /// when the grace runs out.
    /// Returns the agent's exit code once it stopped (`None`: unknown).
    /// Kills it when `deadline` passes first.
    fn wait_stopped(&self, agent: &str, deadline: Instant) -> Option<i32> {
        let mut killed = false;
        loop {
            let state = self
                .output(&[
                    "inspect",
                    "-f",
                    "{{.State.Running}} {{.State.ExitCode}}",
                    agent,
                ])
                .ok()?;
            let mut f = state.split_whitespace();
            if f.next() != Some("true") {
                return f.next().and_then(|c| c.parse().ok());
            }
            if Instant::now() > deadline {
                if !killed {
                    killed = true;
                    let _ = self.quiet(&["kill", agent]);
                } else if Instant::now() > deadline + Duration::from_secs(5) {
                    return None;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A throw-away bottle for `doctor`: an internal network and a holder,
    /// probed, then removed.
    fn throwaway_probe(&self) -> Check {
        let what = "isolation (throw-away bottle)".to_owned();
        let fail = |detail: String| Check {
            what: what.clone(),
            ok: false,
            detail,
        };
        let (image, _) = match self.bundle_image(&[]) {
            Ok(i) => i,
            Err(e) => return fail(format!("cannot build the bundle image: {e}")),
        };
        let slug = format!(
            "doctor-{}",
            content_hash(&[(
                "t",
                format!("{:?}{}", Instant::now(), std::process::id()).as_bytes()
            )])
            .get(..6)
            .unwrap_or("0")
        );
        let names = Names::new(&slug);
        let owner = Owner::current().map(|o| o.to_string()).unwrap_or_default();
        let labels = self.labels(&slug, &owner);
        let guard = Teardown {
            docker: self,
            parts: Parts {
                slug: slug.clone(),
                containers: vec![names.net.clone()],
                networks: vec![names.internal.clone()],
                state: false,
            },
        };
        let run = || -> anyhow::Result<(bool, Vec<String>)> {
            self.create_internal_network(&names.internal, &labels)?;
            let gw = self.gateway(&names.internal)?;
            self.create_holder(&names, &image, &labels, &slug)?;
            self.output(&["start", &names.net])?;
            self.probe(&names, Some(&gw))
        };
        let result = run();
        drop(guard);
        match result {
            Ok((ok, lines)) => Check {
                what,
                ok,
                detail: lines.join("; "),
            },
            Err(e) => fail(format!("{e:#}")),
        }
    }
}

impl Backend for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    // The launch is one sequence whose every step registers what it created
    // with the teardown guard; it reads best in order.
    #[allow(clippy::too_many_lines)]
    fn launch(
        &self,
        plan: &LaunchPlan,
        secrets: &Secrets,
        req: &RunRequest,
    ) -> anyhow::Result<i32> {
        let caught = hold_signals();
        let interrupted = || caught.load(Ordering::SeqCst);
        let mut timing = Timing::new();
        // Docker would create a missing mount source as a folder; say so
        // before anything is created.
        if let Some(ca) =
            std::env::var_os(env_vars::BOT_BOTTLE_UPSTREAM_CA).filter(|s| !s.is_empty())
        {
            let ca = PathBuf::from(ca);
            if !ca.is_file() {
                bail!(
                    "{}={} is not a file (a PEM of upstream CAs)",
                    env_vars::BOT_BOTTLE_UPSTREAM_CA,
                    ca.display()
                );
            }
        }
        // One question says that the engine answers and whether gVisor is
        // registered.
        let runsc = self
            .output(&["info", "--format", "{{.ServerVersion}} {{json .Runtimes}}"])
            .context("the Docker engine does not answer (run `bot-bottle doctor`)")?
            .contains("\"runsc\"");
        let names = Names::new(&plan.slug);
        // A bottle booted again (`resume`) right after its last run may
        // still be being removed by that run's reaper: its names are taken
        // until it is done.
        let busy_until = Instant::now() + Duration::from_secs(30);
        let mut said = false;
        while let Some(other) = Meta::read(&self.paths, &plan.slug)
            .ok()
            .and_then(|m| m.owner)
            .filter(Owner::alive)
        {
            if !said {
                said = true;
                eprintln!(
                    "bottle {} is still owned by bot-bottle process {} (its last run being removed?); waiting up to 30 s",
                    plan.slug, other.pid
                );
            }
            if Instant::now() > busy_until {
                bail!(
                    "bottle {} is in use by bot-bottle process {} (`bot-bottle list active`)",
                    plan.slug,
                    other.pid
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let preserve =
            req.preserve_state || Meta::read(&self.paths, &plan.slug).is_ok_and(|m| m.preserve);
        let fresh_state = !plan.state.root.exists();
        let mut guard = Teardown {
            docker: self,
            parts: Parts {
                slug: plan.slug.clone(),
                state: fresh_state && !preserve,
                ..Parts::default()
            },
        };

        let owner = Owner::current();
        let owner_label = owner.as_ref().map(ToString::to_string).unwrap_or_default();
        plan.state.create()?;
        plan.state
            .write_private(&plan.state.routes_file(), plan.routes_yaml.as_bytes())?;
        if let Some(gate_yaml) = plan.gate_yaml() {
            plan.state
                .write_private(&plan.state.gate_file(), gate_yaml.as_bytes())?;
        }
        let mut meta = Meta::read(&self.paths, &plan.slug).unwrap_or(Meta {
            slug: plan.slug.clone(),
            agent: plan.agent.clone(),
            label: plan.label.clone(),
            color: plan.color.clone(),
            image: None,
            preserve,
            owner: None,
        });
        meta.owner.clone_from(&owner);
        meta.write(&self.paths)?;
        let labels = self.labels(&plan.slug, &owner_label);
        let given_egress = std::env::var(env_vars::BOT_BOTTLE_DOCKER_EGRESS_NETWORK)
            .ok()
            .filter(|s| !s.is_empty());
        let egress_net = given_egress.clone().unwrap_or_else(|| names.egress.clone());
        if given_egress.is_none() {
            guard.parts.networks.push(names.egress.clone());
        }
        guard.parts.networks.push(names.internal.clone());
        // Three independent preparations side by side: the CA and deploy
        // keys, the images (found by content hash, or built), the networks
        // (each a few hundred ms of bridge and iptables work in dockerd).
        let (keys, images, egress_made, internal_made) = std::thread::scope(|s| {
            let keys = s.spawn(|| -> anyhow::Result<crate::forge::DeployKeys> {
                let mut timing = Timing::new();
                Self::mint_ca(plan)?;
                // Gitea deploy keys for the gate, minted now and recorded in
                // the state folder; revoked when they drop, on every exit
                // path of this launch (before the guard removes the
                // folder), and by `cleanup` when this process was killed.
                let keys = crate::forge::DeployKeys::mint(
                    plan,
                    secrets,
                    std::env::var_os(env_vars::BOT_BOTTLE_UPSTREAM_CA)
                        .filter(|s| !s.is_empty())
                        .as_deref()
                        .map(Path::new),
                )?;
                timing.mark("  CA and deploy keys");
                Ok(keys)
            });
            let images = s.spawn(|| -> anyhow::Result<(String, Vec<Daemon>, String)> {
                let mut timing = Timing::new();
                let (bundle_image, daemons) = self.bundle_image(&plan.daemons)?;
                let agent_image = match &req.image {
                    Some(img) if self.image_exists(img) => img.clone(),
                    Some(img) => {
                        eprintln!(
                            "warning: committed image {img} is gone; rebuilding from the provider's Dockerfile"
                        );
                        self.agent_image(plan)?
                    }
                    None => self.agent_image(plan)?,
                };
                timing.mark(&format!("  images {bundle_image} {agent_image}"));
                Ok((bundle_image, daemons, agent_image))
            });
            let egress = s.spawn(|| -> anyhow::Result<()> {
                if given_egress.is_none() {
                    let mut args = vec!["network", "create"];
                    for l in &labels {
                        args.extend(["--label", l.as_str()]);
                    }
                    args.push(&names.egress);
                    self.output(&args)?;
                }
                Ok(())
            });
            let mut timing = Timing::new();
            let internal = self.create_internal_network(&names.internal, &labels);
            timing.mark("  internal network");
            (
                join(keys, "minting the CA and deploy keys"),
                join(images, "preparing the images"),
                join(egress, "creating the egress network"),
                internal,
            )
        });
        let deploy_keys = keys?;
        let (bundle_image, daemons, agent_image) = images?;
        egress_made?;
        internal_made?;
        timing.mark("CA, images and networks");
        for d in &plan.daemons {
            if !daemons.contains(d) {
                eprintln!(
                    "warning: the bundle has no `{}` daemon yet; the bottle runs without it",
                    d.name()
                );
            }
        }
        if interrupted() != 0 {
            eprintln!("interrupted before the bottle started; it was torn down");
            return Ok(interrupted_status(interrupted()));
        }

        // The bundle: tokens by name on argv, values in docker's env.
        let mut bundle = self.cmd();
        bundle.args(["create", "--name", &names.bundle]);
        for l in &labels {
            bundle.arg("--label").arg(l);
        }
        bundle.args(["--label", &format!("{ROLE_LABEL}=bundle")]);
        bundle.args([
            "--network",
            &egress_net,
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--read-only",
        ]);
        bundle.args(plan.limits.bundle.docker_args());
        bundle.arg("-v").arg(format!(
            "{}:/bb/config/routes.yaml:ro",
            plan.state.routes_file().display()
        ));
        bundle
            .arg("-v")
            .arg(format!("{}:/bb/ca:ro", plan.state.ca_dir().display()));
        if daemons.contains(&Daemon::Supervise) || !plan.git_upstreams.is_empty() {
            // The queue both write proposals to (the gate's gitleaks-allow
            // ones included), at `plan::BUNDLE_QUEUE_DIR`.
            bundle.arg("-v").arg(format!(
                "{}:{}",
                plan.state.queue_dir().display(),
                crate::plan::BUNDLE_QUEUE_DIR
            ));
        }
        if daemons.contains(&Daemon::Supervise) {
            // bb-supervise's view of the state folder: the queue (above)
            // and the live routes it compares proposals with; never the
            // CA key or the git-gate keys beside them.
            bundle.arg("-v").arg(format!(
                "{}:/bb/state/routes.yaml:ro",
                plan.state.routes_file().display()
            ));
            bundle
                .arg("-e")
                .arg(format!("{}={}", env_vars::BB_SUPERVISE_SLUG, plan.slug));
        }
        if !plan.git_upstreams.is_empty() {
            // The gate's config, each repo's push key (read-only; the agent
            // never sees them) and its writable mirror folder.
            bundle.arg("-v").arg(format!(
                "{}:/bb/config/gitgate.yaml:ro",
                plan.state.gate_file().display()
            ));
            for g in &plan.git_upstreams {
                bundle.arg("-v").arg(format!(
                    "{}:{}/{}:ro",
                    g.key_file().display(),
                    crate::plan::GATE_KEYS_DIR,
                    g.name
                ));
            }
            bundle.arg("-v").arg(format!(
                "{}:{}",
                plan.state.gate_state_dir().display(),
                crate::plan::GATE_STATE_DIR
            ));
        }
        if let Some(ca) =
            std::env::var_os(env_vars::BOT_BOTTLE_UPSTREAM_CA).filter(|s| !s.is_empty())
        {
            bundle.arg("-v").arg(format!(
                "{}:/bb/config/upstream-ca.pem:ro",
                PathBuf::from(ca).display()
            ));
        }
        for (name, value) in &secrets.tokens {
            bundle.arg("-e").arg(name);
            bundle.env(name, value.expose());
        }
        bundle.arg(&bundle_image);
        bundle.args(daemons.iter().map(|d| d.name()));

        // The agent's /etc/hosts names the bundle, whose address is known
        // only once it runs; Docker mounts the file when the agent starts,
        // so it is written in full before that.
        let hosts_file = plan.state.root.join("hosts");
        let resolv_file = plan.state.root.join("resolv.conf");
        write_public(&hosts_file, &agent_hosts(None, &plan.slug))?;
        write_public(&resolv_file, AGENT_RESOLV_CONF)?;

        // The agent, in the holder's namespace.
        let command: Vec<String> = match (&req.command, req.resume) {
            (Some(cmd), _) => cmd.clone(),
            (None, true) => plan.resume_command.clone(),
            (None, false) => plan.command.clone(),
        };
        let Some((program, args)) = command.split_first() else {
            bail!("nothing to run in the agent")
        };
        let mut agent = self.cmd();
        agent.args(["create", "--name", &names.agent]);
        for l in &labels {
            agent.arg("--label").arg(l);
        }
        agent.args([
            "--label",
            &format!("{ROLE_LABEL}=agent"),
            "--label",
            &format!("{AGENT_LABEL}={}", plan.agent),
            "--network",
            &format!("container:{}", names.net),
        ]);
        agent.args(["--cap-drop", "ALL", "--security-opt", "no-new-privileges"]);
        agent.args(plan.limits.agent.docker_args());
        agent
            .arg("-v")
            .arg(format!("{}:/etc/hosts:ro", hosts_file.display()));
        agent
            .arg("-v")
            .arg(format!("{}:/etc/resolv.conf:ro", resolv_file.display()));
        agent.args(["-w", &plan.workdir, "--entrypoint", program]);
        if runsc {
            agent.args(["--runtime", "runsc"]);
        }
        if let Some(user) = &plan.user {
            agent.args(["-u", user]);
        }
        let tty = req.tty;
        agent.arg("-i");
        if tty {
            agent.arg("-t");
        }
        for (name, value) in &secrets.agent_env {
            agent.arg("-e").arg(name);
            agent.env(name, value.expose());
        }
        agent.env("HOME", &plan.home);
        agent.arg("-e").arg("HOME");
        agent.arg(&agent_image).args(args);

        // The holder is created first (the agent names it); then three
        // independent chains run side by side, and the agent starts only
        // once all are done and the probe passed:
        // - the bundle: create, join the internal network, start, ready;
        // - the holder: start (it seals the namespace), then the probe;
        // - the agent: create and provision (no process runs in it yet).
        guard.parts.containers.push(names.net.clone());
        self.create_holder(&names, &bundle_image, &labels, &plan.slug)?;
        guard.parts.containers.push(names.bundle.clone());
        guard.parts.containers.push(names.agent.clone());
        let (bundle_up, probed, created) = std::thread::scope(|s| {
            let bundle_up = s.spawn(|| -> anyhow::Result<()> {
                let mut timing = Timing::new();
                run_quiet(bundle, "creating the bundle")?;
                self.output(&[
                    "network",
                    "connect",
                    "--alias",
                    "egress",
                    "--alias",
                    "git-gate",
                    "--alias",
                    "supervise",
                    &names.internal,
                    &names.bundle,
                ])?;
                timing.mark("  bundle created and connected");
                self.output(&["start", &names.bundle])?;
                timing.mark("  bundle started");
                self.wait_ready(&names.bundle)?;
                timing.mark("  bundle ready");
                let bundle_ip = self.address(&names.bundle, &names.internal)?;
                write_public(&hosts_file, &agent_hosts(Some(&bundle_ip), &plan.slug))
            });
            let probed = s.spawn(|| -> anyhow::Result<(bool, Vec<String>)> {
                let mut timing = Timing::new();
                self.output(&["start", &names.net])?;
                timing.mark("  holder started");
                let gateway = self.gateway(&names.internal)?;
                let probed = self.probe(&names, Some(&gateway));
                timing.mark("  probe");
                probed
            });
            let mut timing = Timing::new();
            let created = run_quiet(agent, "creating the agent").and_then(|()| {
                timing.mark("  agent created");
                self.provision(plan, &names.agent, plan.user.as_deref())
            });
            timing.mark("  agent provisioned");
            (
                join(bundle_up, "starting the bundle"),
                join(probed, "the isolation probe"),
                created,
            )
        });
        timing.mark("bundle, holder and probe, agent created and provisioned");
        let (isolated, lines) = probed?;
        if !isolated {
            return Err(IsolationError {
                slug: plan.slug.clone(),
                failures: Self::failures(&lines),
            }
            .into());
        }
        bundle_up?;
        created?;

        if interrupted() != 0 {
            eprintln!("interrupted before the agent started; the bottle was torn down");
            return Ok(interrupted_status(interrupted()));
        }
        // The agent's stdin is ours (the terminal, a pipe or /dev/null).
        // Without a terminal the attach gets a process group of its own, so
        // a signal to ours reaches bot-bottle alone and the agent is
        // stopped through Docker, its traps running. With a terminal it
        // must stay in the foreground group to read it; Ctrl-C is then a
        // byte for the agent's own terminal, not a signal to us.
        let mut c = Command::new(&self.docker);
        c.args(["start", "-a", "-i"]).arg(&names.agent);
        if !tty {
            c.process_group(0);
        }
        let mut child = c.spawn().context("attaching to the agent")?;
        timing.mark("agent started");
        let mut forwarded: Option<Instant> = None;
        let mut killed = false;
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            let sig = interrupted();
            if sig != 0 && forwarded.is_none() {
                forwarded = Some(Instant::now());
                let _ = self.quiet(&["kill", "--signal", signal_name(sig), &names.agent]);
            }
            if let Some(t) = forwarded
                && t.elapsed() > STOP_GRACE
                && !killed
            {
                killed = true;
                let _ = self.quiet(&["kill", &names.agent]);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        timing.mark("agent ran");
        let sig = interrupted();
        let code = if sig == 0 {
            // The attach can end before the container (a docker CLI that
            // died); the agent's own status is what counts.
            self.wait_stopped(&names.agent, Instant::now() + STOP_GRACE)
                .unwrap_or(1)
        } else {
            if forwarded.is_none() {
                let _ = self.quiet(&["kill", "--signal", signal_name(sig), &names.agent]);
            }
            let _ = self.wait_stopped(
                &names.agent,
                forwarded.unwrap_or_else(Instant::now) + STOP_GRACE,
            );
            interrupted_status(sig)
        };
        timing.mark("exit status");
        // Deploy keys are credentials: revoked here, before the exit status
        // returns; a key that could not be revoked keeps its record (and the
        // state folder) for `cleanup`.
        drop(deploy_keys);
        // The agent has stopped; the bundle and holder are removed (killed
        // first) by a detached reaper while the status returns.
        guard.hand_off();
        Ok(code)
    }

    fn list_active(&self) -> anyhow::Result<Vec<ActiveBottle>> {
        let out = self.output(&[
            "ps",
            "-a",
            "--filter",
            &format!("label={ROLE_LABEL}=agent"),
            "--filter",
            &format!("label={}", self.root_label()),
            "--format",
            &format!(
                "{{{{.Label \"{SLUG_LABEL}\"}}}}\t{{{{.State}}}}\t{{{{.Label \"{AGENT_LABEL}\"}}}}\t{{{{.Label \"{OWNER_LABEL}\"}}}}"
            ),
        ])?;
        Ok(out
            .lines()
            .filter_map(|l| {
                let mut f = l.split('\t');
                Some(ActiveBottle {
                    slug: f.next()?.to_owned(),
                    status: f.next()?.to_owned(),
                    agent: f.next().unwrap_or("").to_owned(),
                    owner: f.next().and_then(Owner::parse),
                })
            })
            .filter(|b| !b.slug.is_empty())
            .collect())
    }

    fn orphans(&self) -> anyhow::Result<Vec<Resource>> {
        let root = format!("label={}", self.root_label());
        let fields = format!("\t{{{{.Label \"{SLUG_LABEL}\"}}}}\t{{{{.Label \"{OWNER_LABEL}\"}}}}");
        let containers = self.output(&[
            "ps",
            "-a",
            "--filter",
            &root,
            "--format",
            &format!("{{{{.Names}}}}{fields}"),
        ])?;
        let networks = self.output(&[
            "network",
            "ls",
            "--filter",
            &root,
            "--format",
            &format!("{{{{.Name}}}}{fields}"),
        ])?;
        let mut found: Vec<(&'static str, String, String, Option<Owner>)> = Vec::new();
        for (kind, text) in [("container", &containers), ("network", &networks)] {
            for l in text.lines() {
                let mut f = l.split('\t');
                if let (Some(name), Some(slug)) = (f.next(), f.next())
                    && !slug.is_empty()
                {
                    found.push((
                        kind,
                        name.to_owned(),
                        slug.to_owned(),
                        f.next().and_then(Owner::parse),
                    ));
                }
            }
        }
        let mut states = Vec::new();
        for e in std::fs::read_dir(self.paths.state_root())
            .into_iter()
            .flatten()
            .flatten()
        {
            let slug = e.file_name().to_string_lossy().into_owned();
            let meta = Meta::read(&self.paths, &slug).ok();
            states.push((slug, e.path(), meta));
        }
        // A bottle is live while any of its parts names a live owner.
        let live = |slug: &str| {
            found
                .iter()
                .any(|(_, _, s, o)| s == slug && o.as_ref().is_some_and(Owner::alive))
                || states.iter().any(|(s, _, m)| {
                    s == slug
                        && m.as_ref()
                            .and_then(|m| m.owner.as_ref())
                            .is_some_and(Owner::alive)
                })
        };
        let mut out: Vec<Resource> = found
            .iter()
            .filter(|(_, _, slug, _)| !live(slug))
            .map(|(kind, name, slug, _)| Resource {
                kind,
                name: name.clone(),
                slug: slug.clone(),
            })
            .collect();
        for (slug, path, meta) in &states {
            let preserved = meta.as_ref().is_some_and(|m| m.preserve);
            if !preserved && !live(slug) {
                out.push(Resource {
                    kind: "state",
                    name: path.display().to_string(),
                    slug: slug.clone(),
                });
            }
        }
        Ok(out)
    }

    fn remove(&self, resources: &[Resource]) -> anyhow::Result<()> {
        let mut failed = Vec::new();
        for kind in ["container", "network", "image", "state"] {
            for r in resources.iter().filter(|r| r.kind == kind) {
                let ok = match kind {
                    "container" => self.remove_container(&r.name),
                    "network" => self.remove_network(&r.name),
                    "image" => self.quiet(&["rmi", &r.name]),
                    _ => {
                        let dir = Path::new(&r.name);
                        let pending = crate::forge::pending_keys(dir);
                        if pending > 0 {
                            failed.push(format!(
                                "state {} (it records {pending} deploy key(s) still on the forge)",
                                r.name
                            ));
                            continue;
                        }
                        !dir.exists() || std::fs::remove_dir_all(dir).is_ok()
                    }
                };
                if !ok {
                    failed.push(format!("{} {}", r.kind, r.name));
                }
            }
        }
        if !failed.is_empty() {
            bail!("could not remove: {}", failed.join(", "));
        }
        Ok(())
    }

    fn commit(&self, slug: &str) -> anyhow::Result<String> {
        let names = Names::new(slug);
        let mut meta = Meta::read(&self.paths, slug)
            .with_context(|| format!("bottle `{slug}` has no state folder"))?;
        let image = format!("bot-bottle-commit/{slug}:latest");
        let root = self
            .paths
            .state_root()
            .display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"");
        self.output(&[
            "commit",
            "--change",
            &format!("LABEL {SLUG_LABEL}={slug}"),
            "--change",
            &format!("LABEL {SNAPSHOT_LABEL}=1"),
            "--change",
            &format!("LABEL {ROOT_LABEL}=\"{root}\""),
            &names.agent,
            &image,
        ])
        .with_context(|| format!("is bottle `{slug}` running? (`bot-bottle list active`)"))?;
        meta.image = Some(image.clone());
        meta.preserve = true;
        meta.write(&self.paths)?;
        Ok(image)
    }

    fn snapshots(&self) -> anyhow::Result<Vec<Snapshot>> {
        let images = self.output(&[
            "images",
            "--filter",
            &format!("label={SNAPSHOT_LABEL}=1"),
            "--filter",
            &format!("label={}", self.root_label()),
            "--format",
            "{{.Repository}}:{{.Tag}}",
        ])?;
        let mut out: Vec<Snapshot> = Vec::new();
        for image in images.lines() {
            if let Some(slug) = image
                .strip_prefix("bot-bottle-commit/")
                .and_then(|r| r.split(':').next())
            {
                out.push(Snapshot {
                    slug: slug.to_owned(),
                    image: Some(image.to_owned()),
                    state: None,
                    agent: String::new(),
                });
            }
        }
        for e in std::fs::read_dir(self.paths.state_root())
            .into_iter()
            .flatten()
            .flatten()
        {
            let slug = e.file_name().to_string_lossy().into_owned();
            let Ok(meta) = Meta::read(&self.paths, &slug) else {
                continue;
            };
            if !meta.preserve {
                continue;
            }
            if let Some(s) = out.iter_mut().find(|s| s.slug == slug) {
                s.state = Some(e.path());
                s.agent = meta.agent;
            } else {
                out.push(Snapshot {
                    slug,
                    image: None,
                    state: Some(e.path()),
                    agent: meta.agent,
                });
            }
        }
        out.sort_by(|a, b| a.slug.cmp(&b.slug));
        Ok(out)
    }

    fn snapshot_resources(&self, slug: &str) -> anyhow::Result<Vec<Resource>> {
        if self
            .list_active()?
            .iter()
            .any(|b| b.slug == slug && b.owner_alive())
        {
            bail!("bottle `{slug}` is running; end it first (its snapshot is in use)");
        }
        let Some(snap) = self.snapshots()?.into_iter().find(|s| s.slug == slug) else {
            bail!("no snapshot `{slug}` (see `bot-bottle list snapshots`)");
        };
        let mut out = Vec::new();
        if let Some(image) = snap.image {
            out.push(Resource {
                kind: "image",
                name: image,
                slug: slug.to_owned(),
            });
        }
        if let Some(state) = snap.state {
            out.push(Resource {
                kind: "state",
                name: state.display().to_string(),
                slug: slug.to_owned(),
            });
        }
        Ok(out)
    }

    fn reload_routes(&self, slug: &str) -> anyhow::Result<super::Reload> {
        reload::reload_routes(self, slug)
    }

    fn doctor(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        let engine = self.output(&["version", "--format", "{{.Server.Version}}"]);
        let engine_ok = engine.is_ok();
        checks.push(Check {
            what: "docker engine".into(),
            ok: engine_ok,
            detail: match engine {
                Ok(v) => format!("Docker {}", v.trim()),
                Err(e) => format!(
                    "{e}; start the Docker daemon or set {}",
                    env_vars::BOT_BOTTLE_DOCKER
                ),
            },
        });
        if engine_ok {
            let runsc = self.has_runsc();
            checks.push(Check {
                what: "gVisor (runsc)".into(),
                ok: true,
                detail: if runsc { "registered: agents run under runsc".into() } else { "not registered: agents run under runc (install gVisor and register `runsc` for a second wall)".into() },
            });
        }
        let mut bins_ok = false;
        match Self::bundle_bin_dir() {
            Ok(dir) => {
                bins_ok = true;
                for name in ["bb-init", "bb-egress"] {
                    let p = dir.join(name);
                    let bytes = std::fs::read(&p).ok();
                    let ok = bytes.as_deref().is_some_and(is_static_elf);
                    bins_ok &= ok;
                    // Missing and dynamic are different fixes; a plain
                    // `cargo build --release` gives dynamic binaries.
                    let fix = format!(
                        "build the static ones as README.md shows (\"A real launch\": --target x86_64-unknown-linux-gnu with crt-static) and point {} at their folder",
                        env_vars::BOT_BOTTLE_BUNDLE_BIN_DIR
                    );
                    checks.push(Check {
                        what: format!("bundle: {name}"),
                        ok,
                        detail: match (&bytes, ok) {
                            (_, true) => format!("{} (static)", p.display()),
                            (None, _) => format!("{} is missing: {fix}", p.display()),
                            (Some(_), false) => format!(
                                "{} is dynamically linked, and the bundle is FROM scratch: {fix}",
                                p.display()
                            ),
                        },
                    });
                }
            }
            Err(e) => checks.push(Check {
                what: "bundle binaries".into(),
                ok: false,
                detail: e.to_string(),
            }),
        }
        if engine_ok && bins_ok {
            checks.push(self.throwaway_probe());
        }
        if engine_ok {
            for b in self
                .list_active()
                .unwrap_or_default()
                .into_iter()
                .filter(|b| b.status == "running")
            {
                checks.push(self.isolation(&b.slug));
            }
        }
        checks
    }
}

impl Docker {
    /// Runs the launch probe again in a running bottle's namespace.
    fn isolation(&self, slug: &str) -> Check {
        let names = Names::new(slug);
        let gateway = self.gateway(&names.internal).ok();
        match self.probe(&names, gateway.as_deref()) {
            Ok((ok, lines)) => Check {
                what: format!("isolation of {slug}"),
                ok,
                detail: lines
                    .iter()
                    .map(|l| l.trim_start_matches("isolation "))
                    .collect::<Vec<_>>()
                    .join("; "),
            },
            Err(e) => Check {
                what: format!("isolation of {slug}"),
                ok: false,
                detail: format!(
                    "{e:#} (a bottle from an older bot-bottle has no network holder: end it and start it again)"
                ),
            },
        }
    }
}

fn run_quiet(mut c: Command, what: &str) -> anyhow::Result<()> {
    let out = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .with_context(|| what.to_owned())?;
    if !out.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{bundle_layer, content_hash, is_static_elf};

    #[test]
    fn the_bundle_layer_is_a_function_of_its_inputs() {
        let files = vec![
            ("bb-init".to_owned(), b"init".to_vec()),
            ("bb-egress".to_owned(), b"egress".to_vec()),
        ];
        let a = bundle_layer(&files, b"roots").expect("layer");
        let b = bundle_layer(&files, b"roots").expect("layer");
        assert_eq!(a, b);
        assert_ne!(a, bundle_layer(&files, b"other roots").expect("layer"));
        let mut archive = tar::Archive::new(a.as_slice());
        let entries: Vec<(String, u32, u64)> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                let e = e.expect("entry");
                let h = e.header();
                (
                    e.path().expect("path").display().to_string(),
                    h.mode().expect("mode"),
                    h.mtime().expect("mtime"),
                )
            })
            .collect();
        assert!(
            entries.iter().all(|(_, _, mtime)| *mtime == 0),
            "{entries:?}"
        );
        assert!(
            entries.contains(&("bb/bb-init".to_owned(), 0o755, 0)),
            "{entries:?}"
        );
        assert!(
            entries.contains(&("etc/ssl/certs/ca-certificates.crt".to_owned(), 0o644, 0)),
            "{entries:?}"
        );
        assert_ne!(content_hash(&[("a", b"bc")]), content_hash(&[("ab", b"c")]));
    }

    #[test]
    fn static_and_dynamic_executables_are_told_apart() {
        // This test binary is dynamically linked (it has PT_INTERP).
        let me = std::fs::read(std::env::current_exe().expect("exe")).expect("read");
        assert!(!is_static_elf(&me));
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        // A minimal ELF64 header with no program headers needs no loader.
        let mut elf = vec![0u8; 64];
        elf[..5].copy_from_slice(b"\x7fELF\x02");
        assert!(is_static_elf(&elf));
        // One PT_INTERP program header.
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        elf.extend_from_slice(&[3, 0, 0, 0]);
        elf.resize(64 + 56, 0);
        assert!(!is_static_elf(&elf));
    }
}
