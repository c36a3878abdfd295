//! Every environment variable `bb-supervise` reads, declared once.

/// Tracing filter for the server's log lines (`tracing_subscriber` syntax,
/// default `info,rmcp=warn`: the MCP library logs every stateless request
/// at info).
pub const BB_SUPERVISE_LOG: &str = "BB_SUPERVISE_LOG";

/// The bottle slug written into proposals, when `--slug` is not given
/// (the bundle sets it: its state folder is always `/bb/state`).
pub const BB_SUPERVISE_SLUG: &str = "BB_SUPERVISE_SLUG";
