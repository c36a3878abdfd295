//! `bb-probe scan-fs HEX_NEEDLE [ROOT]`: can the agent find a secret
//! anywhere it can read, on disk or in its environment?

use std::fs::{self, File};
use std::io::Read as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use bb_testkit::cli;
use memchr::memmem::Finder;

use crate::{BadInput, EXIT_FAILED, EXIT_NO, EXIT_OK, io_kind, report};

/// Only this much of each file is searched; the agent's secrets are small
/// and near the start, and memory stays bounded.
const FILE_CAP: u64 = 64 * 1024 * 1024;

/// Kernel views: huge, endless or blocking, and never written by a person.
/// `/proc/self/cmdline` would also hold the hex needle.
const SKIPPED: [&str; 3] = ["/proc", "/sys", "/dev"];

#[derive(Default)]
struct Tally {
    hits: usize,
    files: usize,
    dirs: usize,
    unreadable: usize,
    capped: usize,
}

pub(crate) fn run(args: &cli::Parsed) -> Result<u8, BadInput> {
    let (needle, root) = match args.positional.as_slice() {
        [needle] => (needle, Path::new("/")),
        [needle, root] => (needle, Path::new(root)),
        [] => return Err(BadInput::usage("missing HEX_NEEDLE")),
        _ => return Err(BadInput::usage("expected HEX_NEEDLE [ROOT]")),
    };
    let needle = decode_hex(needle)
        .ok_or_else(|| BadInput::usage("HEX_NEEDLE must be a non-empty, even-length hex string"))?;
    let finder = Finder::new(&needle);
    let mut tally = Tally::default();

    for (name, value) in std::env::vars_os() {
        if finder.find(value.as_bytes()).is_some() {
            cli::say(&format!(
                "found env:{}",
                cli::one_line(&name.to_string_lossy())
            ));
            tally.hits += 1;
        }
    }

    // The root is followed even when it is a symlink: the caller named it.
    let root_meta = match fs::metadata(root) {
        Ok(meta) => meta,
        Err(error) => {
            report(io_kind(&error), &format!("{}: {error}", root.display()));
            return Ok(EXIT_FAILED);
        }
    };
    let mut buf = Vec::new();
    if root_meta.is_dir() {
        walk(root, &finder, &mut buf, &mut tally);
    } else if root_meta.is_file() {
        scan_file(root, &finder, &mut buf, &mut tally);
    }

    cli::note(&format!(
        "scanned files={} dirs={} unreadable={} capped={}",
        tally.files, tally.dirs, tally.unreadable, tally.capped
    ));
    if tally.hits == 0 {
        cli::say("clean");
        Ok(EXIT_OK)
    } else {
        Ok(EXIT_NO)
    }
}

fn walk(root: &Path, finder: &Finder<'_>, buf: &mut Vec<u8>, tally: &mut Tally) {
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        tally.dirs += 1;
        let Ok(entries) = fs::read_dir(&dir) else {
            tally.unreadable += 1;
            continue;
        };
        for entry in entries {
            let Ok(entry) = entry else {
                tally.unreadable += 1;
                continue;
            };
            let path = entry.path();
            if SKIPPED.iter().any(|skipped| path == Path::new(skipped)) {
                continue;
            }
            // `file_type` does not follow symlinks; FIFOs, sockets and
            // devices are skipped too (a FIFO read would block).
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => pending.push(path),
                Ok(kind) if kind.is_file() => scan_file(&path, finder, buf, tally),
                Ok(_) => {}
                Err(_) => tally.unreadable += 1,
            }
        }
    }
}

fn scan_file(path: &Path, finder: &Finder<'_>, buf: &mut Vec<u8>, tally: &mut Tally) {
    buf.clear();
    let read = File::open(path).and_then(|file| file.take(FILE_CAP).read_to_end(buf));
    if read.is_err() {
        tally.unreadable += 1;
    }
    tally.files += 1;
    if buf.len() as u64 == FILE_CAP {
        tally.capped += 1;
    }
    // Whatever was read before an error is still searched.
    if finder.find(buf).is_some() {
        cli::say(&format!(
            "found {}",
            cli::one_line(&path.display().to_string())
        ));
        tally.hits += 1;
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    fn nibble(digit: u8) -> Option<u8> {
        (digit as char).to_digit(16).map(|d| d as u8)
    }
    let digits = text.as_bytes();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn decodes_hex_of_either_case() {
        assert_eq!(decode_hex("00fFa5").as_deref(), Some(&[0, 0xff, 0xa5][..]));
        assert_eq!(decode_hex(""), None);
        assert_eq!(decode_hex("abc"), None);
        assert_eq!(decode_hex("zz"), None);
        assert_eq!(decode_hex("+1"), None);
    }

    #[test]
    fn reports_io_errors_by_kind() {
        let error = io::Error::from(io::ErrorKind::NotFound);
        assert_eq!(io_kind(&error), "not-found");
    }
}
