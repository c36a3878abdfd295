//! Every environment variable `bot-bottle` reads, declared once.
//!
//! Host variables named by a manifest (`${HOST_VAR}`) are not listed here:
//! the operator chooses those names.

/// The operator's home; `~/.bot-bottle/` lives under it.
pub const HOME: &str = "HOME";
/// Container backend when `--backend` is not given (`docker`).
pub const BOT_BOTTLE_BACKEND: &str = "BOT_BOTTLE_BACKEND";
/// Folder holding the static `bb-egress` and `bb-init` binaries that go into
/// the sidecar bundle image (default: next to the `bot-bottle` executable).
pub const BOT_BOTTLE_BUNDLE_BIN_DIR: &str = "BOT_BOTTLE_BUNDLE_BIN_DIR";
/// A PEM file of extra CAs the egress proxy trusts for upstreams (corporate
/// TLS inspection, test upstreams). Mounted read-only into the bundle, and
/// trusted by bot-bottle itself for a forge's API (Gitea deploy keys).
pub const BOT_BOTTLE_UPSTREAM_CA: &str = "BOT_BOTTLE_UPSTREAM_CA";
/// An existing Docker network to use as the bundle's way out instead of a
/// per-bottle one (it is never removed by teardown).
pub const BOT_BOTTLE_DOCKER_EGRESS_NETWORK: &str = "BOT_BOTTLE_DOCKER_EGRESS_NETWORK";
/// The `docker` command to run (default `docker` on `PATH`).
pub const BOT_BOTTLE_DOCKER: &str = "BOT_BOTTLE_DOCKER";
/// Debug builds only, `1`: launch bottles with their isolation broken on
/// purpose (the network holder keeps its default route, the internal bridge
/// its address) so the e2e suite can watch the launch probe refuse them.
/// Release builds ignore it.
pub const BOT_BOTTLE_TEST_BREAK_ISOLATION: &str = "BOT_BOTTLE_TEST_BREAK_ISOLATION";
/// `1`: print how long each phase of a launch took, to stderr.
pub const BOT_BOTTLE_TIMING: &str = "BOT_BOTTLE_TIMING";
/// `1`: `start` and `resume` remove the bottle's containers, networks and
/// state before they exit. Otherwise the exit status returns as soon as the
/// agent has stopped (and deploy keys are revoked), and a detached
/// `bot-bottle reap` removes the rest (`cleanup` finds what it could not).
pub const BOT_BOTTLE_WAIT_TEARDOWN: &str = "BOT_BOTTLE_WAIT_TEARDOWN";
/// `1` (or `true`, `yes`) makes `start` a dry run, as `--dry-run` does;
/// `0`, `false`, `no` or empty leave it off. Anything else is refused.
pub const BOT_BOTTLE_DRY_RUN: &str = "BOT_BOTTLE_DRY_RUN";
/// The operator's user name, recorded as who decided a supervise proposal.
pub const USER: &str = "USER";
/// The user name when `USER` is unset.
pub const LOGNAME: &str = "LOGNAME";
/// Editor for `edit` (then `EDITOR`, then `vi` on a terminal).
pub const VISUAL: &str = "VISUAL";
/// Editor for `edit` when `VISUAL` is unset.
pub const EDITOR: &str = "EDITOR";
/// Prefix of the variables that carry route secrets into the egress proxy
/// (the proxy's own `EGRESS_TOKEN_PREFIX`).
pub const EGRESS_TOKEN_PREFIX: &str = bb_egress::env_vars::EGRESS_TOKEN_PREFIX;

/// Set on the sidecar bundle: the bottle's slug, which `bb-supervise`
/// writes into each proposal (its state folder is mounted at a fixed path,
/// so the folder's name cannot say it). Read by `bb-supervise`
/// (`bb_supervise::env_vars::BB_SUPERVISE_SLUG`); repeated here so the
/// orchestrator need not link the server.
pub const BB_SUPERVISE_SLUG: &str = "BB_SUPERVISE_SLUG";
