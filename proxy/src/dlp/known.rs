//! `known_secrets`: every registered secret value and its encodings, found
//! by a fingerprint filter and confirmed by an anchored Aho-Corasick
//! automaton whose state carries across chunks.
//!
//! Encodings registered per secret: the raw bytes, the bytes reversed,
//! lower- and upper-case hex, percent-encoding (upper- and lower-case hex
//! digits), and standard and URL-safe base64 at each of the three byte
//! alignments. For base64 only the *alignment-independent middle* is
//! registered: the characters produced by 3-byte groups lying wholly inside
//! the secret, which are the same whatever bytes surround the secret in a
//! larger blob. Identical encodings (hex of a digit-only secret, the
//! percent-encoding of an unreserved-only secret, …) are registered once.
//!
//! # Why a sampled fingerprint filter rather than one unanchored DFA
//!
//! The first design stepped one unanchored DFA over every byte. With 50
//! secrets (≈400 patterns over a ≈70-symbol alphabet) its table took 17 MB
//! and the dependent load per byte capped it near 370 MB/s. Every pattern
//! is at least [`MIN_SECRET_LEN`] (8) bytes, so every occurrence contains
//! the 4-byte block that starts at the first stream offset divisible by
//! four at or after its start, at one of the pattern's offsets 0–3. The
//! engine's pair map (shared with `token_patterns`, one entry per two-byte
//! value) says, for each pair, at which offsets `o` some pattern has it
//! at `o` and at which some pattern has it at `o + 2`: a block is a
//! candidate only when its first pair has bit `o` of the first kind and
//! its second pair bit `o` of the second. That is one look per **two**
//! bytes that `token_patterns` makes anyway (a hashed 4-byte fingerprint
//! took its own loads and, at 64 KiB, missed the L1 cache on half of them),
//! and on prose it lets through about one block in 200. A candidate starts
//! an *anchored* walk of a compact NFA at each offset it may belong to. A
//! walk that
//! reaches the end of a chunk keeps its automaton state and resumes on the
//! next chunk; nothing is re-buffered but the three bytes a window spans.

use aho_corasick::automaton::Automaton;
use aho_corasick::nfa::contiguous::NFA;
use aho_corasick::{Anchored, MatchKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};

use aho_corasick::automaton::StateID;

use super::DlpError;
use crate::redact::Redacted;

/// Shortest secret `known_secrets` accepts: shorter values would match
/// ordinary text.
pub const MIN_SECRET_LEN: usize = 8;
// The sampled fingerprint pass needs every pattern to contain a whole
// 4-byte window starting within its first four bytes.
const _: () = assert!(MIN_SECRET_LEN >= 7);
/// Longest secret `known_secrets` accepts: the stream holds back the longest
/// encoding (three bytes per input byte), so this bounds per-stream memory.
pub const MAX_SECRET_LEN: usize = 4096;

/// An encoding of a registered secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// The bytes as registered.
    Raw,
    /// The bytes in reverse order.
    Reversed,
    /// Lower-case hex.
    HexLower,
    /// Upper-case hex.
    HexUpper,
    /// `%XX` for every byte outside RFC 3986 unreserved, upper-case digits.
    PercentUpper,
    /// The same with lower-case digits.
    PercentLower,
    /// Standard base64, the secret starting at this offset mod 3 of the blob.
    Base64(u8),
    /// URL-safe base64 at this alignment.
    Base64Url(u8),
}

impl Encoding {
    /// A short label used in rule names: `VAR/base64+1`.
    #[must_use]
    pub fn label(self) -> String {
        match self {
            Self::Raw => "raw".into(),
            Self::Reversed => "reversed".into(),
            Self::HexLower => "hex".into(),
            Self::HexUpper => "HEX".into(),
            Self::PercentUpper => "percent".into(),
            Self::PercentLower => "percent-lower".into(),
            Self::Base64(a) => format!("base64+{a}"),
            Self::Base64Url(a) => format!("base64url+{a}"),
        }
    }

    /// Every encoding, in registration order.
    pub const ALL: [Self; 12] = [
        Self::Raw,
        Self::Reversed,
        Self::HexLower,
        Self::HexUpper,
        Self::PercentUpper,
        Self::PercentLower,
        Self::Base64(0),
        Self::Base64(1),
        Self::Base64(2),
        Self::Base64Url(0),
        Self::Base64Url(1),
        Self::Base64Url(2),
    ];

    /// The registered pattern for `secret` under this encoding.
    #[must_use]
    pub fn apply(self, secret: &[u8]) -> Vec<u8> {
        /// RFC 3986 unreserved characters stay as they are.
        const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        match self {
            Self::Raw => secret.to_vec(),
            Self::Reversed => secret.iter().rev().copied().collect(),
            Self::HexLower => hex(secret, b"0123456789abcdef"),
            Self::HexUpper => hex(secret, b"0123456789ABCDEF"),
            Self::PercentUpper => percent_encode(secret, ESCAPED).to_string().into_bytes(),
            Self::PercentLower => {
                lower_percent_digits(percent_encode(secret, ESCAPED).to_string().into_bytes())
            }
            Self::Base64(a) => base64_middle(secret, a, false),
            Self::Base64Url(a) => base64_middle(secret, a, true),
        }
    }
}

fn hex(bytes: &[u8], digits: &[u8; 16]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(digits[usize::from(b >> 4)]);
        out.push(digits[usize::from(b & 15)]);
    }
    out
}

fn lower_percent_digits(mut enc: Vec<u8>) -> Vec<u8> {
    let mut i = 0;
    while i < enc.len() {
        if enc[i] == b'%' {
            for b in enc.iter_mut().skip(i + 1).take(2) {
                b.make_ascii_lowercase();
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    enc
}

/// Base64 of the 3-byte groups that lie wholly inside the secret when the
/// secret starts at `align` (mod 3) in the encoded blob.
pub(crate) fn base64_middle(secret: &[u8], align: u8, url_safe: bool) -> Vec<u8> {
    let skip = (3 - usize::from(align) % 3) % 3;
    if secret.len() <= skip {
        return Vec::new();
    }
    let body = &secret[skip..];
    let whole = body.len() - body.len() % 3;
    let engine = if url_safe {
        &URL_SAFE_NO_PAD
    } else {
        &STANDARD_NO_PAD
    };
    engine.encode(&body[..whole]).into_bytes()
}

/// One registered pattern.
#[derive(Debug)]
struct Pattern {
    /// `VAR/encoding`.
    rule: std::sync::Arc<str>,
    len: usize,
}

/// A zeroed fixed-size map, allocated on the heap directly.
#[allow(
    clippy::unnecessary_box_returns,
    reason = "64–128 KiB must not pass through the stack"
)]
pub(crate) fn zeroed_map<T: Copy + Default, const N: usize>() -> Box<[T; N]> {
    vec![T::default(); N]
        .into_boxed_slice()
        .try_into()
        .unwrap_or_else(|_| unreachable!("the vector has N elements"))
}

/// The compiled `known_secrets` detector.
#[derive(Debug)]
pub(crate) struct KnownSecrets {
    nfa: Option<NFA>,
    /// `(pair, bits)` for the engine's pair map: bit `o` (0–3) when some
    /// pattern has the pair (little-endian) at offset `o`, bit `4 + o`
    /// when some pattern has it at offset `o + 2`.
    pair_bits: Vec<(u16, u8)>,
    patterns: Vec<Pattern>,
    /// Longest pattern.
    pub(crate) span: usize,
}

/// Per-stream state: the anchored walks still in progress at the end of the
/// last chunk.
#[derive(Debug, Clone, Default)]
pub(crate) struct KnownState {
    walks: Vec<(u64, StateID)>,
}

/// The first match a chunk produced.
pub(crate) struct KnownMatch {
    /// Stream offset just past the match (the key).
    pub(crate) end: u64,
    pub(crate) pattern: usize,
    pub(crate) start: u64,
}

/// What an anchored walk came to.
enum Walk {
    Dead,
    Match(usize, u64),
    Open(StateID),
}

impl KnownSecrets {
    pub(crate) fn empty() -> Self {
        Self {
            nfa: None,
            pair_bits: Vec::new(),
            patterns: Vec::new(),
            span: 0,
        }
    }

    pub(crate) fn new<N, I>(secrets: I) -> Result<Self, DlpError>
    where
        N: Into<String>,
        I: IntoIterator<Item = (N, Redacted<Vec<u8>>)>,
    {
        let mut bytes: Vec<Vec<u8>> = Vec::new();
        let mut patterns = Vec::new();
        for (name, secret) in secrets {
            let name: String = name.into();
            let value = secret.expose();
            if value.len() < MIN_SECRET_LEN {
                return Err(DlpError::SecretTooShort {
                    name,
                    len: value.len(),
                });
            }
            if value.len() > MAX_SECRET_LEN {
                return Err(DlpError::SecretTooLong {
                    name,
                    len: value.len(),
                });
            }
            let first = bytes.len();
            for enc in Encoding::ALL {
                let p = enc.apply(value);
                if p.len() < MIN_SECRET_LEN || bytes[first..].contains(&p) {
                    continue;
                }
                patterns.push(Pattern {
                    rule: format!("{name}/{}", enc.label()).into(),
                    len: p.len(),
                });
                bytes.push(p);
            }
        }
        if bytes.is_empty() {
            return Ok(Self::empty());
        }
        let mut bits: std::collections::BTreeMap<u16, u8> = std::collections::BTreeMap::new();
        for p in &bytes {
            // Every pattern is at least MIN_SECRET_LEN (8) bytes long, so
            // its blocks at offsets 0..4 all lie inside it.
            for o in 0..4 {
                *bits
                    .entry(u16::from_le_bytes([p[o], p[o + 1]]))
                    .or_default() |= 1 << o;
                *bits
                    .entry(u16::from_le_bytes([p[o + 2], p[o + 3]]))
                    .or_default() |= 16 << o;
            }
        }
        let nfa = NFA::builder()
            .match_kind(MatchKind::Standard)
            .prefilter(false)
            .build(&bytes)
            .map_err(|e| DlpError::Build(e.to_string()))?;
        let span = patterns.iter().map(|p| p.len).max().unwrap_or(0);
        Ok(Self {
            nfa: Some(nfa),
            pair_bits: bits.into_iter().collect(),
            patterns,
            span,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.nfa.is_none()
    }

    pub(crate) fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    pub(crate) fn memory_usage(&self) -> usize {
        self.nfa.as_ref().map_or(0, NFA::memory_usage)
            + self.pair_bits.len() * 4
            + self
                .patterns
                .iter()
                .map(|p| p.rule.len() + 32)
                .sum::<usize>()
    }

    pub(crate) fn rule(&self, pattern: usize) -> std::sync::Arc<str> {
        std::sync::Arc::clone(&self.patterns[pattern].rule)
    }

    /// Continues an anchored walk that began at stream offset `start` over
    /// `bytes` (which begin at stream offset `at`).
    fn walk(&self, nfa: &NFA, start: u64, mut sid: StateID, bytes: &[u8], at: u64) -> Walk {
        for (i, &b) in bytes.iter().enumerate() {
            sid = nfa.next_state(Anchored::Yes, sid, b);
            if nfa.is_dead(sid) {
                return Walk::Dead;
            }
            if nfa.is_match(sid) {
                let end = at + i as u64 + 1;
                // The match set also lists patterns ending here that began
                // later (suffix outputs); keep those that began at `start`.
                let best = (0..nfa.match_len(sid))
                    .map(|k| nfa.match_pattern(sid, k).as_usize())
                    .filter(|&p| self.patterns[p].len as u64 == end - start)
                    .min();
                if let Some(p) = best {
                    return Walk::Match(p, end);
                }
            }
        }
        Walk::Open(sid)
    }

    /// `(pair, bits)` for the engine's pair map: bit `o` (0–3) when some
    /// pattern has the pair (little-endian) at offset `o`, bit `4 + o` when
    /// some pattern has it at offset `o + 2`. A block at stream offset `a`
    /// whose first pair has bit `o` and second pair bit `4 + o` may hold a
    /// pattern starting at `a - o`.
    pub(crate) fn pair_bits(&self) -> &[(u16, u8)] {
        &self.pair_bits
    }

    /// Continues the walks left open by the previous chunk over `chunk` (at
    /// stream offset `base`). Returns the match with the smallest end.
    pub(crate) fn advance(
        &self,
        st: &mut KnownState,
        chunk: &[u8],
        base: u64,
    ) -> Option<KnownMatch> {
        let nfa = self.nfa.as_ref()?;
        let mut best = None;
        st.walks.retain_mut(
            |(start, sid)| match self.walk(nfa, *start, *sid, chunk, base) {
                Walk::Dead => false,
                Walk::Match(p, end) => {
                    offer(&mut best, p, end, *start);
                    false
                }
                Walk::Open(s) => {
                    *sid = s;
                    true
                }
            },
        );
        best
    }

    /// Starts an anchored walk at stream offset `p` (a fingerprint hit).
    /// `tail` holds the stream bytes just before `chunk`, which begins at
    /// `base`; `p` is at least `base - tail.len()`. A walk that reaches the
    /// chunk's end is kept in `st` and resumed by [`advance`](Self::advance).
    pub(crate) fn start(
        &self,
        st: &mut KnownState,
        best: &mut Option<KnownMatch>,
        p: u64,
        tail: &[u8],
        chunk: &[u8],
        base: u64,
    ) {
        let Some(nfa) = self.nfa.as_ref() else { return };
        let Ok(anchored) = nfa.start_state(Anchored::Yes) else {
            return;
        };
        let w = if p >= base {
            self.walk(nfa, p, anchored, &chunk[(p - base) as usize..], p)
        } else {
            // Starts in the tail: walk its last bytes, then the chunk.
            let head = &tail[tail.len() - (base - p) as usize..];
            match self.walk(nfa, p, anchored, head, p) {
                Walk::Open(sid) => self.walk(nfa, p, sid, chunk, base),
                other => other,
            }
        };
        match w {
            Walk::Dead => {}
            Walk::Match(pat, e) => offer(best, pat, e, p),
            Walk::Open(sid) => st.walks.push((p, sid)),
        }
    }
}

/// Keeps the match with the smallest `(end, pattern)`.
fn offer(best: &mut Option<KnownMatch>, pattern: usize, end: u64, start: u64) {
    if best
        .as_ref()
        .is_none_or(|b| (end, pattern) < (b.end, b.pattern))
    {
        *best = Some(KnownMatch {
            end,
            pattern,
            start,
        });
    }
}
