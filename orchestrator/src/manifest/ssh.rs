//! The SSH side of `git-gate.repos`: upstream URLs, pinned host keys, and
//! looking a host up in the operator's `known_hosts` (plain and hashed
//! `|1|salt|hash` entries, the format `ssh-keygen -H` writes).
//!
//! Pure functions: the caller reads the file. Key lines are parsed by the
//! `RustCrypto` `ssh-key` crate; only host matching (globs, negation, the
//! HMAC-SHA1 of hashed names) is done here, as OpenSSH's `sshd(8)` describes.

use std::fmt;
use std::path::Path;
use std::str::FromStr as _;

use ssh_key::known_hosts::{Entry, HostPatterns, Marker};
use ssh_key::{Algorithm, PublicKey};

/// An upstream the git gate pushes to over SSH.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitUrl {
    /// The SSH user (`git`), when written.
    pub user: Option<String>,
    /// The host name or address (IPv6 without brackets).
    pub host: String,
    /// The port, when not 22.
    pub port: Option<u16>,
    /// The repository path on the host (`example/app.git`).
    pub path: String,
}

const SSH_URL_FORMS: &str = "git-gate pushes upstream over SSH: write `git@host:owner/repo.git` or `ssh://git@host[:port]/owner/repo.git`";

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && (host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
            || host.parse::<std::net::Ipv6Addr>().is_ok())
        && !host.starts_with(['-', '.'])
}

impl GitUrl {
    /// Parses the scp-like (`user@host:path`) and `ssh://` forms git uses
    /// for SSH. Errors never repeat the URL.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.chars().any(char::is_whitespace) {
            return Err(format!("not a git URL ({SSH_URL_FORMS})"));
        }
        if let Some(rest) = text
            .strip_prefix("ssh://")
            .or_else(|| text.strip_prefix("git+ssh://"))
            .or_else(|| text.strip_prefix("ssh+git://"))
        {
            let url = url::Url::parse(&format!("ssh://{rest}"))
                .map_err(|_| format!("not a valid ssh:// URL ({SSH_URL_FORMS})"))?;
            let host = url
                .host_str()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
                .filter(|h| valid_host(h))
                .ok_or_else(|| format!("the URL has no host ({SSH_URL_FORMS})"))?;
            if url.password().is_some() {
                return Err(
                    "the URL carries a password: git-gate pushes with the repo's `key`".into(),
                );
            }
            let path = url.path().trim_start_matches('/').to_owned();
            if path.is_empty() {
                return Err(format!("the URL names no repository ({SSH_URL_FORMS})"));
            }
            return Ok(Self {
                user: Some(url.username().to_owned()).filter(|u| !u.is_empty()),
                host,
                port: url.port().filter(|p| *p != 22),
                path,
            });
        }
        if text.contains("://") {
            return Err(SSH_URL_FORMS.to_owned());
        }
        // scp-like: [user@]host:path, where host has no `/` (git's rule:
        // a colon after a slash makes it a local path).
        let (user, rest) = match text.split_once('@') {
            Some((u, r)) if !u.is_empty() && !u.contains([':', '/']) => (Some(u.to_owned()), r),
            _ => (None, text),
        };
        let (host, path) = if let Some(r) = rest.strip_prefix('[') {
            let (h, p) = r.split_once("]:").ok_or_else(|| SSH_URL_FORMS.to_owned())?;
            (h, p)
        } else {
            rest.split_once(':')
                .ok_or_else(|| SSH_URL_FORMS.to_owned())?
        };
        if host.contains('/') || !valid_host(host) || path.is_empty() {
            return Err(SSH_URL_FORMS.to_owned());
        }
        Ok(Self {
            user,
            host: host.to_owned(),
            port: None,
            path: path.to_owned(),
        })
    }

    /// The name `known_hosts` files this host under: `host` on port 22,
    /// `[host]:port` otherwise.
    #[must_use]
    pub fn known_hosts_name(&self) -> String {
        match self.port {
            Some(p) => format!("[{}]:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// `(owner, repo)` on a forge: the path's two segments, `.git` dropped.
    pub fn owner_repo(&self) -> Result<(String, String), String> {
        let path = self.path.trim_start_matches('/').trim_end_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        let mut parts = path.split('/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(o), Some(r), None) if !o.is_empty() && !r.is_empty() => {
                Ok((o.to_owned(), r.to_owned()))
            }
            _ => Err(
                "a forge repository URL ends in `<owner>/<repo>.git` (the deploy key is added to that repository)"
                    .into(),
            ),
        }
    }

    /// The command that pins this host's ed25519 key in `known_hosts`.
    #[must_use]
    pub fn keyscan_command(&self, known_hosts: &Path) -> String {
        let port = self.port.map(|p| format!("-p {p} ")).unwrap_or_default();
        format!(
            "ssh-keyscan {port}-t ed25519 {} >> {}",
            self.host,
            known_hosts.display()
        )
    }
}

impl fmt::Display for GitUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = self
            .user
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        match self.port {
            Some(p) => write!(f, "ssh://{user}{}:{p}/{}", self.host, self.path),
            None => write!(f, "{user}{}:{}", self.host, self.path),
        }
    }
}

/// A pinned host key: one OpenSSH public-key line without comment
/// (`ssh-ed25519 AAAA…`), the form `bb-gitgate`'s `gate.yaml` takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostKey {
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`…
    pub algorithm: String,
    /// `<algorithm> <base64>`.
    pub line: String,
}

impl HostKey {
    fn of(key: &PublicKey) -> Result<Self, String> {
        let mut key = key.clone();
        key.set_comment("");
        let line = key
            .to_openssh()
            .map_err(|_| "the key cannot be written back in OpenSSH form".to_owned())?
            .trim()
            .to_owned();
        Ok(Self {
            algorithm: key.algorithm().as_str().to_owned(),
            line,
        })
    }
}

/// Parses a manifest's `host_key`: an OpenSSH public-key line
/// (`ssh-ed25519 AAAA… [comment]`), optionally preceded by the host as in
/// `known_hosts` (`github.com ssh-ed25519 AAAA…`). When a host is written
/// it must name the repo's host. Errors never repeat the value.
pub fn parse_host_key(text: &str, url: &GitUrl) -> Result<HostKey, String> {
    const FORM: &str = "expected an SSH public key like `ssh-ed25519 AAAA…`, optionally preceded by the host (a line of `ssh-keyscan HOST`)";
    let text = text.trim();
    let first = text.split_whitespace().next().unwrap_or("");
    let (hosts, key_text) = if Algorithm::from_str(first).is_ok() {
        (None, text)
    } else {
        let (h, k) = text.split_once(char::is_whitespace).ok_or(FORM)?;
        (Some(h), k.trim())
    };
    let key = PublicKey::from_openssh(key_text).map_err(|_| FORM.to_owned())?;
    if let Some(h) = hosts {
        let patterns = HostPatterns::from_str(h).map_err(|_| FORM.to_owned())?;
        if !matches(&patterns, &url.known_hosts_name()) {
            return Err(format!(
                "the key is written for another host than the repo's url (`{}`); write the key alone or with that host",
                url.known_hosts_name()
            ));
        }
    }
    HostKey::of(&key)
}

/// The best key `known_hosts` (its text) pins for `url`'s host, with its
/// 1-based line: ed25519 first, then ECDSA, then RSA; `@revoked` keys and
/// `@cert-authority` lines are never chosen. Lines that do not parse are
/// skipped, as ssh does.
#[must_use]
pub fn find_known_host(text: &str, url: &GitUrl) -> Option<(usize, HostKey)> {
    let name = url.known_hosts_name();
    let mut found: Vec<(usize, PublicKey)> = Vec::new();
    let mut revoked: Vec<PublicKey> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let Ok(entry) = Entry::from_str(line) else {
            continue;
        };
        if !matches(entry.host_patterns(), &name) {
            continue;
        }
        match entry.marker() {
            Some(Marker::Revoked) => revoked.push(entry.public_key().clone()),
            Some(Marker::CertAuthority) => {}
            None => found.push((i + 1, entry.public_key().clone())),
        }
    }
    let rank = |k: &PublicKey| match k.algorithm() {
        Algorithm::Ed25519 => 0,
        Algorithm::Ecdsa { .. } => 1,
        Algorithm::Rsa { .. } => 2,
        _ => 3,
    };
    found
        .into_iter()
        .filter(|(_, k)| !revoked.iter().any(|r| r.key_data() == k.key_data()))
        .min_by_key(|(line, k)| (rank(k), *line))
        .and_then(|(line, k)| HostKey::of(&k).ok().map(|h| (line, h)))
}

/// Whether `patterns` match `name` (`host` or `[host]:port`): hashed names
/// by HMAC-SHA1 with their salt; pattern lists by glob, any negated match
/// excluding.
fn matches(patterns: &HostPatterns, name: &str) -> bool {
    match patterns {
        HostPatterns::HashedName { salt, hash } => {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
            ring::hmac::verify(&key, name.as_bytes(), hash).is_ok()
        }
        HostPatterns::Patterns(list) => {
            let mut hit = false;
            for p in list {
                if let Some(neg) = p.strip_prefix('!') {
                    if glob(neg, name) {
                        return false;
                    }
                } else if glob(p, name) {
                    hit = true;
                }
            }
            hit
        }
    }
}

/// `*` and `?` globbing, ASCII case-insensitive (host names).
fn glob(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi].eq_ignore_ascii_case(&n[ni])) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::{GitUrl, find_known_host, glob, parse_host_key};

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    #[test]
    fn git_urls_in_both_ssh_forms() {
        let u = GitUrl::parse("git@github.com:example/app.git").expect("scp");
        assert_eq!(
            (u.user.as_deref(), u.host.as_str(), u.port, u.path.as_str()),
            (Some("git"), "github.com", None, "example/app.git")
        );
        assert_eq!(u.known_hosts_name(), "github.com");
        assert_eq!(
            u.owner_repo().expect("owner/repo"),
            ("example".into(), "app".into())
        );
        let u = GitUrl::parse("ssh://git@gitea.example.org:2222/ops/infra.git").expect("ssh");
        assert_eq!(u.port, Some(2222));
        assert_eq!(u.known_hosts_name(), "[gitea.example.org]:2222");
        assert_eq!(
            u.keyscan_command(std::path::Path::new("/h/.ssh/known_hosts")),
            "ssh-keyscan -p 2222 -t ed25519 gitea.example.org >> /h/.ssh/known_hosts"
        );
        assert_eq!(
            u.to_string(),
            "ssh://git@gitea.example.org:2222/ops/infra.git"
        );
        let u = GitUrl::parse("ssh://host:22/x.git").expect("port 22");
        assert_eq!(u.port, None);
        for bad in [
            "https://github.com/example/app.git",
            "/srv/git/app.git",
            "./app",
            "somewhere:",
            "a b:c",
            "",
            "ssh://:pw@host/x",
        ] {
            let e = GitUrl::parse(bad).expect_err(bad);
            assert!(bad.is_empty() || !e.contains(bad), "{e}");
        }
        assert!(
            GitUrl::parse("ssh://u:secret@host/x.git")
                .expect_err("password")
                .contains("password")
        );
        assert!(
            GitUrl::parse("git@h:a/b/c.git")
                .expect("three segments")
                .owner_repo()
                .is_err()
        );
    }

    #[test]
    fn host_keys_with_or_without_the_host() {
        let url = GitUrl::parse("git@github.com:example/app.git").expect("url");
        let k = parse_host_key(&format!("{ED} comment here"), &url).expect("bare");
        assert_eq!(k.line, ED);
        assert_eq!(k.algorithm, "ssh-ed25519");
        let k = parse_host_key(&format!("github.com {ED}"), &url).expect("with host");
        assert_eq!(k.line, ED);
        let e = parse_host_key(&format!("gitlab.com {ED}"), &url).expect_err("other host");
        assert!(e.contains("another host"), "{e}");
        let e = parse_host_key("ssh-ed25519 AAAAnotbase64!!", &url).expect_err("bad");
        assert!(!e.contains("AAAAnotbase64"), "{e}");
    }

    #[test]
    fn known_hosts_lookup_prefers_ed25519_and_skips_revoked_and_garbage() {
        let url = GitUrl::parse("git@github.com:example/app.git").expect("url");
        let text = format!("garbage line\n# comment\ngitlab.com {ED}\n*.com,!github.com {ED}\n");
        assert_eq!(find_known_host(&text, &url), None);
        let text = format!("other.example,github.com {ED}\n");
        let (line, k) = find_known_host(&text, &url).expect("found");
        assert_eq!((line, k.line.as_str()), (1, ED));
        let text = format!("@revoked github.com {ED}\ngithub.com {ED}\n");
        assert_eq!(find_known_host(&text, &url), None);
        // A non-standard port is filed as [host]:port only.
        let url = GitUrl::parse("ssh://git@github.com:2222/x/y.git").expect("url");
        assert_eq!(find_known_host(&format!("github.com {ED}\n"), &url), None);
        assert!(find_known_host(&format!("[github.com]:2222 {ED}\n"), &url).is_some());
    }

    #[test]
    fn hashed_entries_match_by_hmac() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = [7u8; 20];
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &salt);
        let tag = ring::hmac::sign(&key, b"github.com");
        let line = format!(
            "|1|{}|{} {ED}\n",
            b64.encode(salt),
            b64.encode(tag.as_ref())
        );
        let url = GitUrl::parse("git@github.com:example/app.git").expect("url");
        assert_eq!(find_known_host(&line, &url).map(|(l, _)| l), Some(1));
        let url = GitUrl::parse("git@gitlab.com:example/app.git").expect("url");
        assert_eq!(find_known_host(&line, &url), None);
    }

    #[test]
    fn globs() {
        assert!(glob("*.example.org", "git.example.org"));
        assert!(glob("git.example.???", "GIT.example.org"));
        assert!(!glob("*.example.org", "example.org"));
        assert!(glob("*", "x"));
        assert!(!glob("a*b", "acbx"));
        assert!(glob("a*b*c", "aXbYbZc"));
    }
}
