//! Gitea's deploy-key API (`/repos/{owner}/{repo}/keys`), as documented:
//! `POST` with `{"title", "key", "read_only"}` answers `201` with the key's
//! `id`; `DELETE …/keys/{id}` answers `204`. Authenticated with
//! `Authorization: token <forge token>`.

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use ssh_key::{Algorithm, LineEnding, PrivateKey, rand_core::OsRng};

use super::ForgeError;
use crate::env::Redacted;

/// The most of a forge's answer read (an error body is shown shortened).
const MAX_BODY: u64 = 64 * 1024;
/// A forge that does not answer in this time is an error, not a hang.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A fresh ed25519 key pair.
pub struct KeyPair {
    /// The private key in OpenSSH format (what `ssh -i` reads).
    pub private_openssh: Redacted<String>,
    /// `ssh-ed25519 AAAA… comment`.
    pub public_line: String,
}

impl KeyPair {
    /// Generates a key pair from the OS's randomness.
    pub fn generate(comment: &str) -> Result<Self, String> {
        let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)
            .map_err(|e| format!("generating an ed25519 key: {e}"))?;
        key.set_comment(comment);
        let private = key
            .to_openssh(LineEnding::LF)
            .map_err(|e| format!("encoding the private key: {e}"))?;
        let public_line = key
            .public_key()
            .to_openssh()
            .map_err(|e| format!("encoding the public key: {e}"))?;
        Ok(Self {
            private_openssh: Redacted::new(private.to_string()),
            public_line,
        })
    }
}

/// A Gitea API client for one base URL and token.
pub struct Gitea {
    agent: ureq::Agent,
    api: url::Url,
    token: Redacted<String>,
}

impl std::fmt::Debug for Gitea {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gitea")
            .field("api", &self.api.as_str())
            .finish_non_exhaustive()
    }
}

impl Gitea {
    /// A client for `api_url` (checked by [`super::check_api_url`]),
    /// trusting the system's roots plus the PEM certificates in `extra_roots`.
    pub fn new(
        api_url: &str,
        token: Redacted<String>,
        extra_roots: Option<&[u8]>,
    ) -> Result<Self, ForgeError> {
        let transport = |message: String| ForgeError::Transport {
            url: api_url.to_owned(),
            what: "configuring the client",
            message,
        };
        let api = super::check_api_url(api_url).map_err(transport)?;
        let mut roots: Vec<ureq::tls::Certificate<'static>> =
            rustls_native_certs::load_native_certs()
                .certs
                .iter()
                .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                .collect();
        if let Some(pem) = extra_roots {
            for item in ureq::tls::parse_pem(pem) {
                match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => roots.push(c),
                    Ok(_) => {}
                    Err(e) => return Err(transport(format!("the extra CA file: {e}"))),
                }
            }
        }
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            // A redirect of a POST is not the API; never follow one with the token.
            .max_redirects(0)
            .timeout_global(Some(TIMEOUT))
            .user_agent("bot-bottle")
            .build()
            .new_agent();
        Ok(Self { agent, api, token })
    }

    fn keys_url(&self, owner: &str, repo: &str, id: Option<u64>) -> url::Url {
        let mut url = self.api.clone();
        {
            // A base without a path segment list cannot happen for http(s).
            if let Ok(mut seg) = url.path_segments_mut() {
                seg.pop_if_empty().extend(["repos", owner, repo, "keys"]);
                if let Some(id) = id {
                    seg.push(&id.to_string());
                }
            }
        }
        url
    }

    fn answer(
        url: &url::Url,
        what: &'static str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<(u16, String), ForgeError> {
        let mut resp = result.map_err(|e| ForgeError::Transport {
            url: url.to_string(),
            what,
            message: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let mut body = String::new();
        let _ = resp
            .body_mut()
            .as_reader()
            .take(MAX_BODY)
            .read_to_string(&mut body);
        Ok((status, body))
    }

    fn status_error(
        &self,
        url: &url::Url,
        what: &'static str,
        status: u16,
        body: &str,
    ) -> ForgeError {
        // Gitea answers errors as {"message": "..."}; a proxy in between may
        // answer HTML. Shown shortened, and never with the token in it.
        let message = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or_default();
        let mut message: String = message.chars().take(200).collect();
        if !self.token.expose().is_empty() {
            message = message.replace(self.token.expose().as_str(), "[redacted]");
        }
        let hint = match status {
            401 | 403 => {
                " — is the forge token valid, and allowed to manage this repository's deploy keys?"
            }
            404 => " — does the repository exist, and does the token see it?",
            _ => "",
        };
        ForgeError::Status {
            url: url.to_string(),
            what,
            status,
            message: format!("{message}{hint}")
                .trim_start_matches(" — ")
                .to_owned(),
        }
    }

    /// Adds a read-write deploy key; returns its id.
    pub fn add_deploy_key(
        &self,
        owner: &str,
        repo: &str,
        title: &str,
        public_key: &str,
    ) -> Result<u64, ForgeError> {
        const WHAT: &str = "adding the deploy key";
        let url = self.keys_url(owner, repo, None);
        let body = serde_json::json!({"title": title, "key": public_key, "read_only": false});
        let result = self
            .agent
            .post(url.as_str())
            .header("Authorization", super::auth_header(&self.token))
            .header("Accept", "application/json")
            .content_type("application/json")
            .send(body.to_string().as_bytes());
        let (status, body) = Self::answer(&url, WHAT, result)?;
        if status != 201 && status != 200 {
            return Err(self.status_error(&url, WHAT, status, &body));
        }
        serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("id").and_then(serde_json::Value::as_u64))
            .ok_or_else(|| ForgeError::Transport {
                url: url.to_string(),
                what: WHAT,
                message: format!("the forge answered {status} without a key `id`"),
            })
    }

    /// Deletes deploy key `id`. A key that is already gone counts as done.
    pub fn delete_deploy_key(&self, owner: &str, repo: &str, id: u64) -> Result<(), ForgeError> {
        const WHAT: &str = "revoking the deploy key";
        let url = self.keys_url(owner, repo, Some(id));
        let result = self
            .agent
            .delete(url.as_str())
            .header("Authorization", super::auth_header(&self.token))
            .header("Accept", "application/json")
            .call();
        let (status, body) = Self::answer(&url, WHAT, result)?;
        match status {
            200 | 204 | 404 => Ok(()),
            _ => Err(self.status_error(&url, WHAT, status, &body)),
        }
    }
}
