//! `gate.yaml`: which upstreams the gate serves and its limits.
//!
//! ```yaml
//! repos:
//!   app:
//!     url: ssh://git@forge.example:22/team/app.git
//!     key_file: /bb/config/keys/app
//!     host_key: "ssh-ed25519 AAAAC3Nza... forge.example"
//! max_pack_bytes: 104857600     # optional, 100 MiB
//! allow_timeout_secs: 300       # optional
//! supervise_queue: /bb/state/queue # optional; without it gitleaks:allow refuses
//! bottle_slug: my-bottle        # optional, names proposals
//! state_dir: /tmp/bb-gitgate    # optional, where the mirrors live
//! ```
//!
//! Everything is checked when the file is loaded (before a port is bound):
//! the key file must parse as an OpenSSH private key and the host key as
//! an OpenSSH public-key line; errors name the file, the key and the value
//! (never the private key's contents).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use russh::keys::{PrivateKey, PublicKey};
use serde::Deserialize;

/// Default cap on a pushed pack: 100 MiB (SPEC §7).
pub const DEFAULT_MAX_PACK_BYTES: u64 = 100 * 1024 * 1024;
/// Default wait for a `gitleaks-allow` decision.
pub const DEFAULT_ALLOW_TIMEOUT_SECS: u64 = 300;

/// A `gate.yaml` that could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML does not have the expected shape.
    #[error("{file}: {why}")]
    Parse {
        /// The file.
        file: PathBuf,
        /// The parser's message (names the key and line).
        why: String,
    },
    /// A value is wrong.
    #[error("{file}: {key}: {value:?}: {why}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// The key, dotted (`repos.app.url`).
        key: String,
        /// The offending value (never a secret: key files are named by path).
        value: String,
        /// What is wrong with it.
        why: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    repos: BTreeMap<String, RawRepo>,
    max_pack_bytes: Option<u64>,
    allow_timeout_secs: Option<u64>,
    supervise_queue: Option<PathBuf>,
    bottle_slug: Option<String>,
    state_dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRepo {
    url: String,
    key_file: PathBuf,
    host_key: String,
}

/// Where and as whom an upstream is reached.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// The repo's name on the agent side (`/<name>.git`).
    pub name: String,
    /// The SSH user.
    pub user: String,
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The repository path as the upstream's `git-upload-pack` takes it.
    pub path: String,
    /// The bottle's private key for this upstream.
    pub key: Arc<PrivateKey>,
    /// The pinned host key.
    pub host_key: PublicKey,
}

/// A loaded, checked `gate.yaml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// The repos by name.
    pub repos: BTreeMap<String, Arc<Upstream>>,
    /// Cap on a pushed pack (and on any request body).
    pub max_pack_bytes: u64,
    /// How long a push waits for a `gitleaks-allow` decision.
    pub allow_timeout: Duration,
    /// The supervise queue folder, when there is one.
    pub supervise_queue: Option<PathBuf>,
    /// The bottle's slug, for proposals.
    pub bottle_slug: String,
    /// Where the per-repo mirrors and spooled packs live.
    pub state_dir: PathBuf,
}

impl Config {
    /// Reads and checks `file`.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        Self::parse(file, &text)
    }

    /// Checks `text`, the contents of `file` (named in errors; key files
    /// are resolved relative to its folder).
    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = serde_norway::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_owned(),
            why: e.to_string(),
        })?;
        let invalid = |key: String, value: &str, why: &str| ConfigError::Invalid {
            file: file.to_owned(),
            key,
            value: value.to_owned(),
            why: why.to_owned(),
        };
        if raw.repos.is_empty() {
            return Err(invalid("repos".into(), "{}", "declare at least one repo"));
        }
        let base = file.parent().unwrap_or(Path::new("."));
        let mut repos = BTreeMap::new();
        for (name, repo) in raw.repos {
            let key = |k: &str| format!("repos.{name}.{k}");
            if !valid_name(&name) {
                return Err(invalid(
                    format!("repos.{name}"),
                    &name,
                    "a repo name is [A-Za-z0-9._-], 1 to 100 characters, not starting with '.'",
                ));
            }
            let (user, host, port, path) =
                parse_ssh_url(&repo.url).map_err(|why| invalid(key("url"), &repo.url, why))?;
            let key_path = base.join(&repo.key_file);
            let private = russh::keys::load_secret_key(&key_path, None).map_err(|e| {
                invalid(
                    key("key_file"),
                    &key_path.display().to_string(),
                    &format!("not a usable unencrypted OpenSSH private key: {e}"),
                )
            })?;
            let host_key = PublicKey::from_openssh(repo.host_key.trim()).map_err(|e| {
                invalid(
                    key("host_key"),
                    &repo.host_key,
                    &format!("not an OpenSSH public-key line: {e}"),
                )
            })?;
            let upstream = Upstream {
                name: name.clone(),
                user,
                host,
                port,
                path,
                key: Arc::new(private),
                host_key,
            };
            repos.insert(name, Arc::new(upstream));
        }
        let max_pack_bytes = raw.max_pack_bytes.unwrap_or(DEFAULT_MAX_PACK_BYTES);
        if max_pack_bytes == 0 {
            return Err(invalid("max_pack_bytes".into(), "0", "must be at least 1"));
        }
        let allow_timeout_secs = raw.allow_timeout_secs.unwrap_or(DEFAULT_ALLOW_TIMEOUT_SECS);
        if allow_timeout_secs == 0 || allow_timeout_secs > 24 * 3600 {
            return Err(invalid(
                "allow_timeout_secs".into(),
                &allow_timeout_secs.to_string(),
                "must be 1 to 86400",
            ));
        }
        let bottle_slug = raw.bottle_slug.unwrap_or_else(|| "standalone".into());
        let slug_ok = !bottle_slug.is_empty()
            && bottle_slug.len() <= 64
            && bottle_slug
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !slug_ok {
            return Err(invalid(
                "bottle_slug".into(),
                &bottle_slug,
                "a bottle slug is [a-z0-9-], 1 to 64",
            ));
        }
        Ok(Self {
            repos,
            max_pack_bytes,
            allow_timeout: Duration::from_secs(allow_timeout_secs),
            supervise_queue: raw.supervise_queue.map(|q| base.join(q)),
            bottle_slug,
            state_dir: raw
                .state_dir
                .map_or_else(|| std::env::temp_dir().join("bb-gitgate"), |d| base.join(d)),
        })
    }
}

/// A repo name the agent can use in a URL path, never a path of its own.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Splits an SSH git URL into `(user, host, port, path)`, the way `git`
/// reads it: `ssh://[user@]host[:port]/path` (the path keeps its leading
/// `/`; a `/~` prefix becomes a home-relative `~`) or the scp-like
/// `[user@]host:path` (the path as written, home-relative unless it starts
/// with `/`). The user defaults to `git`, as forges expect.
pub fn parse_ssh_url(url: &str) -> Result<(String, String, u16, String), &'static str> {
    let ssh = url
        .strip_prefix("ssh://")
        .or_else(|| url.strip_prefix("git+ssh://"))
        .or_else(|| url.strip_prefix("ssh+git://"));
    let (user, host, port, path) = match ssh {
        Some(rest) => {
            let (authority, path) = rest
                .find('/')
                .map(|i| rest.split_at(i))
                .ok_or("the URL has no repository path")?;
            let (user, hostport) = authority.rsplit_once('@').unwrap_or(("git", authority));
            let (host, port) = split_port(hostport)?;
            let path = path
                .strip_prefix("/~")
                .map_or_else(|| path.to_owned(), |home| format!("~{home}"));
            (user, host, port, path)
        }
        None if url.contains("://") => {
            return Err("only ssh:// or scp-like user@host:path URLs are supported");
        }
        None => {
            let (user, rest) = match url.split_once('@') {
                Some((u, r)) if !u.contains([':', '/']) => (u, r),
                _ => ("git", url),
            };
            let (host, path) = match rest.strip_prefix('[') {
                Some(v6) => v6.split_once("]:").ok_or("unclosed [ in the host")?,
                None => rest
                    .split_once(':')
                    .ok_or("not an ssh:// or user@host:path URL")?,
            };
            if host.contains('/') {
                return Err("not an ssh:// or user@host:path URL");
            }
            (user, host.to_owned(), 22, path.to_owned())
        }
    };
    if user.is_empty() {
        return Err("the URL's user is empty");
    }
    if host.is_empty() {
        return Err("the URL has no host");
    }
    let bare = path.trim_start_matches(['/', '~']);
    if bare.is_empty() || path.contains('\'') || path.bytes().any(|b| b.is_ascii_control()) {
        return Err("the repository path is empty or has a quote or control character");
    }
    Ok((user.to_owned(), host, port, path))
}

/// `host`, `host:port` or `[v6]:port`.
fn split_port(hostport: &str) -> Result<(String, u16), &'static str> {
    let port = |p: &str| match p.parse::<u16>() {
        Ok(0) | Err(_) => Err("the port is not a number 1-65535"),
        Ok(n) => Ok(n),
    };
    match hostport.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
            match after.strip_prefix(':') {
                Some(p) => Ok((host.to_owned(), port(p)?)),
                None if after.is_empty() => Ok((host.to_owned(), 22)),
                None => Err("junk after the IPv6 host"),
            }
        }
        None => match hostport.rsplit_once(':') {
            Some((host, p)) => Ok((host.to_owned(), port(p)?)),
            None => Ok((hostport.to_owned(), 22)),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn ssh_urls() {
        assert_eq!(
            parse_ssh_url("ssh://git@h:2222/a/b.git").unwrap(),
            ("git".into(), "h".into(), 2222, "/a/b.git".into())
        );
        assert_eq!(
            parse_ssh_url("ssh://git@h/~/b.git").unwrap(),
            ("git".into(), "h".into(), 22, "~/b.git".into())
        );
        assert_eq!(
            parse_ssh_url("ssh://u@[::1]:22/r").unwrap(),
            ("u".into(), "::1".into(), 22, "/r".into())
        );
        assert_eq!(
            parse_ssh_url("git@github.com:owner/app.git").unwrap(),
            (
                "git".into(),
                "github.com".into(),
                22,
                "owner/app.git".into()
            )
        );
        assert_eq!(
            parse_ssh_url("ssh://h/r").unwrap(),
            ("git".into(), "h".into(), 22, "/r".into())
        );
        for bad in [
            "https://h/r",
            "ssh://@h/r",
            "ssh://u@h:0/r",
            "h/x:r",
            "ssh://u@h:x/r",
            "ssh://u@h",
            "ssh://u@h/",
            "ssh://u@h/a'b",
        ] {
            assert!(parse_ssh_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(valid_name("app.x-1_y"));
        assert!(!valid_name(".git"));
        assert!(!valid_name("a/b"));
        assert!(!valid_name(""));
    }
}
