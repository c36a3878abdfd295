//! The proposal queue: one folder of JSON files per bottle (SPEC §8).
//!
//! Layout of a bottle's queue folder (`~/.bot-bottle/state/<slug>/queue/`
//! on the host, mounted into the bundle):
//!
//! ```text
//! <id>.proposal.json    what the agent (or git-gate) asks for
//! <id>.response.json    the operator's answer
//! processed/            decided pairs, moved here by whoever decides
//! .<anything>           writers' temporary files; readers skip them
//! ```
//!
//! Every file is written to a temporary name in the same folder and then
//! linked into place, so a reader sees a whole file or none, and two
//! deciders racing on one proposal cannot both answer it: the second link
//! fails. A decision links the response into `processed/` and then moves
//! the proposal after it; whoever waits for an answer
//! ([`Queue::response`]) looks in both places, so a response written into
//! the queue folder itself (by hand, or by an older writer) counts too.
//!
//! Files come from a folder a sidecar daemon can write, and that daemon
//! handles agent input, so nothing read here is trusted: a file that does
//! not parse, names another id than its file name, breaks a size bound, or
//! is not a regular file (symlinks are not followed) is reported as a
//! [`QueueProblem`] and skipped, never applied, never a panic.

use std::fmt;
use std::fs;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Suffix of a proposal file.
pub const PROPOSAL_SUFFIX: &str = ".proposal.json";
/// Suffix of a response file.
pub const RESPONSE_SUFFIX: &str = ".response.json";
/// Where decided pairs go.
pub const PROCESSED_DIR: &str = "processed";

/// Largest `proposed_file` (a routes.yaml, a Dockerfile, a findings report).
pub const MAX_PROPOSED_FILE_BYTES: usize = 1024 * 1024;
/// Largest justification or response note.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Largest queue file read from disk. JSON escaping can grow text up to six
/// times (`\u0000`), so the bound on the decoded fields is checked after
/// parsing; this one only keeps a hostile file from filling memory.
pub const MAX_QUEUE_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// A supervise tool that produces a proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Tool {
    /// A full proposed routes.yaml that allows more (the agent was blocked).
    Allow,
    /// A full proposed routes.yaml, filed from an egress block message.
    EgressBlock,
    /// A proposed agent Dockerfile (a capability the image lacks).
    CapabilityBlock,
    /// git-gate found secrets on lines marked `gitleaks:allow`; the push
    /// waits for this answer.
    GitleaksAllow,
}

impl Tool {
    /// Every tool, in a stable order.
    pub const ALL: [Tool; 4] = [
        Tool::Allow,
        Tool::EgressBlock,
        Tool::CapabilityBlock,
        Tool::GitleaksAllow,
    ];

    /// The name used in files, MCP and the audit log.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Allow => "allow",
            Tool::EgressBlock => "egress-block",
            Tool::CapabilityBlock => "capability-block",
            Tool::GitleaksAllow => "gitleaks-allow",
        }
    }

    /// Whether the proposed file is a routes.yaml for the bottle's egress.
    #[must_use]
    pub fn is_routes_change(self) -> bool {
        matches!(self, Tool::Allow | Tool::EgressBlock)
    }

    /// Whether approving needs a non-empty reason (the audit trail must say
    /// why a flagged secret was let through).
    #[must_use]
    pub fn approval_needs_reason(self) -> bool {
        matches!(self, Tool::GitleaksAllow)
    }

    /// Whether the operator may edit the proposed file before approving.
    /// A findings report is not a file anything applies.
    #[must_use]
    pub fn can_modify(self) -> bool {
        !matches!(self, Tool::GitleaksAllow)
    }
}

impl fmt::Display for Tool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A proposal id: the file-name stem of its queue files. Only
/// `[A-Za-z0-9_-]`, 1 to 64 characters, so an id can never name a path
/// outside the queue folder.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProposalId(String);

impl ProposalId {
    /// A fresh random id (a v4 UUID).
    #[must_use]
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// Checks `s` is a valid id.
    pub fn parse(s: &str) -> Result<Self, QueueError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(QueueError::InvalidId {
                id: printable(s, 80),
            })
        }
    }

    /// The id as text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProposalId {
    type Error = QueueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<ProposalId> for String {
    fn from(id: ProposalId) -> Self {
        id.0
    }
}

impl fmt::Display for ProposalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the agent (or git-gate) asks for. The field names are SPEC §8's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proposal {
    /// The id; also the stem of the file name.
    pub id: ProposalId,
    /// The bottle the proposal is for (its state folder's name).
    pub bottle_slug: String,
    /// Which tool produced it.
    pub tool: Tool,
    /// The whole proposed file: a routes.yaml, a Dockerfile, or for
    /// `gitleaks-allow` the findings report (never containing a secret).
    pub proposed_file: String,
    /// Why, in the requester's words. Untrusted text: show it, never act on it.
    pub justification: String,
    /// When it was queued, RFC 3339 in UTC.
    pub arrival_timestamp: String,
    /// SHA-256 (lower-case hex) of the file the proposal would replace, as
    /// it was when the proposal was made (the live routes.yaml, the agent
    /// Dockerfile); for a tool with no such file, of `proposed_file`. The
    /// operator side compares it with the file as it is when approving, so
    /// a proposal made against an older file is noticed.
    pub current_file_hash: String,
}

impl Proposal {
    /// A new proposal with a fresh id and the current time. `current_file`
    /// is the file the proposal would replace, when there is one.
    pub fn new(
        bottle_slug: &str,
        tool: Tool,
        proposed_file: String,
        justification: String,
        current_file: Option<&str>,
    ) -> Result<Self, QueueError> {
        let current_file_hash = sha256_hex(current_file.unwrap_or(&proposed_file).as_bytes());
        let proposal = Self {
            id: ProposalId::random(),
            bottle_slug: bottle_slug.to_owned(),
            tool,
            proposed_file,
            justification,
            arrival_timestamp: now_rfc3339(),
            current_file_hash,
        };
        proposal.validate()?;
        Ok(proposal)
    }

    /// Checks every bound and format a queue file must meet.
    pub fn validate(&self) -> Result<(), QueueError> {
        check_slug(&self.bottle_slug)?;
        check_len(
            "proposed_file",
            &self.proposed_file,
            MAX_PROPOSED_FILE_BYTES,
        )?;
        check_len("justification", &self.justification, MAX_TEXT_BYTES)?;
        check_timestamp("arrival_timestamp", &self.arrival_timestamp)?;
        let hash_ok = self.current_file_hash.len() == 64
            && self
                .current_file_hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hash_ok {
            return Err(QueueError::Invalid {
                field: "current_file_hash",
                why: "must be 64 lower-case hex digits (SHA-256)".into(),
            });
        }
        Ok(())
    }
}

/// The operator's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Status {
    /// Approved as proposed.
    Approved,
    /// Approved after the operator edited the file (`final_file`).
    Modified,
    /// Refused; `notes` says why.
    Rejected,
    /// Approved, but applying it failed (an invalid file, a reload that did
    /// not take); nothing changed and `notes` says why.
    Failed,
}

impl Status {
    /// Whether the proposal took effect (or, for `gitleaks-allow`, whether
    /// the push may go on).
    #[must_use]
    pub fn is_approval(self) -> bool {
        matches!(self, Status::Approved | Status::Modified)
    }

    /// The name used in files and output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Approved => "approved",
            Status::Modified => "modified",
            Status::Rejected => "rejected",
            Status::Failed => "failed",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The answer to a proposal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    /// The proposal answered.
    pub id: ProposalId,
    /// The decision.
    pub status: Status,
    /// The operator's reason or note (required to approve `gitleaks-allow`).
    pub notes: String,
    /// The file that took effect, for `approved` and `modified`.
    pub final_file: Option<String>,
    /// Who decided (the operator's user name).
    pub decided_by: String,
    /// When, RFC 3339 in UTC.
    pub decided_at: String,
}

impl Response {
    /// An answer to `proposal` made now by `decided_by`. Checks the rules
    /// every decider must follow: approving `gitleaks-allow` needs a
    /// reason and takes no edited file; rejecting needs a reason.
    pub fn new(
        proposal: &Proposal,
        status: Status,
        notes: String,
        final_file: Option<String>,
        decided_by: &str,
    ) -> Result<Self, QueueError> {
        let response = Self {
            id: proposal.id.clone(),
            status,
            notes,
            final_file,
            decided_by: decided_by.to_owned(),
            decided_at: now_rfc3339(),
        };
        response.validate_for(proposal.tool)?;
        Ok(response)
    }

    /// Checks bounds, formats and the per-tool rules.
    pub fn validate_for(&self, tool: Tool) -> Result<(), QueueError> {
        check_len("notes", &self.notes, MAX_TEXT_BYTES)?;
        check_len("decided_by", &self.decided_by, 256)?;
        check_timestamp("decided_at", &self.decided_at)?;
        if let Some(file) = &self.final_file {
            check_len("final_file", file, MAX_PROPOSED_FILE_BYTES)?;
        }
        let reason_missing = self.notes.trim().is_empty();
        if self.status.is_approval() && tool.approval_needs_reason() && reason_missing {
            return Err(QueueError::Invalid {
                field: "notes",
                why: format!("approving {tool} needs a reason"),
            });
        }
        if self.status == Status::Modified && !tool.can_modify() {
            return Err(QueueError::Invalid {
                field: "status",
                why: format!("{tool} proposals cannot be modified, only approved or rejected"),
            });
        }
        if matches!(self.status, Status::Rejected | Status::Failed) && reason_missing {
            return Err(QueueError::Invalid {
                field: "notes",
                why: format!("a {} answer needs a reason", self.status),
            });
        }
        Ok(())
    }
}

/// A queue file that was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueProblem {
    /// The file.
    pub path: PathBuf,
    /// What is wrong with it (never its contents).
    pub why: String,
}

impl fmt::Display for QueueProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.why)
    }
}

/// Pending proposals, and what was skipped while listing them.
#[derive(Debug, Default)]
pub struct Pending {
    /// Proposals with no answer yet, oldest first.
    pub proposals: Vec<Proposal>,
    /// Files that were not valid queue entries.
    pub problems: Vec<QueueProblem>,
}

/// Errors of queue operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// An id with characters outside `[A-Za-z0-9_-]` or a bad length.
    #[error("invalid proposal id {id:?}: use 1 to 64 of A-Z a-z 0-9 - _")]
    InvalidId {
        /// The id, shortened and with control characters escaped.
        id: String,
    },
    /// A field breaks a bound or a format.
    #[error("invalid {field}: {why}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        why: String,
    },
    /// No proposal with that id in the queue (nor in `processed/`).
    #[error("no proposal {id} in {dir}")]
    NotFound {
        /// The id.
        id: ProposalId,
        /// The queue folder.
        dir: PathBuf,
    },
    /// The proposal already has an answer.
    #[error("proposal {id} was already answered")]
    AlreadyDecided {
        /// The id.
        id: ProposalId,
    },
    /// A proposal with that id is already queued.
    #[error("a proposal {id} is already queued")]
    Duplicate {
        /// The id.
        id: ProposalId,
    },
    /// A queue file exists but is not a valid entry.
    #[error("{}: {why}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the file's contents).
        why: String,
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

/// One bottle's queue folder.
#[derive(Debug, Clone)]
pub struct Queue {
    dir: PathBuf,
}

impl Queue {
    /// Opens the queue at `dir`, creating it and `processed/` (mode 0700)
    /// when missing. Refuses a `dir` or `processed/` that is a symlink.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, QueueError> {
        let dir = dir.into();
        ensure_dir(&dir)?;
        ensure_dir(&dir.join(PROCESSED_DIR))?;
        Ok(Self { dir })
    }

    /// The queue folder.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn proposal_path(&self, id: &ProposalId) -> PathBuf {
        self.dir.join(format!("{id}{PROPOSAL_SUFFIX}"))
    }

    fn response_path(&self, id: &ProposalId) -> PathBuf {
        self.dir.join(format!("{id}{RESPONSE_SUFFIX}"))
    }

    fn processed(&self) -> PathBuf {
        self.dir.join(PROCESSED_DIR)
    }

    /// Queues `proposal` (validated first). Never overwrites a file.
    pub fn submit(&self, proposal: &Proposal) -> Result<(), QueueError> {
        proposal.validate()?;
        let path = self.proposal_path(&proposal.id);
        if self.processed().join(file_name(&path)).exists() {
            return Err(QueueError::Duplicate {
                id: proposal.id.clone(),
            });
        }
        match write_new(&path, &to_json(proposal)) {
            Err(QueueError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                Err(QueueError::Duplicate {
                    id: proposal.id.clone(),
                })
            }
            other => other,
        }
    }

    /// Proposals without an answer, oldest first (by arrival time, then
    /// id), and every file that had to be skipped.
    #[must_use]
    pub fn pending(&self) -> Pending {
        let mut pending = Pending::default();
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(source) => {
                pending.problems.push(QueueProblem {
                    path: self.dir.clone(),
                    why: source.to_string(),
                });
                return pending;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                pending.problems.push(QueueProblem {
                    path,
                    why: "file name is not UTF-8".into(),
                });
                continue;
            };
            if name.starts_with('.') || name == PROCESSED_DIR {
                continue;
            }
            if let Some(stem) = name.strip_suffix(PROPOSAL_SUFFIX) {
                match read_proposal_file(&path, stem) {
                    Ok(p) => {
                        let processed_response =
                            self.processed().join(file_name(&self.response_path(&p.id)));
                        if !self.response_path(&p.id).exists() && !processed_response.exists() {
                            pending.proposals.push(p);
                        }
                    }
                    Err(e) => pending.problems.push(problem(path, &e)),
                }
            } else if let Some(stem) = name.strip_suffix(RESPONSE_SUFFIX) {
                if ProposalId::parse(stem).is_err() {
                    pending.problems.push(QueueProblem {
                        path,
                        why: "response file name is not a valid proposal id".into(),
                    });
                }
            } else {
                pending.problems.push(QueueProblem {
                    path,
                    why: "not a queue file (expected <id>.proposal.json or <id>.response.json)"
                        .into(),
                });
            }
        }
        pending.proposals.sort_by(|a, b| {
            (a.arrival_timestamp.as_str(), &a.id).cmp(&(b.arrival_timestamp.as_str(), &b.id))
        });
        pending
    }

    /// The proposal `id`, pending or processed.
    pub fn proposal(&self, id: &ProposalId) -> Result<Proposal, QueueError> {
        let path = self.proposal_path(id);
        let processed = self.processed().join(file_name(&path));
        for candidate in [path, processed] {
            match read_proposal_file(&candidate, id.as_str()) {
                Err(QueueError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                other => return other,
            }
        }
        Err(QueueError::NotFound {
            id: id.clone(),
            dir: self.dir.clone(),
        })
    }

    /// The answer to `id`, if there is one yet (in the queue folder or in
    /// `processed/`). A response file that is not valid is an error, so a
    /// waiter can refuse on a malformed answer rather than wait on.
    pub fn response(&self, id: &ProposalId) -> Result<Option<Response>, QueueError> {
        let path = self.response_path(id);
        let processed = self.processed().join(file_name(&path));
        for candidate in [path, processed] {
            match read_bounded(&candidate) {
                Ok(bytes) => return parse_response(&candidate, &bytes, id).map(Some),
                Err(QueueError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Answers a pending proposal: the response is written into
    /// `processed/` and the proposal moved after it.
    /// The response is checked against the proposal's tool first. Of two
    /// deciders racing, exactly one succeeds; the other gets
    /// [`QueueError::AlreadyDecided`].
    pub fn respond(&self, response: &Response) -> Result<(), QueueError> {
        let proposal = self.proposal(&response.id)?;
        response.validate_for(proposal.tool)?;
        if self.response(&response.id)?.is_some() {
            return Err(QueueError::AlreadyDecided {
                id: response.id.clone(),
            });
        }
        // The answer is linked straight into `processed/`, the one place
        // every decider writes it, so the no-clobber link is the single
        // point where two deciders race.
        let path = self
            .processed()
            .join(file_name(&self.response_path(&response.id)));
        match write_new(&path, &to_json(response)) {
            Err(QueueError::Io { source, .. }) if source.kind() == io::ErrorKind::AlreadyExists => {
                return Err(QueueError::AlreadyDecided {
                    id: response.id.clone(),
                });
            }
            other => other?,
        }
        self.archive(&response.id)
    }

    /// Moves `id`'s proposal and response (whichever exist) into
    /// `processed/`. Idempotent.
    pub fn archive(&self, id: &ProposalId) -> Result<(), QueueError> {
        for path in [self.proposal_path(id), self.response_path(id)] {
            let to = self.processed().join(file_name(&path));
            match fs::rename(&path, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(QueueError::Io { path, source }),
            }
        }
        Ok(())
    }
}

fn read_proposal_file(path: &Path, stem: &str) -> Result<Proposal, QueueError> {
    let bytes = read_bounded(path)?;
    let proposal: Proposal = serde_json::from_slice(&bytes).map_err(|e| malformed(path, &e))?;
    if proposal.id.as_str() != stem {
        return Err(QueueError::Malformed {
            path: path.to_owned(),
            why: "its id does not match its file name".into(),
        });
    }
    proposal.validate().map_err(|e| QueueError::Malformed {
        path: path.to_owned(),
        why: e.to_string(),
    })?;
    Ok(proposal)
}

fn parse_response(path: &Path, bytes: &[u8], id: &ProposalId) -> Result<Response, QueueError> {
    let response: Response = serde_json::from_slice(bytes).map_err(|e| malformed(path, &e))?;
    if &response.id != id {
        return Err(QueueError::Malformed {
            path: path.to_owned(),
            why: "its id does not match its file name".into(),
        });
    }
    // Per-tool rules need the proposal; here only the tool-free bounds.
    check_len("notes", &response.notes, MAX_TEXT_BYTES)
        .and_then(|()| check_timestamp("decided_at", &response.decided_at))
        .map_err(|e| QueueError::Malformed {
            path: path.to_owned(),
            why: e.to_string(),
        })?;
    Ok(response)
}

/// A serde error without the input: `serde_json`'s messages quote at most
/// a type name and a position, never the document, but keep only the
/// line and column to be sure nothing of the file is echoed.
fn malformed(path: &Path, e: &serde_json::Error) -> QueueError {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => {
            "not a valid queue entry (missing, unknown or mistyped field)"
        }
        serde_json::error::Category::Eof => "truncated JSON",
    };
    QueueError::Malformed {
        path: path.to_owned(),
        why: format!("{kind} at line {} column {}", e.line(), e.column()),
    }
}

fn problem(path: PathBuf, e: &QueueError) -> QueueProblem {
    let why = match e {
        QueueError::Malformed { why, .. } => why.clone(),
        other => other.to_string(),
    };
    QueueProblem { path, why }
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising these plain structs cannot fail.
    let mut out = serde_json::to_vec_pretty(value).unwrap_or_default();
    out.push(b'\n');
    out
}

fn file_name(path: &Path) -> &std::ffi::OsStr {
    path.file_name().unwrap_or_default()
}

/// SHA-256 of `bytes` as lower-case hex.
#[must_use]
pub fn sha256_hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest
        .as_ref()
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The current time as RFC 3339 in UTC.
#[must_use]
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), QueueError> {
    if value.len() > max {
        return Err(QueueError::Invalid {
            field,
            why: format!("{} bytes, at most {max} allowed", value.len()),
        });
    }
    Ok(())
}

/// Checks `slug` is a bottle slug a proposal can carry (`[a-z0-9-]`, 1 to
/// 64 characters), as [`Proposal::validate`] does.
pub fn check_bottle_slug(slug: &str) -> Result<(), QueueError> {
    check_slug(slug)
}

fn check_slug(slug: &str) -> Result<(), QueueError> {
    let ok = !slug.is_empty()
        && slug.len() <= 64
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(QueueError::Invalid {
            field: "bottle_slug",
            why: format!(
                "{:?} is not a bottle slug ([a-z0-9-], 1 to 64)",
                printable(slug, 80)
            ),
        })
    }
}

fn check_timestamp(field: &'static str, value: &str) -> Result<(), QueueError> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map(|_| ())
        .map_err(|_| QueueError::Invalid {
            field,
            why: "not an RFC 3339 timestamp".into(),
        })
}

/// `s` shortened to `max` characters with control characters escaped, for
/// error messages about untrusted names.
fn printable(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).flat_map(char::escape_default).collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

fn ensure_dir(dir: &Path) -> Result<(), QueueError> {
    let io_err = |source| QueueError::Io {
        path: dir.to_owned(),
        source,
    };
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(QueueError::Malformed {
            path: dir.to_owned(),
            why: "is not a folder (symlinks are refused)".into(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(io_err)?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err)
        }
        Err(e) => Err(io_err(e)),
    }
}

/// Reads a regular file (never through a symlink), at most
/// [`MAX_QUEUE_FILE_BYTES`].
fn read_bounded(path: &Path) -> Result<Vec<u8>, QueueError> {
    let io_err = |source| QueueError::Io {
        path: path.to_owned(),
        source,
    };
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                QueueError::Malformed {
                    path: path.to_owned(),
                    why: "is a symlink (refused)".into(),
                }
            } else {
                io_err(e)
            }
        })?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.is_file() {
        return Err(QueueError::Malformed {
            path: path.to_owned(),
            why: "is not a regular file".into(),
        });
    }
    if meta.len() > MAX_QUEUE_FILE_BYTES {
        return Err(QueueError::Malformed {
            path: path.to_owned(),
            why: format!(
                "{} bytes, at most {MAX_QUEUE_FILE_BYTES} allowed",
                meta.len()
            ),
        });
    }
    let mut bytes = Vec::new();
    file.take(MAX_QUEUE_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_err)?;
    if bytes.len() as u64 > MAX_QUEUE_FILE_BYTES {
        return Err(QueueError::Malformed {
            path: path.to_owned(),
            why: "grew past the size bound while being read".into(),
        });
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` (mode 0600) through a temporary file in the
/// same folder, linked into place: a reader never sees half a file, and an
/// existing `path` is never replaced (`AlreadyExists`).
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), QueueError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file_name(path).to_string_lossy(),
        uuid::Uuid::new_v4().simple()
    ));
    let io_err = |p: &Path, source| QueueError::Io {
        path: p.to_owned(),
        source,
    };
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, e))?;
        file.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
        file.sync_all().map_err(|e| io_err(&tmp, e))?;
        // A hard link fails when `path` exists, unlike rename.
        fs::hard_link(&tmp, path).map_err(|e| io_err(path, e))
    })();
    let _ = fs::remove_file(&tmp);
    result
}

#[cfg(test)]
mod tests;
