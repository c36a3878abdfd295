//! The per-stream scanner: feeds chunks through every enabled detector and
//! releases bytes only once no hit can still start at or before them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use super::injection::InjState;
use super::known::{KnownMatch, KnownState};
use super::{Detector, DetectorSet, DlpEngine, Hit, PAIR_KEYWORD, PAIR_KNOWN, PAIRS};

/// Keywords are at most this long (a unit test checks the rule table).
pub(crate) const MAX_KEYWORD: usize = 32;

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
    /// The first stream offset the fingerprint pass has not examined.
    prescan_next: u64,
    /// Keyword-pair hits whose keyword may run past the bytes fed so far;
    /// checked once `max_keyword` bytes follow them (or at the end).
    deferred: Vec<u64>,
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
            && let Some((key, id, start)) = self.engine.injection.scan(st, chunk, base)
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
            // Keyword positions never checked: deferred ones and the last
            // three bytes, which no 4-byte window covered.
            let mut last: Vec<u64> = std::mem::take(&mut self.deferred);
            last.extend(self.prescan_next.max(total.saturating_sub(3))..total);
            for q in last {
                self.check_keywords(q, &[], total, total);
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

    /// The fingerprint pass: one look at every 4-byte window of the stream,
    /// for short `token_patterns` keywords (a bitmap of their first two
    /// bytes) and for `known_secrets` (a bitmap of pattern-prefix hashes).
    /// The loads of neighbouring positions are independent, so the loop
    /// pipelines; only bitmap hits leave it.
    fn prescan(&mut self, chunk: &[u8], base: u64, known_best: &mut Option<KnownMatch>) {
        let end = base + chunk.len() as u64;
        if !self.deferred.is_empty() {
            let reach = self.engine.token.max_keyword as u64;
            let ready: Vec<u64> = self
                .deferred
                .iter()
                .copied()
                .filter(|&q| q + reach <= end)
                .collect();
            self.deferred.retain(|&q| q + reach > end);
            for q in ready {
                self.check_keywords(q, chunk, base, end);
            }
        }
        let mut p = self.prescan_next.max(base.saturating_sub(3));
        // Windows straddling the boundary (at most three), from the held tail.
        while p < base && p + 4 <= end {
            let mut w = [0u8; 4];
            for (k, slot) in w.iter_mut().enumerate() {
                let q = p + k as u64;
                *slot = if q < base {
                    self.held[self.held.len() - (base - q) as usize]
                } else {
                    chunk[(q - base) as usize]
                };
            }
            if self.window(w, p, chunk, base, known_best) {
                break;
            }
            p += 1;
        }
        let from = (p.max(base) - base) as usize;
        let engine = Arc::clone(&self.engine);
        let pairs: &[u8; PAIRS] = &engine.pairs;
        let mask =
            if self.token { PAIR_KEYWORD } else { 0 } | if self.known { PAIR_KNOWN } else { 0 };
        let probe = |w: u32| pairs[(w & 0xFFFF) as usize] & mask;
        let mut i = from;
        // Four positions per 8-byte load.
        while i + 8 <= chunk.len() {
            // One unaligned load; the slice is exactly eight bytes long.
            let x = u64::from_le_bytes(chunk[i..i + 8].try_into().unwrap_or([0; 8]));
            let any = probe(x as u32)
                | probe((x >> 8) as u32)
                | probe((x >> 16) as u32)
                | probe((x >> 24) as u32);
            if any != 0 {
                for k in 0..4 {
                    let w = ((x >> (8 * k)) as u32).to_le_bytes();
                    if probe(u32::from_le_bytes(w)) != 0
                        && self.window(w, base + (i + k) as u64, chunk, base, known_best)
                    {
                        self.prescan_next = self.prescan_next.max(end.saturating_sub(3));
                        return;
                    }
                }
            }
            i += 4;
        }
        while i + 4 <= chunk.len() {
            let w = [chunk[i], chunk[i + 1], chunk[i + 2], chunk[i + 3]];
            if probe(u32::from_le_bytes(w)) != 0
                && self.window(w, base + i as u64, chunk, base, known_best)
            {
                break;
            }
            i += 1;
        }
        self.prescan_next = self.prescan_next.max(end.saturating_sub(3));
    }

    /// Handles one window that hit a bitmap. Returns true when no later
    /// position can produce a better hit than one already found.
    fn window(
        &mut self,
        w: [u8; 4],
        p: u64,
        chunk: &[u8],
        base: u64,
        known_best: &mut Option<KnownMatch>,
    ) -> bool {
        if known_best.as_ref().is_some_and(|b| p >= b.end) {
            return true;
        }
        let flags = self.engine.pairs[usize::from(u16::from_le_bytes([w[0], w[1]]))];
        if self.token && flags & PAIR_KEYWORD != 0 {
            let end = base + chunk.len() as u64;
            if p + self.engine.token.max_keyword as u64 <= end {
                self.check_keywords(p, chunk, base, end);
            } else {
                // Its key lies past this chunk whatever it is (every rule's
                // match is at least as long as the longest keyword, checked
                // by a test), so checking it later changes no result.
                self.deferred.push(p);
            }
        }
        if self.known && flags & PAIR_KNOWN != 0 && self.engine.known.may_start(w) {
            self.engine.known.start(
                &mut self.known_state,
                known_best,
                p,
                &self.held,
                chunk,
                base,
            );
        }
        false
    }

    /// Checks the keywords starting at stream offset `q`, with the bytes
    /// available up to `end` (the held tail, then `chunk` at `base`).
    fn check_keywords(&mut self, q: u64, chunk: &[u8], base: u64, end: u64) {
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
        token.keywords_at(bytes, |len, id| {
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
