//! The per-stream scanner: feeds chunks through every enabled detector and
//! releases bytes only once no hit can still start at or before them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use super::injection::InjState;
use super::known::{KnownMatch, KnownState};
use super::token::{MAX_ANCHOR, PAIRS};
use super::{Detector, DetectorSet, DlpEngine, Hit};

/// Keywords are at most this long (a unit test checks the rule table).
pub(crate) const MAX_KEYWORD: usize = 32;

/// The fingerprint pass looks at the stream in aligned blocks of this many
/// bytes: the pairs at block offsets 0 and 2, whose map entries serve both
/// `token_patterns` (each pair alone) and `known_secrets` (the two together).
const BLOCK: u64 = 4;
/// Map-entry bits of `token_patterns`.
const TOKEN_BITS: u16 = 0x00FF;

/// A token-rule candidate waiting for its window: ordered by key first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Candidate {
    key: u64,
    rule: u16,
    kw_start: u64,
    kw_end: u64,
}

/// A hit with its ordering key `(key, detector, rule, start)`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Ranked {
    key: u64,
    detector: Detector,
    rule: usize,
    start: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Open,
    Hit(Hit),
    Finished,
}

/// Scans one stream (a request or response body, or any byte sequence).
///
/// Feed it chunks with [`feed`](Self::feed) and end the stream with
/// [`finish`](Self::finish). Each call appends the bytes it clears to the
/// caller's buffer; a hit is returned as `Err` and nothing more is ever
/// released. See the module documentation for the release invariant.
#[derive(Debug)]
pub struct StreamScanner {
    engine: Arc<DlpEngine>,
    token: bool,
    known: bool,
    holdback: usize,
    /// Bytes fed so far.
    pos: u64,
    /// The unreleased tail of the stream: its last `min(pos, holdback)` bytes.
    held: Vec<u8>,
    pending: BinaryHeap<Reverse<Candidate>>,
    known_state: KnownState,
    /// The first block (a multiple of [`BLOCK`]) the fingerprint pass has
    /// not examined. Always more than `pos - BLOCK`.
    prescan_next: u64,
    /// Keyword candidates `(q, p)` (a keyword at `q` whose even anchor is
    /// the pair at `p`) that may run past the bytes fed so far; checked once
    /// `max_keyword` bytes follow `q` (or at the end).
    deferred: Vec<(u64, u64)>,
    inj: Option<InjState>,
    phase: Phase,
    scratch: Vec<u8>,
}

impl StreamScanner {
    pub(crate) fn new(engine: Arc<DlpEngine>, set: DetectorSet) -> Self {
        let token = set.contains(Detector::TokenPatterns);
        let known = set.contains(Detector::KnownSecrets) && !engine.known.is_empty();
        let inj = set.contains(Detector::NaiveInjectionDetection);
        let holdback = [
            if token { engine.token.span } else { 0 },
            if known { engine.known.span } else { 0 },
            if inj { engine.injection.span } else { 0 },
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        Self {
            known_state: KnownState::default(),
            prescan_next: 0,
            deferred: Vec::new(),
            inj: inj.then(|| engine.injection.state()),
            engine,
            token,
            known,
            holdback,
            pos: 0,
            held: Vec::with_capacity(holdback),
            pending: BinaryHeap::new(),
            phase: Phase::Open,
            scratch: Vec::new(),
        }
    }

    /// The most bytes this scanner ever keeps unreleased.
    #[must_use]
    pub fn holdback(&self) -> usize {
        self.holdback
    }

    /// Bytes fed so far.
    #[must_use]
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The detectors this scanner runs.
    #[must_use]
    pub fn detectors(&self) -> DetectorSet {
        let mut set = DetectorSet::NONE;
        for (on, d) in [
            (self.token, Detector::TokenPatterns),
            (self.known, Detector::KnownSecrets),
            (self.inj.is_some(), Detector::NaiveInjectionDetection),
        ] {
            if on {
                set = set.with(d);
            }
        }
        set
    }

    /// Scans `field` on its own, as a separate stream with this scanner's
    /// detectors (trailer fields, which are not part of the body stream).
    #[must_use]
    pub fn scan_field(&self, field: &[u8]) -> Option<Hit> {
        self.engine.scan(self.detectors(), field)
    }

    /// Scans `chunk` and appends to `out` every byte now known to be clear.
    /// After a hit, every call returns that hit and releases nothing.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), Hit> {
        self.step(chunk, Some(out))
    }

    /// Ends the stream: resolves what was waiting for more bytes and, with no
    /// hit, releases the rest.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), Hit> {
        self.end(Some(out))
    }

    pub(crate) fn scan_only(&mut self, chunk: &[u8]) -> Result<(), Hit> {
        self.step(chunk, None)
    }

    pub(crate) fn finish_scan_only(&mut self) -> Result<(), Hit> {
        self.end(None)
    }

    fn stop(&mut self, ranked: Option<Ranked>) -> Result<(), Hit> {
        let Some(r) = ranked else { return Ok(()) };
        let rule = match r.detector {
            Detector::TokenPatterns => Arc::from(self.engine.token.rules[r.rule].name),
            Detector::KnownSecrets => self.engine.known.rule(r.rule),
            Detector::NaiveInjectionDetection => self.engine.injection.rule(r.rule),
        };
        let hit = Hit {
            detector: r.detector,
            rule,
            offset: r.start,
        };
        self.phase = Phase::Hit(hit.clone());
        self.held.clear();
        self.pending.clear();
        Err(hit)
    }

    fn sticky(&self) -> Result<(), Hit> {
        match &self.phase {
            Phase::Hit(h) => Err(h.clone()),
            _ => Ok(()),
        }
    }

    fn step(&mut self, chunk: &[u8], out: Option<&mut Vec<u8>>) -> Result<(), Hit> {
        if self.phase != Phase::Open {
            return self.sticky();
        }
        let base = self.pos;
        let end = base + chunk.len() as u64;
        let mut best: Option<Ranked> = None;
        let mut consider = |r: Ranked| {
            if best.as_ref().is_none_or(|b| r < *b) {
                best = Some(r);
            }
        };
        let mut known_best = None;
        if self.known {
            known_best = self
                .engine
                .known
                .advance(&mut self.known_state, chunk, base);
        }
        if self.token || self.known {
            self.prescan(chunk, base, &mut known_best);
        }
        if self.token
            && let Some(r) = self.resolve(chunk, base, end)
        {
            consider(r);
        }
        if let Some(m) = known_best {
            consider(Ranked {
                key: m.end,
                detector: Detector::KnownSecrets,
                rule: m.pattern,
                start: m.start,
            });
        }
        if let Some(st) = self.inj.as_mut()
            && let Some((key, id, start)) = self.engine.injection.scan(st, &self.held, chunk, base)
        {
            consider(Ranked {
                key,
                detector: Detector::NaiveInjectionDetection,
                rule: id,
                start,
            });
        }
        self.pos = end;
        if best.is_some() {
            return self.stop(best);
        }
        self.release(chunk, out);
        Ok(())
    }

    fn end(&mut self, out: Option<&mut Vec<u8>>) -> Result<(), Hit> {
        if self.phase != Phase::Open {
            return self.sticky();
        }
        // Candidates still waiting see the stream's true end as their
        // window's right edge; take them in key order.
        let total = self.pos;
        if self.token {
            // Keywords never checked: deferred ones, and those whose even
            // anchor lies in the last, incomplete block (at or after
            // `prescan_next`), which start at most MAX_ANCHOR bytes before.
            for (q, p) in std::mem::take(&mut self.deferred) {
                self.check_keywords(q, (p, p), &[], total, total);
            }
            let unexamined = self.prescan_next;
            for q in unexamined.saturating_sub(MAX_ANCHOR as u64)..total {
                self.check_keywords(q, (unexamined, u64::MAX), &[], total, total);
            }
        }
        let region_start = total - self.held.len() as u64;
        while let Some(Reverse(c)) = self.pending.pop() {
            let ws = window_start(
                c.kw_start,
                self.engine.token.rules[usize::from(c.rule)].max_len,
            );
            let from = (ws.max(region_start) - region_start) as usize;
            let window = &self.held[from..];
            let off = ws.max(region_start);
            if let Some(s) = self.engine.token.confirm(
                usize::from(c.rule),
                window,
                (c.kw_start - off) as usize,
                (c.kw_end - off) as usize,
            ) {
                let r = Ranked {
                    key: c.key,
                    detector: Detector::TokenPatterns,
                    rule: usize::from(c.rule),
                    start: off + s as u64,
                };
                return self.stop(Some(r));
            }
        }
        self.phase = Phase::Finished;
        if let Some(out) = out {
            out.extend_from_slice(&self.held);
        }
        self.held.clear();
        Ok(())
    }

    /// The fingerprint pass, over aligned [`BLOCK`]s of the stream: one map
    /// load per pair at an even stream offset. For `token_patterns`, a
    /// keyword of three bytes or more has one of its two anchors at an even
    /// offset, and the pair's entry says how far before it the keyword
    /// starts. For `known_secrets`, every pattern holds the block at or
    /// after its start, and the entries of the block's two pairs say at
    /// which of the pattern's offsets 0–3 it may (see `known`). The loads
    /// of neighbouring pairs are independent, so the loop pipelines; only
    /// map hits leave it.
    fn prescan(&mut self, chunk: &[u8], base: u64, known_best: &mut Option<KnownMatch>) {
        let end = base + chunk.len() as u64;
        if !self.deferred.is_empty() {
            let reach = self.engine.token.max_keyword as u64;
            let ready: Vec<(u64, u64)> = self
                .deferred
                .iter()
                .copied()
                .filter(|&(q, _)| q + reach <= end)
                .collect();
            self.deferred.retain(|&(q, _)| q + reach > end);
            for (q, p) in ready {
                self.check_keywords(q, (p, p), chunk, base, end);
            }
        }
        let mut a = self.prescan_next;
        if a + BLOCK > end {
            return;
        }
        if a < base {
            // The block straddling the boundary, partly from the held tail.
            let mut w = [0u8; BLOCK as usize];
            for (k, slot) in w.iter_mut().enumerate() {
                let q = a + k as u64;
                *slot = if q < base {
                    self.held[self.held.len() - (base - q) as usize]
                } else {
                    chunk[(q - base) as usize]
                };
            }
            a += BLOCK;
            self.prescan_next = a;
            let pairs = &self.engine.pairs;
            let e0 = pairs[usize::from(u16::from_le_bytes([w[0], w[1]]))];
            let e2 = pairs[usize::from(u16::from_le_bytes([w[2], w[3]]))];
            if self.block(e0, e2, a - BLOCK, chunk, base, known_best) {
                return;
            }
        }
        let engine = Arc::clone(&self.engine);
        let pairs = &engine.pairs;
        let token_mask = if self.token { TOKEN_BITS } else { 0 };
        let known_mask = if self.known { 0xF000 } else { 0 };
        let mut i = (a - base) as usize;
        // The end of the last whole block in the chunk.
        let whole = i + (chunk.len() - i) / BLOCK as usize * BLOCK as usize;
        while i < whole {
            let (word, found) = match (self.token, self.known) {
                (true, true) => sweep::<true, true>(pairs, chunk, i),
                (true, false) => sweep::<true, false>(pairs, chunk, i),
                (false, true) => sweep::<false, true>(pairs, chunk, i),
                (false, false) => (whole, None),
            };
            // `word` is the first word with a hit (whose entries the sweep
            // hands back), or the last whole word's end: find the blocks
            // that hit, without a branch per block.
            let mut entries = [(0u16, 0u16); SWEEP / BLOCK as usize];
            let mut hits = 0u32;
            let blocks = if let Some(e) = found {
                for (b, slot) in entries.iter_mut().enumerate() {
                    let (e0, e2) = (e[2 * b], e[2 * b + 1]);
                    let hit = ((e0 | e2) & token_mask) | ((e0 << 4) & e2 & known_mask);
                    *slot = (e0, e2);
                    hits |= u32::from(hit != 0) << b;
                }
                SWEEP / BLOCK as usize
            } else {
                let blocks = ((whole - word) / BLOCK as usize).min(SWEEP / BLOCK as usize);
                for (b, slot) in entries.iter_mut().enumerate().take(blocks) {
                    let at = word + b * BLOCK as usize;
                    let e0 = pairs[usize::from(u16::from_le_bytes([chunk[at], chunk[at + 1]]))];
                    let e2 = pairs[usize::from(u16::from_le_bytes([chunk[at + 2], chunk[at + 3]]))];
                    let hit = ((e0 | e2) & token_mask) | ((e0 << 4) & e2 & known_mask);
                    *slot = (e0, e2);
                    hits |= u32::from(hit != 0) << b;
                }
                blocks
            };
            i = word + blocks * BLOCK as usize;
            while hits != 0 {
                let b = hits.trailing_zeros() as usize;
                hits &= hits - 1;
                let (e0, e2) = entries[b];
                let a = base + (word + b * BLOCK as usize) as u64;
                if self.block(e0, e2, a, chunk, base, known_best) {
                    self.prescan_next = a + BLOCK;
                    return;
                }
            }
        }
        self.prescan_next = base + i as u64;
    }

    /// Handles one block at stream offset `a` whose pairs have the map
    /// entries `e0` and `e2`. Returns true
    /// when no later position can produce a better hit than one found.
    fn block(
        &mut self,
        e0: u16,
        e2: u16,
        a: u64,
        chunk: &[u8],
        base: u64,
        known_best: &mut Option<KnownMatch>,
    ) -> bool {
        // Candidates from this block start at `a - MAX_ANCHOR` or later:
        // none can end before a known match that ends there.
        if known_best
            .as_ref()
            .is_some_and(|b| a.saturating_sub(MAX_ANCHOR as u64) >= b.end)
        {
            return true;
        }
        if self.token {
            let end = base + chunk.len() as u64;
            for (p, e) in [(a, e0), (a + 2, e2)] {
                let mut f = e & TOKEN_BITS;
                while f != 0 {
                    let j = u64::from(f.trailing_zeros());
                    f &= f - 1;
                    // Most flagged pairs in text are not a keyword's
                    // anchor there: the keyword's first pair, one load,
                    // rejects them before `check_keywords` (which would
                    // find the same nothing).
                    if p >= j && self.may_start(p - j, chunk, base) {
                        self.keyword_at(p - j, p, chunk, base, end);
                    }
                }
            }
        }
        if self.known {
            let offsets = (e0 >> 8) & (e2 >> 12) & 0xF;
            for o in 0..BLOCK.min(a + 1) {
                if offsets & (1 << o) != 0 {
                    self.engine.known.start(
                        &mut self.known_state,
                        known_best,
                        a - o,
                        &self.held,
                        chunk,
                        base,
                    );
                }
            }
        }
        false
    }

    /// Whether a keyword can begin with the two bytes at stream offset `q`
    /// (both fed already: the held tail, then `chunk` at `base`).
    #[inline]
    fn may_start(&self, q: u64, chunk: &[u8], base: u64) -> bool {
        let at = |i: u64| {
            if i < base {
                self.held[self.held.len() - (base - i) as usize]
            } else {
                chunk[(i - base) as usize]
            }
        };
        self.engine.token.may_start(at(q), at(q + 1))
    }

    /// A keyword whose even anchor is the pair at `p` may start at `q`:
    /// checks it now when `max_keyword` bytes follow, or once they have
    /// arrived.
    fn keyword_at(&mut self, q: u64, p: u64, chunk: &[u8], base: u64, end: u64) {
        if q + self.engine.token.max_keyword as u64 <= end {
            self.check_keywords(q, (p, p), chunk, base, end);
        } else {
            // Its key lies past this chunk whatever it is (every rule's
            // match is at least as long as the longest keyword, checked by
            // a test), so checking it later changes no result.
            self.deferred.push((q, p));
        }
    }

    /// Checks the keywords starting at stream offset `q` whose even anchor
    /// lies in `anchor` (inclusive bounds), with the bytes available up to
    /// `end` (the held tail, then `chunk` at `base`). Each keyword
    /// occurrence is checked once: from the block holding its even anchor.
    fn check_keywords(&mut self, q: u64, anchor: (u64, u64), chunk: &[u8], base: u64, end: u64) {
        let token = &self.engine.token;
        let reach = (token.max_keyword as u64).min(end - q) as usize;
        let mut buf = [0u8; MAX_KEYWORD];
        let bytes: &[u8] = if q >= base {
            let from = (q - base) as usize;
            &chunk[from..from + reach]
        } else {
            for (k, slot) in buf.iter_mut().take(reach).enumerate() {
                let at = q + k as u64;
                *slot = if at < base {
                    self.held[self.held.len() - (base - at) as usize]
                } else {
                    chunk[(at - base) as usize]
                };
            }
            &buf[..reach]
        };
        let pending = &mut self.pending;
        let wanted = |id| (anchor.0..=anchor.1).contains(&token.even_anchor(q, id));
        token.keywords_at(bytes, wanted, |len, id| {
            for &rule in &token.keyword_rules[id] {
                let max_len = token.rules[usize::from(rule)].max_len as u64;
                pending.push(Reverse(Candidate {
                    key: q + max_len + 1,
                    rule,
                    kw_start: q,
                    kw_end: q + len as u64,
                }));
            }
        });
    }

    /// Confirms, in key order, every candidate whose window is complete.
    fn resolve(&mut self, chunk: &[u8], base: u64, end: u64) -> Option<Ranked> {
        let region_start = base - self.held.len() as u64;
        while let Some(&Reverse(c)) = self.pending.peek() {
            if c.key > end {
                break;
            }
            self.pending.pop();
            let rule = usize::from(c.rule);
            let ws = window_start(c.kw_start, self.engine.token.rules[rule].max_len);
            debug_assert!(ws >= region_start || region_start == 0);
            let ws = ws.max(region_start);
            let window: &[u8] = if ws >= base {
                &chunk[(ws - base) as usize..(c.key - base) as usize]
            } else {
                self.scratch.clear();
                self.scratch
                    .extend_from_slice(&self.held[(ws - region_start) as usize..]);
                self.scratch
                    .extend_from_slice(&chunk[..(c.key - base) as usize]);
                &self.scratch
            };
            if let Some(s) = self.engine.token.confirm(
                rule,
                window,
                (c.kw_start - ws) as usize,
                (c.kw_end - ws) as usize,
            ) {
                return Some(Ranked {
                    key: c.key,
                    detector: Detector::TokenPatterns,
                    rule,
                    start: ws + s as u64,
                });
            }
        }
        None
    }

    /// Keeps the last `holdback` bytes of `held ++ chunk`; hands the rest out.
    fn release(&mut self, chunk: &[u8], out: Option<&mut Vec<u8>>) {
        let total = self.held.len() + chunk.len();
        let keep = total.min(self.holdback);
        let release = total - keep;
        let from_held = release.min(self.held.len());
        let from_chunk = release - from_held;
        if let Some(out) = out {
            out.extend_from_slice(&self.held[..from_held]);
            out.extend_from_slice(&chunk[..from_chunk]);
        }
        self.held.drain(..from_held);
        self.held.extend_from_slice(&chunk[from_chunk..]);
        debug_assert!(self.held.len() <= self.holdback);
    }
}

fn window_start(kw_start: u64, max_len: usize) -> u64 {
    kw_start.saturating_sub(max_len as u64 + 1)
}

/// Bytes the sweep looks at per step: four blocks, eight pairs.
const SWEEP: usize = 16;

/// From block-aligned `i`, skips the 16-byte words of `chunk` in which no
/// pair (at even offsets) flags a keyword and no block flags a known
/// secret. Returns the start of the first word with a hit and its eight
/// pairs' map entries, or the first word that is not whole.
#[inline]
fn sweep<const TOKEN: bool, const KNOWN: bool>(
    pairs: &[u16; PAIRS],
    chunk: &[u8],
    mut i: usize,
) -> (usize, Option<[u16; 8]>) {
    while let Some(word) = chunk.get(i..i + SWEEP) {
        // Two 8-byte loads; the pairs are their 16-bit lanes.
        let x = u64::from_le_bytes(word[..8].try_into().unwrap_or([0; 8]));
        let y = u64::from_le_bytes(word[8..].try_into().unwrap_or([0; 8]));
        let e = |v: u64| pairs[(v & 0xFFFF) as usize];
        let (e0, e2, e4, e6) = (e(x), e(x >> 16), e(x >> 32), e(x >> 48));
        let (e8, e10, e12, e14) = (e(y), e(y >> 16), e(y >> 32), e(y >> 48));
        let mut any = 0;
        if TOKEN {
            any |= (e0 | e2 | e4 | e6 | e8 | e10 | e12 | e14) & TOKEN_BITS;
        }
        if KNOWN {
            // A block's first pair's bits `o` against its second's `4 + o`.
            any |= (((e0 << 4) & e2) | ((e4 << 4) & e6) | ((e8 << 4) & e10) | ((e12 << 4) & e14))
                & 0xF000;
        }
        if any != 0 {
            return (i, Some([e0, e2, e4, e6, e8, e10, e12, e14]));
        }
        i += SWEEP;
    }
    (i, None)
}
