//! Deploy keys minted per launch on a forge, for git-gate repos whose
//! `key.provider` is `gitea`, and revoked at teardown (SPEC §7).
//!
//! At launch [`DeployKeys::mint`] generates a fresh ed25519 key pair in
//! process for each such repo, writes the private key 0600 into the
//! bottle's state folder (where the git gate reads it), and adds the public
//! key to the repository with the forge token; dropping the returned
//! [`DeployKeys`] deletes every key it added, on every exit path of a
//! launch. The forge token comes from the operator's environment through
//! [`crate::plan::Secrets`] and is only ever an HTTP header to the forge.

pub mod gitea;

use std::path::{Path, PathBuf};

use crate::env::Redacted;
use crate::manifest::ssh::GitUrl;
use crate::plan::{LaunchPlan, PushKey, Secrets};

/// A forge call failed. Never carries the token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForgeError {
    /// The forge answered with an error status.
    #[error("{url}: {what}: the forge answered {status}{}", if message.is_empty() { String::new() } else { format!(" ({message})") })]
    Status {
        /// The request URL.
        url: String,
        /// What was being done.
        what: &'static str,
        /// The HTTP status.
        status: u16,
        /// The forge's own message, shortened.
        message: String,
    },
    /// The forge could not be reached or answered something unreadable.
    #[error("{url}: {what}: {message}")]
    Transport {
        /// The request URL.
        url: String,
        /// What was being done.
        what: &'static str,
        /// What went wrong.
        message: String,
    },
    /// The key pair could not be generated or written.
    #[error("{}: {message}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The plan has a gitea repo but the secrets lack its token.
    #[error("git-gate.repos.{0}: no forge token was resolved for it")]
    NoToken(String),
}

/// Checks a manifest's `api_url`: an absolute `https://` URL (plain
/// `http://` only to a loopback address, where the token never leaves the
/// machine), without credentials, query or fragment. Errors never repeat it.
pub fn check_api_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text)
        .map_err(|_| "not an absolute URL (e.g. `https://gitea.example.org/api/v1`)".to_owned())?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "the URL carries credentials; the forge token comes from `forge_token_env`".into(),
        );
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the API base URL takes no query or fragment".into());
    }
    let loopback = match url.host() {
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err("plain `http://` would send the forge token in the clear; use `https://` (plain http only to a loopback address)".into()),
        _ => Err("the scheme must be `https`".into()),
    }
}

/// The API base a repo URL implies when the manifest gives none (as the
/// earlier bot-bottle derived it): `https://<host>/api/v1`.
#[must_use]
pub fn default_api_url(url: &GitUrl) -> String {
    if url.host.contains(':') {
        format!("https://[{}]/api/v1", url.host)
    } else {
        format!("https://{}/api/v1", url.host)
    }
}

/// One key this launch added to a forge.
#[derive(Debug)]
pub struct DeployKey {
    /// The bottle's name for the repo (`git-gate.repos.<name>`).
    pub repo: String,
    /// The forge repository's owner.
    pub owner: String,
    /// The forge repository's name.
    pub name: String,
    /// The forge's id of the key (revocation needs it).
    pub id: u64,
    /// The private key file in the state folder (0600).
    pub key_file: PathBuf,
    client: gitea::Gitea,
}

/// The deploy keys of one launch. Dropping it revokes each key still held
/// and reports (never hides) a key it could not revoke.
#[derive(Debug, Default)]
pub struct DeployKeys {
    keys: Vec<DeployKey>,
}

impl DeployKeys {
    /// Mints a key for every gitea repo of `plan`. Extra trust roots for
    /// the forge's TLS (a PEM file, e.g. `BOT_BOTTLE_UPSTREAM_CA`) are added
    /// to the system's. On error, keys minted so far are revoked.
    pub fn mint(
        plan: &LaunchPlan,
        secrets: &Secrets,
        extra_roots: Option<&Path>,
    ) -> Result<Self, ForgeError> {
        let mut out = Self::default();
        if !plan
            .git_upstreams
            .iter()
            .any(|u| matches!(u.key, PushKey::Gitea { .. }))
        {
            return Ok(out);
        }
        let extra = match extra_roots {
            Some(p) => Some(std::fs::read(p).map_err(|e| ForgeError::Key {
                path: p.to_owned(),
                message: format!("cannot read the extra CA file: {e}"),
            })?),
            None => None,
        };
        for up in &plan.git_upstreams {
            let PushKey::Gitea {
                api_url,
                owner,
                name,
                key_file,
                ..
            } = &up.key
            else {
                continue;
            };
            let token = secrets
                .forge_tokens
                .iter()
                .find(|(r, _)| r == &up.name)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| ForgeError::NoToken(up.name.clone()))?;
            let client = gitea::Gitea::new(api_url, token, extra.as_deref())?;
            let comment = format!("bot-bottle {} {}", plan.slug, up.name);
            let pair = gitea::KeyPair::generate(&comment).map_err(|message| ForgeError::Key {
                path: key_file.clone(),
                message,
            })?;
            write_private(key_file, pair.private_openssh.expose().as_bytes()).map_err(|e| {
                ForgeError::Key {
                    path: key_file.clone(),
                    message: format!("cannot write the private key: {e}"),
                }
            })?;
            let id = match client.add_deploy_key(owner, name, &comment, &pair.public_line) {
                Ok(id) => id,
                Err(e) => {
                    let _ = std::fs::remove_file(key_file);
                    return Err(e);
                }
            };
            out.keys.push(DeployKey {
                repo: up.name.clone(),
                owner: owner.clone(),
                name: name.clone(),
                id,
                key_file: key_file.clone(),
                client,
            });
        }
        Ok(out)
    }

    /// The keys minted.
    #[must_use]
    pub fn keys(&self) -> &[DeployKey] {
        &self.keys
    }

    /// Revokes every key now; returns what could not be revoked.
    pub fn revoke(&mut self) -> Vec<ForgeError> {
        let mut failed = Vec::new();
        for k in self.keys.drain(..) {
            if let Err(e) = k.client.delete_deploy_key(&k.owner, &k.name, k.id) {
                failed.push(e);
            }
            // The private key is worthless once revoked; it goes with the
            // state folder, and sooner if the folder is preserved.
            let _ = std::fs::remove_file(&k.key_file);
        }
        failed
    }
}

impl Drop for DeployKeys {
    fn drop(&mut self) {
        for e in self.revoke() {
            eprintln!(
                "warning: a deploy key could not be revoked: {e}; delete it in the repository's settings (Deploy keys)"
            );
        }
    }
}

/// Writes `content` to `path` with mode 0600, its folder 0700.
fn write_private(path: &Path, content: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(content)
}

/// A token as the forge API takes it (`Authorization: token …`).
pub(crate) fn auth_header(token: &Redacted<String>) -> String {
    format!("token {}", token.expose())
}
