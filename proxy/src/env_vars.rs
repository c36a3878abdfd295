//! Every environment variable `bb-egress` reads, declared once.

/// Tracing filter for the proxy's log lines (`tracing_subscriber` syntax,
/// default `info`).
pub const BB_EGRESS_LOG: &str = "BB_EGRESS_LOG";

/// Prefix of variables whose values are registered with `known_secrets`
/// even when no route injects them. In the sidecar bundle only egress sees
/// these.
pub const EGRESS_TOKEN_PREFIX: &str = "EGRESS_TOKEN_";
