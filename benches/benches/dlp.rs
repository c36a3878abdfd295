//! Criterion benches for the streaming DLP scanner: single-thread throughput
//! per detector set on five corpora (source code, prose, JSON, the two
//! mixed, random bytes) at three sizes, fed in 16 KiB chunks and, at 1 MiB,
//! also whole, each beside the `memmem` floor; and the cost of rebuilding
//! the engine when the registered secrets change.
//!
//! See `benches/README.md` for what each group measures and the figures.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bb_benches::{Corpus, CorpusKind, SIZES, secrets};
use bb_egress::dlp::{Detector, DetectorSet, DlpEngine};
use criterion::{
    BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use memchr::memmem;

/// The chunk size the proxy reads bodies in: hyper hands a bumped
/// connection's body over one TLS record (at most 16 KiB) at a time.
const CHUNK: usize = 16 * 1024;
/// Registered secrets in the bench engine.
const SECRETS: usize = 50;
/// The rebuild budget: a secrets change must not stall the proxy longer.
const REBUILD_BUDGET: Duration = Duration::from_millis(50);
/// A needle that occurs in no corpus (checked at setup), so `find_iter`
/// scans every byte: the floor every detector figure is reported against.
const FLOOR_NEEDLE: &[u8] = b"bb-benches floor needle \x00\xff";

/// The detector sets benched, by the name used in bench ids.
///
/// `outbound` and `inbound` are what a route with default detectors runs on
/// a request body and on a textual response body when secrets are
/// registered (the proxy adds `known_secrets` to every response scan, so an
/// injected credential never comes back); `injection` is
/// `naive_injection_detection` alone.
fn detector_sets() -> [(&'static str, DetectorSet); 7] {
    [
        ("outbound", DetectorSet::OUTBOUND),
        ("inbound", DetectorSet::INBOUND.with(Detector::KnownSecrets)),
        ("injection", DetectorSet::INBOUND),
        ("all", DetectorSet::ALL),
        (
            Detector::TokenPatterns.name(),
            DetectorSet::of(&[Detector::TokenPatterns]),
        ),
        (
            Detector::KnownSecrets.name(),
            DetectorSet::of(&[Detector::KnownSecrets]),
        ),
        // No detector: the scanner's own cost (chunk bookkeeping, copy-out).
        ("none", DetectorSet::NONE),
    ]
}

/// The sets benched below 1 MiB, where the per-body setup shows.
const SMALL_SETS: [&str; 2] = ["outbound", "inbound"];

/// How a body is fed: in `CHUNK`-sized pieces, as the proxy streams it, or
/// in one piece, as `hold` (a buffered body) and the git gate scan it.
#[derive(Clone, Copy)]
enum Feed {
    Chunked,
    Whole,
}

impl Feed {
    fn size(self, len: usize) -> usize {
        match self {
            Self::Chunked => CHUNK,
            Self::Whole => len.max(1),
        }
    }

    /// The bench id suffix: none for the proxy's chunking, so ids stay
    /// comparable with earlier runs.
    fn suffix(self) -> &'static str {
        match self {
            Self::Chunked => "",
            Self::Whole => "@whole",
        }
    }
}

/// Streams `data` through a fresh scanner in pieces of `chunk` bytes, as the
/// proxy does for one body, releasing into `out`.
fn stream(engine: &Arc<DlpEngine>, set: DetectorSet, data: &[u8], chunk: usize, out: &mut Vec<u8>) {
    out.clear();
    let mut scanner = engine.scanner(set);
    for piece in data.chunks(chunk) {
        scanner
            .feed(piece, out)
            .expect("corpora are checked hit-free at setup");
    }
    scanner
        .finish(out)
        .expect("corpora are checked hit-free at setup");
}

fn engine() -> Arc<DlpEngine> {
    Arc::new(DlpEngine::new(secrets(SECRETS)).expect("bench secrets are valid"))
}

/// Builds every corpus at every size and checks none of them holds a hit,
/// one-shot or streamed, and that streaming releases every byte.
fn corpora(engine: &Arc<DlpEngine>) -> Vec<(Corpus, &'static str)> {
    let floor = memmem::Finder::new(FLOOR_NEEDLE);
    let mut all = Vec::new();
    for kind in CorpusKind::ALL {
        for (label, size) in SIZES {
            let corpus = Corpus::build(kind, size)
                .unwrap_or_else(|e| panic!("building the {} corpus: {e}", kind.name()));
            if let Some(hit) = engine.scan(DetectorSet::ALL, &corpus.bytes) {
                let at = usize::try_from(hit.offset).unwrap_or(usize::MAX);
                panic!(
                    "{}/{label} corpus holds a hit: {hit}, from {}",
                    kind.name(),
                    corpus.origin(at)
                );
            }
            let mut out = Vec::with_capacity(size);
            stream(engine, DetectorSet::ALL, &corpus.bytes, CHUNK, &mut out);
            assert!(
                out == corpus.bytes,
                "{}/{label}: streaming did not release every byte",
                kind.name()
            );
            eprintln!(
                "{}/{label}: {} pieces, {} .. {}",
                kind.name(),
                corpus.pieces.len(),
                corpus.origin(0),
                corpus.origin(size - 1),
            );
            assert_eq!(
                floor.find_iter(&corpus.bytes).count(),
                0,
                "floor needle occurs in {}/{label}",
                kind.name()
            );
            all.push((corpus, label));
        }
    }
    all
}

/// One thread, one scanner at a time: every figure is throughput per core.
fn bench_scan(c: &mut Criterion) {
    let engine = engine();
    let floor = memmem::Finder::new(FLOOR_NEEDLE);
    let corpora = corpora(&engine);
    for kind in CorpusKind::ALL {
        let mut group = c.benchmark_group(kind.name());
        for (corpus, label) in corpora.iter().filter(|(c, _)| c.kind == kind) {
            let data = corpus.bytes.as_slice();
            let big = data.len() >= 1 << 20;
            group.throughput(Throughput::Bytes(data.len() as u64));
            // A 1 MiB scan takes milliseconds: linear sampling (1, 2, … 10
            // iterations per sample) would overrun the short window.
            group.sampling_mode(if big {
                SamplingMode::Flat
            } else {
                SamplingMode::Auto
            });
            let feeds: &[Feed] = if big {
                &[Feed::Chunked, Feed::Whole]
            } else {
                &[Feed::Chunked]
            };
            for (name, set) in detector_sets() {
                if !big && !SMALL_SETS.contains(&name) {
                    continue;
                }
                for &feed in feeds {
                    let mut out = Vec::with_capacity(data.len());
                    let id = BenchmarkId::new(format!("{name}{}", feed.suffix()), label);
                    group.bench_with_input(id, data, |b, data| {
                        b.iter(|| {
                            stream(
                                &engine,
                                set,
                                black_box(data),
                                feed.size(data.len()),
                                &mut out,
                            );
                            black_box(out.len())
                        });
                    });
                }
            }
            group.bench_with_input(BenchmarkId::new("memmem_floor", label), data, |b, data| {
                b.iter(|| floor.find_iter(black_box(data)).count());
            });
        }
        group.finish();
    }
}

/// Runs first, so its first build is the process's cold start.
fn bench_rebuild(c: &mut Criterion) {
    let secrets = secrets(SECRETS);
    let cold = Instant::now();
    let engine = DlpEngine::new(secrets.clone()).expect("bench secrets are valid");
    let cold = cold.elapsed();
    let mut rebuild = Duration::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        drop(DlpEngine::new(secrets.clone()).expect("bench secrets are valid"));
        rebuild = rebuild.min(t.elapsed());
    }
    eprintln!(
        "engine: {SECRETS} secrets, {} known_secrets patterns, {} token rules; \
         memory_usage {} bytes ({} without secrets); first build {cold:.1?} \
         (compiles the process-wide token and injection automata), rebuild {rebuild:.1?}",
        engine.known_pattern_count(),
        engine.token_rule_count(),
        engine.memory_usage(),
        DlpEngine::without_secrets().memory_usage(),
    );
    // Only the known_secrets automaton is rebuilt when secrets change.
    assert!(
        rebuild <= REBUILD_BUDGET,
        "rebuilding the engine with {SECRETS} secrets took {rebuild:?}, over the {REBUILD_BUDGET:?} budget"
    );
    let mut group = c.benchmark_group("engine");
    group.bench_function(format!("rebuild_{SECRETS}_secrets"), |b| {
        b.iter_batched(
            || secrets.clone(),
            |s| DlpEngine::new(s).expect("bench secrets are valid"),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn config() -> Criterion {
    // The bench machine is small and shared: few samples, short windows.
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_rebuild, bench_scan
}
criterion_main!(benches);
