//! The gate's state and its two services: relaying fetches and receiving,
//! scanning and forwarding pushes. Transport-neutral: `http` feeds it.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bb_egress::dlp::DlpEngine;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWriteExt as _};

use crate::allow::{self, Decision};
use crate::config::{Config, Upstream};
use crate::follow::{self, Feed, Signal};
use crate::mirror::{BasesAfterRefresh, Mirror};
use crate::pktline::{self, Advertisement, PushRequest};
use crate::scan::{self, Finding};
use crate::ssh::{self, Service};
use crate::wire::{self, Frame};

/// The gate: configuration, the DLP engine, one lock per repo (pushes to
/// one repo are serialised so its mirror is updated by one push at a time).
#[derive(Debug)]
pub struct Gate {
    /// The loaded gate.yaml.
    pub config: Config,
    engine: Arc<DlpEngine>,
    locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

/// A push begun as soon as its commands are read: the repo's lock taken
/// and the mirror refreshed from the upstream while the pack is still
/// arriving (an SSH channel and a fetch that would otherwise come after
/// it), and the pack indexed into the mirror as it arrives. Dropped, it
/// still finishes the refresh before freeing the lock.
#[derive(Debug)]
pub struct PushStart {
    refresh: tokio::task::JoinHandle<(tokio::sync::OwnedMutexGuard<()>, Result<Duration, Refusal>)>,
    /// The blocking task indexing the arriving pack.
    indexing: tokio::task::JoinHandle<Result<Option<PathBuf>, String>>,
    mirror: Mirror,
}

/// A refusal for a step of the check that could not be done.
fn failed(what: &str, e: &dyn std::fmt::Display) -> Refusal {
    Refusal {
        lines: vec![format!("git-gate: {what}: {e}")],
        reason: format!("git-gate could not {what}"),
    }
}

/// How a push passed its check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    /// Nothing was found.
    Clean,
    /// Findings on marked lines, approved by the operator.
    AfterDecision,
}

/// What a refused push is told, and why.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Lines printed as `remote:` lines.
    pub lines: Vec<String>,
    /// The short reason on each `ng` line.
    pub reason: String,
}

impl Gate {
    /// A gate for `config`, scanning with `engine`.
    #[must_use]
    pub fn new(config: Config, engine: Arc<DlpEngine>) -> Self {
        let locks = config
            .repos
            .keys()
            .map(|k| (k.clone(), Arc::new(tokio::sync::Mutex::new(()))))
            .collect();
        Self {
            config,
            engine,
            locks,
        }
    }

    /// The upstream named `name`.
    #[must_use]
    pub fn repo(&self, name: &str) -> Option<Arc<Upstream>> {
        self.config.repos.get(name).cloned()
    }

    /// The advertisement the agent sees for `service` (the upstream's refs,
    /// capabilities filtered to those the gate relays), with its flush.
    pub async fn advertise(&self, up: &Upstream, service: Service) -> Result<Vec<u8>, String> {
        let mut stream = ssh::open(up, service).await.map_err(|e| e.to_string())?;
        let io = stream.io();
        let lines = wire::read_to_flush(io)
            .await
            .map_err(|e| format!("upstream {}: {e}", service.name()))?;
        let ad = Advertisement::parse(lines.iter().map(Vec::as_slice))
            .map_err(|e| format!("upstream {}: {e}", service.name()))?;
        // A flush ends the service without commands or wants.
        let _ = io.write_all(b"0000").await;
        let _ = io.shutdown().await;
        Ok(match service {
            Service::UploadPack => ad.encode(pktline::keep_fetch_cap),
            Service::ReceivePack => ad.encode(pktline::keep_push_cap),
        })
    }

    /// Relays one stateless upload-pack request to a fresh upstream
    /// `git-upload-pack` and streams its answer into `tx`.
    pub async fn upload_pack(
        &self,
        up: &Upstream,
        request: Vec<u8>,
        tx: http_body_util::channel::Sender<Bytes, io::Error>,
    ) -> Result<(), String> {
        let done = request_has_done(&request);
        let mut stream = ssh::open(up, Service::UploadPack)
            .await
            .map_err(|e| e.to_string())?;
        let io = stream.io();
        wire::read_to_flush(io)
            .await
            .map_err(|e| format!("upstream git-upload-pack: {e}"))?;
        io.write_all(&request)
            .await
            .map_err(|e| format!("upstream git-upload-pack: {e}"))?;
        io.flush().await.map_err(|e| e.to_string())?;
        let mut tx = tx;
        if done {
            relay_to_end(io, &mut tx).await
        } else {
            relay_round(io, &mut tx).await
        }
    }

    /// Begins a push to `up` whose commands have been read, its pack to
    /// be spooled at `spool` in `mirror`: see [`PushStart`]. The returned
    /// [`Feed`] tells the indexer where the pack ends (or, dropped, that
    /// it never will). Thin-pack bases are looked up once the refresh is
    /// done.
    ///
    /// # Panics
    ///
    /// Never: every configured repo has a lock (built in [`Gate::new`]).
    pub fn begin_push(
        &self,
        up: &Arc<Upstream>,
        mirror: &Mirror,
        spool: &Path,
    ) -> io::Result<(PushStart, Feed)> {
        let (feed, follower) = follow::follow(spool)?;
        let lock = Arc::clone(
            self.locks
                .get(&up.name)
                .expect("a lock per configured repo"),
        );
        let (refreshed, raiser) = Signal::new();
        let refresh = {
            let (up, mirror) = (Arc::clone(up), mirror.clone());
            tokio::spawn(async move {
                let guard = lock.lock_owned().await;
                let start = std::time::Instant::now();
                let refreshed = mirror
                    .refresh(&up)
                    .await
                    .map(|_| start.elapsed())
                    .map_err(|e| failed("update the mirror from the upstream", &e));
                raiser.raise();
                (guard, refreshed)
            })
        };
        let indexing = {
            let bases = BasesAfterRefresh::new(mirror.clone(), refreshed);
            let mirror = mirror.clone();
            tokio::task::spawn_blocking(move || {
                mirror
                    .index_stream(follower, bases)
                    .map_err(|e| e.to_string())
            })
        };
        let start = PushStart {
            refresh,
            indexing,
            mirror: mirror.clone(),
        };
        Ok((start, feed))
    }

    /// Handles a received push: `header` is the commands (and push
    /// options) as the agent sent them, `pack` the spooled pack (empty
    /// for delete-only pushes), `start` what [`Gate::begin_push`] began.
    /// Writes the agent's answer into `tx`.
    pub async fn receive_pack(
        self: &Arc<Self>,
        up: &Arc<Upstream>,
        req: &PushRequest,
        header: &[u8],
        pack: PathBuf,
        start: PushStart,
        tx: http_body_util::channel::Sender<Bytes, io::Error>,
    ) {
        let mut tx = tx;
        let refs: Vec<String> = req.commands.iter().map(|c| c.name.clone()).collect();
        tracing::info!(repo = %up.name, refs = ?refs, "push received");
        // The upstream's receive-pack is reached while the push is checked
        // (the SSH handshake and its advertisement take a while); it is
        // sent nothing until the check passes, and a flush (no commands)
        // if it does not.
        let early = {
            let up = Arc::clone(up);
            tokio::spawn(async move { open_receive_pack(&up).await })
        };
        let PushStart {
            refresh,
            indexing,
            mirror,
        } = start;
        // The lock (none if the refresh task died) is held from here to
        // the end of the push.
        let (_guard, refreshed) = match refresh.await {
            Ok((guard, refreshed)) => (Some(guard), refreshed),
            Err(e) => (None, Err(failed("update the mirror from the upstream", &e))),
        };
        let checked = match refreshed {
            Ok(refresh_time) => {
                self.check_push(up, req, &mirror, indexing, refresh_time)
                    .await
            }
            Err(refusal) => Err(refusal),
        };
        let stream = match checked {
            Err(refusal) => {
                tracing::warn!(repo = %up.name, reason = %refusal.reason, "push refused");
                let _ = tx.send_data(Bytes::from(refuse(req, &refusal))).await;
                tokio::spawn(async move {
                    if let Ok(Ok(mut stream)) = early.await {
                        let io = stream.io();
                        let _ = io.write_all(b"0000").await;
                        let _ = io.shutdown().await;
                    }
                });
                return;
            }
            // After a wait for an operator, a connection made before it
            // may have been dropped upstream: make a fresh one.
            Ok(Checked::AfterDecision) => {
                early.abort();
                open_receive_pack(up).await
            }
            Ok(Checked::Clean) => early
                .await
                .unwrap_or_else(|e| Err(format!("connecting to the upstream: {e}"))),
        };
        let start = std::time::Instant::now();
        let forwarded = match stream {
            Ok(stream) => forward(stream, header, &pack, &mut tx).await,
            Err(e) => Err(e),
        };
        tracing::info!(repo = %up.name, forward_ms = start.elapsed().as_millis(), "push forwarded");
        if let Err(e) = forwarded {
            tracing::warn!(repo = %up.name, error = %e, "forwarding the push failed");
            let refusal = Refusal {
                lines: vec![format!("git-gate: forwarding to the upstream failed: {e}")],
                reason: "upstream unreachable".into(),
            };
            let _ = tx.send_data(Bytes::from(refuse(req, &refusal))).await;
        }
    }

    /// The rest of the indexing begun while the pack arrived, scanning
    /// and the `gitleaks:allow` wait (the mirror was refreshed by the
    /// push's [`PushStart`], in `refresh_time`).
    async fn check_push(
        self: &Arc<Self>,
        up: &Arc<Upstream>,
        req: &PushRequest,
        mirror: &Mirror,
        indexing: tokio::task::JoinHandle<Result<Option<PathBuf>, String>>,
        refresh_time: Duration,
    ) -> Result<Checked, Refusal> {
        let start = Timer::start();
        let index = indexing
            .await
            .map_err(|e| failed("index the push", &e))?
            .map_err(|e| failed("scan the push", &e))?;
        let index_time = start.stop();
        let (engine, m) = (Arc::clone(&self.engine), mirror.clone());
        let (report, scan_time) = tokio::task::spawn_blocking(move || {
            let Some(index) = index else {
                return Ok::<_, String>((scan::Report::default(), Timed::default()));
            };
            let odb = m.odb().map_err(|e| e.to_string())?;
            let start = Timer::start();
            let report = scan::scan_pack(&odb, &index, &engine).map_err(|e| e.to_string())?;
            Ok((report, start.stop()))
        })
        .await
        .map_err(|e| failed("scan the push", &e))?
        .map_err(|e| failed("scan the push", &e))?;
        tracing::info!(
            repo = %up.name,
            commits = report.commits,
            bytes = report.bytes,
            findings = report.findings.len(),
            refresh_ms = refresh_time.as_millis(),
            index_ms = index_time.wall.as_millis(),
            index_cpu_ms = index_time.cpu.as_millis(),
            scan_ms = scan_time.wall.as_millis(),
            scan_cpu_ms = scan_time.cpu.as_millis(),
            "push scanned"
        );
        if report.findings.is_empty() {
            return Ok(Checked::Clean);
        }
        let unmarked: Vec<&Finding> = report.findings.iter().filter(|f| !f.marked).collect();
        if !unmarked.is_empty() {
            let mut lines = vec![format!(
                "git-gate: push refused: {} possible secret(s) found; nothing was sent upstream",
                report.findings.len()
            )];
            lines.extend(report.findings.iter().map(|f| format!("git-gate:   {f}")));
            lines.push(
                "git-gate: remove the secret from every commit of the push (rewrite history), then push again"
                    .into(),
            );
            return Err(Refusal {
                lines,
                reason: "secret found by git-gate".into(),
            });
        }
        let refs: Vec<String> = req.commands.iter().map(|c| c.name.clone()).collect();
        let text = allow::report(&up.name, &refs, &report.findings);
        let queue = self.config.supervise_queue.clone();
        let slug = self.config.bottle_slug.clone();
        let timeout = self.config.allow_timeout;
        let (_, decision) =
            tokio::task::spawn_blocking(move || allow::ask(queue.as_deref(), &slug, text, timeout))
                .await
                .map_err(|e| failed("wait for the gitleaks-allow decision", &e))?;
        match decision.refusal() {
            None => {
                if let Decision::Approved { reason } = &decision {
                    tracing::info!(repo = %up.name, reason = %reason, "gitleaks-allow approved");
                }
                Ok(Checked::AfterDecision)
            }
            Some(why) => {
                let mut lines = vec![format!("git-gate: push refused: {why}")];
                lines.extend(report.findings.iter().map(|f| format!("git-gate:   {f}")));
                Err(Refusal {
                    lines,
                    reason: "gitleaks:allow not approved".into(),
                })
            }
        }
    }
}

/// The upstream's `git-receive-pack`, past its advertisement (which the
/// push does not need: the agent saw the one `advertise` relayed).
async fn open_receive_pack(up: &Upstream) -> Result<ssh::ServiceStream, String> {
    let mut stream = ssh::open(up, Service::ReceivePack)
        .await
        .map_err(|e| e.to_string())?;
    wire::read_to_flush(stream.io())
        .await
        .map_err(|e| format!("upstream git-receive-pack: {e}"))?;
    Ok(stream)
}

/// Wall and CPU time of a step (CPU of the whole process, every thread:
/// the step's own threads are nearly all of it), for the log.
#[derive(Debug, Default, Clone, Copy)]
struct Timed {
    wall: Duration,
    cpu: Duration,
}

struct Timer {
    wall: std::time::Instant,
    cpu: Duration,
}

impl Timer {
    fn start() -> Self {
        Self {
            wall: std::time::Instant::now(),
            cpu: process_cpu(),
        }
    }

    fn stop(&self) -> Timed {
        Timed {
            wall: self.wall.elapsed(),
            cpu: process_cpu().saturating_sub(self.cpu),
        }
    }
}

/// The process's user + system time (`/proc/self/stat`, in the kernel's
/// 100 Hz ticks); zero where it cannot be read.
fn process_cpu() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    Duration::from_millis(ticks * 10)
}

/// How much of the spooled pack each read of the forward takes.
const FORWARD_READ: usize = 1 << 20;

/// Sends the push to the upstream's receive-pack and relays its answer.
async fn forward(
    mut stream: ssh::ServiceStream,
    header: &[u8],
    pack: &std::path::Path,
    tx: &mut http_body_util::channel::Sender<Bytes, io::Error>,
) -> Result<(), String> {
    let start = std::time::Instant::now();
    let cpu = process_cpu();
    let io = stream.io();
    io.write_all(header).await.map_err(|e| e.to_string())?;
    let file = tokio::fs::File::open(pack)
        .await
        .map_err(|e| e.to_string())?;
    // Large reads: `io::copy`'s 8 KiB buffer made each read of the spool
    // a round trip to tokio's blocking pool, CPU the upstream's
    // index-pack (on the same cores, in the benchmark) then lacked.
    let mut file = tokio::io::BufReader::with_capacity(FORWARD_READ, file);
    tokio::io::copy_buf(&mut file, io)
        .await
        .map_err(|e| format!("sending the pack upstream: {e}"))?;
    io.flush().await.map_err(|e| e.to_string())?;
    let sent = start.elapsed();
    let send_cpu = process_cpu().saturating_sub(cpu);
    let relayed = relay_to_end(io, tx).await;
    tracing::debug!(
        send_ms = sent.as_millis(),
        send_cpu_ms = send_cpu.as_millis(),
        report_ms = start.elapsed().saturating_sub(sent).as_millis(),
        "forward steps"
    );
    relayed
}

/// Copies everything the upstream sends until it closes.
async fn relay_to_end<R: AsyncRead + Unpin>(
    io: &mut R,
    tx: &mut http_body_util::channel::Sender<Bytes, io::Error>,
) -> Result<(), String> {
    use tokio::io::AsyncReadExt as _;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = wire::timed(io.read(&mut buf))
            .await
            .map_err(|e| format!("reading the upstream: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        if tx
            .send_data(Bytes::copy_from_slice(&buf[..n]))
            .await
            .is_err()
        {
            return Err("the agent went away".into());
        }
    }
}

/// Copies one negotiation round's answer: pkt-lines up to and including
/// the `NAK` that ends a multi-ack round.
async fn relay_round<R: AsyncRead + Unpin>(
    io: &mut R,
    tx: &mut http_body_util::channel::Sender<Bytes, io::Error>,
) -> Result<(), String> {
    loop {
        let frame = wire::read_pkt(io)
            .await
            .map_err(|e| format!("reading the upstream: {e}"))?;
        let mut out = Vec::new();
        let end = match &frame {
            None => return Ok(()),
            Some(Frame::Flush) => {
                pktline::flush(&mut out);
                false
            }
            Some(Frame::Special) => continue,
            Some(Frame::Data(d)) => {
                pktline::encode(&mut out, d);
                d.starts_with(b"NAK")
            }
        };
        if tx.send_data(Bytes::from(out)).await.is_err() {
            return Err("the agent went away".into());
        }
        if end {
            return Ok(());
        }
    }
}

/// Whether a stateless upload-pack request ends negotiation (`done`).
#[must_use]
pub fn request_has_done(request: &[u8]) -> bool {
    let mut pos = 0;
    while let Ok(Some((pkt, used))) = pktline::decode(&request[pos..]) {
        pos += used;
        if let pktline::Pkt::Data(d) = pkt
            && pktline::chomp(d) == b"done"
        {
            return true;
        }
    }
    false
}

/// The receive-pack answer for a refused push: the reasons as progress
/// (`remote:`) lines and an `ng` for every command.
#[must_use]
pub fn refuse(req: &PushRequest, refusal: &Refusal) -> Vec<u8> {
    let mut status = Vec::new();
    pktline::encode(&mut status, b"unpack ok\n");
    for c in &req.commands {
        pktline::encode(
            &mut status,
            format!("ng {} {}\n", c.name, refusal.reason).as_bytes(),
        );
    }
    pktline::flush(&mut status);
    let mut out = Vec::new();
    if req.has_cap("side-band-64k") {
        for line in &refusal.lines {
            pktline::encode_band(&mut out, 2, format!("{line}\n").as_bytes());
        }
        pktline::encode_band(&mut out, 1, &status);
        pktline::flush(&mut out);
    } else if req.has_cap("report-status") || req.has_cap("report-status-v2") {
        out = status;
    }
    out
}
