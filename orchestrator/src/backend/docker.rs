//! The Docker backend: a bottle is two networks and two containers.
//!
//! - `bb-<slug>-int`, created `--internal`: no gateway, so nothing on it
//!   has a route off the box. The agent is attached to it alone.
//! - `bb-<slug>-ext` (or `BOT_BOTTLE_DOCKER_EGRESS_NETWORK`): the bundle's
//!   way out.
//! - The bundle (`FROM scratch`: `bb-init` as PID 1 and `bb-egress`), on
//!   both networks, answering as `egress`, `git-gate` and `supervise` on the
//!   internal one.
//! - The agent, created from the provider image, provisioned through
//!   `docker cp` archives before it starts (no shell needed in the image),
//!   then started attached.
//!
//! Secrets reach `docker` only through its process environment: `-e NAME`
//! on the command line, the value in the child's environment. Everything
//! created carries the label `bot-bottle.slug` so `cleanup` finds what a
//! crashed launch left, and a [`Teardown`] guard removes it on every exit
//! path of [`Docker::launch`].

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::{ActiveBottle, Backend, Check, Meta, Resource, RunRequest};
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
        }
    }
}

/// What has been created so far; removed on drop unless disarmed.
struct Teardown<'a> {
    docker: &'a Docker,
    containers: Vec<String>,
    networks: Vec<String>,
    state: Option<(PathBuf, String)>,
}

impl Drop for Teardown<'_> {
    fn drop(&mut self) {
        for c in self.containers.iter().rev() {
            let _ = self.docker.quiet(&["rm", "-f", "-v", c]);
        }
        for n in self.networks.iter().rev() {
            let _ = self.docker.quiet(&["network", "rm", n]);
        }
        if let Some((dir, slug)) = &self.state {
            // `commit` may have marked the bottle preserved while it ran.
            if !Meta::read(&self.docker.paths, slug).is_ok_and(|m| m.preserve) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
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

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.docker);
        c.stdin(Stdio::null());
        c
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
                    let ctx = tempdir()?;
                    std::fs::write(ctx.join("Dockerfile"), text)?;
                    let r = self.build(
                        &tag,
                        &ctx.join("Dockerfile"),
                        &ctx,
                        &[("bot-bottle.provider", name)],
                    );
                    let _ = std::fs::remove_dir_all(&ctx);
                    r?;
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
    /// the allowlisted hosts.
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
        for r in &cfg.routes {
            c.arg("--permit").arg(&r.host);
        }
        c.arg("--permit").arg(bb_egress::policy::INTROSPECTION_HOST);
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

    fn wait_ready(&self, container: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let out = self.cmd().args(["logs", container]).output()?;
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if text.contains("bb-egress listening") {
                return Ok(());
            }
            let state = self
                .output(&["inspect", "-f", "{{.State.Status}}", container])
                .unwrap_or_default();
            if state.trim() == "exited" || state.trim() == "dead" || Instant::now() > deadline {
                bail!(
                    "the bundle did not come up ({}):\n{}",
                    state.trim(),
                    text.trim()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
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
pub const STATIC_BUILD: &str = "CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=symbols CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS='-C target-feature=+crt-static' cargo build --release --target x86_64-unknown-linux-gnu -p bb-egress -p bb-init";

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
    for sub in ["bb/config/", "bb/ca/", "bb/queue/"] {
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

fn tempdir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "bot-bottle-build-{}-{}",
        std::process::id(),
        content_hash(&[("t", format!("{:?}", Instant::now()).as_bytes())])
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Signals that must not kill bot-bottle mid-launch: they end the agent
/// (docker forwards them) and teardown still runs.
fn hold_signals() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        let _ = signal_hook::flag::register(sig, Arc::clone(&flag));
    }
    flag
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
        let interrupted = hold_signals();
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
        self.output(&["version", "--format", "{{.Server.Version}}"])
            .context("the Docker engine does not answer (run `bot-bottle doctor`)")?;
        let names = Names::new(&plan.slug);
        let preserve =
            req.preserve_state || Meta::read(&self.paths, &plan.slug).is_ok_and(|m| m.preserve);
        let fresh_state = !plan.state.root.exists();
        let mut guard = Teardown {
            docker: self,
            containers: Vec::new(),
            networks: Vec::new(),
            state: (fresh_state && !preserve).then(|| (plan.state.root.clone(), plan.slug.clone())),
        };

        plan.state.create()?;
        plan.state
            .write_private(&plan.state.routes_file(), plan.routes_yaml.as_bytes())?;
        let meta = Meta::read(&self.paths, &plan.slug).unwrap_or(Meta {
            slug: plan.slug.clone(),
            agent: plan.agent.clone(),
            label: plan.label.clone(),
            color: plan.color.clone(),
            image: None,
            preserve,
        });
        meta.write(&self.paths)?;
        Self::mint_ca(plan)?;
        // Gitea deploy keys for the gate, minted now and revoked when this
        // guard drops, on every exit path of this launch.
        let _deploy_keys = crate::forge::DeployKeys::mint(
            plan,
            secrets,
            std::env::var_os(env_vars::BOT_BOTTLE_UPSTREAM_CA)
                .filter(|s| !s.is_empty())
                .as_deref()
                .map(Path::new),
        )?;

        let (bundle_image, daemons) = self.bundle_image(&plan.daemons)?;
        for d in &plan.daemons {
            if !daemons.contains(d) {
                eprintln!(
                    "warning: the bundle has no `{}` daemon yet; the bottle runs without it",
                    d.name()
                );
            }
        }
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

        let label = format!("{SLUG_LABEL}={}", plan.slug);
        let egress_net = if let Some(n) = std::env::var(env_vars::BOT_BOTTLE_DOCKER_EGRESS_NETWORK)
            .ok()
            .filter(|s| !s.is_empty())
        {
            n
        } else {
            self.output(&["network", "create", "--label", &label, &names.egress])?;
            guard.networks.push(names.egress.clone());
            names.egress.clone()
        };
        self.output(&[
            "network",
            "create",
            "--internal",
            "--label",
            &label,
            &names.internal,
        ])?;
        guard.networks.push(names.internal.clone());

        // The bundle: tokens by name on argv, values in docker's env.
        let mut c = self.cmd();
        c.args([
            "create",
            "--name",
            &names.bundle,
            "--label",
            &label,
            "--label",
            &format!("{ROLE_LABEL}=bundle"),
        ]);
        c.args([
            "--network",
            &egress_net,
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--read-only",
        ]);
        c.arg("-v").arg(format!(
            "{}:/bb/config/routes.yaml:ro",
            plan.state.routes_file().display()
        ));
        c.arg("-v")
            .arg(format!("{}:/bb/ca:ro", plan.state.ca_dir().display()));
        c.arg("-v")
            .arg(format!("{}:/bb/queue", plan.state.queue_dir().display()));
        if let Some(ca) =
            std::env::var_os(env_vars::BOT_BOTTLE_UPSTREAM_CA).filter(|s| !s.is_empty())
        {
            c.arg("-v").arg(format!(
                "{}:/bb/config/upstream-ca.pem:ro",
                PathBuf::from(ca).display()
            ));
        }
        for (name, value) in &secrets.tokens {
            c.arg("-e").arg(name);
            c.env(name, value.expose());
        }
        c.arg(&bundle_image);
        c.args(daemons.iter().map(|d| d.name()));
        run_quiet(c, "creating the bundle")?;
        guard.containers.push(names.bundle.clone());
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
        self.output(&["start", &names.bundle])?;
        self.wait_ready(&names.bundle)?;

        // The agent.
        let command: Vec<String> = match (&req.command, req.resume) {
            (Some(cmd), _) => cmd.clone(),
            (None, true) => plan.resume_command.clone(),
            (None, false) => plan.command.clone(),
        };
        let Some((program, args)) = command.split_first() else {
            bail!("nothing to run in the agent")
        };
        let mut c = self.cmd();
        c.args([
            "create",
            "--name",
            &names.agent,
            "--label",
            &label,
            "--label",
            &format!("{ROLE_LABEL}=agent"),
        ]);
        c.args([
            "--label",
            &format!("{AGENT_LABEL}={}", plan.agent),
            "--network",
            &names.internal,
        ]);
        c.args([
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--hostname",
            &plan.slug,
        ]);
        c.args(["-w", &plan.workdir, "--entrypoint", program]);
        if self.has_runsc() {
            c.args(["--runtime", "runsc"]);
        }
        if let Some(user) = &plan.user {
            c.args(["-u", user]);
        }
        let tty = req.tty;
        c.arg("-i");
        if tty {
            c.arg("-t");
        }
        for (name, value) in &secrets.agent_env {
            c.arg("-e").arg(name);
            c.env(name, value.expose());
        }
        c.env("HOME", &plan.home);
        c.arg("-e").arg("HOME");
        c.arg(&agent_image).args(args);
        run_quiet(c, "creating the agent")?;
        guard.containers.push(names.agent.clone());
        self.provision(plan, &names.agent, plan.user.as_deref())?;

        if interrupted.load(Ordering::SeqCst) {
            bail!("interrupted before the agent started; the bottle was torn down");
        }
        // The agent's stdin is ours (the terminal, a pipe or /dev/null).
        let mut c = Command::new(&self.docker);
        c.args(["start", "-a", "-i"]).arg(&names.agent);
        let mut child = c.spawn().context("attaching to the agent")?;
        let mut stopping = false;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            // A signal to bot-bottle alone (not its process group, which
            // docker already forwards) still ends the agent, then teardown.
            if interrupted.load(Ordering::SeqCst) && !stopping {
                stopping = true;
                let _ = self.quiet(&["stop", "-t", "5", &names.agent]);
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let code = self
            .output(&["inspect", "-f", "{{.State.ExitCode}}", &names.agent])
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .or(status.code())
            .unwrap_or(1);
        drop(guard);
        Ok(code)
    }

    fn list_active(&self) -> anyhow::Result<Vec<ActiveBottle>> {
        let out = self.output(&[
            "ps",
            "-a",
            "--filter",
            &format!("label={ROLE_LABEL}=agent"),
            "--format",
            &format!(
                "{{{{.Label \"{SLUG_LABEL}\"}}}}\t{{{{.State}}}}\t{{{{.Label \"{AGENT_LABEL}\"}}}}"
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
                })
            })
            .filter(|b| !b.slug.is_empty())
            .collect())
    }

    fn orphans(&self) -> anyhow::Result<Vec<Resource>> {
        let running: Vec<String> = self
            .list_active()?
            .into_iter()
            .filter(|b| b.status == "running")
            .map(|b| b.slug)
            .collect();
        let mut out = Vec::new();
        let containers = self.output(&[
            "ps",
            "-a",
            "--filter",
            &format!("label={SLUG_LABEL}"),
            "--format",
            &format!("{{{{.Names}}}}\t{{{{.Label \"{SLUG_LABEL}\"}}}}"),
        ])?;
        for l in containers.lines() {
            if let Some((name, slug)) = l.split_once('\t')
                && !running.iter().any(|r| r == slug)
            {
                out.push(Resource {
                    kind: "container",
                    name: name.to_owned(),
                    slug: slug.to_owned(),
                });
            }
        }
        let networks = self.output(&[
            "network",
            "ls",
            "--filter",
            &format!("label={SLUG_LABEL}"),
            "--format",
            &format!("{{{{.Name}}}}\t{{{{.Label \"{SLUG_LABEL}\"}}}}"),
        ])?;
        for l in networks.lines() {
            if let Some((name, slug)) = l.split_once('\t')
                && !running.iter().any(|r| r == slug)
            {
                out.push(Resource {
                    kind: "network",
                    name: name.to_owned(),
                    slug: slug.to_owned(),
                });
            }
        }
        for e in std::fs::read_dir(self.paths.state_root())
            .into_iter()
            .flatten()
            .flatten()
        {
            let slug = e.file_name().to_string_lossy().into_owned();
            let preserved = Meta::read(&self.paths, &slug).is_ok_and(|m| m.preserve);
            if !preserved && !running.contains(&slug) {
                out.push(Resource {
                    kind: "state",
                    name: e.path().display().to_string(),
                    slug,
                });
            }
        }
        Ok(out)
    }

    fn remove(&self, resources: &[Resource]) -> anyhow::Result<()> {
        let mut failed = Vec::new();
        for kind in ["container", "network", "state"] {
            for r in resources.iter().filter(|r| r.kind == kind) {
                let ok = match kind {
                    "container" => self.quiet(&["rm", "-f", "-v", &r.name]),
                    "network" => self.quiet(&["network", "rm", &r.name]),
                    _ => std::fs::remove_dir_all(&r.name).is_ok(),
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
        self.output(&[
            "commit",
            "--change",
            &format!("LABEL {SLUG_LABEL}={slug}"),
            &names.agent,
            &image,
        ])
        .with_context(|| format!("is bottle `{slug}` running? (`bot-bottle list active`)"))?;
        meta.image = Some(image.clone());
        meta.preserve = true;
        meta.write(&self.paths)?;
        Ok(image)
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
        match Self::bundle_bin_dir() {
            Ok(dir) => {
                for name in ["bb-init", "bb-egress"] {
                    let p = dir.join(name);
                    let bytes = std::fs::read(&p).ok();
                    let ok = bytes.as_deref().is_some_and(is_static_elf);
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
    /// Whether a running bottle's agent is attached only to an internal
    /// network, with no published ports and no capabilities.
    fn isolation(&self, slug: &str) -> Check {
        let names = Names::new(slug);
        let what = format!("isolation of {slug}");
        let nets = self
            .output(&[
                "inspect",
                "-f",
                "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
                &names.agent,
            ])
            .unwrap_or_default();
        let nets: Vec<&str> = nets.split_whitespace().collect();
        let mut problems = Vec::new();
        if nets != [names.internal.as_str()] {
            problems.push(format!(
                "agent is on networks {nets:?}, expected only {}",
                names.internal
            ));
        }
        if self
            .output(&["network", "inspect", "-f", "{{.Internal}}", &names.internal])
            .is_ok_and(|s| s.trim() == "true")
        {
        } else {
            problems.push(format!("{} is not an --internal network", names.internal));
        }
        let ports = self
            .output(&[
                "inspect",
                "-f",
                "{{json .HostConfig.PortBindings}}",
                &names.agent,
            ])
            .unwrap_or_default();
        if !matches!(ports.trim(), "{}" | "null" | "") {
            problems.push(format!("agent publishes ports {}", ports.trim()));
        }
        let caps = self
            .output(&[
                "inspect",
                "-f",
                "{{json .HostConfig.CapDrop}}",
                &names.agent,
            ])
            .unwrap_or_default();
        if !caps.contains("ALL") {
            problems.push("agent keeps default capabilities".into());
        }
        Check {
            what,
            ok: problems.is_empty(),
            detail: if problems.is_empty() {
                "agent only on its internal network, no ports, no capabilities".into()
            } else {
                problems.join("; ")
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
