//! `bot-bottle`: the operator's side of a bottle.
//!
//! - [`manifest`]: agent and bottle files, `extends:` and validation (SPEC §4).
//! - [`env`]: env values (literal, `${HOST_VAR}`, `?prompt`) and redaction.
//! - [`provider`]: claude, codex, pi and plugins (SPEC §6).
//! - [`plan`]: the launch plan, computed without a container runtime.
//! - [`forge`]: Gitea deploy keys minted at launch, revoked at teardown.
//! - [`backend`]: container backends (Docker).
//! - [`supervise`]: the operator's half of supervise (decide, apply, audit, TUI).
//! - [`commands`]: one module per CLI command.

pub mod backend;
pub mod commands;
pub mod env;
pub mod env_vars;
pub mod forge;
pub mod manifest;
pub mod paths;
pub mod plan;
pub mod provider;
pub mod supervise;
#[cfg(test)]
mod test_support;
pub mod tty;
