//! The `known_secrets` the gate scans for, and how it receives them.
//!
//! `bb-init` gives the egress tokens (`EGRESS_TOKEN_*`) to egress alone as
//! environment; the gate gets the same values on its standard input, and
//! only when started with `--secrets-stdin`: NUL-terminated
//! `NAME=VALUE` records until end of input. A pipe is read once, before
//! any port is bound, by this process only: the values never appear in the
//! gate's argv or environment (both readable by other processes of the
//! same user via `/proc`), and never in a file.

use std::io::{self, Read};

use bb_egress::redact::Redacted;

/// A named secret, as `DlpEngine::new` takes it.
pub type Secret = (String, Redacted<Vec<u8>>);

/// Largest secrets input (every record together).
pub const MAX_INPUT: usize = 1024 * 1024;

/// A secrets input that cannot be used. Never includes a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretsError {
    /// Reading stdin failed.
    #[error("reading known secrets from stdin: {0}")]
    Read(#[from] io::Error),
    /// Over [`MAX_INPUT`].
    #[error("known secrets on stdin exceed {MAX_INPUT} bytes")]
    TooLarge,
    /// A record is not `NAME=VALUE`.
    #[error("known-secrets record {index} is not NAME=VALUE with a name of [A-Za-z0-9_]")]
    BadRecord {
        /// 0-based record number.
        index: usize,
    },
}

/// Parses NUL-terminated `NAME=VALUE` records. A final record without its
/// NUL is accepted; empty records are skipped.
pub fn parse(input: &[u8]) -> Result<Vec<Secret>, SecretsError> {
    let mut out = Vec::new();
    for (index, record) in input.split(|&b| b == 0).enumerate() {
        if record.is_empty() {
            continue;
        }
        let eq = memchr::memchr(b'=', record).ok_or(SecretsError::BadRecord { index })?;
        let name =
            std::str::from_utf8(&record[..eq]).map_err(|_| SecretsError::BadRecord { index })?;
        let valid =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(SecretsError::BadRecord { index });
        }
        out.push((name.to_owned(), Redacted::new(record[eq + 1..].to_vec())));
    }
    Ok(out)
}

/// Reads and parses `reader` (stdin) to its end.
pub fn read(reader: impl Read) -> Result<Vec<Secret>, SecretsError> {
    let mut buf = Vec::new();
    let n = reader.take(MAX_INPUT as u64 + 1).read_to_end(&mut buf)?;
    if n > MAX_INPUT {
        return Err(SecretsError::TooLarge);
    }
    parse(&buf)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let got = parse(b"A=one\0B_2=two=three\0\0").unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].0, "B_2");
        assert_eq!(got[1].1.expose(), b"two=three");
        assert!(parse(b"novalue\0").is_err());
        assert!(parse(b"bad name=x\0").is_err());
        assert_eq!(parse(b"A=last").unwrap().len(), 1);
    }
}
