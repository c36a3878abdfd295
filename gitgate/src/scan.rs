//! The secret scan of a push: every object the pushed pack brings.
//!
//! The upstream receives exactly the objects in the pack (it has the rest
//! already), so the pack's index is the list of what is new. The pack is
//! walked once along its delta chains (each object inflated and rebuilt
//! once, on every core): every blob is scanned whole (once, by id, so a
//! secret split across hunks or hidden in a binary file is still seen),
//! every commit and tag object whole (message, author lines), and the entry
//! names of every tree. Then each new commit's tree is diffed against each
//! parent's (an empty tree for a root commit): the full paths it adds are
//! scanned together (a secret with a `/` in it spans folder names), and the
//! diff names the commit and path each hit is reported at. A whole-blob
//! scan sees every added line (each is a line of a new blob), so no
//! line-by-line diff is needed; a blob reachable only from an older commit
//! of the push, or added then deleted, is still in the pack and still
//! scanned.
//!
//! Detectors are `bb-egress`'s `token_patterns` and `known_secrets`. A
//! finding carries the rule's name and the place, never the matched bytes:
//! a hit in a path says "a file name", not which.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bb_egress::dlp::{DetectorSet, DlpEngine};
use gix_hash::ObjectId;
use gix_object::{FindExt as _, Kind};

/// The marker that asks for an exception on one line.
pub const ALLOW_MARKER: &[u8] = b"gitleaks:allow";

/// Largest object the gate reads whole (and lets through): anything larger
/// is refused, since it could not be scanned within bounded memory.
pub const MAX_OBJECT_BYTES: usize = 256 * 1024 * 1024;

/// Most findings reported per object (the rest add nothing to a refusal).
const MAX_FINDINGS_PER_OBJECT: usize = 20;

/// Memory for the pack's trees kept from the walk for the diff (the rest
/// are read again from the object database).
const TREE_CACHE_BYTES: usize = 32 * 1024 * 1024;

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
    /// In the name of a file or folder (which one is not said: the name
    /// is the secret).
    FileName,
    /// In a blob no new commit's diff reaches (still sent upstream).
    Blob {
        /// The blob's id.
        blob: String,
    },
    /// In the entry names of a tree no new commit's diff reaches.
    Tree {
        /// The tree's id.
        tree: String,
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
    /// The 1-based line of the object (0 for a file name).
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
            Place::CommitMessage => write!(f, "message line {}", self.line)?,
            Place::File { path } => write!(f, "{path} line {}", self.line)?,
            Place::FileName => write!(f, "a file name")?,
            Place::Blob { blob } => write!(f, "blob {blob} line {}", self.line)?,
            Place::Tree { tree } => write!(f, "tree {tree} a file name")?,
            Place::Tag { tag } => write!(f, "tag {tag} line {}", self.line)?,
        }
        write!(f, ": {}", self.rule)?;
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
    /// The pack or its index could not be read or walked.
    #[error("reading the pack {path}: {why}")]
    Pack {
        /// The pack's index file.
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

/// One hit in a buffer: `(line, rule, line carries the marker)`.
type Hit = (usize, String, bool);

/// A new commit, as the walk saw it.
struct NewCommit {
    offset: u64,
    id: ObjectId,
    tree: ObjectId,
    parents: Vec<ObjectId>,
}

/// What the walk's threads gather.
#[derive(Default)]
struct Walked {
    findings: Vec<Finding>,
    blob_hits: Vec<(ObjectId, Vec<Hit>)>,
    tree_hits: Vec<(ObjectId, Vec<Hit>)>,
    commits: Vec<NewCommit>,
    trees: HashMap<ObjectId, Box<[u8]>>,
    tree_bytes: usize,
    error: Option<ScanError>,
}

/// One walking thread's view: where it reports, and its scratch space.
#[derive(Clone)]
struct Walker<'a> {
    walked: &'a Mutex<Walked>,
    bytes: &'a AtomicU64,
    commits: &'a AtomicU64,
    engine: Arc<DlpEngine>,
    /// A tree's entry names, one a line.
    names: Vec<u8>,
}

impl Walker<'_> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Walked> {
        self.walked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Scans one decoded object of the pack and keeps what the diff needs.
    fn object(&mut self, kind: Kind, data: &[u8], entry: &gix_pack::index::Entry) {
        self.bytes.fetch_add(data.len() as u64, Ordering::Relaxed);
        let id = entry.oid;
        match kind {
            Kind::Blob => {
                let hits = scan_bytes(&self.engine, data);
                if !hits.is_empty() {
                    self.lock().blob_hits.push((id, hits));
                }
            }
            Kind::Tree => {
                self.names.clear();
                let mut bad = None;
                for e in gix_object::TreeRefIter::from_bytes(data, gix_hash::Kind::Sha1) {
                    match e {
                        Ok(e) => {
                            self.names.extend_from_slice(e.filename);
                            self.names.push(b'\n');
                        }
                        Err(e) => {
                            bad = Some(obj_err(&id, &e));
                            break;
                        }
                    }
                }
                let hits = scan_bytes(&self.engine, &self.names);
                let mut w = self.lock();
                if let Some(e) = bad {
                    w.error.get_or_insert(e);
                }
                if !hits.is_empty() {
                    w.tree_hits.push((id, hits));
                }
                if w.tree_bytes + data.len() <= TREE_CACHE_BYTES {
                    w.tree_bytes += data.len();
                    w.trees.insert(id, data.into());
                }
            }
            Kind::Commit => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                let hits = scan_bytes(&self.engine, data);
                let parsed = gix_object::CommitRef::from_bytes(data, gix_hash::Kind::Sha1)
                    .map(|c| (c.tree(), c.parents().collect::<Vec<_>>()));
                let mut w = self.lock();
                w.findings
                    .extend(hits.into_iter().map(|(line, rule, marked)| Finding {
                        commit: Some(id.to_string()),
                        place: Place::CommitMessage,
                        line,
                        rule,
                        marked,
                    }));
                match parsed {
                    Ok((tree, parents)) => w.commits.push(NewCommit {
                        offset: entry.pack_offset,
                        id,
                        tree,
                        parents,
                    }),
                    Err(e) => {
                        w.error.get_or_insert(obj_err(&id, &e));
                    }
                }
            }
            Kind::Tag => {
                let hits = scan_bytes(&self.engine, data);
                self.lock()
                    .findings
                    .extend(hits.into_iter().map(|(line, rule, marked)| Finding {
                        commit: None,
                        place: Place::Tag {
                            tag: id.to_string(),
                        },
                        line,
                        rule,
                        marked,
                    }));
            }
        }
    }
}

fn obj_err(id: &ObjectId, e: &dyn fmt::Display) -> ScanError {
    ScanError::Object {
        id: id.to_string(),
        why: e.to_string(),
    }
}

/// How many threads walk the pack: every core, up to four.
#[must_use]
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Scans every object of the pack indexed at `index` (its `.pack` beside
/// it), reading the parents' trees from `odb`. Blocking; uses
/// [`threads`] threads.
pub fn scan_pack(
    odb: &gix_odb::Handle,
    index: &Path,
    engine: &Arc<DlpEngine>,
) -> Result<Report, ScanError> {
    let pack_err = |e: &dyn fmt::Display| ScanError::Pack {
        path: index.display().to_string(),
        why: e.to_string(),
    };
    let idx = gix_pack::index::File::at(index, gix_hash::Kind::Sha1).map_err(|e| pack_err(&e))?;
    let pack = gix_pack::data::File::at(index.with_extension("pack"), gix_hash::Kind::Sha1)
        .map_err(|e| pack_err(&e))?;
    let walked = Mutex::new(Walked::default());
    let bytes = AtomicU64::new(0);
    let commits = AtomicU64::new(0);
    let interrupt = AtomicBool::new(false);
    let mut thread = Walker {
        walked: &walked,
        bytes: &bytes,
        commits: &commits,
        engine: Arc::clone(engine),
        names: Vec::new(),
    };
    idx.traverse_with_index(
        &pack,
        move |kind, data, entry, _| {
            thread.object(kind, data, entry);
            Ok(())
        },
        &mut gix_utils::progress::Discard,
        &interrupt,
        gix_pack::index::traverse::with_index::Options {
            thread_limit: Some(threads()),
            // The pack and its index were written a moment ago by the
            // indexer, which hashed every object: the ids are its own.
            check: gix_pack::index::traverse::SafetyCheck::SkipFileAndObjectChecksumVerification,
            alloc_limit_bytes: Some(MAX_OBJECT_BYTES),
        },
    )
    .map_err(|e| pack_err(&e))?;
    let mut walked = walked.into_inner().unwrap_or_else(PoisonError::into_inner);
    if let Some(e) = walked.error.take() {
        return Err(e);
    }
    let mut report = Report {
        findings: std::mem::take(&mut walked.findings),
        bytes: bytes.into_inner(),
        commits: commits.into_inner() as usize,
    };
    place_and_scan_paths(odb, engine, &mut walked, &mut report)?;
    report.findings.sort();
    report.findings.dedup();
    Ok(report)
}

/// Diffs each new commit against its parents (in pack order, so a path is
/// the one first seen in the push): scans the paths it adds and places the
/// walk's blob and tree hits at a commit (and path).
fn place_and_scan_paths(
    odb: &gix_odb::Handle,
    engine: &Arc<DlpEngine>,
    walked: &mut Walked,
    report: &mut Report,
) -> Result<(), ScanError> {
    walked.commits.sort_by_key(|c| c.offset);
    let hit_blobs: HashSet<ObjectId> = walked.blob_hits.iter().map(|(id, _)| *id).collect();
    let hit_trees: HashSet<ObjectId> = walked.tree_hits.iter().map(|(id, _)| *id).collect();
    let mut blob_place: HashMap<ObjectId, (String, String)> = HashMap::new();
    let mut tree_commit: HashMap<ObjectId, String> = HashMap::new();
    let mut diff = Diff {
        odb,
        trees: &walked.trees,
        hit_blobs: &hit_blobs,
        hit_trees: &hit_trees,
        paths: Vec::new(),
        blobs: Vec::new(),
        trees_seen: Vec::new(),
    };
    let mut pbuf = Vec::new();
    for c in &walked.commits {
        diff.paths.clear();
        diff.blobs.clear();
        diff.trees_seen.clear();
        if c.parents.is_empty() {
            diff.trees(None, c.tree, "")?;
        }
        for parent in &c.parents {
            // A parent the mirror lacks is diffed as empty: more is
            // scanned, nothing is skipped.
            let old = odb.find_commit(parent, &mut pbuf).ok().map(|p| p.tree());
            diff.trees(old, c.tree, "")?;
        }
        let commit = c.id.to_string();
        for (_, rule, marked) in scan_bytes(engine, &diff.paths) {
            report.findings.push(Finding {
                commit: Some(commit.clone()),
                place: Place::FileName,
                line: 0,
                rule,
                marked,
            });
        }
        for (path, blob) in diff.blobs.drain(..) {
            blob_place
                .entry(blob)
                .or_insert_with(|| (commit.clone(), path));
        }
        for tree in diff.trees_seen.drain(..) {
            tree_commit.entry(tree).or_insert_with(|| commit.clone());
        }
    }
    for (id, hits) in walked.blob_hits.drain(..) {
        let (commit, place) = match blob_place.get(&id) {
            Some((commit, path)) => (Some(commit.clone()), Place::File { path: path.clone() }),
            None => (
                None,
                Place::Blob {
                    blob: id.to_string(),
                },
            ),
        };
        report
            .findings
            .extend(hits.into_iter().map(|(line, rule, marked)| Finding {
                commit: commit.clone(),
                place: place.clone(),
                line,
                rule,
                marked,
            }));
    }
    for (id, hits) in walked.tree_hits.drain(..) {
        let (commit, place) = match tree_commit.get(&id) {
            Some(commit) => (Some(commit.clone()), Place::FileName),
            None => (
                None,
                Place::Tree {
                    tree: id.to_string(),
                },
            ),
        };
        report
            .findings
            .extend(hits.into_iter().map(|(_, rule, marked)| Finding {
                commit: commit.clone(),
                place: place.clone(),
                line: 0,
                rule,
                marked,
            }));
    }
    Ok(())
}

/// One commit's tree diff: what it adds.
struct Diff<'a> {
    odb: &'a gix_odb::Handle,
    /// Trees kept from the walk.
    trees: &'a HashMap<ObjectId, Box<[u8]>>,
    hit_blobs: &'a HashSet<ObjectId>,
    hit_trees: &'a HashSet<ObjectId>,
    /// Every added path, one a line.
    paths: Vec<u8>,
    /// `(path, blob)` for blobs with hits.
    blobs: Vec<(String, ObjectId)>,
    /// Trees with hits that the commit brings.
    trees_seen: Vec<ObjectId>,
}

impl Diff<'_> {
    /// A tree's entries `(name, is a tree, id)`; `None` when it cannot be
    /// read.
    fn entries(
        &self,
        id: &ObjectId,
    ) -> Option<Vec<(Vec<u8>, gix_object::tree::EntryMode, ObjectId)>> {
        let collect = |data: &[u8]| -> Option<Vec<_>> {
            gix_object::TreeRefIter::from_bytes(data, gix_hash::Kind::Sha1)
                .map(|e| {
                    e.ok()
                        .map(|e| (e.filename.to_vec(), e.mode, e.oid.to_owned()))
                })
                .collect()
        };
        if let Some(data) = self.trees.get(id) {
            return collect(data);
        }
        let mut buf = Vec::new();
        let data = self.odb.find(id, &mut buf).ok()?;
        if data.kind != Kind::Tree {
            return None;
        }
        collect(data.data)
    }

    /// Records every entry of `new` that is not at the same path with the
    /// same id in `old`.
    fn trees(
        &mut self,
        old: Option<ObjectId>,
        new: ObjectId,
        prefix: &str,
    ) -> Result<(), ScanError> {
        if old == Some(new) {
            return Ok(());
        }
        if self.hit_trees.contains(&new) {
            self.trees_seen.push(new);
        }
        let old_entries: HashMap<Vec<u8>, (bool, ObjectId)> = old
            .and_then(|o| self.entries(&o))
            .unwrap_or_default()
            .into_iter()
            .map(|(name, mode, oid)| (name, (mode.is_tree(), oid)))
            .collect();
        let entries = self
            .entries(&new)
            .ok_or_else(|| obj_err(&new, &"the tree cannot be read"))?;
        let path = |name: &[u8]| format!("{prefix}{}", String::from_utf8_lossy(name));
        for (name, mode, oid) in entries {
            let before = old_entries.get(&name);
            if mode.is_tree() {
                let old_sub = before.filter(|(is_tree, _)| *is_tree).map(|(_, o)| *o);
                if old_sub != Some(oid) {
                    self.trees(old_sub, oid, &format!("{}/", path(&name)))?;
                }
            } else if before.map(|(_, o)| *o) != Some(oid) {
                self.paths.extend_from_slice(prefix.as_bytes());
                self.paths.extend_from_slice(&name);
                self.paths.push(b'\n');
                if mode.is_blob_or_symlink() && self.hit_blobs.contains(&oid) {
                    self.blobs.push((path(&name), oid));
                }
            }
        }
        Ok(())
    }
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
