//! Where `bot-bottle` reads manifests and keeps state.
//!
//! `HOME` and the working directory are values, not globals, so every test
//! runs against its own temp dirs.

use std::path::{Path, PathBuf};

/// The operator's config root and the directory `bot-bottle` was started in.
#[derive(Debug, Clone)]
pub struct Paths {
    home: PathBuf,
    cwd: PathBuf,
}

impl Paths {
    /// Paths for an operator whose home is `home`, working in `cwd`.
    #[must_use]
    pub fn new(home: impl Into<PathBuf>, cwd: impl Into<PathBuf>) -> Self {
        Self {
            home: home.into(),
            cwd: cwd.into(),
        }
    }

    /// The operator's home directory.
    #[must_use]
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The working directory.
    #[must_use]
    pub fn cwd(&self) -> &Path {
        &self.cwd
    }

    /// `~/.bot-bottle`.
    #[must_use]
    pub fn config_dir(&self) -> PathBuf {
        self.home.join(".bot-bottle")
    }

    /// `~/.bot-bottle/bottles`: the only place bottles are read from.
    #[must_use]
    pub fn bottles_dir(&self) -> PathBuf {
        self.config_dir().join("bottles")
    }

    /// `~/.bot-bottle/agents`.
    #[must_use]
    pub fn home_agents_dir(&self) -> PathBuf {
        self.config_dir().join("agents")
    }

    /// `./.bot-bottle/agents` (wins over the home one on a name clash).
    #[must_use]
    pub fn cwd_agents_dir(&self) -> PathBuf {
        self.cwd.join(".bot-bottle").join("agents")
    }

    /// `./.bot-bottle/bottles`: ignored, with a warning, when it exists.
    #[must_use]
    pub fn cwd_bottles_dir(&self) -> PathBuf {
        self.cwd.join(".bot-bottle").join("bottles")
    }

    /// `~/.bot-bottle/contrib`: plugin providers.
    #[must_use]
    pub fn contrib_dir(&self) -> PathBuf {
        self.config_dir().join("contrib")
    }

    /// `~/.bot-bottle/state`: one folder per bottle.
    #[must_use]
    pub fn state_root(&self) -> PathBuf {
        self.config_dir().join("state")
    }

    /// `~/.claude/skills`: where agent `skills` are looked up.
    #[must_use]
    pub fn skills_dir(&self) -> PathBuf {
        self.home.join(".claude").join("skills")
    }
}
