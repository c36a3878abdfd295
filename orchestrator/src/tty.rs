//! Asking the operator things, and never waiting when nobody can answer.
//!
//! Every question has a non-interactive answer: when stdin is not a
//! terminal the default is taken or the command stops naming the flag to
//! pass. Nothing blocks on a prompt in a script or CI.

use std::io::{BufRead, IsTerminal, Write};

/// Whether stdin is a terminal someone can answer on.
#[must_use]
pub fn interactive() -> bool {
    std::io::stdin().is_terminal()
}

/// Asks a line; returns `default` on an empty answer.
pub fn ask(question: &str, default: &str) -> std::io::Result<String> {
    let mut err = std::io::stderr();
    write!(err, "{question} [{default}]: ")?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    let answer = line.trim();
    Ok(if answer.is_empty() {
        default.to_owned()
    } else {
        answer.to_owned()
    })
}

/// Asks y/N; anything but `y`/`yes` is no.
pub fn confirm(question: &str) -> std::io::Result<bool> {
    let mut err = std::io::stderr();
    write!(err, "{question} [y/N]: ")?;
    err.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}
