//! `bb-supervise`: where the agent asks and a human decides (SPEC §8).
//!
//! This library holds the one definition of the proposal queue
//! ([`queue`]): the supervise server queues `allow`, `egress-block` and
//! `capability-block` proposals with it, git-gate queues `gitleaks-allow`
//! proposals with it, and the operator's `bot-bottle supervise` answers
//! them with it. The queue module does no networking and pulls in no async
//! runtime, so every one of those can link it. Every decision is appended
//! to the operator's hash-chained [`audit`] log.

pub mod audit;
pub mod queue;

pub use queue::{
    Proposal, ProposalId, Queue, QueueError, QueueProblem, Response, Status, Tool, sha256_hex,
};
