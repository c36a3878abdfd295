//! Fuzzes the path normalisation behind the git and `DoH` rules
//! (`bb_egress::policy::normalize_path`) with the policy's decision.
//!
//! Input: UTF-8 text `path[?query]`. For any input:
//! - the normal form starts with `/`, has no empty, `.` or `..` segment, no
//!   `\`, no `;`, no ASCII upper case;
//! - unless it still holds a percent-escape (an input nested deeper than the
//!   decoding rounds), normalising it again changes nothing, and the policy
//!   refuses the normal form for exactly the git/`DoH` reason it refuses the
//!   raw path for: every spelling a lenient backend reads the same is judged
//!   the same;
//! - a normal form ending in `/git-receive-pack` is always a push, and one
//!   ending in `/dns-query` always `DoH`, whatever the route allows.

#![no_main]

use bb_egress::policy::{BlockReason, Decision, Policy, Request, Via, normalize_path};
use libfuzzer_sys::fuzz_target;

/// One route, no `matches`, `git.fetch` off: every git and `DoH` rule live.
static POLICY: std::sync::LazyLock<Policy> =
    std::sync::LazyLock::new(|| Policy::from_yaml("routes:\n  - host: a.example\n").unwrap());

fn has_escape(s: &str) -> bool {
    s.as_bytes()
        .windows(3)
        .any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit())
}

/// The git/DoH part of a decision (other reasons are not under test).
fn git_doh(d: &Decision<'_>) -> Option<BlockReason> {
    match d {
        Decision::Block(b)
            if matches!(
                b.reason,
                BlockReason::GitPush | BlockReason::GitFetch | BlockReason::DnsOverHttps
            ) =>
        {
            Some(b.reason.clone())
        }
        _ => None,
    }
}

fn decide<'p>(p: &'p Policy, path: &str, query: Option<&str>) -> Decision<'p> {
    p.decide(&Request {
        via: Via::Connect,
        host: "a.example",
        port: 443,
        method: "GET",
        path,
        query,
        headers: &Vec::<(&str, &str)>::new(),
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (path, query) = match text.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (text, None),
    };
    let n = normalize_path(path);
    assert!(n.starts_with('/'), "{n:?}");
    assert!(n == "/" || !n.ends_with('/'), "{n:?}");
    assert!(!n.contains('\\') && !n.contains(';'), "{n:?}");
    assert!(!n.bytes().any(|b| b.is_ascii_uppercase()), "{n:?}");
    for seg in n.split('/').skip(1) {
        assert!(n == "/" || !seg.is_empty(), "empty segment in {n:?}");
        assert!(seg != "." && seg != "..", "dot segment in {n:?}");
    }
    let p = &*POLICY;
    let raw = git_doh(&decide(p, path, query));
    if n.ends_with("/git-receive-pack") {
        assert_eq!(raw, Some(BlockReason::GitPush), "{text:?} → {n:?}");
    }
    if n.ends_with("/dns-query") {
        assert_eq!(raw, Some(BlockReason::DnsOverHttps), "{text:?} → {n:?}");
    }
    if has_escape(&n) {
        return;
    }
    assert_eq!(normalize_path(&n), n, "not idempotent: {text:?}");
    let normal = git_doh(&decide(p, &n, query));
    assert_eq!(raw, normal, "{text:?} and its normal form {n:?} are judged differently");
});
