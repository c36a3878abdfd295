//! The request path as a lenient backend would read it, for the git and
//! `DoH` rules (SPEC §3 steps 5 and 6).
//!
//! Backends differ in what they forgive: slash merging (`info//refs`),
//! dot segments, `;` path parameters, backslashes, percent-encoding decoded
//! twice, case-insensitive routing. A rule that refuses by recognising an
//! endpoint must recognise it in every spelling some backend accepts, so the
//! path is reduced to the most forgiving reading before the rules look at
//! it. This form is used only to *refuse*: it never decides what is
//! forwarded, and the upstream receives the request as the agent sent it.

use percent_encoding::percent_decode_str;

/// Most rounds of percent-decoding a path gets (`%252F` → `%2F` → `/`):
/// well past the double decoding some proxies and frameworks do. Each round
/// shortens the string, so the bound only caps the cost (8 × its length).
const DECODE_ROUNDS: usize = 8;

/// Percent-decodes `s` until it no longer changes (at most
/// [`DECODE_ROUNDS`] times); invalid UTF-8 becomes U+FFFD.
#[must_use]
pub(crate) fn decode_repeatedly(s: &str) -> String {
    let mut cur = s.to_owned();
    for _ in 0..DECODE_ROUNDS {
        if !cur.contains('%') {
            break;
        }
        let next = percent_decode_str(&cur).decode_utf8_lossy().into_owned();
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// The path's segments as the most forgiving backend reads them: decoded,
/// `\` read as `/`, `;params` dropped, empty and `.` segments removed, `..`
/// resolved (never above the root), ASCII lower-cased.
#[must_use]
pub(crate) fn segments(path: &str) -> Vec<String> {
    let decoded = decode_repeatedly(path);
    let mut out: Vec<String> = Vec::new();
    for seg in decoded.split(['/', '\\']) {
        let seg = seg.split(';').next().unwrap_or(seg);
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s.to_ascii_lowercase()),
        }
    }
    out
}

/// The normalised path: `/` joined [`segments`] (`/` for the root).
#[must_use]
pub fn normalize(path: &str) -> String {
    let segs = segments(path);
    if segs.is_empty() {
        return "/".into();
    }
    let mut s = String::with_capacity(path.len());
    for seg in segs {
        s.push('/');
        s.push_str(&seg);
    }
    s
}

/// The query's `key=value` pairs, keys and values percent-decoded (as for
/// paths) and ASCII lower-cased. A key without `=` has an empty value.
pub(crate) fn query_pairs(query: Option<&str>) -> impl Iterator<Item = (String, String)> {
    query
        .unwrap_or("")
        .split(['&', ';'])
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            // `+` is a space in form encoding; it never makes a name match.
            (
                decode_repeatedly(k).to_ascii_lowercase(),
                decode_repeatedly(v).to_ascii_lowercase(),
            )
        })
}
