//! The audit log: every decision on a proposal, as a hash chain (SPEC §8).
//!
//! One log per operator (`~/.bot-bottle/audit/`), outliving the bottles it
//! speaks of, in three files:
//!
//! ```text
//! decisions.jsonl   one record per line: {"hash": H, "entry": {...}}
//! decisions.head    {"count": N, "hash": H} of the last record appended
//! decisions.lock    flock(2)ed by every appender
//! ```
//!
//! A record's `hash` is the SHA-256 of its entry serialised as it is on the
//! line, and each entry carries the hash of the one before it (`prev`) and
//! its position (`seq`), so editing, dropping or reordering any record
//! breaks the chain at that record. Cutting records off the end leaves a
//! valid chain, so the head file names the last record; a log shorter
//! than its head, or whose record at the head's count has another hash,
//! was truncated. (Deleting both files together is not detectable from
//! the files alone; keep them where only the operator writes, as
//! `~/.bot-bottle` is.) A line must also be the exact serialisation of what
//! it parses to, so not even whitespace can change unnoticed.
//!
//! Appends take an exclusive `flock` on the lock file (std's
//! [`File::lock`], flock(2) on Unix: released when the file closes, so a
//! crashed appender never leaves it held), check the whole chain, write
//! the record with one `write` on an `O_APPEND` file, sync it, then replace
//! the head (temporary file and rename). Concurrent appenders, threads or
//! processes, therefore never interleave a record, and nobody appends to a
//! broken chain: the decision is refused until `bot-bottle supervise
//! verify` has been read. An appender that died between writing its record
//! and the head leaves the head one behind: `verify` reports that, and the
//! next append (whose chain checks out) brings the head up to date.
//!
//! The deciding side holds the lock across its whole decision
//! ([`AuditLog::lock`]) so that applying a proposal, answering it and
//! recording it happen in one piece, one decider at a time.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::queue::{ProposalId, Status, Tool, now_rfc3339, sha256_hex};

/// The log file's name.
pub const LOG_FILE: &str = "decisions.jsonl";
/// The head file's name.
pub const HEAD_FILE: &str = "decisions.head";
/// The lock file's name.
pub const LOCK_FILE: &str = "decisions.lock";
/// `prev` of the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Largest log read back (a decision carries a diff of at most a few
/// megabytes; a log larger than this is refused rather than read).
pub const MAX_LOG_BYTES: u64 = 512 * 1024 * 1024;

/// What the decider says about one decision; the log adds `seq`, `prev`
/// and `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The operator's user name.
    pub who: String,
    /// The bottle the proposal was for.
    pub bottle: String,
    /// The proposal.
    pub id: ProposalId,
    /// The tool that made it.
    pub tool: Tool,
    /// What was decided (or `failed`, when applying an approval did not take).
    pub status: Status,
    /// The operator's reason or note (and for `failed`, why).
    pub reason: String,
    /// A unified diff from the file the proposal replaces to the file that
    /// was approved (empty for a rejection with nothing to compare).
    pub diff: String,
    /// SHA-256 of the file that took effect, when one did.
    pub final_file_hash: Option<String>,
}

/// One entry of the log, as serialised on its line (field order fixed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// 1 for the first entry, then one more each.
    pub seq: u64,
    /// The previous record's hash ([`GENESIS`] for the first).
    pub prev: String,
    /// When it was appended, RFC 3339 in UTC.
    pub at: String,
    /// The operator's user name.
    pub who: String,
    /// The bottle.
    pub bottle: String,
    /// The proposal.
    pub id: ProposalId,
    /// The tool.
    pub tool: Tool,
    /// The decision.
    pub status: Status,
    /// The reason or note.
    pub reason: String,
    /// The unified diff.
    pub diff: String,
    /// SHA-256 of the file that took effect.
    pub final_file_hash: Option<String>,
}

/// A line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    hash: String,
    entry: Entry,
}

/// The head file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Head {
    count: u64,
    hash: String,
}

impl Entry {
    /// The hash a record of this entry carries.
    #[must_use]
    pub fn hash(&self) -> String {
        sha256_hex(&entry_json(self))
    }

    /// The log line (newline included) a record of this entry is.
    #[must_use]
    pub fn line(&self) -> Vec<u8> {
        let record = Record {
            hash: self.hash(),
            entry: self.clone(),
        };
        let mut line = serde_json::to_vec(&record).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

fn entry_json(entry: &Entry) -> Vec<u8> {
    // A struct of strings and enums always serialises.
    serde_json::to_vec(entry).unwrap_or_default()
}

/// Errors of the audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The chain does not hold: a record was edited, dropped, reordered or
    /// cut off.
    #[error("{}: {problem}", path.display())]
    Broken {
        /// The log or head file.
        path: PathBuf,
        /// Where and what.
        problem: Problem,
    },
    /// The file system refused.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// What is wrong with a log (line numbers count from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Problem {
    /// A line is not a record (not JSON, a missing or unknown field, or not
    /// in the one serialisation the log writes).
    NotARecord {
        /// The line.
        line: u64,
        /// Why (never the line's contents).
        why: String,
    },
    /// A record's hash is not the hash of its entry: the entry was edited.
    HashMismatch {
        /// The line.
        line: u64,
    },
    /// A record's `seq` is not its position: records were dropped or
    /// reordered.
    OutOfSequence {
        /// The line.
        line: u64,
        /// Its `seq`.
        seq: u64,
    },
    /// A record's `prev` is not the previous record's hash.
    ChainBroken {
        /// The line.
        line: u64,
    },
    /// The last line has no newline: a torn or cut write.
    TornLastLine {
        /// The line.
        line: u64,
    },
    /// The head names more records than the log has: it was truncated.
    Truncated {
        /// Records the head names.
        head: u64,
        /// Records in the log.
        log: u64,
    },
    /// The record at the head's count is not the one the head names.
    HeadMismatch {
        /// The head's count.
        count: u64,
    },
    /// Records follow the one the head names (an append that died before
    /// updating the head, or records added without the lock).
    HeadBehind {
        /// The head's count.
        head: u64,
        /// Records in the log.
        log: u64,
    },
    /// The log has records but the head file is missing.
    HeadMissing {
        /// Records in the log.
        log: u64,
    },
    /// The head file is not valid.
    BadHead {
        /// Why.
        why: String,
    },
    /// The log is larger than [`MAX_LOG_BYTES`].
    TooLarge {
        /// Its size.
        bytes: u64,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotARecord { line, why } => write!(f, "line {line} is not a record: {why}"),
            Self::HashMismatch { line } => write!(
                f,
                "line {line}: the entry does not match its hash (it was edited)"
            ),
            Self::OutOfSequence { line, seq } => write!(
                f,
                "line {line} holds entry {seq}: entries were dropped or reordered"
            ),
            Self::ChainBroken { line } => write!(
                f,
                "line {line}: `prev` is not the hash of the entry before it"
            ),
            Self::TornLastLine { line } => {
                write!(f, "line {line} has no end: the log was cut mid-record")
            }
            Self::Truncated { head, log } => write!(
                f,
                "the head names {head} entries but the log has {log}: it was truncated"
            ),
            Self::HeadMismatch { count } => write!(
                f,
                "entry {count} is not the one the head names: the log was rewritten"
            ),
            Self::HeadBehind { head, log } => write!(
                f,
                "the head names {head} entries but the log has {log}: an append was interrupted, or entries were added outside bot-bottle (the next decision brings the head up to date)"
            ),
            Self::HeadMissing { log } => write!(f, "the log has {log} entries but no head file"),
            Self::BadHead { why } => write!(f, "the head file is not valid: {why}"),
            Self::TooLarge { bytes } => {
                write!(f, "{bytes} bytes, at most {MAX_LOG_BYTES} are read")
            }
        }
    }
}

/// A log that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Its entries, oldest first.
    pub entries: Vec<Entry>,
    /// The last record's hash ([`GENESIS`] for an empty log).
    pub head_hash: String,
}

/// The audit log in one folder.
#[derive(Debug, Clone)]
pub struct AuditLog {
    dir: PathBuf,
}

impl AuditLog {
    /// The log in `dir`; nothing is created until the first append.
    #[must_use]
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log file.
    #[must_use]
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    fn head_path(&self) -> PathBuf {
        self.dir.join(HEAD_FILE)
    }

    /// Takes the appenders' lock, creating the folder (0700) when missing;
    /// blocks while another decider holds it. The lock is released when
    /// the guard drops.
    pub fn lock(&self) -> Result<AuditLock<'_>, AuditError> {
        let io_err = |path: &Path, source| AuditError::Io {
            path: path.to_owned(),
            source,
        };
        if !self.dir.exists() {
            fs::create_dir_all(&self.dir).map_err(|e| io_err(&self.dir, e))?;
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700))
                .map_err(|e| io_err(&self.dir, e))?;
        }
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        file.lock().map_err(|e| io_err(&path, e))?;
        Ok(AuditLock {
            log: self,
            _file: file,
        })
    }

    /// Locks, appends one decision, unlocks.
    pub fn append(&self, decision: Decision) -> Result<Entry, AuditError> {
        self.lock()?.append(decision)
    }

    /// Checks the whole log against its head.
    pub fn verify(&self) -> Result<Verified, AuditError> {
        let verified = self.read_chain()?;
        let n = verified.entries.len() as u64;
        let head_path = self.head_path();
        let broken = |problem| AuditError::Broken {
            path: head_path.clone(),
            problem,
        };
        match self.read_head()? {
            None if n == 0 => {}
            None => return Err(broken(Problem::HeadMissing { log: n })),
            Some(head) => {
                if head.count > n {
                    return Err(broken(Problem::Truncated {
                        head: head.count,
                        log: n,
                    }));
                }
                let at_head = match head.count {
                    0 => GENESIS.to_owned(),
                    c => verified.entries[usize::try_from(c - 1).unwrap_or(usize::MAX)].hash(),
                };
                if at_head != head.hash {
                    return Err(broken(Problem::HeadMismatch { count: head.count }));
                }
                if head.count < n {
                    return Err(broken(Problem::HeadBehind {
                        head: head.count,
                        log: n,
                    }));
                }
            }
        }
        Ok(verified)
    }

    /// Reads and checks the chain, without the head.
    fn read_chain(&self) -> Result<Verified, AuditError> {
        let path = self.log_path();
        let bytes = match read_log(&path) {
            Ok(b) => b,
            Err(AuditError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        check_chain(&bytes).map_err(|problem| AuditError::Broken { path, problem })
    }

    fn read_head(&self) -> Result<Option<Head>, AuditError> {
        let path = self.head_path();
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(AuditError::Io { path, source }),
        };
        let head: Head = serde_json::from_slice(&text).map_err(|e| AuditError::Broken {
            path: path.clone(),
            problem: Problem::BadHead {
                why: format!("not valid JSON at line {} column {}", e.line(), e.column()),
            },
        })?;
        Ok(Some(head))
    }
}

/// Checks a whole log's bytes: every line a canonical record, hashes,
/// sequence and chain. Does no I/O (the fuzz target calls it).
pub fn check_chain(bytes: &[u8]) -> Result<Verified, Problem> {
    let mut entries = Vec::new();
    let mut prev = GENESIS.to_owned();
    let mut rest = bytes;
    let mut line_no = 0u64;
    while !rest.is_empty() {
        line_no += 1;
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(Problem::TornLastLine { line: line_no });
        };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        let record: Record = serde_json::from_slice(line).map_err(|e| Problem::NotARecord {
            line: line_no,
            why: format!("not valid JSON at column {}", e.column()),
        })?;
        if serde_json::to_vec(&record).ok().as_deref() != Some(line) {
            return Err(Problem::NotARecord {
                line: line_no,
                why: "not in the log's own serialisation (the line was edited)".into(),
            });
        }
        if record.entry.hash() != record.hash {
            return Err(Problem::HashMismatch { line: line_no });
        }
        if record.entry.seq != line_no {
            return Err(Problem::OutOfSequence {
                line: line_no,
                seq: record.entry.seq,
            });
        }
        if record.entry.prev != prev {
            return Err(Problem::ChainBroken { line: line_no });
        }
        prev = record.hash;
        entries.push(record.entry);
    }
    Ok(Verified {
        entries,
        head_hash: prev,
    })
}

/// The appenders' lock, held; see [`AuditLog::lock`].
#[derive(Debug)]
pub struct AuditLock<'a> {
    log: &'a AuditLog,
    _file: File,
}

impl AuditLock<'_> {
    /// Checks the chain is whole (refusing to extend a broken one) without
    /// appending: a decider calls this before applying anything, so a
    /// decision that could not be recorded is never made.
    pub fn check(&self) -> Result<Verified, AuditError> {
        let verified = self.log.read_chain()?;
        let n = verified.entries.len() as u64;
        if let Some(head) = self.log.read_head()? {
            // A head ahead of the log, or naming another record, means the
            // log was cut or rewritten; a head behind it is an interrupted
            // append that this one repairs.
            let named = match head.count {
                0 => Some(GENESIS.to_owned()),
                c if c <= n => Some(verified.entries[usize::try_from(c - 1).unwrap_or(0)].hash()),
                _ => None,
            };
            let problem = match named {
                None => Some(Problem::Truncated {
                    head: head.count,
                    log: n,
                }),
                Some(h) if h != head.hash => Some(Problem::HeadMismatch { count: head.count }),
                Some(_) => None,
            };
            if let Some(problem) = problem {
                return Err(AuditError::Broken {
                    path: self.log.head_path(),
                    problem,
                });
            }
        } else if n > 0 {
            return Err(AuditError::Broken {
                path: self.log.head_path(),
                problem: Problem::HeadMissing { log: n },
            });
        }
        Ok(verified)
    }

    /// Appends one decision to a whole chain and moves the head to it.
    pub fn append(&self, decision: Decision) -> Result<Entry, AuditError> {
        let verified = self.check()?;
        let entry = Entry {
            seq: verified.entries.len() as u64 + 1,
            prev: verified.head_hash,
            at: now_rfc3339(),
            who: decision.who,
            bottle: decision.bottle,
            id: decision.id,
            tool: decision.tool,
            status: decision.status,
            reason: decision.reason,
            diff: decision.diff,
            final_file_hash: decision.final_file_hash,
        };
        let hash = entry.hash();
        let line = entry.line();
        let path = self.log.log_path();
        let io_err = |p: &Path, source| AuditError::Io {
            path: p.to_owned(),
            source,
        };
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        file.write_all(&line).map_err(|e| io_err(&path, e))?;
        file.sync_data().map_err(|e| io_err(&path, e))?;
        let head = Head {
            count: entry.seq,
            hash,
        };
        let head_path = self.log.head_path();
        let tmp = self.log.dir.join(format!(".{HEAD_FILE}.tmp"));
        let write_head = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)?;
            f.write_all(&serde_json::to_vec(&head).unwrap_or_default())?;
            f.write_all(b"\n")?;
            f.sync_all()?;
            fs::rename(&tmp, &head_path)
        };
        write_head().map_err(|e| io_err(&head_path, e))?;
        Ok(entry)
    }
}

fn read_log(path: &Path) -> Result<Vec<u8>, AuditError> {
    let io_err = |source| AuditError::Io {
        path: path.to_owned(),
        source,
    };
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    if len > MAX_LOG_BYTES {
        return Err(AuditError::Broken {
            path: path.to_owned(),
            problem: Problem::TooLarge { bytes: len },
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_LOG_BYTES)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    Ok(bytes)
}

/// A unified diff from `old` to `new` (three lines of context), labelled
/// with `old_name` and `new_name`; empty when they are equal.
#[must_use]
pub fn unified_diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}

#[cfg(test)]
mod tests;
