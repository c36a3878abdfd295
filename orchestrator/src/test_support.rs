//! Helpers shared by the crate's unit tests: temp-home manifest files.

use std::path::{Path, PathBuf};

/// Writes `text` to `path`, creating its parents; returns the path.
pub(crate) fn write(path: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, text).expect("write fixture");
    path.to_owned()
}

/// `<root>/.bot-bottle/<kind>/<name>.md` (kind `agents` or `bottles`).
pub(crate) fn manifest_path(root: &Path, kind: &str, name: &str) -> PathBuf {
    root.join(".bot-bottle")
        .join(kind)
        .join(format!("{name}.md"))
}
