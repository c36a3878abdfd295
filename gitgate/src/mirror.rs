//! The per-repo bare mirror: the upstream's objects, kept current before
//! each push so a pushed thin pack's bases resolve and every new commit's
//! parents are there to diff against.
//!
//! The mirror holds objects only (no refs: the upstream's advertisement,
//! read at push time, is the truth about what the upstream has). It is
//! refreshed with a plain v0 `git-upload-pack` exchange over SSH: want
//! every advertised id the mirror lacks, have every one it holds, `done`,
//! and the pack (side-band-64k) is spooled to disk and indexed with
//! gitoxide's pack writer.

use std::cell::OnceCell;
use std::fs;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use gix_hash::ObjectId;
use gix_object::Exists as _;
use tokio::io::AsyncWriteExt as _;

use crate::config::Upstream;
use crate::follow::Signal;
use crate::pktline::{self, Advertisement};
use crate::ssh::{self, Service};
use crate::wire::{self, Frame};

/// Why the mirror could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    /// A file operation on the mirror failed.
    #[error("mirror {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The pack could not be indexed.
    #[error("indexing the pack failed: {0}")]
    Index(String),
    /// The upstream could not be reached.
    #[error(transparent)]
    Ssh(#[from] ssh::SshError),
    /// The upstream's answer broke the protocol.
    #[error("upstream upload-pack: {0}")]
    Protocol(String),
}

/// Memory for decoded delta bases while reading objects (part of the
/// gate's bounded footprint).
const PACK_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// Thin-pack bases looked up in the mirror once its refresh from the
/// upstream is done: a push's pack is indexed while it arrives, which can
/// be before the refresh has fetched the bases it deltas against. The
/// first lookup waits for `refreshed`, then opens the object database.
pub struct BasesAfterRefresh {
    mirror: Mirror,
    refreshed: Arc<Signal>,
    odb: OnceCell<Option<gix_odb::Handle>>,
}

impl std::fmt::Debug for BasesAfterRefresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasesAfterRefresh")
            .field("mirror", &self.mirror)
            .field("refreshed", &self.refreshed)
            .finish_non_exhaustive()
    }
}

impl BasesAfterRefresh {
    /// Bases from `mirror` once `refreshed` is raised.
    #[must_use]
    pub fn new(mirror: Mirror, refreshed: Arc<Signal>) -> Self {
        Self {
            mirror,
            refreshed,
            odb: OnceCell::new(),
        }
    }
}

impl gix_object::Find for BasesAfterRefresh {
    fn try_find<'a>(
        &self,
        id: &gix_hash::oid,
        buffer: &'a mut Vec<u8>,
    ) -> gix_error::Result<Option<gix_object::Data<'a>>> {
        let odb = self.odb.get_or_init(|| {
            self.refreshed.wait();
            // A mirror that cannot be opened leaves the base missing: the
            // index fails, and the push is refused for the refresh anyway.
            self.mirror.odb().ok()
        });
        match odb {
            Some(odb) => odb.try_find(id, buffer),
            None => Ok(None),
        }
    }
}

/// A bare mirror on disk.
#[derive(Debug, Clone)]
pub struct Mirror {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> MirrorError + '_ {
    move |source| MirrorError::Io {
        path: path.to_owned(),
        source,
    }
}

impl Mirror {
    /// Opens (creating if needed) the mirror of repo `name` under `state`.
    pub fn open(state: &Path, name: &str) -> Result<Self, MirrorError> {
        let dir = state.join("mirrors").join(format!("{name}.git"));
        let pack = dir.join("objects").join("pack");
        fs::create_dir_all(&pack).map_err(io_err(&pack))?;
        for sub in ["refs/heads", "refs/tags", "spool"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let head = dir.join("HEAD");
        if !head.exists() {
            fs::write(&head, "ref: refs/heads/main\n").map_err(io_err(&head))?;
        }
        Ok(Self { dir })
    }

    /// The bare repository folder.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where pushed and fetched packs are spooled.
    #[must_use]
    pub fn spool(&self) -> PathBuf {
        self.dir.join("spool")
    }

    /// The object database, with a bounded cache of decoded delta bases:
    /// without it every object at the end of a delta chain decodes the
    /// whole chain again, which made scanning a long history quadratic.
    pub fn odb(&self) -> Result<gix_odb::Handle, MirrorError> {
        let objects = self.dir.join("objects");
        let mut odb = gix_odb::at(&objects, gix_hash::Kind::Sha1).map_err(io_err(&objects))?;
        odb.set_pack_cache(|| {
            Box::new(gix_pack::cache::lru::MemoryCappedHashmap::new(
                PACK_CACHE_BYTES,
            ))
        });
        Ok(odb)
    }

    /// Indexes the pack in `pack_file` into the mirror, resolving thin-pack
    /// bases from the mirror's objects. Returns the new index's path, or
    /// `None` for an empty pack. Blocking: run it off the async workers.
    pub fn index_pack(&self, pack_file: &Path) -> Result<Option<PathBuf>, MirrorError> {
        let file = fs::File::open(pack_file).map_err(io_err(pack_file))?;
        self.index_stream(file, self.odb()?)
    }

    /// Indexes the pack read from `pack` (a [`crate::follow::Follower`]
    /// while a push still arrives), resolving thin-pack bases through
    /// `bases`. Entries are decoded as they are read; the deltas are
    /// resolved once the pack has ended. Blocking.
    pub fn index_stream(
        &self,
        mut pack: impl Read,
        bases: impl gix_object::Find,
    ) -> Result<Option<PathBuf>, MirrorError> {
        let read_err = |e: io::Error| MirrorError::Index(format!("reading the pack: {e}"));
        let mut header = [0u8; 12];
        let got = read_up_to(&mut pack, &mut header).map_err(read_err)?;
        if got == 0 {
            return Ok(None);
        }
        if got < 12 || &header[..4] != b"PACK" {
            return Err(MirrorError::Index(
                "the pack does not start with a PACK header".into(),
            ));
        }
        if header[8..12] == [0, 0, 0, 0] {
            return Ok(None);
        }
        let mut reader = BufReader::with_capacity(64 * 1024, io::Cursor::new(header).chain(pack));
        let pack_dir = self.dir.join("objects").join("pack");
        let interrupt = AtomicBool::new(false);
        let outcome = gix_pack::Bundle::write_to_directory(
            &mut reader,
            Some(&pack_dir),
            &mut gix_utils::progress::Discard,
            &interrupt,
            Some(bases),
            gix_hash::Kind::Sha1,
            gix_pack::bundle::write::Options {
                thread_limit: Some(crate::scan::threads()),
                // A small pack can inflate to a huge object (a zip bomb);
                // decoding buffers stop here and the push is refused.
                alloc_limit_bytes: Some(crate::scan::MAX_OBJECT_BYTES),
                ..Default::default()
            },
        )
        .map_err(|e| MirrorError::Index(e.to_string()))?;
        if let Some(keep) = &outcome.keep_path {
            let _ = fs::remove_file(keep);
        }
        Ok(outcome.index_path)
    }

    /// Brings the mirror up to date with `up` and returns the upstream's
    /// upload-pack advertisement.
    pub async fn refresh(&self, up: &Upstream) -> Result<Advertisement, MirrorError> {
        let mut stream = ssh::open(up, Service::UploadPack).await?;
        let io = stream.io();
        let lines = wire::read_to_flush(io)
            .await
            .map_err(|e| MirrorError::Protocol(e.to_string()))?;
        let ad = Advertisement::parse(lines.iter().map(Vec::as_slice))
            .map_err(|e| MirrorError::Protocol(e.to_string()))?;
        let this = self.clone();
        let ids: Vec<String> = ad
            .refs
            .iter()
            .filter(|r| !r.name.ends_with("^{}"))
            .map(|r| r.oid.clone())
            .collect();
        let (wants, haves) = tokio::task::spawn_blocking(move || this.partition(&ids))
            .await
            .map_err(|e| MirrorError::Protocol(e.to_string()))??;
        let mut request = Vec::new();
        if wants.is_empty() {
            pktline::flush(&mut request);
            io.write_all(&request)
                .await
                .map_err(|e| MirrorError::Protocol(e.to_string()))?;
            return Ok(ad);
        }
        let offered = |c: &str| ad.caps.iter().any(|have| have == c);
        let mut caps: Vec<&str> = ["side-band-64k", "ofs-delta", "no-progress"]
            .into_iter()
            .filter(|c| offered(c))
            .collect();
        caps.push("agent=bb-gitgate");
        let sideband = offered("side-band-64k");
        for (i, want) in wants.iter().enumerate() {
            let line = if i == 0 {
                format!("want {want} {}\n", caps.join(" "))
            } else {
                format!("want {want}\n")
            };
            pktline::encode(&mut request, line.as_bytes());
        }
        pktline::flush(&mut request);
        for have in &haves {
            pktline::encode(&mut request, format!("have {have}\n").as_bytes());
        }
        pktline::encode(&mut request, b"done\n");
        io.write_all(&request)
            .await
            .map_err(|e| MirrorError::Protocol(e.to_string()))?;
        let spool = tempfile::NamedTempFile::new_in(self.spool()).map_err(io_err(&self.spool()))?;
        let mut out = tokio::fs::File::create(spool.path())
            .await
            .map_err(io_err(spool.path()))?;
        receive_fetch_pack(io, &mut out, sideband).await?;
        out.flush().await.map_err(io_err(spool.path()))?;
        drop(out);
        drop(stream);
        let this = self.clone();
        let path = spool.path().to_owned();
        tokio::task::spawn_blocking(move || this.index_pack(&path))
            .await
            .map_err(|e| MirrorError::Protocol(e.to_string()))??;
        Ok(ad)
    }

    /// Splits `ids` into those the mirror lacks and those it holds.
    fn partition(&self, ids: &[String]) -> Result<(Vec<String>, Vec<String>), MirrorError> {
        let odb = self.odb()?;
        let mut wants = Vec::new();
        let mut haves = Vec::new();
        for id in ids {
            let oid = ObjectId::from_hex(id.as_bytes())
                .map_err(|e| MirrorError::Protocol(e.to_string()))?;
            let list = if odb.exists(&oid) {
                &mut haves
            } else {
                &mut wants
            };
            if !list.contains(id) {
                list.push(id.clone());
            }
        }
        Ok((wants, haves))
    }
}

/// Reads the upstream's answer to `done`: `ACK`/`NAK` lines, then the pack
/// (on band 1 with side-band, raw without), into `out`.
async fn receive_fetch_pack(
    io: &mut (impl tokio::io::AsyncRead + Unpin),
    out: &mut tokio::fs::File,
    sideband: bool,
) -> Result<(), MirrorError> {
    let proto = |e: io::Error| MirrorError::Protocol(e.to_string());
    loop {
        let frame = wire::read_pkt(io).await.map_err(proto)?;
        match frame {
            Some(Frame::Data(d)) if d.starts_with(b"ACK ") || d.starts_with(b"NAK") => {
                if !sideband {
                    break;
                }
            }
            Some(Frame::Data(d)) if d.starts_with(b"shallow ") => {}
            Some(Frame::Data(d)) => match d.first() {
                Some(1) => out.write_all(&d[1..]).await.map_err(proto)?,
                Some(2) => {}
                Some(3) => {
                    return Err(MirrorError::Protocol(format!(
                        "upstream error: {}",
                        String::from_utf8_lossy(&d[1..]).trim_end()
                    )));
                }
                _ => return Err(MirrorError::Protocol("unexpected side-band packet".into())),
            },
            Some(Frame::Flush) | None => return Ok(()),
            Some(Frame::Special) => {}
        }
    }
    // Without side-band the pack follows as raw bytes until the end.
    tokio::io::copy(io, out).await.map_err(proto)?;
    Ok(())
}

fn read_up_to(file: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let n = file.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    Ok(got)
}
