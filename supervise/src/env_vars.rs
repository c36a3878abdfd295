//! Every environment variable `bb-supervise` reads, declared once.

/// Tracing filter for the server's log lines (`tracing_subscriber` syntax,
/// default `info`).
pub const BB_SUPERVISE_LOG: &str = "BB_SUPERVISE_LOG";
