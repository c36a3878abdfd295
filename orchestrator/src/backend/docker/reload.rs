//! Reloading a running bottle's egress after its routes.yaml was replaced
//! (an approved supervise proposal).
//!
//! The bundle is `FROM scratch` with `bb-init` as PID 1, which forwards
//! `SIGHUP` to its daemons; `docker kill --signal HUP` delivers it to PID 1.
//! Egress answers a SIGHUP with exactly one of two log lines (through
//! bb-init's `[egress] ` prefix, in the bundle's container log):
//! `routes reloaded` when the new file took, `reload refused; keeping the
//! running routes` with the error when it did not. The reload's outcome is
//! the first of those lines that was not in the log before the signal:
//! counting lines, not comparing timestamps, so a clock that differs
//! between host and engine cannot confuse it. No answer within
//! [`RELOAD_WAIT`] counts as refused.

use std::time::{Duration, Instant};

use super::{Docker, Names, ROOT_LABEL};
use crate::backend::Reload;

/// How long egress has to report a reload.
pub(super) const RELOAD_WAIT: Duration = Duration::from_secs(10);

const RELOADED: &str = "routes reloaded";
const REFUSED: &str = "reload refused";

/// See [`crate::backend::Backend::reload_routes`].
pub(super) fn reload_routes(docker: &Docker, slug: &str) -> anyhow::Result<Reload> {
    let bundle = Names::new(slug).bundle;
    let format = format!("{{{{.State.Running}}}} {{{{index .Config.Labels \"{ROOT_LABEL}\"}}}}");
    let out = docker
        .cmd()
        .args(["container", "inspect", "--format", &format, &bundle])
        .output();
    let Ok(out) = out else {
        // No docker at all: nothing of ours can be running.
        return Ok(Reload::NotRunning);
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("No such") {
            return Ok(Reload::NotRunning);
        }
        anyhow::bail!(
            "cannot tell whether bottle {slug} is running: `docker container inspect` failed: {}",
            err.trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let (running, root) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    let ours = root == docker.paths.state_root().display().to_string();
    if running != "true" || !ours {
        return Ok(Reload::NotRunning);
    }
    let before = markers(docker, &bundle)?.len();
    docker.output(&["kill", "--signal", "HUP", &bundle])?;
    let deadline = Instant::now() + RELOAD_WAIT;
    loop {
        let lines = markers(docker, &bundle)?;
        if let Some(line) = lines.get(before) {
            return Ok(if line.contains(RELOADED) {
                Reload::Reloaded
            } else {
                Reload::Refused(refusal(line))
            });
        }
        if Instant::now() >= deadline {
            return Ok(Reload::Refused(format!(
                "egress did not report a reload within {}s",
                RELOAD_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The egress reload lines of the bundle's log, oldest first.
fn markers(docker: &Docker, bundle: &str) -> anyhow::Result<Vec<String>> {
    let out = docker
        .cmd()
        .args(["logs", bundle])
        .output()
        .map_err(|e| anyhow::anyhow!("running `docker logs {bundle}`: {e}"))?;
    if !out.status.success() {
        anyhow::bail!(
            "`docker logs {bundle}` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // bb-init writes daemon output to its own stdout and its own notes to
    // stderr; both streams are read, egress's lines picked by prefix.
    let mut lines = Vec::new();
    for stream in [&out.stdout, &out.stderr] {
        for line in String::from_utf8_lossy(stream).lines() {
            if line.contains("[egress]") && (line.contains(RELOADED) || line.contains(REFUSED)) {
                lines.push(line.to_owned());
            }
        }
    }
    Ok(lines)
}

/// Egress's reason from a refusal line (its `error=` field), else the line.
fn refusal(line: &str) -> String {
    let why = line
        .split_once("error=")
        .map_or(line, |(_, e)| e)
        .trim()
        .to_owned();
    format!("egress refused the new routes and keeps the old ones: {why}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_refusal_names_egress_s_reason() {
        let line = "[egress] 2026-01-01T00:00:00Z ERROR bb_egress::server: reload refused; keeping the running routes error=route 0 (a.example): EGRESS_TOKEN_X is not set";
        assert_eq!(
            super::refusal(line),
            "egress refused the new routes and keeps the old ones: route 0 (a.example): EGRESS_TOKEN_X is not set"
        );
    }
}
