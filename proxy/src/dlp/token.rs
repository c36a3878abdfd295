//! `token_patterns`: keywords as the prefilter, each rule's regex confirmed
//! in a bounded window around a keyword occurrence.
//!
//! The regex crate has no streaming API, so the stream keeps enough bytes to
//! rebuild any window: a rule with maximum match length `L` looks at
//! `[kw_start - L - 1, kw_start + L + 1)`, which contains every match that
//! contains the keyword plus one byte of context on each side. The window's
//! right edge is the candidate's *key*: the offset at which it is decidable.

use regex::bytes::{Regex, RegexBuilder};

use super::rules::RULES;

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
    /// Every keyword, by id. The stream's fingerprint pass finds them: one
    /// byte load per position from a map by the first two bytes, shared
    /// with `known_secrets`. A separate search (aho-corasick's Teddy over
    /// the long keywords) cost as much as that whole pass.
    pub(crate) keywords: Vec<&'static [u8]>,
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
        let max_keyword = keywords.iter().map(|k| k.len()).max().unwrap_or(1);
        let span = rules.iter().map(|r| 2 * r.max_len + 2).max().unwrap_or(0);
        Self {
            keywords: keywords.iter().map(|k| k.as_bytes()).collect(),
            pair_slot,
            pair_ids,
            keyword_rules,
            rules,
            max_keyword,
            span,
        }
    }

    /// The first two bytes of every keyword, little-endian.
    pub(crate) fn keyword_pairs(&self) -> impl Iterator<Item = u16> + '_ {
        self.keywords
            .iter()
            .map(|k| u16::from_le_bytes([k[0], k[1]]))
    }

    /// Calls `f(len, keyword id)` for each keyword `bytes` begins with;
    /// `bytes` runs from a candidate position to at most `max_keyword` bytes
    /// later (fewer at the stream's end).
    pub(crate) fn keywords_at(&self, bytes: &[u8], mut f: impl FnMut(usize, usize)) {
        let (Some(&a), Some(&b)) = (bytes.first(), bytes.get(1)) else {
            return;
        };
        let slot = self.pair_slot[usize::from(u16::from_le_bytes([a, b]))];
        if slot == 0 {
            return;
        }
        for &id in &self.pair_ids[usize::from(slot)] {
            if bytes.starts_with(self.keywords[id]) {
                f(self.keywords[id].len(), id);
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
