//! `token_patterns`: one keyword automaton as the prefilter, each rule's
//! regex confirmed in a bounded window around a keyword occurrence.
//!
//! The regex crate has no streaming API, so the stream keeps enough bytes to
//! rebuild any window: a rule with maximum match length `L` looks at
//! `[kw_start - L - 1, kw_start + L + 1)`, which contains every match that
//! contains the keyword plus one byte of context on each side. The window's
//! right edge is the candidate's *key*: the offset at which it is decidable.

use regex::bytes::{Regex, RegexBuilder};

use super::rules::RULES;

/// Keyword ids paired with keywords.
type Ids<'a> = Vec<(usize, &'a str)>;

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
    /// Keywords of four bytes or more: one leftmost-first automaton, which
    /// aho-corasick runs with its SIMD (Teddy) prefilter when there are at
    /// most 64 of them. Shorter keywords defeat Teddy's fingerprints (a
    /// measured 7× slowdown), so they get a `memmem` pass each.
    pub(crate) keywords: aho_corasick::packed::Searcher,
    /// Keyword ids of the long automaton's patterns, in pattern order.
    long_ids: Vec<usize>,
    /// Keywords shorter than four bytes, with their ids. The stream's
    /// fingerprint pass finds them (see [`Self::short_bit`]).
    short: Vec<(&'static [u8], usize)>,

    /// For each keyword pattern id, the rules it can start.
    pub(crate) keyword_rules: Vec<Vec<u16>>,
    pub(crate) rules: Vec<TokenRule>,
    /// Longest keyword, for stitching chunk boundaries.
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
        // Leftmost-first (not Standard) so aho-corasick may use its SIMD
        // prefilter; `occurrences` restarts one byte after each match start,
        // which finds every occurrence as long as no keyword is a prefix of
        // another (a unit test checks that).
        let (long, short): (Ids<'_>, Ids<'_>) = keywords
            .iter()
            .copied()
            .enumerate()
            .partition(|(_, k)| k.len() >= 4);
        // The packed searcher directly: the general automaton's heuristics
        // pick a slower byte-frequency prefilter for this set (measured).
        let automaton = aho_corasick::packed::Config::new()
            .match_kind(aho_corasick::packed::MatchKind::LeftmostFirst)
            .builder()
            .extend(long.iter().map(|(_, k)| k))
            .build()
            .expect("at most 64 long keywords (a unit test checks it)");
        let long_ids = long.iter().map(|(i, _)| *i).collect();
        let short = short.into_iter().map(|(i, k)| (k.as_bytes(), i)).collect();
        let max_keyword = keywords.iter().map(|k| k.len()).max().unwrap_or(1);
        let span = rules.iter().map(|r| 2 * r.max_len + 2).max().unwrap_or(0);
        Self {
            keywords: automaton,
            long_ids,
            short,
            keyword_rules,
            rules,
            max_keyword,
            span,
        }
    }

    /// Calls `f(start, end, keyword id)` for every long-keyword occurrence
    /// in `hay`, overlapping ones included.
    pub(crate) fn occurrences(&self, hay: &[u8], mut f: impl FnMut(usize, usize, usize)) {
        let mut at = 0;
        while at < hay.len() {
            let Some(m) = self
                .keywords
                .find_in(hay, aho_corasick::Span::from(at..hay.len()))
            else {
                break;
            };
            f(m.start(), m.end(), self.long_ids[m.pattern().as_usize()]);
            at = m.start() + 1;
        }
    }

    /// The first two bytes of every short keyword, little-endian.
    pub(crate) fn short_pairs(&self) -> impl Iterator<Item = u16> + '_ {
        self.short
            .iter()
            .map(|(k, _)| u16::from_le_bytes([k[0], k[1]]))
    }

    /// Calls `f(len, keyword id)` for each short keyword `window` begins with.
    /// Short keywords are at most three bytes and every rule needs bytes after
    /// its keyword, so a four-byte window always holds a whole keyword.
    pub(crate) fn short_at(&self, window: [u8; 4], mut f: impl FnMut(usize, usize)) {
        for (k, id) in &self.short {
            if window.starts_with(k) {
                f(k.len(), *id);
            }
        }
    }

    pub(crate) fn rule_count(&self) -> usize {
        self.rules.len()
    }

    pub(crate) fn memory_usage(&self) -> usize {
        // The regex crate does not report its heap; its lazy DFA caches are
        // bounded by its default cache capacity per regex.
        self.keywords.memory_usage() + self.rules.len() * std::mem::size_of::<TokenRule>()
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
