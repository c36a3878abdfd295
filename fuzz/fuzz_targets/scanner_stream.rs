//! Fuzzes the streaming DLP scanner against the one-shot scan and the
//! release invariant of `bb_egress::dlp`.
//!
//! Input layout (chosen so seeds can be plain text):
//! - byte 0: the detector set, bit 0 `token_patterns`, bit 1
//!   `known_secrets`, bit 2 `naive_injection_detection` (`'7'` is all three);
//! - byte 1: `n = (byte & 7) + 1` chunk sizes follow;
//! - the next `n` bytes: chunk sizes, used in a cycle. `0` feeds an empty
//!   chunk, `255` feeds everything left, any other value that many bytes;
//! - the rest: the body.
//!
//! Invariants, for every detector set and chunking:
//! - the streamed result (hit or none) equals `DlpEngine::scan` of the body;
//! - released bytes are always a prefix of the body, and the scanner never
//!   holds back more than `holdback()` bytes;
//! - with no hit, the released bytes are the body exactly;
//! - with a hit, its detector is enabled, its offset lies inside the body and
//!   at or after the end of the released bytes, and the scanner stays
//!   stopped (every later call returns the same hit, releasing nothing);
//! - with `known_secrets` enabled, no registered encoding of either secret
//!   starts inside the released bytes (the module's "no byte of a detected
//!   match is ever released"), any occurrence in the body produces a hit,
//!   and a `known_secrets` hit is the occurrence that ends first, at the
//!   offset its rule names;
//! - the result does not depend on where the body falls against the
//!   scanner's sampling grid (pairs at even offsets, 4-byte blocks):
//!   `k` spaces in front of the body (`k` = 1 + bits 3–5 of byte 0, mod 7)
//!   give the same hit, `k` bytes later. Spaces start no keyword, pattern
//!   or phrase, and `\b` treats them as it treats the start of the text.

#![no_main]

use std::sync::{Arc, LazyLock};

use bb_egress::dlp::{Detector, DetectorSet, DlpEngine, Encoding, Hit, MIN_SECRET_LEN};
use bb_egress::redact::Redacted;
use libfuzzer_sys::fuzz_target;

/// Fixture secrets, deliberately not credential-shaped. The first is all
/// RFC 3986 unreserved characters (its percent-encoding is itself); the
/// second has reserved, NUL and non-UTF-8 bytes, so every encoding differs.
const SECRETS: [(&str, &[u8]); 2] = [
    ("FUZZ_ONE", b"fuzz-secret-one"),
    ("FUZZ_TWO", b"b1n:\x00\xff/2"),
];

struct Fixture {
    engine: Arc<DlpEngine>,
    /// `(rule name, pattern)` for every encoding the engine registers.
    patterns: Vec<(String, Vec<u8>)>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let engine = DlpEngine::new(
        SECRETS
            .iter()
            .map(|&(name, value)| (name, Redacted::new(value.to_vec()))),
    )
    .expect("fixture secrets are within the length limits");
    // Mirrors the engine's registration: encodings shorter than the minimum
    // are not registered; duplicates keep their first rule name.
    let mut patterns: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, value) in SECRETS {
        for enc in Encoding::ALL {
            let p = enc.apply(value);
            if p.len() >= MIN_SECRET_LEN && !patterns.iter().any(|(_, q)| *q == p) {
                patterns.push((format!("{name}/{}", enc.label()), p));
            }
        }
    }
    Fixture {
        engine: Arc::new(engine),
        patterns,
    }
});

struct Input<'a> {
    set: DetectorSet,
    sizes: &'a [u8],
    body: &'a [u8],
}

fn split(data: &[u8]) -> Option<Input<'_>> {
    let (&set_byte, rest) = data.split_first()?;
    let (&n_byte, rest) = rest.split_first()?;
    let n = usize::from(n_byte & 7) + 1;
    if rest.len() < n {
        return None;
    }
    let (sizes, body) = rest.split_at(n);
    let all = [
        Detector::TokenPatterns,
        Detector::KnownSecrets,
        Detector::NaiveInjectionDetection,
    ];
    let chosen: Vec<Detector> = all
        .into_iter()
        .enumerate()
        .filter(|(i, _)| set_byte & (1 << i) != 0)
        .map(|(_, d)| d)
        .collect();
    Some(Input {
        set: DetectorSet::of(&chosen),
        sizes,
        body,
    })
}

/// Streams `body` in the cycled chunk sizes, checking the per-call
/// invariants; returns the released bytes and the hit.
fn stream(engine: &Arc<DlpEngine>, input: &Input<'_>) -> (Vec<u8>, Option<Hit>) {
    let mut scanner = engine.scanner(input.set);
    let mut out = Vec::new();
    let mut at = 0;
    let mut sizes = input.sizes.iter().cycle();
    let mut calls_since_progress = 0;
    let mut hit = None;
    while at < input.body.len() {
        let size = match *sizes.next().unwrap() {
            255 => input.body.len() - at,
            s => usize::from(s),
        };
        // Only zero sizes: the cycle would never end. Feed the rest.
        calls_since_progress = if size == 0 {
            calls_since_progress + 1
        } else {
            0
        };
        let size = if calls_since_progress > input.sizes.len() {
            input.body.len() - at
        } else {
            size
        };
        let to = (at + size).min(input.body.len());
        let result = scanner.feed(&input.body[at..to], &mut out);
        at = to;
        if let Err(h) = result {
            hit = Some(h);
            break;
        }
        assert_eq!(
            scanner.position(),
            at as u64,
            "position is not the bytes fed"
        );
        assert!(out.len() <= at, "released {} of {at} bytes fed", out.len());
        assert!(
            at - out.len() <= scanner.holdback(),
            "holding {} bytes, holdback is {}",
            at - out.len(),
            scanner.holdback()
        );
    }
    if hit.is_none() {
        hit = scanner.finish(&mut out).err();
    }
    if let Some(h) = &hit {
        // A stopped scanner stays stopped and releases nothing more.
        let released = out.len();
        assert_eq!(
            scanner.feed(b"more bytes", &mut out).err().as_ref(),
            Some(h)
        );
        assert_eq!(scanner.finish(&mut out).err().as_ref(), Some(h));
        assert_eq!(out.len(), released, "bytes released after a hit");
    }
    (out, hit)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = split(data) else {
        return;
    };
    let fx = &*FIXTURE;
    let body = input.body;

    let one_shot = fx.engine.scan(input.set, body);
    let (released, hit) = stream(&fx.engine, &input);
    assert_eq!(hit, one_shot, "streaming and one-shot scans disagree");
    assert!(
        body.starts_with(&released),
        "released bytes are not a prefix of the body"
    );

    match &hit {
        None => assert_eq!(
            released.len(),
            body.len(),
            "no hit, yet bytes were kept back"
        ),
        Some(h) => {
            assert!(
                input.set.contains(h.detector),
                "hit from a disabled detector: {h}"
            );
            assert!(
                h.offset < body.len() as u64,
                "hit offset past the body: {h}"
            );
            assert!(
                released.len() as u64 <= h.offset,
                "released {} bytes past the hit: {h}",
                released.len()
            );
        }
    }

    // Phase independence: the same body k bytes later.
    let k = 1 + usize::from((data[0] >> 3) & 7) % 7;
    let shifted = [vec![b' '; k], body.to_vec()].concat();
    let moved = fx.engine.scan(input.set, &shifted);
    let expected = one_shot.as_ref().map(|h| Hit {
        offset: h.offset + k as u64,
        ..h.clone()
    });
    assert_eq!(moved, expected, "{k} leading spaces changed the result");

    if input.set.contains(Detector::KnownSecrets) {
        // First occurrence of each registered encoding: (start, end, rule).
        let occurrences: Vec<(usize, usize, &str)> = fx
            .patterns
            .iter()
            .filter_map(|(rule, p)| find(body, p).map(|s| (s, s + p.len(), rule.as_str())))
            .collect();
        for &(start, _, rule) in &occurrences {
            assert!(
                released.len() <= start,
                "released part of {rule} at byte {start}"
            );
        }
        if !occurrences.is_empty() {
            let h = hit
                .as_ref()
                .expect("a registered secret occurs but nothing was hit");
            if h.detector == Detector::KnownSecrets {
                let (_, p) = fx
                    .patterns
                    .iter()
                    .find(|(rule, _)| *rule == *h.rule)
                    .unwrap_or_else(|| panic!("unknown known_secrets rule in {h}"));
                let at = h.offset as usize;
                assert_eq!(
                    body.get(at..at + p.len()),
                    Some(&p[..]),
                    "{h} is not where it says"
                );
                let first_end = occurrences.iter().map(|o| o.1).min().unwrap();
                assert_eq!(
                    at + p.len(),
                    first_end,
                    "{h} is not the occurrence that ends first"
                );
            }
        }
    }
});
