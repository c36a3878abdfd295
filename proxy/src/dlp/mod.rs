//! The streaming DLP engine: `token_patterns`, `known_secrets` and
//! `naive_injection_detection`, scanning bodies chunk by chunk. No I/O.
//!
//! # The release invariant
//!
//! A [`StreamScanner`] is fed chunks of any size and hands back the bytes it
//! has cleared. It holds back at most [`StreamScanner::holdback`] bytes: the
//! longest span any enabled detector can still turn into a hit. Consequently
//! **no byte of a detected match is ever released**: every byte released
//! lies strictly before the start of any hit the stream can still produce,
//! and once a hit is reported nothing more is released. A caller that
//! forwards only released bytes therefore never forwards any part of a
//! detected secret (or of a registered encoding of it).
//!
//! # Determinism
//!
//! Every detector defines its hits as a function of the whole stream, each
//! hit with a *key*: the stream offset at which the hit becomes decidable.
//! The reported hit is the one with the smallest `(key, detector, rule,
//! start)`. Streaming over any chunking reports exactly the hit a one-shot
//! scan of the concatenation reports; the property tests check it.

mod injection;
mod known;
mod names;
mod rules;
mod stream;
mod token;

use std::fmt;
use std::sync::{Arc, LazyLock};

pub use known::{Encoding, MAX_SECRET_LEN, MIN_SECRET_LEN};
pub use names::{DetectorName, InboundDetector, OutboundDetector};
pub use stream::StreamScanner;

use crate::redact::Redacted;

/// A DLP detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Detector {
    /// Well-known credential formats, keyword-prefiltered regexes.
    TokenPatterns,
    /// Registered secret values and their encodings.
    KnownSecrets,
    /// Prompt-injection phrases in responses, after normalisation.
    NaiveInjectionDetection,
}

impl Detector {
    /// The routes.yaml name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::TokenPatterns => "token_patterns",
            Self::KnownSecrets => "known_secrets",
            Self::NaiveInjectionDetection => "naive_injection_detection",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of enabled detectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DetectorSet(u8);

impl DetectorSet {
    /// No detector.
    pub const NONE: Self = Self(0);
    /// `token_patterns` and `known_secrets`: the request direction.
    pub const OUTBOUND: Self = Self(0b011);
    /// `naive_injection_detection`: the response direction.
    pub const INBOUND: Self = Self(0b100);
    /// Every detector (benches, tests).
    pub const ALL: Self = Self(0b111);

    /// A set of exactly these detectors.
    #[must_use]
    pub fn of(detectors: &[Detector]) -> Self {
        Self(detectors.iter().fold(0, |acc, d| acc | d.bit()))
    }

    /// Whether `d` is in the set.
    #[must_use]
    pub fn contains(self, d: Detector) -> bool {
        self.0 & d.bit() != 0
    }

    /// Whether the set is empty.
    #[must_use]
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// This set with `d` added.
    #[must_use]
    pub fn with(self, d: Detector) -> Self {
        Self(self.0 | d.bit())
    }
}

/// A detection. Names the detector and rule and where the match starts;
/// never carries the matched bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Which detector fired.
    pub detector: Detector,
    /// The rule: a token format name, `VAR/encoding` for a known secret, or
    /// the phrase id for injection.
    pub rule: Arc<str>,
    /// Stream offset of the first byte of the match.
    pub offset: u64,
}

impl fmt::Display for Hit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} at byte {}",
            self.detector.name(),
            self.rule,
            self.offset
        )
    }
}

/// Why an engine could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DlpError {
    /// A registered secret is too short to match without false positives.
    #[error("secret in {name} is {len} bytes; known_secrets needs at least {MIN_SECRET_LEN}")]
    SecretTooShort {
        /// The variable (or label) the secret came from.
        name: String,
        /// Its length.
        len: usize,
    },
    /// A registered secret is too long to hold back while streaming.
    #[error("secret in {name} is {len} bytes; known_secrets takes at most {MAX_SECRET_LEN}")]
    SecretTooLong {
        /// The variable (or label) the secret came from.
        name: String,
        /// Its length.
        len: usize,
    },
    /// The automaton could not be built (a bug or a resource limit).
    #[error("building the known_secrets automaton failed: {0}")]
    Build(String),
}

/// The compiled detectors, shared by every scanner of a proxy generation.
///
/// `token_patterns` and the injection phrases are compiled once per process;
/// only the `known_secrets` automaton is rebuilt when secrets change.
#[derive(Debug)]
pub struct DlpEngine {
    token: Arc<token::TokenPatterns>,
    known: known::KnownSecrets,
    injection: Arc<injection::Injection>,
    /// The fingerprint pass's map, by a pair's two bytes (little-endian):
    /// the low byte is `token_patterns`' anchor flags (`token::pair_flags`),
    /// the high byte `known_secrets`' pair bits (`KnownSecrets::pair_bits`).
    /// One load per two bytes is the pass's whole cost on ordinary text.
    pairs: Box<[u16; token::PAIRS]>,
}

fn pair_map(token: &token::TokenPatterns, known: &known::KnownSecrets) -> Box<[u16; token::PAIRS]> {
    let mut map: Box<[u16; token::PAIRS]> = known::zeroed_map();
    for (slot, &flags) in map.iter_mut().zip(token.pair_flags.iter()) {
        *slot = u16::from(flags);
    }
    for &(pair, bits) in known.pair_bits() {
        map[usize::from(pair)] |= u16::from(bits) << 8;
    }
    map
}

static TOKEN: LazyLock<Arc<token::TokenPatterns>> =
    LazyLock::new(|| Arc::new(token::TokenPatterns::new()));
static INJECTION: LazyLock<Arc<injection::Injection>> =
    LazyLock::new(|| Arc::new(injection::Injection::new()));

impl DlpEngine {
    /// Builds an engine that knows these secrets, each named by the
    /// variable it came from.
    pub fn new<N, I>(secrets: I) -> Result<Self, DlpError>
    where
        N: Into<String>,
        I: IntoIterator<Item = (N, Redacted<Vec<u8>>)>,
    {
        let known = known::KnownSecrets::new(secrets)?;
        Ok(Self {
            pairs: pair_map(&TOKEN, &known),
            token: Arc::clone(&TOKEN),
            known,
            injection: Arc::clone(&INJECTION),
        })
    }

    /// An engine with no registered secrets.
    #[must_use]
    pub fn without_secrets() -> Self {
        let known = known::KnownSecrets::empty();
        Self {
            pairs: pair_map(&TOKEN, &known),
            token: Arc::clone(&TOKEN),
            known,
            injection: Arc::clone(&INJECTION),
        }
    }

    /// Number of `token_patterns` rules.
    #[must_use]
    pub fn token_rule_count(&self) -> usize {
        self.token.rule_count()
    }

    /// Whether any secret is registered (`known_secrets` can fire at all).
    #[must_use]
    pub fn has_known_secrets(&self) -> bool {
        !self.known.is_empty()
    }

    /// Number of `known_secrets` patterns (secrets × distinct encodings).
    #[must_use]
    pub fn known_pattern_count(&self) -> usize {
        self.known.pattern_count()
    }

    /// Heap bytes held by the compiled automata.
    #[must_use]
    pub fn memory_usage(&self) -> usize {
        self.token.memory_usage()
            + self.known.memory_usage()
            + self.injection.memory_usage()
            + std::mem::size_of::<[u16; token::PAIRS]>()
    }

    /// A scanner for one stream.
    #[must_use]
    pub fn scanner(self: &Arc<Self>, detectors: DetectorSet) -> StreamScanner {
        StreamScanner::new(Arc::clone(self), detectors)
    }

    /// Scans a complete buffer; the same result as streaming it.
    #[must_use]
    pub fn scan(self: &Arc<Self>, detectors: DetectorSet, data: &[u8]) -> Option<Hit> {
        let mut s = self.scanner(detectors);
        s.scan_only(data)
            .err()
            .or_else(|| s.finish_scan_only().err())
    }
}

#[cfg(test)]
mod tests;
