//! `bb-supervise`: where the agent asks and a human decides (SPEC §8).
//!
//! This library holds the one definition of the proposal queue
//! ([`queue`]): the supervise server queues `allow`, `egress-block` and
//! `capability-block` proposals with it, git-gate queues `gitleaks-allow`
//! proposals with it, and the operator's `bot-bottle supervise` answers
//! them with it. [`routes_diff`] says what a proposed routes.yaml adds to
//! the live one, for the agent's answer and the operator's review. Every
//! decision is appended to the operator's hash-chained [`audit`] log.
//! None of these does networking or pulls in an async runtime, so every
//! one of those can link them (default features off).
//!
//! With the `server` feature, [`tools`] (argument schemas and checks) and
//! [`server`] (the MCP server on rmcp's streamable HTTP transport) make up
//! the `bb-supervise` daemon.

pub mod audit;
pub mod env_vars;
pub mod queue;
pub mod routes_diff;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod tools;

pub use queue::{
    Proposal, ProposalId, Queue, QueueError, QueueProblem, Response, Status, Tool, sha256_hex,
};
