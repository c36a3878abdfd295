//! Keeping secrets out of output: a wrapper for secret values whose `Debug`
//! and `Display` print nothing, and [`log_field`], the one gate every log
//! field passes.
//!
//! Secrets (the values of `token_env` variables, registered DLP secrets) are
//! carried in [`Redacted`] so that no `{:?}` in a log line or error message
//! can ever print one. Reading the value is an explicit, greppable call to
//! [`Redacted::expose`].

use std::fmt;
use std::sync::Arc;

use crate::dlp::{DetectorSet, DlpEngine};

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Redacted<T>(T);

impl<T> Redacted<T> {
    /// Wraps a secret value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// Returns the secret. Every call site is a place a secret leaves its
    /// wrapper; keep them few and never pass the result to a formatter.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl<T> fmt::Display for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What a log field holds in place of a value that carries a secret.
pub const REDACTED_FIELD: &str = "<redacted: holds a secret>";

/// The one gate between a value and a log field: `value` as it may be
/// logged.
///
/// The value is scanned with `token_patterns` and `known_secrets` (every
/// registered secret and its encodings) whatever the route's detectors are,
/// so "a secret is never logged" does not depend on a route's DLP settings.
/// A value that holds one is replaced whole by [`REDACTED_FIELD`]: the
/// hit's offset says where a secret starts, not where it (or a second one)
/// ends.
#[must_use]
pub fn log_field<'a>(engine: &Arc<DlpEngine>, value: &'a str) -> &'a str {
    if engine
        .scan(DetectorSet::OUTBOUND, value.as_bytes())
        .is_some()
    {
        REDACTED_FIELD
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn log_fields_never_hold_a_registered_secret_or_a_known_token_format() {
        let secret = b"upstream-real-token-4f9a8b7c6d5e".to_vec();
        let engine = Arc::new(DlpEngine::new([("EGRESS_TOKEN_T", Redacted::new(secret))]).unwrap());
        assert_eq!(log_field(&engine, "/plain/path"), "/plain/path");
        for leaky in [
            "/p/upstream-real-token-4f9a8b7c6d5e/x",
            "upstream-real-token-4f9a8b7c6d5e.example.test",
            // base64 of the secret
            "/q?d=dXBzdHJlYW0tcmVhbC10b2tlbi00ZjlhOGI3YzZkNWU=",
            "/t/ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
        ] {
            assert_eq!(log_field(&engine, leaky), REDACTED_FIELD, "{leaky}");
        }
    }

    #[test]
    fn debug_and_display_hide_the_value() {
        let secret = Redacted::new(String::from("hunter2-hunter2"));
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(secret.expose(), "hunter2-hunter2");
    }
}
