//! A fixed amount of DLP work for profilers (`valgrind --tool=callgrind`,
//! `perf record`): scans one corpus with one detector set, streamed in
//! 16 KiB chunks as the proxy does, a given number of times.
//!
//! ```sh
//! cargo build --profile bench -p bb-benches --example dlp_profile
//! valgrind --tool=callgrind target/release/examples/dlp_profile prose_json outbound 1MiB 3
//! ```
//!
//! Arguments: corpus (`source_code`, `prose_json`, `random`, `prose`,
//! `json`), detector set (`outbound`, `inbound`, `injection`, `all`,
//! `token_patterns`, `known_secrets`, `none`), size (`1KiB`, `64KiB`,
//! `1MiB`), repetitions, and optionally `whole` to feed each body in one
//! piece. It prints the bytes scanned and the wall time (meaningless under
//! valgrind).

use std::hint::black_box;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use bb_benches::{Corpus, CorpusKind, SIZES, secrets};
use bb_egress::dlp::{Detector, DetectorSet, DlpEngine};

const CHUNK: usize = 16 * 1024;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |i: usize, d: &str| args.get(i).cloned().unwrap_or_else(|| d.to_owned());
    let Some(kind) = CorpusKind::ALL
        .into_iter()
        .find(|k| k.name() == get(0, "prose_json"))
    else {
        eprintln!("unknown corpus {}", get(0, ""));
        return ExitCode::from(64);
    };
    let set = match get(1, "outbound").as_str() {
        "outbound" => DetectorSet::OUTBOUND,
        // What a default route runs on a textual response (see the bench).
        "inbound" => DetectorSet::INBOUND.with(Detector::KnownSecrets),
        "injection" => DetectorSet::INBOUND,
        "all" => DetectorSet::ALL,
        "token_patterns" => DetectorSet::of(&[Detector::TokenPatterns]),
        "known_secrets" => DetectorSet::of(&[Detector::KnownSecrets]),
        "none" => DetectorSet::NONE,
        other => {
            eprintln!("unknown detector set {other}");
            return ExitCode::from(64);
        }
    };
    let Some(&(_, size)) = SIZES.iter().find(|(l, _)| *l == get(2, "1MiB")) else {
        eprintln!("unknown size {}", get(2, ""));
        return ExitCode::from(64);
    };
    let Ok(reps) = get(3, "3").parse::<usize>() else {
        eprintln!("repetitions must be a number");
        return ExitCode::from(64);
    };
    let corpus = match Corpus::build(kind, size) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("building the corpus: {e}");
            return ExitCode::FAILURE;
        }
    };
    let engine = match DlpEngine::new(secrets(50)) {
        Ok(e) => Arc::new(e),
        Err(e) => {
            eprintln!("building the engine: {e}");
            return ExitCode::FAILURE;
        }
    };
    let chunk = if get(4, "chunked") == "whole" {
        size
    } else {
        CHUNK
    };
    let mut out = Vec::with_capacity(size);
    let t = Instant::now();
    for _ in 0..reps {
        out.clear();
        let mut s = engine.scanner(set);
        for piece in black_box(&corpus.bytes).chunks(chunk) {
            if let Err(h) = s.feed(piece, &mut out) {
                eprintln!("unexpected hit: {h}");
                return ExitCode::FAILURE;
            }
        }
        if let Err(h) = s.finish(&mut out) {
            eprintln!("unexpected hit: {h}");
            return ExitCode::FAILURE;
        }
        black_box(out.len());
    }
    let secs = t.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss, reason = "small counts")]
    let bytes = (size * reps) as f64;
    println!(
        "{} {} {}: {} bytes in {secs:.3} s, {:.0} MB/s",
        kind.name(),
        get(1, "outbound"),
        get(2, "1MiB"),
        size * reps,
        bytes / secs / 1e6
    );
    ExitCode::SUCCESS
}
