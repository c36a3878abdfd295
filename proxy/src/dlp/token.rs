//! `token_patterns`: keywords as the prefilter, each rule's regex confirmed
//! in a bounded window around a keyword occurrence.
//!
//! The regex crate has no streaming API, so the stream keeps enough bytes to
//! rebuild any window: a rule with maximum match length `L` looks at
//! `[kw_start - L - 1, kw_start + L + 1)`, which contains every match that
//! contains the keyword plus one byte of context on each side. The window's
//! right edge is the candidate's *key*: the offset at which it is decidable.

use regex::bytes::{Regex, RegexBuilder};

use super::known::zeroed_map;
use super::rules::RULES;

/// Entries of the pair map: one per two-byte value.
pub(crate) const PAIRS: usize = 1 << 16;
/// Anchors lie within a keyword's first `MAX_ANCHOR + 2` bytes (one bit per
/// offset in a pair-map entry).
pub(crate) const MAX_ANCHOR: usize = 7;

/// The 512 most frequent byte pairs of ordinary text, most frequent first:
/// counted over 1 MiB of Markdown and JSON and 1 MiB of Rust (the bench
/// corpora, `benches/`). A keyword's anchors avoid them where it can, so
/// ordinary text seldom leaves the fingerprint pass's fast loop.
const COMMON_PAIRS: [&[u8]; 32] = [
    b"  e \n erreint //atte\":ors  t,\" a",
    b"sestthenn heeson, itanlealarco s",
    b" i::r deeausti\",etd  f bnted\n\n c",
    b"toasllge;\nroomringmaagtrratans:\"",
    b" w rve oy ute\"nd/ lampme\n/lichis",
    b"elioul lpleclo =--ctac {: cersnc",
    b" mexou= neamhail e{\n) imic `si}\n",
    b"ai p,\n uun()o caurnasucrl );> ue",
    b"rtpulyf  /idfoemg tsadrrs:odocck",
    b"tt.cpape\"a. hi d\n# } (.\nruryube,",
    b"h ofivno nowss)\nket\"bus\"wibe` ba",
    b"hte.qu{\"ot h Aa fimofe Slfef T20",
    b"\"cpt# e:pod\"00ni##gitp/!ie 0mus.",
    b"d_sht_02prblwa)) vs/- gspstctur\"",
    b"by -bo``e(]\n &:/],ui\"bfnldltxadi",
    b"eq\"ifanu! _aizzeaprnr_umwhty\"t#[",
    b"},dordepmihu [Seypife_\"mReso Eay",
    b"va:n\r\nm -0\"u24\n-ollsfr R C!(rgcc",
    b"dsweho:[),ffwrab\n}Er:{igbibr\"nm/",
    b"t.)]b.eel\" \"sr(&/gr:rclur(op).->",
    b"td_s 1\"e0.De4-t([#ny B giaytTh\"]",
    b"[\" #1.\")0xib10:fcim\"_ee)ppyss_/p",
    b"fu_c/c0,spr. I:1ddcl,{12b t:Stn\"",
    b"\"2ey11 Od:daCol}rkZ\"](e\nvi@esa==",
    b".0..ks(h1601up_tucrml/os q/buf/\n",
    b"\nu-1flip-lew\"sIn\n[_rt-sl])\"rs\nog",
    b".iw &mev 2_b F:tgac-ov([* (\" DPa",
    b"]:n.ua\"l(sxt Px c _du8<'32.1:364",
    b":4:2f.17};2.ghcuaus, k'ad\nxpmmir",
    b"g(t,oo] `\ny\".2oko_| tf\ni:5nlobki",
    b"n(\npw(ftr,yn +.s=>m_grcf[cswg/e]",
    b"dy M-2t):0dg *nkk 1528/r_i.r25y.",
];

/// One compiled rule.
#[derive(Debug)]
pub(crate) struct TokenRule {
    pub(crate) name: &'static str,
    regex: Regex,
    exclude: &'static [&'static str],
    /// Maximum length of a match, from the regex's own structure.
    pub(crate) max_len: usize,
}

/// The compiled `token_patterns` detector.
#[derive(Debug)]
pub(crate) struct TokenPatterns {
    /// Every keyword, by id. The stream's fingerprint pass finds them by
    /// looking at every *other* position: a keyword of three bytes or more
    /// has its first pair, or its second, at an even stream offset, and
    /// [`pair_flags`](Self::pair_flags) says which (a two-byte keyword
    /// registers every pair its second byte can begin). A separate search
    /// (aho-corasick's Teddy over the long keywords) cost as much as the
    /// whole pass.
    pub(crate) keywords: Vec<&'static [u8]>,
    /// The first (up to) eight bytes of each keyword, little-endian, and the
    /// mask of the bytes that count: one compare per candidate keyword.
    heads: Vec<(u64, u64)>,
    /// Each keyword's two anchors: the offsets of a pair at an even and at
    /// an odd offset in it, chosen to be rare in ordinary text. Whatever
    /// the keyword's stream offset `q`, one of them lies at an even stream
    /// offset: its *even anchor*, where the fingerprint pass finds it.
    anchors: Vec<[u8; 2]>,
    /// By a pair's two bytes (little-endian): bit `j` set when the pair is
    /// an anchor at offset `j` of some keyword, which then starts `j` bytes
    /// before the pair.
    pub(crate) pair_flags: Box<[u8; PAIRS]>,
    /// Keyword ids by their first two bytes (little-endian): an index into
    /// `pair_ids` (0: none). Direct indexing, no hashing, on the hot path.
    pair_slot: Box<[u16]>,
    pair_ids: Vec<Vec<usize>>,
    /// For each keyword id, the rules it can start.
    pub(crate) keyword_rules: Vec<Vec<u16>>,
    pub(crate) rules: Vec<TokenRule>,
    /// Longest keyword: a position is checked once this many bytes follow it.
    pub(crate) max_keyword: usize,
    /// Longest span from a window's left edge to its key.
    pub(crate) span: usize,
}

impl TokenPatterns {
    /// Compiles the rule table. The table is part of the program, so a rule
    /// that does not compile is a bug caught by the unit tests.
    #[allow(clippy::expect_used, reason = "the rule table is static and tested")]
    pub(crate) fn new() -> Self {
        let mut keywords: Vec<&'static str> = Vec::new();
        let mut keyword_rules: Vec<Vec<u16>> = Vec::new();
        let mut rules = Vec::with_capacity(RULES.len());
        for (ri, def) in RULES.iter().enumerate() {
            let hir = regex_syntax::ParserBuilder::new()
                .unicode(false)
                .utf8(false)
                .build()
                .parse(def.regex)
                .expect("token rule regex parses");
            let max_len = hir
                .properties()
                .maximum_len()
                .expect("token rule regex has a bounded match length");
            let regex = RegexBuilder::new(def.regex)
                .unicode(false)
                .build()
                .expect("token rule regex compiles");
            rules.push(TokenRule {
                name: def.name,
                regex,
                exclude: def.exclude,
                max_len,
            });
            for kw in def.keywords {
                let id = keywords.iter().position(|k| k == kw).unwrap_or_else(|| {
                    keywords.push(kw);
                    keyword_rules.push(Vec::new());
                    keywords.len() - 1
                });
                keyword_rules[id].push(u16::try_from(ri).expect("fewer than 65536 rules"));
            }
        }
        let mut pair_slot = vec![0u16; 1 << 16].into_boxed_slice();
        let mut pair_ids: Vec<Vec<usize>> = vec![Vec::new()];
        for (id, k) in keywords.iter().enumerate() {
            let k = k.as_bytes();
            let pair = usize::from(u16::from_le_bytes([k[0], k[1]]));
            if pair_slot[pair] == 0 {
                pair_slot[pair] = u16::try_from(pair_ids.len()).expect("few keyword pairs");
                pair_ids.push(Vec::new());
            }
            pair_ids[usize::from(pair_slot[pair])].push(id);
        }
        let common = common_pair_ranks();
        let mut pair_flags: Box<[u8; PAIRS]> = zeroed_map();
        let mut anchors = Vec::with_capacity(keywords.len());
        for k in &keywords {
            let k = k.as_bytes();
            assert!(k.len() >= 3, "keyword {k:?} is shorter than three bytes");
            let pair_at = |j: usize| usize::from(u16::from_le_bytes([k[j], k[j + 1]]));
            // The rarest pair at an even and at an odd offset; the first
            // one on a tie.
            let pick = |parity: usize| {
                (parity..=MAX_ANCHOR.min(k.len() - 2))
                    .step_by(2)
                    .min_by_key(|&j| common[pair_at(j)])
                    .expect("a keyword of three bytes has pairs at offsets 0 and 1")
            };
            let pair = [pick(0), pick(1)];
            for &j in &pair {
                pair_flags[pair_at(j)] |= 1 << j;
            }
            anchors.push(pair.map(|j| u8::try_from(j).expect("anchors are below 8")));
        }
        let heads = keywords.iter().map(|k| head(k.as_bytes())).collect();
        let max_keyword = keywords.iter().map(|k| k.len()).max().unwrap_or(1);
        let span = rules.iter().map(|r| 2 * r.max_len + 2).max().unwrap_or(0);
        Self {
            keywords: keywords.iter().map(|k| k.as_bytes()).collect(),
            heads,
            anchors,
            pair_flags,
            pair_slot,
            pair_ids,
            keyword_rules,
            rules,
            max_keyword,
            span,
        }
    }

    /// The stream offset of the even anchor of keyword `id` placed at `q`.
    #[inline]
    pub(crate) fn even_anchor(&self, q: u64, id: usize) -> u64 {
        let [j0, j1] = self.anchors[id];
        let at = q + u64::from(j0);
        if at.is_multiple_of(2) {
            at
        } else {
            q + u64::from(j1)
        }
    }

    /// Whether some keyword begins with the bytes `a`, `b`: the first test
    /// of [`keywords_at`](Self::keywords_at), on its own.
    #[inline]
    pub(crate) fn may_start(&self, a: u8, b: u8) -> bool {
        self.pair_slot[usize::from(u16::from_le_bytes([a, b]))] != 0
    }

    /// Calls `f(len, keyword id)` for each keyword `bytes` begins with and
    /// `wanted` accepts; `bytes` runs from a candidate position to at most
    /// `max_keyword` bytes later (fewer at the stream's end).
    pub(crate) fn keywords_at(
        &self,
        bytes: &[u8],
        wanted: impl Fn(usize) -> bool,
        mut f: impl FnMut(usize, usize),
    ) {
        let (Some(&a), Some(&b)) = (bytes.first(), bytes.get(1)) else {
            return;
        };
        let slot = self.pair_slot[usize::from(u16::from_le_bytes([a, b]))];
        if slot == 0 {
            return;
        }
        let (x, _) = head(bytes);
        for &id in &self.pair_ids[usize::from(slot)] {
            let (value, mask) = self.heads[id];
            let kw = self.keywords[id];
            if x & mask == value
                && bytes.len() >= kw.len()
                && (kw.len() <= 8 || bytes[8..kw.len()] == kw[8..])
                && wanted(id)
            {
                f(kw.len(), id);
            }
        }
    }

    pub(crate) fn rule_count(&self) -> usize {
        self.rules.len()
    }

    pub(crate) fn memory_usage(&self) -> usize {
        // The regex crate does not report its heap; its lazy DFA caches are
        // bounded by its default cache capacity per regex.
        self.keywords.iter().map(|k| k.len() + 16).sum::<usize>()
            + self.pair_slot.len() * 2
            + PAIRS
            + self.rules.len() * std::mem::size_of::<TokenRule>()
    }

    /// Confirms rule `rule` for a keyword at `[kw_start, kw_end)` of
    /// `window` (offsets relative to the window). Returns the match start.
    pub(crate) fn confirm(
        &self,
        rule: usize,
        window: &[u8],
        kw_start: usize,
        kw_end: usize,
    ) -> Option<usize> {
        let r = &self.rules[rule];
        r.regex
            .find_iter(window)
            .find(|m| m.start() <= kw_start && m.end() >= kw_end)
            .filter(|m| {
                let text = m.as_bytes();
                !r.exclude
                    .iter()
                    .any(|x| memchr::memmem::find(text, x.as_bytes()).is_some())
            })
            .map(|m| m.start())
    }
}

/// The first (up to) eight bytes of `bytes`, little-endian and zero-padded,
/// with the mask of the bytes present.
fn head(bytes: &[u8]) -> (u64, u64) {
    if let Some(first) = bytes.first_chunk::<8>() {
        // The common case: one load, no copy of a variable length.
        return (u64::from_le_bytes(*first), u64::MAX);
    }
    let n = bytes.len();
    let mut x = 0u64;
    for (k, &b) in bytes.iter().enumerate() {
        x |= u64::from(b) << (8 * k);
    }
    (x, (1u64 << (8 * n)) - 1)
}

/// `COMMON_PAIRS` as a cost by pair (little-endian): highest for the most
/// frequent, 0 for a pair not in the list.
pub(crate) fn common_pair_ranks() -> Vec<u16> {
    let mut rank = vec![0u16; PAIRS];
    let pairs = COMMON_PAIRS.iter().flat_map(|s| s.chunks_exact(2));
    for (i, p) in pairs.enumerate() {
        let cost = u16::try_from(1024 - i.min(1023)).unwrap_or(u16::MAX);
        let slot = &mut rank[usize::from(u16::from_le_bytes([p[0], p[1]]))];
        *slot = (*slot).max(cost);
    }
    rank
}
