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
//!
//! Each key is recorded as soon as the forge accepted it, in
//! `forge-keys.json` (0600) of the state folder: the bottle, the minting
//! process ([`Owner`]) and per key the repo, API base, forge repository and
//! id, never a token. A launch that is killed (`kill -9`) leaves the record
//! behind, and `cleanup` revokes what it lists once its minting process is
//! gone ([`orphaned`], [`revoke_recorded`]), with the token from the source
//! the bottle's manifest names.

pub mod gitea;

use std::path::{Path, PathBuf};

use crate::backend::Owner;
use crate::env::{Prompter, Redacted};
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
    /// The record of minted keys could not be written or read.
    #[error("{}: {message}", path.display())]
    Record {
        /// The record file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// The file in a bottle's state folder that lists the deploy keys its
/// launch minted and has not revoked.
pub const RECORD_FILE: &str = "forge-keys.json";

/// What `forge-keys.json` holds. No token, ever.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    /// The bottle whose manifest names the forge token.
    pub bottle: String,
    /// The process that minted the keys (revocation waits until it is gone).
    pub minted_by: Option<Owner>,
    /// The keys still on the forge.
    pub keys: Vec<RecordedKey>,
}

/// One minted key as recorded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedKey {
    /// The bottle's name for the repo (`git-gate.repos.<repo>`).
    pub repo: String,
    /// The forge's API base the key was added through.
    pub api_url: String,
    /// The forge repository's owner.
    pub owner: String,
    /// The forge repository's name.
    pub name: String,
    /// The forge's id of the key.
    pub id: u64,
}

impl KeyRecord {
    /// Reads the record of state folder `dir`; `None` when there is none.
    pub fn read(dir: &Path) -> Result<Option<Self>, ForgeError> {
        let path = dir.join(RECORD_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(ForgeError::Record {
                    path,
                    message: e.to_string(),
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| ForgeError::Record {
                path,
                message: format!("not a deploy-key record: {e}"),
            })
    }

    /// Writes it (0600) into `dir`, or removes the file when no key is left.
    pub fn write(&self, dir: &Path) -> Result<(), ForgeError> {
        let path = dir.join(RECORD_FILE);
        let fail = |e: std::io::Error| ForgeError::Record {
            path: path.clone(),
            message: e.to_string(),
        };
        if self.keys.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(fail(e)),
                _ => Ok(()),
            };
        }
        let text = serde_json::to_vec_pretty(self).map_err(|e| ForgeError::Record {
            path: path.clone(),
            message: e.to_string(),
        })?;
        // Written aside and renamed: a kill half-way never leaves half a record.
        let tmp = dir.join(format!("{RECORD_FILE}.tmp"));
        write_private(&tmp, &text).map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)
    }
}

/// How many keys the record in state folder `dir` still lists (an
/// unreadable record counts as one: the folder must stay).
#[must_use]
pub fn pending_keys(dir: &Path) -> usize {
    match KeyRecord::read(dir) {
        Ok(Some(r)) => r.keys.len(),
        Ok(None) => 0,
        Err(_) => 1,
    }
}

/// Keys recorded by launches whose minting process is gone, by bottle
/// slug, across the operator's state folders.
#[must_use]
pub fn orphaned(paths: &crate::paths::Paths) -> Vec<(String, RecordedKey)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(paths.state_root())
        .into_iter()
        .flatten()
        .flatten()
    {
        let slug = e.file_name().to_string_lossy().into_owned();
        if let Ok(Some(record)) = KeyRecord::read(&e.path())
            && !record.minted_by.as_ref().is_some_and(Owner::alive)
        {
            out.extend(record.keys.into_iter().map(|k| (slug.clone(), k)));
        }
    }
    out.sort_by(|a, b| (&a.0, a.1.id).cmp(&(&b.0, b.1.id)));
    out
}

/// Revokes the keys recorded in bottle `slug`'s state folder whose minting
/// process is gone, each with the forge token from the source its bottle's
/// manifest names (`host` for host variables, `prompter` for `?prompt`),
/// and rewrites the record with what is left. Returns how many were
/// revoked, or every failure (the record keeps those keys for another try).
pub fn revoke_recorded(
    paths: &crate::paths::Paths,
    slug: &str,
    host: &dyn Fn(&str) -> Option<String>,
    prompter: &mut dyn Prompter,
    extra_roots: Option<&Path>,
) -> Result<usize, Vec<String>> {
    let dir = crate::backend::state_dir(paths, slug);
    let mut record = match KeyRecord::read(&dir) {
        Ok(Some(r)) => r,
        Ok(None) => return Ok(0),
        Err(e) => return Err(vec![e.to_string()]),
    };
    if record.minted_by.as_ref().is_some_and(Owner::alive) {
        return Err(vec![format!(
            "bottle {slug}: its deploy keys belong to a running bot-bottle"
        )]);
    }
    let extra = match extra_roots.map(std::fs::read).transpose() {
        Ok(x) => x,
        Err(e) => return Err(vec![format!("cannot read the extra CA file: {e}")]),
    };
    let bottle = crate::manifest::Loader::new(paths.clone()).load_bottle(&record.bottle);
    let mut failed = Vec::new();
    let mut left = Vec::new();
    let mut revoked = 0;
    for key in std::mem::take(&mut record.keys) {
        let what = format!(
            "deploy key {} of {}/{} at {}",
            key.id, key.owner, key.name, key.api_url
        );
        let mut attempt = || -> Result<(), String> {
            let bottle = bottle
                .as_ref()
                .map_err(|e| format!("bottle `{}`: {e}", record.bottle))?;
            let (api_url, source) =
                crate::plan::forge_repo(bottle, &key.repo).map_err(|e| e.to_string())?;
            // The token goes only to the forge the key was minted on.
            if api_url != key.api_url {
                return Err(format!(
                    "git-gate.repos.{}.key.api_url is now {api_url}; the token is not sent elsewhere than where the key was minted",
                    key.repo
                ));
            }
            let token = source.resolve(host, prompter).map_err(|e| e.to_string())?;
            let client = gitea::Gitea::new(&key.api_url, token, extra.as_deref())
                .map_err(|e| e.to_string())?;
            client
                .delete_deploy_key(&key.owner, &key.name, key.id)
                .map_err(|e| e.to_string())
        };
        match attempt() {
            Ok(()) => {
                revoked += 1;
                let layout = crate::plan::StateLayout { root: dir.clone() };
                let _ =
                    std::fs::remove_file(layout.git_gate_dir().join(format!("{}.key", key.repo)));
            }
            Err(e) => {
                failed.push(format!("{what}: {e}"));
                left.push(key);
            }
        }
    }
    record.keys = left;
    if let Err(e) = record.write(&dir) {
        failed.push(e.to_string());
    }
    if failed.is_empty() {
        Ok(revoked)
    } else {
        Err(failed)
    }
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
/// and reports (never hides) a key it could not revoke; those stay in the
/// record for `cleanup`.
#[derive(Debug, Default)]
pub struct DeployKeys {
    keys: Vec<DeployKey>,
    /// The state folder and its record, once a key was minted.
    record: Option<(PathBuf, KeyRecord)>,
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
            // Recorded before anything else can fail: a launch killed from
            // here on leaves the record for `cleanup`.
            let (dir, record) = out.record.get_or_insert_with(|| {
                (
                    plan.state.root.clone(),
                    KeyRecord {
                        bottle: plan.bottle.clone(),
                        minted_by: Owner::current(),
                        keys: Vec::new(),
                    },
                )
            });
            record.keys.push(RecordedKey {
                repo: up.name.clone(),
                api_url: api_url.clone(),
                owner: owner.clone(),
                name: name.clone(),
                id,
            });
            let written = record.write(dir);
            out.keys.push(DeployKey {
                repo: up.name.clone(),
                owner: owner.clone(),
                name: name.clone(),
                id,
                key_file: key_file.clone(),
                client,
            });
            // Without its record a kill would orphan the key: revoke (the
            // drop of `out`) and stop.
            written?;
        }
        Ok(out)
    }

    /// The keys minted.
    #[must_use]
    pub fn keys(&self) -> &[DeployKey] {
        &self.keys
    }

    /// Revokes every key now; returns what could not be revoked (still in
    /// the record).
    pub fn revoke(&mut self) -> Vec<ForgeError> {
        let mut failed = Vec::new();
        for k in self.keys.drain(..) {
            match k.client.delete_deploy_key(&k.owner, &k.name, k.id) {
                Ok(()) => {
                    if let Some((_, record)) = &mut self.record {
                        record.keys.retain(|r| r.id != k.id || r.repo != k.repo);
                    }
                }
                Err(e) => failed.push(e),
            }
            // The private key is worthless once revoked; it goes with the
            // state folder, and sooner if the folder is preserved.
            let _ = std::fs::remove_file(&k.key_file);
        }
        if let Some((dir, record)) = &self.record
            && let Err(e) = record.write(dir)
        {
            failed.push(e);
        }
        failed
    }
}

impl Drop for DeployKeys {
    fn drop(&mut self) {
        for e in self.revoke() {
            eprintln!(
                "warning: a deploy key could not be revoked: {e}; `bot-bottle cleanup` tries again once this bot-bottle is gone (or delete it in the repository's settings, Deploy keys)"
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
