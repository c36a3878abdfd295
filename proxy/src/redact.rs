//! A wrapper for secret values whose `Debug` and `Display` print nothing.
//!
//! Secrets (the values of `token_env` variables, registered DLP secrets) are
//! carried in [`Redacted`] so that no `{:?}` in a log line or error message
//! can ever print one. Reading the value is an explicit, greppable call to
//! [`Redacted::expose`].

use std::fmt;

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

#[cfg(test)]
mod tests {
    use super::Redacted;

    #[test]
    fn debug_and_display_hide_the_value() {
        let secret = Redacted::new(String::from("hunter2-hunter2"));
        assert_eq!(format!("{secret:?}"), "<redacted>");
        assert_eq!(format!("{secret}"), "<redacted>");
        assert_eq!(secret.expose(), "hunter2-hunter2");
    }
}
