//! The operator's half of supervise (SPEC §8): find proposals in every
//! bottle's queue, decide them, apply what was approved, record it.
//!
//! A bottle here is any folder under `~/.bot-bottle/state/` holding a
//! `queue/`, running or not: listing reads files only and never asks the
//! container engine, so a dead bottle never holds anything up. A decision
//! ([`decide`]) runs under the audit log's lock from start to end:
//!
//! 1. the audit chain is checked (a decision that could not be recorded is
//!    never made);
//! 2. the file to apply is validated again, with bb-egress's own parser
//!    for a routes.yaml;
//! 3. it is applied ([`apply`]): a routes change is written to the bottle's
//!    routes.yaml and, when the bottle runs, egress is reloaded (a refused
//!    reload puts the old file back and turns the answer into `failed`);
//!    a Dockerfile is kept for the next `resume`;
//! 4. the answer is written to the queue, where the agent's tools read it;
//! 5. the decision, with its diff, is appended to the audit log.

pub mod apply;
pub mod tui;

use anyhow::Context as _;
use bb_supervise::audit::{AuditLog, Decision, Entry, unified_diff};
use bb_supervise::queue::{Proposal, ProposalId, Queue, QueueProblem, Response, Status, Tool};

use crate::backend::{Backend, Meta};
use crate::paths::Paths;
use crate::plan::StateLayout;

/// A bottle with a queue.
#[derive(Debug, Clone)]
pub struct Bottle {
    /// Its slug (the state folder's name).
    pub slug: String,
    /// Its label (the slug when `bottle.json` is missing).
    pub label: String,
    /// Its colour (from `bottle.json`; empty when unknown).
    pub color: String,
    /// Its state folder.
    pub state: StateLayout,
    /// Its queue.
    pub queue: Queue,
}

/// A pending proposal and its bottle.
#[derive(Debug, Clone)]
pub struct Item {
    /// The bottle.
    pub bottle: Bottle,
    /// The proposal.
    pub proposal: Proposal,
    /// The file the proposal would replace has changed since it was made
    /// (only known for routes changes).
    pub stale: bool,
}

/// Everything pending, and what was skipped.
#[derive(Debug, Default)]
pub struct Listing {
    /// Pending proposals, newest first.
    pub items: Vec<Item>,
    /// Folders and files that were skipped, and why.
    pub problems: Vec<String>,
}

/// The operator's audit log (`~/.bot-bottle/audit/`).
#[must_use]
pub fn audit_log(paths: &Paths) -> AuditLog {
    AuditLog::new(paths.config_dir().join("audit"))
}

/// Who is deciding: `$USER`, then `$LOGNAME`, then the uid.
#[must_use]
pub fn operator_name() -> String {
    use std::os::unix::fs::MetadataExt as _;
    for var in [crate::env_vars::USER, crate::env_vars::LOGNAME] {
        if let Ok(v) = std::env::var(var)
            && !v.trim().is_empty()
        {
            return v;
        }
    }
    std::fs::metadata("/proc/self")
        .map_or_else(|_| "unknown".into(), |m| format!("uid {}", m.uid()))
}

/// Every bottle under the state root with a `queue/` folder, by slug.
#[must_use]
pub fn bottles(paths: &Paths) -> (Vec<Bottle>, Vec<String>) {
    let mut found = Vec::new();
    let mut problems = Vec::new();
    let root = paths.state_root();
    let Ok(entries) = std::fs::read_dir(&root) else {
        return (found, problems);
    };
    for entry in entries.flatten() {
        let Ok(slug) = entry.file_name().into_string() else {
            continue;
        };
        let state = StateLayout { root: entry.path() };
        let queue_dir = state.queue_dir();
        match std::fs::symlink_metadata(&queue_dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                problems.push(format!(
                    "{}: not a folder (symlinks are refused); skipped",
                    queue_dir.display()
                ));
                continue;
            }
            Err(_) => continue,
        }
        let queue = match Queue::open(&queue_dir) {
            Ok(q) => q,
            Err(e) => {
                problems.push(format!("{e}; skipped"));
                continue;
            }
        };
        let meta = Meta::read(paths, &slug).ok();
        found.push(Bottle {
            label: meta
                .as_ref()
                .map_or_else(|| slug.clone(), |m| m.label.clone()),
            color: meta.map(|m| m.color).unwrap_or_default(),
            slug,
            state,
            queue,
        });
    }
    found.sort_by(|a, b| a.slug.cmp(&b.slug));
    (found, problems)
}

/// Pending proposals of every bottle, newest first.
#[must_use]
pub fn pending(paths: &Paths) -> Listing {
    let (bottles, mut problems) = bottles(paths);
    let mut items = Vec::new();
    for bottle in bottles {
        let pending = bottle.queue.pending();
        problems.extend(pending.problems.iter().map(QueueProblem::to_string));
        for proposal in pending.proposals {
            if proposal.bottle_slug != bottle.slug {
                problems.push(format!(
                    "{}: proposal {} names bottle {:?}, not the bottle whose queue holds it; skipped",
                    bottle.queue.dir().display(),
                    proposal.id,
                    proposal.bottle_slug
                ));
                continue;
            }
            let stale = is_stale(&bottle, &proposal);
            items.push(Item {
                bottle: bottle.clone(),
                proposal,
                stale,
            });
        }
    }
    items.sort_by(|a, b| {
        (b.proposal.arrival_timestamp.as_str(), &b.proposal.id)
            .cmp(&(a.proposal.arrival_timestamp.as_str(), &a.proposal.id))
    });
    Listing { items, problems }
}

/// Whether the live file changed since the proposal was made.
fn is_stale(bottle: &Bottle, proposal: &Proposal) -> bool {
    if !proposal.tool.is_routes_change() {
        return false;
    }
    let live = std::fs::read(bottle.state.routes_file()).unwrap_or_default();
    bb_supervise::sha256_hex(&live) != proposal.current_file_hash
}

/// Finds a proposal by id, or by a prefix of its id that names only one,
/// in any bottle; pending or already decided.
pub fn find(paths: &Paths, id: &str) -> anyhow::Result<(Bottle, Proposal)> {
    let (bottles, _) = bottles(paths);
    if let Ok(exact) = ProposalId::parse(id) {
        for b in &bottles {
            if let Ok(p) = b.queue.proposal(&exact) {
                return Ok((b.clone(), p));
            }
        }
    }
    let mut matches = Vec::new();
    for item in pending(paths).items {
        if item.proposal.id.as_str().starts_with(id) {
            matches.push((item.bottle, item.proposal));
        }
    }
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => Err(crate::commands::usage(format!(
            "no proposal {id:?} in any bottle's queue under {}",
            paths.state_root().display()
        ))),
        n => Err(crate::commands::usage(format!(
            "{id:?} names {n} pending proposals; give more of the id"
        ))),
    }
}

/// The file a proposal would replace, as it is now (a routes change: the
/// bottle's routes.yaml; a Dockerfile: the one approved before, if any).
#[must_use]
pub fn current_file(bottle: &Bottle, tool: Tool) -> Option<String> {
    let path = match tool {
        Tool::Allow | Tool::EgressBlock => bottle.state.routes_file(),
        Tool::CapabilityBlock => apply::approved_dockerfile(&bottle.state),
        _ => return None,
    };
    std::fs::read_to_string(path).ok()
}

/// The diff from the current file to `new`.
#[must_use]
pub fn diff_for(bottle: &Bottle, tool: Tool, new: &str) -> String {
    if tool == Tool::GitleaksAllow {
        return String::new();
    }
    let old = current_file(bottle, tool).unwrap_or_default();
    let name = match tool {
        Tool::CapabilityBlock => "Dockerfile",
        _ => "routes.yaml",
    };
    unified_diff(
        &old,
        new,
        &format!("{name} (live)"),
        &format!("{name} (proposed)"),
    )
}

/// What the operator decided.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Approve; with `file`, the operator's edited file instead of the
    /// proposed one.
    Approve {
        /// The edited file.
        file: Option<String>,
        /// A note (required for `gitleaks-allow`).
        reason: String,
        /// Approve even though the live file changed since the proposal.
        force: bool,
    },
    /// Reject.
    Reject {
        /// Why (required).
        reason: String,
    },
}

/// The result of a decision.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The answer written to the queue.
    pub response: Response,
    /// The audit entry.
    pub entry: Entry,
}

/// Decides one pending proposal; see the module docs for the steps. A
/// usage problem (a missing reason, an invalid edited file, a stale
/// proposal without `force`) changes nothing and is an error; a proposal
/// that cannot be applied is answered `failed` and recorded.
pub fn decide(
    paths: &Paths,
    backend: &dyn Backend,
    bottle: &Bottle,
    proposal: &Proposal,
    verdict: Verdict,
    who: &str,
) -> anyhow::Result<Outcome> {
    let tool = proposal.tool;
    let log = audit_log(paths);
    let lock = log.lock()?;
    lock.check().context(
        "the audit log does not verify, so no decision is recorded: see `bot-bottle supervise verify`",
    )?;
    if bottle.queue.response(&proposal.id)?.is_some() {
        anyhow::bail!("proposal {} was already answered", proposal.id);
    }
    let (status, notes, final_file) = match verdict {
        Verdict::Reject { reason } => {
            if reason.trim().is_empty() {
                return Err(crate::commands::usage("rejecting needs --reason"));
            }
            (Status::Rejected, reason, None)
        }
        Verdict::Approve {
            file,
            reason,
            force,
        } => {
            if tool.approval_needs_reason() && reason.trim().is_empty() {
                return Err(crate::commands::usage(format!(
                    "approving {tool} needs --reason: the audit log must say why a flagged secret was let through"
                )));
            }
            let edited = file.filter(|f| *f != proposal.proposed_file);
            if edited.is_some() && !tool.can_modify() {
                return Err(crate::commands::usage(format!(
                    "{tool} proposals cannot be modified, only approved or rejected"
                )));
            }
            if let (Some(f), true) = (&edited, tool.is_routes_change()) {
                bb_egress::policy::RoutesConfig::from_yaml(f).map_err(|e| {
                    crate::commands::usage(format!(
                        "the edited routes.yaml is not valid, nothing was changed: {e}"
                    ))
                })?;
            }
            if is_stale(bottle, proposal) && !force {
                return Err(crate::commands::usage(format!(
                    "the bottle's routes.yaml changed since proposal {} was made; approving would replace those changes. Look at `bot-bottle supervise show {}` and pass --force to approve anyway",
                    proposal.id, proposal.id
                )));
            }
            let status = if edited.is_some() {
                Status::Modified
            } else {
                Status::Approved
            };
            let file = edited.unwrap_or_else(|| proposal.proposed_file.clone());
            (status, reason, Some(file))
        }
    };
    let diff = diff_for(
        bottle,
        tool,
        final_file.as_deref().unwrap_or(&proposal.proposed_file),
    );
    let (status, notes) = if status.is_approval() {
        let file = final_file.as_deref().unwrap_or_default();
        match apply::apply(backend, bottle, tool, file) {
            Ok(applied) => (status, join_notes(&notes, &applied.to_string())),
            Err(why) => (Status::Failed, join_notes(&notes, &why)),
        }
    } else {
        (status, notes)
    };
    let final_file = final_file.filter(|_| status.is_approval());
    let response = Response::new(proposal, status, notes, final_file.clone(), who)?;
    bottle.queue.respond(&response)?;
    let entry = lock.append(Decision {
        who: who.to_owned(),
        bottle: bottle.slug.clone(),
        id: proposal.id.clone(),
        tool,
        status,
        reason: response.notes.clone(),
        diff,
        final_file_hash: final_file.map(|f| bb_supervise::sha256_hex(f.as_bytes())),
    })?;
    Ok(Outcome { response, entry })
}

fn join_notes(operator: &str, applied: &str) -> String {
    if operator.trim().is_empty() {
        applied.to_owned()
    } else {
        format!("{operator}\n{applied}")
    }
}

/// The first line of untrusted text, shortened, control characters
/// escaped (a justification cannot move the cursor or clear the screen).
#[must_use]
pub fn one_line(text: &str, max: usize) -> String {
    let first = text.lines().next().unwrap_or("");
    let mut out: String = first
        .chars()
        .take(max)
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if first.chars().count() > max || text.lines().nth(1).is_some() {
        out.push('…');
    }
    out
}

/// Untrusted text with control characters other than newline and tab
/// escaped, for printing whole.
#[must_use]
pub fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}
