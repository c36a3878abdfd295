//! The supervise tools apart from their transport: argument types (whose
//! JSON schemas the MCP server publishes), the checks a proposal must pass
//! before it is queued, and the text the agent gets back.
//!
//! No I/O: the server reads the live routes.yaml and the queue, and hands
//! the text and answers in. Everything that arrives here came from the
//! agent, which is treated as compromised: arguments are bounded, a routes
//! file must pass `bb-egress`'s own parser, and the result of a good call
//! is only ever a queued proposal that a human decides on.

use std::fmt::Write as _;

use bb_egress::policy::{ConfigErrors, RoutesConfig};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::queue::{
    MAX_PROPOSED_FILE_BYTES, MAX_TEXT_BYTES, Proposal, ProposalId, QueueError, Response, Status,
    Tool,
};
use crate::routes_diff::{self, Change};

/// MCP name of the allowlist tool.
pub const LIST_EGRESS_ROUTES: &str = "list-egress-routes";
/// MCP name of the outcome tool.
pub const PROPOSAL_STATUS: &str = "proposal-status";
/// Longest wait `proposal-status` grants. Codex gives a tool call 60 s
/// by default (`tool_timeout_sec`); staying under it means a wait never
/// turns into a client-side timeout, and the agent simply asks again.
pub const MAX_WAIT_SECONDS: u64 = 50;
/// Default bound on pending proposals per bottle.
pub const DEFAULT_MAX_PENDING: usize = 8;

/// Arguments of `allow` and `egress-block`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutesArgs {
    /// The WHOLE proposed routes.yaml: every live route you still need
    /// (get them with `list-egress-routes`) plus the change. Route keys:
    /// `host` (required, exact name); `auth_scheme` (Bearer|token) with
    /// `token_env`; `matches` (list of {paths: [{type: prefix|exact|regex,
    /// value}], methods: [GET, ...], headers: [{name, value, type:
    /// exact|regex}]}); `git: {fetch: true}`; `ports: [443]`;
    /// `allow_private: true`; `dlp: {outbound_detectors: false |
    /// [token_patterns, known_secrets], inbound_detectors: false |
    /// [naive_injection_detection]}`. Omit a key to keep its default.
    pub routes_yaml: String,
    /// Why the bottle needs this: the task, the host, what was refused.
    /// A human reads it before deciding.
    pub justification: String,
}

/// Arguments of `capability-block`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CapabilityArgs {
    /// The whole proposed agent Dockerfile (the current one plus what the
    /// task needs, e.g. an extra package).
    pub dockerfile: String,
    /// Why the bottle needs this capability. A human reads it before
    /// deciding.
    pub justification: String,
}

/// Arguments of `proposal-status`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusArgs {
    /// The `id` returned by `allow`, `egress-block` or `capability-block`.
    pub id: String,
    /// Seconds to wait for a decision before answering `pending` (0 to
    /// 50, default 0: answer at once).
    #[serde(default)]
    pub wait_seconds: Option<u64>,
}

/// Arguments of `list-egress-routes`: none.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// Why a tool call was refused. The message goes to the agent, so it
/// names the route, host and key at fault, and never a secret (the agent's
/// own input is the only content it can echo).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ToolError {
    /// The proposed routes.yaml did not pass egress's parser.
    #[error(
        "the proposed routes.yaml is not valid; nothing was queued. Fix these and call again:\n{0}"
    )]
    InvalidRoutes(ConfigErrors),
    /// A required text argument is blank.
    #[error("`{field}` is empty; nothing was queued")]
    Empty {
        /// The argument.
        field: &'static str,
    },
    /// An argument is over its size bound.
    #[error("`{field}` is {len} bytes, at most {max} allowed; nothing was queued")]
    TooLarge {
        /// The argument.
        field: &'static str,
        /// Its size.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// The proposed routes.yaml is the live one.
    #[error(
        "the proposed routes.yaml is the live one; nothing was queued. \
         Call `list-egress-routes`, then send the live routes plus your change"
    )]
    NoChange,
    /// Too many proposals wait already.
    #[error(
        "{pending} proposals from this bottle already wait for a human (at most {max}); \
         nothing was queued. Wait for them with `proposal-status`"
    )]
    TooManyPending {
        /// How many wait.
        pending: usize,
        /// The bound.
        max: usize,
    },
    /// `wait_seconds` out of range.
    #[error("`wait_seconds` is {0}, at most {MAX_WAIT_SECONDS} allowed")]
    WaitTooLong(u64),
    /// No such proposal in this bottle's queue.
    #[error("no proposal {0} in this bottle's queue")]
    NotFound(String),
    /// The queue refused (an invalid id, a full disk).
    #[error("{0}")]
    Queue(#[from] QueueError),
    /// The live allowlist could not be fetched.
    #[error("could not read the live allowlist: {0}")]
    Allowlist(String),
}

/// A proposal ready to queue, with what it changes.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The proposal.
    pub proposal: Proposal,
    /// For routes proposals, what it changes against the live file
    /// (empty for other tools).
    pub changes: Vec<Change>,
}

/// Checks a text argument: non-blank and within `max` bytes.
fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), ToolError> {
    if value.len() > max {
        return Err(ToolError::TooLarge {
            field,
            len: value.len(),
            max,
        });
    }
    if value.trim().is_empty() {
        return Err(ToolError::Empty { field });
    }
    Ok(())
}

/// Parses a live routes.yaml; a missing or invalid live file counts as no
/// routes, so every proposed route shows up as added.
#[must_use]
pub fn live_config(live: Option<&str>) -> RoutesConfig {
    live.and_then(|text| RoutesConfig::from_yaml(text).ok())
        .unwrap_or_default()
}

/// Checks an `allow` / `egress-block` call and builds its proposal.
/// `live` is the bottle's live routes.yaml text, when it could be read.
pub fn prepare_routes(
    tool: Tool,
    args: RoutesArgs,
    slug: &str,
    live: Option<&str>,
) -> Result<Prepared, ToolError> {
    debug_assert!(tool.is_routes_change());
    check_text("routes_yaml", &args.routes_yaml, MAX_PROPOSED_FILE_BYTES)?;
    check_text("justification", &args.justification, MAX_TEXT_BYTES)?;
    let proposed = RoutesConfig::from_yaml(&args.routes_yaml).map_err(ToolError::InvalidRoutes)?;
    let changes = routes_diff::compare(&live_config(live), &proposed);
    if changes.is_empty() {
        return Err(ToolError::NoChange);
    }
    let proposal = Proposal::new(
        slug,
        tool,
        args.routes_yaml,
        args.justification,
        Some(live.unwrap_or("")),
    )?;
    Ok(Prepared { proposal, changes })
}

/// Checks a `capability-block` call and builds its proposal. `current` is
/// the agent Dockerfile it would replace, when known.
pub fn prepare_capability(
    args: CapabilityArgs,
    slug: &str,
    current: Option<&str>,
) -> Result<Prepared, ToolError> {
    check_text("dockerfile", &args.dockerfile, MAX_PROPOSED_FILE_BYTES)?;
    check_text("justification", &args.justification, MAX_TEXT_BYTES)?;
    let proposal = Proposal::new(
        slug,
        Tool::CapabilityBlock,
        args.dockerfile,
        args.justification,
        current,
    )?;
    Ok(Prepared {
        proposal,
        changes: Vec::new(),
    })
}

/// Checks `proposal-status` arguments: the id and the wait in seconds.
pub fn parse_status(args: &StatusArgs) -> Result<(ProposalId, u64), ToolError> {
    let id = ProposalId::parse(args.id.trim())?;
    let wait = args.wait_seconds.unwrap_or(0);
    if wait > MAX_WAIT_SECONDS {
        return Err(ToolError::WaitTooLong(wait));
    }
    Ok((id, wait))
}

/// What `allow` / `egress-block` / `capability-block` answer once queued.
#[must_use]
pub fn queued_text(prepared: &Prepared) -> String {
    let p = &prepared.proposal;
    let mut out = format!(
        "Proposal {id} ({tool}) is queued for a human to review. Nothing has changed yet.\n",
        id = p.id,
        tool = p.tool
    );
    if p.tool.is_routes_change() {
        out.push_str(&routes_diff::summary(&prepared.changes));
    }
    let _ = writeln!(
        out,
        "To learn the decision, call `{PROPOSAL_STATUS}` with id \"{id}\" and \
         wait_seconds up to {MAX_WAIT_SECONDS}; call it again while it says pending.",
        id = p.id
    );
    out
}

/// The answer of `proposal-status`, as JSON for the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The proposal.
    pub id: String,
    /// Its tool.
    pub tool: String,
    /// `pending`, `approved`, `modified`, `rejected` or `failed`.
    pub status: String,
    /// The operator's note, when decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    /// The file that took effect (the operator's edit for `modified`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_file: Option<String>,
    /// What this means for the agent, in a sentence.
    pub meaning: String,
}

/// Builds the `proposal-status` answer from the proposal and its response.
#[must_use]
pub fn status_report(proposal: &Proposal, response: Option<&Response>) -> StatusReport {
    let tool = proposal.tool;
    let meaning = match response.map(|r| r.status) {
        None => "pending: no decision yet; call proposal-status again (with wait_seconds) \
                 or carry on with other work"
            .to_owned(),
        Some(Status::Approved | Status::Modified) if tool == Tool::CapabilityBlock => {
            "approved: it takes effect on the next resume of this bottle, which rebuilds the \
             agent image from the approved Dockerfile; the running bottle does not change"
                .to_owned()
        }
        Some(Status::Approved) if tool.is_routes_change() => {
            "approved: egress now enforces the proposed routes.yaml; retry the request".to_owned()
        }
        Some(Status::Modified) if tool.is_routes_change() => {
            "approved with changes: egress now enforces final_file (not exactly what you \
             proposed); check it before retrying"
                .to_owned()
        }
        Some(Status::Approved | Status::Modified) => "approved".to_owned(),
        Some(Status::Rejected) => {
            "rejected: nothing changed; read notes before proposing anything else".to_owned()
        }
        Some(Status::Failed) => {
            "failed: a human approved it but applying it failed, so nothing changed; notes \
             says why"
                .to_owned()
        }
    };
    StatusReport {
        id: proposal.id.to_string(),
        tool: tool.to_string(),
        status: response.map_or_else(|| "pending".to_owned(), |r| r.status.to_string()),
        notes: response.map(|r| r.notes.clone()),
        final_file: response.and_then(|r| {
            r.status
                .is_approval()
                .then(|| r.final_file.clone())
                .flatten()
        }),
        meaning,
    }
}

/// Server instructions sent at `initialize`: when to use which tool.
pub const INSTRUCTIONS: &str = "bot-bottle supervise: this bottle's way to ask a human for more. \
Egress (network) is deny-by-default; a refused request gets a 403 saying so. Call \
`list-egress-routes` to see what is allowed. To ask for a host or a wider route, call `allow` \
with the WHOLE proposed routes.yaml (the live routes plus your change) and a justification; \
`egress-block` is the same, filed right after a refused request. To ask for a tool the image \
lacks, call `capability-block` with the whole proposed Dockerfile. Every proposal waits for a \
human: call `proposal-status` with its id (wait_seconds up to 50) to learn the decision. Never \
try to get around the proxy.";

#[cfg(test)]
mod tests;
