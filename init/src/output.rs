//! Copying the daemons' output to `bb-init`'s own, one prefixed line at a
//! time, and `bb-init`'s own `[init] ` lines.
//!
//! Each daemon stream (stdout, stderr) has a reader thread running
//! [`copy_lines`]. A line is written with a single `write_all` while holding
//! the lock of `bb-init`'s matching stream, so lines from different daemons
//! never interleave mid-line. Lines are bytes, never decoded: a daemon's
//! non-UTF-8 output passes through untouched.
//!
//! Two bounds keep a misbehaving daemon from hurting the others: a line with
//! no newline within [`MAX_LINE`] bytes is cut into chunks (memory stays
//! bounded), and write errors on `bb-init`'s side are dropped while the pipe
//! keeps being drained (a daemon must never block on a full pipe because the
//! log consumer went away).

use std::fmt;
use std::io::{self, Read, Write};

/// The longest line copied whole; longer runs without a newline are emitted
/// in chunks of this many bytes, each ending its own prefixed line.
pub(crate) const MAX_LINE: usize = 16 * 1024;

/// One of `bb-init`'s output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// Writes one whole line (prefix, content and newline) to `stream`.
///
/// Errors are ignored on purpose: see the module docs.
pub(crate) fn write_line(stream: Stream, line: &[u8]) {
    let result = match stream {
        Stream::Stdout => {
            let mut out = io::stdout().lock();
            out.write_all(line).and_then(|()| out.flush())
        }
        Stream::Stderr => io::stderr().lock().write_all(line),
    };
    drop(result);
}

/// Prints one `[init] ` lifecycle line on stderr.
pub(crate) fn say(message: fmt::Arguments<'_>) {
    write_line(Stream::Stderr, format!("[init] {message}\n").as_bytes());
}

/// Reads `input` to its end and calls `emit` with each line, `prefix` first
/// and a newline last.
///
/// A line with no newline within [`MAX_LINE`] bytes is emitted in chunks of
/// [`MAX_LINE`] bytes; a trailing partial line is emitted at end of input
/// with a newline added. Read errors other than `Interrupted` end the copy
/// like end of input does.
pub(crate) fn copy_lines(mut input: impl Read, prefix: &[u8], mut emit: impl FnMut(&[u8])) {
    let mut line = Vec::with_capacity(prefix.len() + MAX_LINE + 1);
    line.extend_from_slice(prefix);
    let mut buf = vec![0; 8 * 1024];
    loop {
        let read = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut rest = &buf[..read];
        while !rest.is_empty() {
            let room = MAX_LINE - (line.len() - prefix.len());
            // The newline may sit one byte past the limit: a line of exactly
            // MAX_LINE bytes is still whole.
            let window = &rest[..rest.len().min(room + 1)];
            if let Some(end) = window.iter().position(|&byte| byte == b'\n') {
                line.extend_from_slice(&rest[..=end]);
                emit(&line);
                line.truncate(prefix.len());
                rest = &rest[end + 1..];
            } else if room == 0 {
                // Full, and the next byte is no newline: cut here.
                line.push(b'\n');
                emit(&line);
                line.truncate(prefix.len());
            } else {
                let take = window.len().min(room);
                line.extend_from_slice(&rest[..take]);
                rest = &rest[take..];
            }
        }
    }
    if line.len() > prefix.len() {
        line.push(b'\n');
        emit(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in reads of at most `step` bytes.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.data.len().min(self.step).min(buf.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn lines(data: &[u8], step: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        copy_lines(Trickle { data, step }, b"[d] ", |line| {
            out.push(line.to_vec());
        });
        out
    }

    fn prefixed(content: &[u8]) -> Vec<u8> {
        [b"[d] ", content, b"\n"].concat()
    }

    #[test]
    fn prefixes_each_line_and_flushes_the_partial_tail() {
        for step in [1, 3, 8192] {
            assert_eq!(
                lines(b"one\n\ntwo\nthree", step),
                vec![
                    prefixed(b"one"),
                    prefixed(b""),
                    prefixed(b"two"),
                    prefixed(b"three")
                ]
            );
        }
        assert!(lines(b"", 1).is_empty());
    }

    #[test]
    fn long_lines_come_out_in_chunks() {
        let long = vec![b'a'; 2 * MAX_LINE + 10];
        let mut data = long.clone();
        data.extend_from_slice(b"\nnext\n");
        for step in [7, 4096, 100_000] {
            assert_eq!(
                lines(&data, step),
                vec![
                    prefixed(&long[..MAX_LINE]),
                    prefixed(&long[MAX_LINE..2 * MAX_LINE]),
                    prefixed(&long[2 * MAX_LINE..]),
                    prefixed(b"next"),
                ]
            );
        }
    }

    #[test]
    fn a_line_of_exactly_max_bytes_is_whole() {
        let exact = vec![b'x'; MAX_LINE];
        let data = [&exact[..], b"\n", &exact[..]].concat();
        for step in [1000, MAX_LINE, 100_000] {
            assert_eq!(lines(&data, step), vec![prefixed(&exact), prefixed(&exact)]);
        }
    }

    #[test]
    fn bytes_pass_through_undecoded() {
        assert_eq!(lines(b"\xff\xfe\r\n", 2), vec![prefixed(b"\xff\xfe\r")]);
    }
}
