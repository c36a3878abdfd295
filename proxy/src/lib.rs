//! `bb-egress`: bot-bottle's egress proxy as a library.
//!
//! - [`policy`]: the routes.yaml model, compiled matchers and the decision
//!   function.
//! - [`dlp`]: the streaming DLP engine.
//! - [`redact`]: the wrapper secrets travel in.
//!
//! These modules do no I/O and pull in no async runtime, so the
//! orchestrator and git-gate use them with default features off.

#[cfg(feature = "server")]
pub mod ca;
pub mod dlp;
pub mod env_vars;
pub mod policy;
pub mod redact;
#[cfg(feature = "server")]
pub mod server;
pub mod ws;
