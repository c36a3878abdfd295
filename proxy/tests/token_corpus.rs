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

#[test]
fn token_patterns_fire_on_no_real_source_code() {
    let root = registry_src();
    let files = rust_files(&root);
    let engine = Arc::new(DlpEngine::without_secrets());
    let set = DetectorSet::of(&[Detector::TokenPatterns]);
    let mut bytes = 0usize;
    let mut hits = Vec::new();
    for f in &files {
        let data = std::fs::read(f).unwrap();
        bytes += data.len();
        if let Some(hit) = engine.scan(set, &data) {
            hits.push(format!("{}: {hit}", f.display()));
        }
    }
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
