//! `known_secrets`: one Aho-Corasick DFA over every registered secret value
//! and its encodings, stepped byte by byte so its state carries across
//! chunks with nothing re-buffered.
//!
//! Encodings registered per secret: the raw bytes, the bytes reversed,
//! lower- and upper-case hex, percent-encoding (upper- and lower-case hex
//! digits), and standard and URL-safe base64 at each of the three byte
//! alignments. For base64 only the *alignment-independent middle* is
//! registered: the characters produced by 3-byte groups lying wholly inside
//! the secret, which are the same whatever bytes surround the secret in a
//! larger blob. Identical encodings (hex of a digit-only secret, the
//! percent-encoding of an unreserved-only secret, …) are registered once.

use aho_corasick::automaton::Automaton;
use aho_corasick::dfa::DFA;
use aho_corasick::{Anchored, MatchKind, StartKind};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};

pub(crate) use aho_corasick::automaton::StateID;

use super::DlpError;
use crate::redact::Redacted;

/// Shortest secret `known_secrets` accepts: shorter values would match
/// ordinary text.
pub const MIN_SECRET_LEN: usize = 8;
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
            Self::PercentLower => lower_percent_digits(
                percent_encode(secret, ESCAPED).to_string().into_bytes(),
            ),
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
    let engine = if url_safe { &URL_SAFE_NO_PAD } else { &STANDARD_NO_PAD };
    engine.encode(&body[..whole]).into_bytes()
}

/// One registered pattern.
#[derive(Debug)]
struct Pattern {
    /// `VAR/encoding`.
    rule: std::sync::Arc<str>,
    len: usize,
}

/// The compiled `known_secrets` detector.
#[derive(Debug)]
pub(crate) struct KnownSecrets {
    dfa: Option<DFA>,
    patterns: Vec<Pattern>,
    /// Longest pattern.
    pub(crate) span: usize,
}

/// The first match a chunk produced.
pub(crate) struct KnownMatch {
    /// Stream offset just past the match (the key).
    pub(crate) end: u64,
    pub(crate) pattern: usize,
    pub(crate) start: u64,
}

impl KnownSecrets {
    pub(crate) fn empty() -> Self {
        Self {
            dfa: None,
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
            let mut seen: Vec<Vec<u8>> = Vec::new();
            for enc in Encoding::ALL {
                let p = enc.apply(value);
                if p.len() < MIN_SECRET_LEN || seen.contains(&p) {
                    continue;
                }
                patterns.push(Pattern {
                    rule: format!("{name}/{}", enc.label()).into(),
                    len: p.len(),
                });
                seen.push(p.clone());
                bytes.push(p);
            }
        }
        if bytes.is_empty() {
            return Ok(Self::empty());
        }
        let dfa = DFA::builder()
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Unanchored)
            .prefilter(false)
            .build(&bytes)
            .map_err(|e| DlpError::Build(e.to_string()))?;
        let span = patterns.iter().map(|p| p.len).max().unwrap_or(0);
        Ok(Self {
            dfa: Some(dfa),
            patterns,
            span,
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.dfa.is_none()
    }

    pub(crate) fn pattern_count(&self) -> usize {
        self.patterns.len()
    }

    pub(crate) fn memory_usage(&self) -> usize {
        self.dfa.as_ref().map_or(0, DFA::memory_usage)
            + self.patterns.iter().map(|p| p.rule.len() + 32).sum::<usize>()
    }

    pub(crate) fn rule(&self, pattern: usize) -> std::sync::Arc<str> {
        std::sync::Arc::clone(&self.patterns[pattern].rule)
    }

    /// The state a fresh stream starts in.
    pub(crate) fn start_state(&self) -> StateID {
        self.dfa
            .as_ref()
            .and_then(|d| d.start_state(Anchored::No).ok())
            .unwrap_or_default()
    }

    /// Steps the DFA over `chunk` (which begins at stream offset `base`),
    /// updating `sid`; stops at the first position where a pattern ends.
    pub(crate) fn scan(&self, sid: &mut StateID, chunk: &[u8], base: u64) -> Option<KnownMatch> {
        let dfa = self.dfa.as_ref()?;
        let mut s = *sid;
        for (i, &b) in chunk.iter().enumerate() {
            s = dfa.next_state(Anchored::No, s, b);
            if dfa.is_special(s) && dfa.is_match(s) {
                *sid = s;
                let end = base + i as u64 + 1;
                // Every pattern ending here is in this state's match set;
                // report the lowest id so the result is deterministic.
                let pattern = (0..dfa.match_len(s))
                    .map(|k| dfa.match_pattern(s, k).as_usize())
                    .min()
                    .unwrap_or(0);
                let start = end - self.patterns[pattern].len as u64;
                return Some(KnownMatch {
                    end,
                    pattern,
                    start,
                });
            }
        }
        *sid = s;
        None
    }
}
