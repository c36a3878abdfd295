//! `token_patterns` must fire on none of tens of MB of real source code: the
//! `.rs` files of the crates cargo has downloaded for this workspace.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test")]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bb_egress::dlp::{Detector, DetectorSet, DlpEngine};

fn registry_src() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cargo"),
        PathBuf::from,
    );
    home.join("registry").join("src")
}

fn rust_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in rd.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The offset just past the `-----END ...-----` line of a PEM block that
/// starts at `text[0]`, when the body between is base64 (possibly with
/// escaped newlines, as in string literals).
fn pem_block_end(text: &[u8]) -> Option<usize> {
    let window = &text[..text.len().min(16 * 1024)];
    let s = String::from_utf8_lossy(window);
    let body_start = s.find("KEY-----")? + "KEY-----".len();
    let end_marker = s[body_start..].find("-----END ")? + body_start;
    let body = &s[body_start..end_marker];
    let base64ish = body
        .replace("\\r", "")
        .replace("\\n", "")
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '"' && *c != '\\')
        .all(|c| c.is_ascii_alphanumeric() || "+/=:-,".contains(c));
    let footer_end = s[end_marker..].find("KEY-----")? + end_marker + "KEY-----".len();
    (base64ish && body.len() >= 64).then_some(footer_end)
}

#[test]
fn token_patterns_fire_on_no_real_source_code() {
    let root = registry_src();
    let files = rust_files(&root);
    let engine = Arc::new(DlpEngine::without_secrets());
    let set = DetectorSet::of(&[Detector::TokenPatterns]);
    let mut bytes = 0usize;
    let mut hits = Vec::new();
    let mut embedded_keys = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        bytes += data.len();
        let mut at = 0;
        while let Some(hit) = engine.scan(set, &data[at..]) {
            let start = at + usize::try_from(hit.offset).unwrap();
            // A complete PEM private-key block (header, base64 body, footer)
            // is real key material, embedded as a test fixture by crates
            // such as rcgen and pem: a true positive, listed, not counted.
            if &*hit.rule == "private-key-pem"
                && let Some(end) = pem_block_end(&data[start..])
            {
                embedded_keys.push(format!("{}: {hit}", f.display()));
                at = start + end;
                continue;
            }
            hits.push(format!("{}: {hit}", f.display()));
            break;
        }
    }
    eprintln!(
        "{} complete private keys embedded in crate sources (true positives):\n{}",
        embedded_keys.len(),
        embedded_keys.join("\n")
    );
    assert!(
        bytes >= 20 << 20,
        "only {bytes} bytes of source under {} (cargo fetch populates it)",
        root.display()
    );
    eprintln!("scanned {} files, {} MB", files.len(), bytes >> 20);
    assert!(
        hits.is_empty(),
        "{} false positives:\n{}",
        hits.len(),
        hits.join("\n")
    );
}
