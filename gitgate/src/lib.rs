//! `bb-gitgate`: the agent's only way to push (SPEC §7).
//!
//! The agent's git talks smart HTTP ([`http`]) or `git://` ([`daemon`]) to
//! the gate; fetches are relayed to the upstream's `git-upload-pack` over
//! SSH ([`ssh`], host key pinned); pushes are received, their pack indexed
//! (while it still arrives, [`follow`]) into a per-repo [`mirror`] refreshed from the upstream first, every new
//! object [`scan`]ned with `bb-egress`'s DLP engine, findings on lines
//! marked `gitleaks:allow` sent to the operator ([`allow`]), and only a
//! clean push is forwarded to the upstream's `git-receive-pack` ([`gate`]).
//! [`pktline`] is the protocol parsing, pure and fuzzed.

pub mod allow;
pub mod config;
pub mod daemon;
pub mod follow;
pub mod gate;
pub mod http;
pub mod mirror;
pub mod pktline;
pub mod scan;
pub mod secrets;
pub mod ssh;
pub mod wire;
