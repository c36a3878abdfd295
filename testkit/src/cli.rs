//! Command-line plumbing shared by the two binaries: a small flag parser
//! (no parser crate keeps the static binaries small) and a stdout writer
//! that never panics.

use std::ffi::OsString;
use std::io::{self, Write as _};

/// Command-line words split into positional arguments and options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Words that are not options, in order.
    pub positional: Vec<String>,
    /// `(flag, value)` pairs in order, flags with their leading `--`.
    pub options: Vec<(String, String)>,
    /// `--help` or `-h` was given.
    pub help: bool,
}

impl Parsed {
    /// The last value given for `flag`.
    #[must_use]
    pub fn last(&self, flag: &str) -> Option<&str> {
        self.all(flag).last()
    }

    /// Every value given for `flag`, in order.
    pub fn all<'a>(&'a self, flag: &str) -> impl Iterator<Item = &'a str> {
        self.options
            .iter()
            .filter(move |(f, _)| f == flag)
            .map(|(_, v)| v.as_str())
    }

    /// The last value of `flag` as a positive number of milliseconds, or
    /// `default` when absent.
    pub fn millis(&self, flag: &str, default: u64) -> Result<std::time::Duration, String> {
        match self.last(flag) {
            None => Ok(std::time::Duration::from_millis(default)),
            Some(text) => match text.parse::<u64>() {
                Ok(n) if n > 0 => Ok(std::time::Duration::from_millis(n)),
                _ => Err(format!("{flag} wants a positive number, not {text:?}")),
            },
        }
    }
}

/// Splits `words` into positional arguments and options. Every option takes
/// a value (`--flag value` or `--flag=value`) and must be one of
/// `value_flags`; `--` ends the options.
pub fn parse(
    words: impl IntoIterator<Item = OsString>,
    value_flags: &[&str],
) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut words = words.into_iter().map(|word| {
        word.into_string()
            .map_err(|word| format!("argument {} is not UTF-8", word.display()))
    });
    let mut options_done = false;
    while let Some(word) = words.next() {
        let word = word?;
        if options_done || !word.starts_with('-') || word == "-" {
            parsed.positional.push(word);
        } else if word == "--" {
            options_done = true;
        } else if word == "--help" || word == "-h" {
            parsed.help = true;
        } else {
            let (flag, inline) = match word.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (word, None),
            };
            if !value_flags.contains(&flag.as_str()) {
                return Err(format!("unknown option {flag}"));
            }
            let value = match inline {
                Some(value) => value,
                None => words
                    .next()
                    .ok_or_else(|| format!("{flag} needs a value"))??,
            };
            parsed.options.push((flag, value));
        }
    }
    Ok(parsed)
}

/// Writes `bytes` to stdout and flushes. A closed stdout means nobody is
/// reading the result, so write errors are dropped rather than panicking
/// as `print!` would.
pub fn emit(bytes: &[u8]) {
    let mut out = io::stdout().lock();
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// Writes one line to stdout (see [`emit`]).
pub fn say(line: &str) {
    emit(format!("{line}\n").as_bytes());
}

/// Writes one diagnostic line to stderr, dropping write errors.
pub fn note(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

/// `message` on one line, so it fits in a `key=value message` result line.
#[must_use]
pub fn one_line(message: &str) -> String {
    message.replace(['\r', '\n'], " ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn splits_options_and_positionals() {
        let parsed = parse(
            words(&[
                "u",
                "--header",
                "a: b",
                "--header=c: d",
                "--data",
                "-x",
                "--",
                "--v",
            ]),
            &["--header", "--data"],
        )
        .unwrap();
        assert_eq!(parsed.positional, ["u", "--v"]);
        assert_eq!(parsed.all("--header").collect::<Vec<_>>(), ["a: b", "c: d"]);
        assert_eq!(parsed.last("--data"), Some("-x"));
        assert!(!parsed.help);
    }

    #[test]
    fn rejects_unknown_and_valueless_options() {
        assert!(parse(words(&["--nope"]), &[]).is_err());
        assert!(parse(words(&["--data"]), &["--data"]).is_err());
        let parsed = parse(words(&["--timeout-ms", "0"]), &["--timeout-ms"]).unwrap();
        assert!(parsed.millis("--timeout-ms", 5).is_err());
    }
}
