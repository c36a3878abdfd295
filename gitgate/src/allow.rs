//! `gitleaks:allow`: a finding on a marked line becomes a `gitleaks-allow`
//! proposal in the bottle's supervise queue (`bb-supervise`'s format), and
//! the push waits for the operator's answer.
//!
//! Only an approval that carries a reason lets the push through; a
//! rejection, no answer within the timeout, or an answer that does not
//! parse or breaks the queue's rules refuses it, and the refusal says
//! which. The proposal's file is the findings report: places and rules,
//! never the secret.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use bb_supervise::queue::{Proposal, Queue, Status, Tool};

use crate::scan::Finding;

/// How often the queue is looked at while waiting.
const POLL: Duration = Duration::from_millis(250);

/// How a wait for a decision ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Approved, with the operator's reason.
    Approved {
        /// The reason.
        reason: String,
    },
    /// Rejected, with the operator's note.
    Rejected {
        /// The note.
        notes: String,
    },
    /// No answer in time.
    TimedOut {
        /// The proposal id.
        id: String,
    },
    /// An answer that cannot be used.
    Malformed {
        /// What was wrong.
        why: String,
    },
    /// There is no queue to ask (no `supervise_queue` in gate.yaml), or
    /// queuing failed.
    Unavailable {
        /// Why.
        why: String,
    },
}

impl Decision {
    /// The `remote:` line a refusal prints.
    #[must_use]
    pub fn refusal(&self) -> Option<String> {
        match self {
            Decision::Approved { .. } => None,
            Decision::Rejected { notes } => Some(format!(
                "gitleaks-allow proposal rejected by the operator: {notes}"
            )),
            Decision::TimedOut { id } => Some(format!(
                "gitleaks-allow proposal {id} timed out with no decision"
            )),
            Decision::Malformed { why } => Some(format!(
                "gitleaks-allow answer is malformed, refusing: {why}"
            )),
            Decision::Unavailable { why } => {
                Some(format!("gitleaks-allow cannot be asked for: {why}"))
            }
        }
    }
}

/// The findings report that goes in the proposal.
#[must_use]
pub fn report(repo: &str, refs: &[String], findings: &[Finding]) -> String {
    let mut out = format!(
        "git-gate: a push to {repo} ({}) has {} finding(s) on lines marked gitleaks:allow.\n\
         Approving lets this push through as is. The secret itself is not shown.\n\n",
        refs.join(", "),
        findings.len()
    );
    for f in findings {
        let _ = writeln!(out, "- {f}");
    }
    out
}

/// Queues a proposal in `queue_dir` and waits up to `timeout` for its
/// answer. Blocking (file polling): run it off the async workers.
#[must_use]
pub fn ask(
    queue_dir: Option<&Path>,
    bottle_slug: &str,
    report: String,
    timeout: Duration,
) -> (Option<String>, Decision) {
    let Some(dir) = queue_dir else {
        return (
            None,
            Decision::Unavailable {
                why: "gate.yaml names no supervise_queue".into(),
            },
        );
    };
    let queue = match Queue::open(dir) {
        Ok(q) => q,
        Err(e) => {
            return (
                None,
                Decision::Unavailable {
                    why: format!("opening the queue: {e}"),
                },
            );
        }
    };
    let justification = "The agent marked these lines gitleaks:allow; \
        the push waits for a decision (a reason is required to approve)."
        .to_owned();
    let proposal = match Proposal::new(
        bottle_slug,
        Tool::GitleaksAllow,
        report,
        justification,
        None,
    ) {
        Ok(p) => p,
        Err(e) => {
            return (
                None,
                Decision::Unavailable {
                    why: format!("building the proposal: {e}"),
                },
            );
        }
    };
    if let Err(e) = queue.submit(&proposal) {
        return (
            None,
            Decision::Unavailable {
                why: format!("queuing the proposal: {e}"),
            },
        );
    }
    let id = proposal.id.as_str().to_owned();
    tracing::info!(proposal = %id, "gitleaks-allow proposal queued; holding the push");
    let deadline = Instant::now() + timeout;
    loop {
        match queue.response(&proposal.id) {
            Ok(Some(response)) => {
                let decision = match response.validate_for(Tool::GitleaksAllow) {
                    Err(e) => Decision::Malformed { why: e.to_string() },
                    Ok(()) => match response.status {
                        s if s.is_approval() => Decision::Approved {
                            reason: response.notes,
                        },
                        Status::Rejected => Decision::Rejected {
                            notes: response.notes,
                        },
                        other => Decision::Malformed {
                            why: format!("status {other} is not an answer to gitleaks-allow"),
                        },
                    },
                };
                let _ = queue.archive(&proposal.id);
                return (Some(id), decision);
            }
            Ok(None) => {}
            Err(e) => {
                let _ = queue.archive(&proposal.id);
                return (Some(id), Decision::Malformed { why: e.to_string() });
            }
        }
        if Instant::now() >= deadline {
            let _ = queue.archive(&proposal.id);
            return (Some(id.clone()), Decision::TimedOut { id });
        }
        std::thread::sleep(POLL);
    }
}
