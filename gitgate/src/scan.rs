//! The secret scan of a push: every object the pushed pack brings.
//!
//! The upstream receives exactly the objects in the pack (it has the rest
//! already), so the pack's index is the list of what is new. For each new
//! commit the gate scans the raw commit (message, author lines) and diffs
//! its tree against each parent's (an empty tree for a root commit) to
//! learn the path each changed blob was added at; then every blob of the
//! pack is scanned whole, once by id, and each hit is reported at its
//! commit, path and line. A whole-blob scan sees every added line (each is
//! a line of a new blob) and also a secret split across hunks or hidden in
//! a binary file; a blob reachable only from an older commit of the push,
//! or added then deleted, is still in the pack and still scanned. Tag
//! objects are scanned whole too.
//!
//! Detectors are `bb-egress`'s `token_patterns` and `known_secrets`. A
//! finding carries the rule's name and the place, never the matched bytes.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use bb_egress::dlp::{DetectorSet, DlpEngine};
use gix_hash::ObjectId;
use gix_object::{FindExt as _, Kind};
use gix_odb::HeaderExt as _;

/// The marker that asks for an exception on one line.
pub const ALLOW_MARKER: &[u8] = b"gitleaks:allow";

/// Largest object the gate reads whole (and lets through): anything larger
/// is refused, since it could not be scanned within bounded memory.
pub const MAX_OBJECT_BYTES: usize = 256 * 1024 * 1024;

/// Most findings reported per object (the rest add nothing to a refusal).
const MAX_FINDINGS_PER_OBJECT: usize = 20;

/// Where a finding is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Place {
    /// In a commit object (its message or headers).
    CommitMessage,
    /// In a file.
    File {
        /// The path, as first seen in the push.
        path: String,
    },
    /// In a blob no new commit's diff reaches (still sent upstream).
    Blob {
        /// The blob's id.
        blob: String,
    },
    /// In an annotated tag.
    Tag {
        /// The tag object's id.
        tag: String,
    },
}

/// A detection.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// The commit that brought it, when known.
    pub commit: Option<String>,
    /// Where.
    pub place: Place,
    /// The 1-based line of the object.
    pub line: usize,
    /// The detector and rule (`token_patterns: github-pat`).
    pub rule: String,
    /// Whether the line carries `gitleaks:allow`.
    pub marked: bool,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(c) = &self.commit {
            write!(f, "commit {} ", &c[..c.len().min(12)])?;
        }
        match &self.place {
            Place::CommitMessage => write!(f, "message")?,
            Place::File { path } => write!(f, "{path}")?,
            Place::Blob { blob } => write!(f, "blob {blob}")?,
            Place::Tag { tag } => write!(f, "tag {tag}")?,
        }
        write!(f, " line {}: {}", self.line, self.rule)?;
        if self.marked {
            write!(f, " (marked gitleaks:allow)")?;
        }
        Ok(())
    }
}

/// Why the scan could not run (the push is then refused: fail closed).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    /// The pack index could not be read.
    #[error("reading the pack index {path}: {why}")]
    Index {
        /// The index file.
        path: String,
        /// Why.
        why: String,
    },
    /// An object could not be read or decoded.
    #[error("object {id}: {why}")]
    Object {
        /// The object.
        id: String,
        /// Why.
        why: String,
    },
}

/// What a scan found, and how much it read.
#[derive(Debug, Default)]
pub struct Report {
    /// The findings, sorted.
    pub findings: Vec<Finding>,
    /// Bytes of objects scanned.
    pub bytes: u64,
    /// New commits seen.
    pub commits: usize,
}

/// Scans every object of the pack indexed at `index`, reading objects (and
/// the parents' trees) from `odb`. Blocking.
pub fn scan_pack(
    odb: &gix_odb::Handle,
    index: &Path,
    engine: &Arc<DlpEngine>,
) -> Result<Report, ScanError> {
    let file =
        gix_pack::index::File::at(index, gix_hash::Kind::Sha1).map_err(|e| ScanError::Index {
            path: index.display().to_string(),
            why: e.to_string(),
        })?;
    let ids: Vec<ObjectId> = file.iter().map(|e| e.oid).collect();
    scan_objects(odb, &ids, engine)
}

/// Scans the objects `ids` (the contents of a pushed pack).
pub fn scan_objects(
    odb: &gix_odb::Handle,
    ids: &[ObjectId],
    engine: &Arc<DlpEngine>,
) -> Result<Report, ScanError> {
    let obj_err = |id: &ObjectId, e: &dyn fmt::Display| ScanError::Object {
        id: id.to_string(),
        why: e.to_string(),
    };
    let mut report = Report::default();
    let mut kinds = HashMap::with_capacity(ids.len());
    let mut buf = Vec::new();
    // Pass 1: commits and tags; learn where each changed blob lives.
    let mut blob_place: HashMap<ObjectId, (String, String)> = HashMap::new();
    for id in ids {
        let header = odb.header(id).map_err(|e| obj_err(id, &e))?;
        if header.size() > MAX_OBJECT_BYTES as u64 {
            return Err(obj_err(
                id,
                &format!(
                    "{} bytes is over the {MAX_OBJECT_BYTES}-byte limit of what git-gate scans",
                    header.size()
                ),
            ));
        }
        let data = odb.find(id, &mut buf).map_err(|e| obj_err(id, &e))?;
        kinds.insert(*id, data.kind);
        match data.kind {
            Kind::Commit => {
                report.commits += 1;
                report.bytes += data.data.len() as u64;
                for (line, rule, marked) in scan_bytes(engine, data.data) {
                    report.findings.push(Finding {
                        commit: Some(id.to_string()),
                        place: Place::CommitMessage,
                        line,
                        rule,
                        marked,
                    });
                }
                let commit = gix_object::CommitRef::from_bytes(data.data, gix_hash::Kind::Sha1)
                    .map_err(|e| obj_err(id, &e))?;
                let tree = commit.tree();
                let parents: Vec<ObjectId> = commit.parents().collect();
                for (path, blob) in changed_blobs(odb, tree, &parents)? {
                    blob_place
                        .entry(blob)
                        .or_insert_with(|| (id.to_string(), path));
                }
            }
            Kind::Tag => {
                report.bytes += data.data.len() as u64;
                for (line, rule, marked) in scan_bytes(engine, data.data) {
                    report.findings.push(Finding {
                        commit: None,
                        place: Place::Tag {
                            tag: id.to_string(),
                        },
                        line,
                        rule,
                        marked,
                    });
                }
            }
            Kind::Blob | Kind::Tree => {}
        }
    }
    // Pass 2: every blob of the pack, once.
    for id in ids {
        if kinds.get(id) != Some(&Kind::Blob) {
            continue;
        }
        let data = odb.find(id, &mut buf).map_err(|e| obj_err(id, &e))?;
        report.bytes += data.data.len() as u64;
        let hits = scan_bytes(engine, data.data);
        if hits.is_empty() {
            continue;
        }
        let (commit, place) = match blob_place.get(id) {
            Some((commit, path)) => (Some(commit.clone()), Place::File { path: path.clone() }),
            None => (
                None,
                Place::Blob {
                    blob: id.to_string(),
                },
            ),
        };
        for (line, rule, marked) in hits {
            report.findings.push(Finding {
                commit: commit.clone(),
                place: place.clone(),
                line,
                rule,
                marked,
            });
        }
    }
    report.findings.sort();
    report.findings.dedup();
    Ok(report)
}

/// The `(path, blob)` pairs a commit with `tree` changes against each of
/// its `parents` (against the empty tree for a root commit).
fn changed_blobs(
    odb: &gix_odb::Handle,
    tree: ObjectId,
    parents: &[ObjectId],
) -> Result<Vec<(String, ObjectId)>, ScanError> {
    let mut changed = Vec::new();
    if parents.is_empty() {
        diff_trees(odb, None, tree, "", &mut changed)?;
    }
    for parent in parents {
        let mut pbuf = Vec::new();
        // A parent the mirror lacks is diffed as empty: more is scanned,
        // nothing is skipped.
        let old = odb.find_commit(parent, &mut pbuf).ok().map(|c| c.tree());
        diff_trees(odb, old, tree, "", &mut changed)?;
    }
    Ok(changed)
}

/// Collects `(path, blob)` for every blob or symlink in `new` that is not
/// at the same path with the same id in `old`.
fn diff_trees(
    odb: &gix_odb::Handle,
    old: Option<ObjectId>,
    new: ObjectId,
    prefix: &str,
    out: &mut Vec<(String, ObjectId)>,
) -> Result<(), ScanError> {
    if old == Some(new) {
        return Ok(());
    }
    let tree_err = |id: &ObjectId, e: &dyn fmt::Display| ScanError::Object {
        id: id.to_string(),
        why: e.to_string(),
    };
    let mut old_entries: HashMap<Vec<u8>, (bool, ObjectId)> = HashMap::new();
    if let Some(old) = old {
        let mut obuf = Vec::new();
        if let Ok(tree) = odb.find_tree(&old, &mut obuf) {
            for e in &tree.entries {
                old_entries.insert(e.filename.to_vec(), (e.mode.is_tree(), e.oid.to_owned()));
            }
        }
    }
    let mut nbuf = Vec::new();
    let tree = odb
        .find_tree(&new, &mut nbuf)
        .map_err(|e| tree_err(&new, &e))?;
    let entries: Vec<(Vec<u8>, gix_object::tree::EntryMode, ObjectId)> = tree
        .entries
        .iter()
        .map(|e| (e.filename.to_vec(), e.mode, e.oid.to_owned()))
        .collect();
    for (name, mode, oid) in entries {
        let path = format!("{prefix}{}", String::from_utf8_lossy(&name));
        let before = old_entries.get(&name);
        if mode.is_tree() {
            let old_sub = before.filter(|(is_tree, _)| *is_tree).map(|(_, o)| *o);
            diff_trees(odb, old_sub, oid, &format!("{path}/"), out)?;
        } else if mode.is_blob_or_symlink() && before.map(|(_, o)| *o) != Some(oid) {
            out.push((path, oid));
        }
    }
    Ok(())
}

/// Every hit in `data`: `(line, rule, line carries the marker)`. After a
/// hit the scan goes on from the next line, so one marked line does not
/// hide an unmarked secret below it.
#[must_use]
pub fn scan_bytes(engine: &Arc<DlpEngine>, data: &[u8]) -> Vec<(usize, String, bool)> {
    let mut hits = Vec::new();
    let mut pos = 0usize;
    let mut line_no = 1usize;
    while pos < data.len() && hits.len() < MAX_FINDINGS_PER_OBJECT {
        let Some(hit) = engine.scan(DetectorSet::OUTBOUND, &data[pos..]) else {
            break;
        };
        let at = pos + (hit.offset as usize).min(data.len() - pos);
        line_no += memchr::memchr_iter(b'\n', &data[pos..at]).count();
        let start = memchr::memrchr(b'\n', &data[..at]).map_or(0, |i| i + 1);
        let end = memchr::memchr(b'\n', &data[at..]).map_or(data.len(), |i| at + i);
        let marked = memchr::memmem::find(&data[start..end], ALLOW_MARKER).is_some();
        hits.push((
            line_no,
            format!("{}: {}", hit.detector.name(), hit.rule),
            marked,
        ));
        pos = end + 1;
        line_no += 1;
    }
    hits
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use bb_egress::redact::Redacted;

    fn engine() -> Arc<DlpEngine> {
        Arc::new(
            DlpEngine::new([(
                "EGRESS_TOKEN_X",
                Redacted::new(b"s3cr3t-value-for-the-test-0123456789".to_vec()),
            )])
            .unwrap(),
        )
    }

    #[test]
    fn lines_and_markers() {
        let e = engine();
        let data = b"one\ntwo s3cr3t-value-for-the-test-0123456789 # gitleaks:allow\nthree\nfour s3cr3t-value-for-the-test-0123456789\n";
        let hits = scan_bytes(&e, data);
        assert_eq!(hits.len(), 2, "{hits:?}");
        assert_eq!((hits[0].0, hits[0].2), (2, true));
        assert_eq!((hits[1].0, hits[1].2), (4, false));
        assert!(hits[0].1.starts_with("known_secrets: EGRESS_TOKEN_X"));
        assert!(scan_bytes(&e, b"nothing here\n").is_empty());
    }
}
