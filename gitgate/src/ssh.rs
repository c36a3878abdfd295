//! The SSH leg to the upstream: a `russh` client that pins the host key,
//! authenticates with the bottle's key and runs one git service command
//! per channel, on a session kept per repo.
//!
//! Host-key checking is strict: the key the server offers must equal the
//! one in `gate.yaml`, or the connection is dropped before authentication
//! and the error says which key was expected and which was offered (as
//! SHA-256 fingerprints, which are public).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use russh::client;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::Upstream;

/// How long connecting and authenticating may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the upstream could not be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SshError {
    /// The server offered another host key than the pinned one.
    #[error(
        "upstream {host}:{port} offered host key {offered}, but gate.yaml pins {expected}: refusing (host key mismatch)"
    )]
    HostKeyMismatch {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// Pinned fingerprint.
        expected: String,
        /// Offered fingerprint.
        offered: String,
    },
    /// The server did not accept the bottle's key.
    #[error("upstream {host}:{port} refused public-key authentication as {user}")]
    AuthRefused {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// User.
        user: String,
    },
    /// Connecting took too long.
    #[error("upstream {host}:{port}: connecting timed out")]
    Timeout {
        /// Host.
        host: String,
        /// Port.
        port: u16,
    },
    /// Any other SSH failure.
    #[error("upstream {host}:{port}: {source}")]
    Ssh {
        /// Host.
        host: String,
        /// Port.
        port: u16,
        /// The library's error.
        source: russh::Error,
    },
}

/// The git services the gate runs upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    /// `git-upload-pack`: fetch and clone, and the mirror's refresh.
    UploadPack,
    /// `git-receive-pack`: push.
    ReceivePack,
}

impl Service {
    /// The command name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Service::UploadPack => "git-upload-pack",
            Service::ReceivePack => "git-receive-pack",
        }
    }

    /// From a smart-HTTP `service=` value.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "git-upload-pack" => Some(Service::UploadPack),
            "git-receive-pack" => Some(Service::ReceivePack),
            _ => None,
        }
    }
}

struct Pinned {
    expected: PublicKey,
    offered: Arc<Mutex<Option<String>>>,
}

impl client::Handler for Pinned {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let key = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => PublicKey::from(cert.public_key().clone()),
        };
        let matches = key.key_data() == self.expected.key_data();
        if !matches && let Ok(mut slot) = self.offered.lock() {
            *slot = Some(key.fingerprint(HashAlg::Sha256).to_string());
        }
        Ok(matches)
    }
}

/// An upstream git service's stdin and stdout. Dropping it closes the
/// channel; the session stays open for the repo's next request.
pub struct ServiceStream {
    stream: russh::ChannelStream<client::Msg>,
    _session: Arc<client::Handle<Pinned>>,
}

impl std::fmt::Debug for ServiceStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceStream")
    }
}

impl ServiceStream {
    /// The byte stream.
    pub fn io(&mut self) -> &mut (impl AsyncRead + AsyncWrite + Unpin + use<>) {
        &mut self.stream
    }
}

/// Sessions kept open, one per configured repo (each repo has its own
/// key, so sessions are never shared between repos), so the advertisement,
/// the mirror's refresh and the forward of one push are channels of one
/// SSH session rather than three handshakes.
static SESSIONS: LazyLock<Mutex<HashMap<String, Arc<client::Handle<Pinned>>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// How long starting a service on a kept session may take before the
/// session is given up for a fresh one (a peer that vanished without
/// closing the connection never answers).
const REUSE_TIMEOUT: Duration = Duration::from_secs(5);

fn sessions() -> std::sync::MutexGuard<'static, HashMap<String, Arc<client::Handle<Pinned>>>> {
    SESSIONS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `service '<path>'` on `up`: on the repo's kept session when it
/// still works, else on a fresh one (connected, host key checked,
/// authenticated), which is then kept. Cancel-safe: dropping the future
/// drops what it opened.
pub async fn open(up: &Upstream, service: Service) -> Result<ServiceStream, SshError> {
    let kept = sessions().get(&up.name).cloned();
    if let Some(session) = kept {
        if !session.is_closed()
            && let Ok(Ok(stream)) =
                tokio::time::timeout(REUSE_TIMEOUT, start(&session, up, service)).await
        {
            return Ok(stream);
        }
        // Gone (closed, or too many channels on it): forget it unless
        // another request already replaced it.
        let mut kept = sessions();
        if kept.get(&up.name).is_some_and(|k| Arc::ptr_eq(k, &session)) {
            kept.remove(&up.name);
        }
    }
    let session = Arc::new(connect(up).await?);
    let stream = start(&session, up, service).await?;
    sessions().insert(up.name.clone(), Arc::clone(&session));
    Ok(stream)
}

/// Opens a channel on `session` and runs `service '<path>'` on it.
async fn start(
    session: &Arc<client::Handle<Pinned>>,
    up: &Upstream,
    service: Service,
) -> Result<ServiceStream, SshError> {
    let ssh_err = |source| SshError::Ssh {
        host: up.host.clone(),
        port: up.port,
        source,
    };
    let channel = session.channel_open_session().await.map_err(ssh_err)?;
    // The path was checked to hold no quote (config::parse_ssh_url), so
    // single quotes keep the upstream's shell from reading anything in it.
    let command = format!("{} '{}'", service.name(), up.path);
    channel.exec(true, command).await.map_err(ssh_err)?;
    Ok(ServiceStream {
        stream: channel.into_stream(),
        _session: Arc::clone(session),
    })
}

/// Connects to `up`, checks its host key and authenticates.
async fn connect(up: &Upstream) -> Result<client::Handle<Pinned>, SshError> {
    let host = up.host.clone();
    let port = up.port;
    let ssh_err = |source| SshError::Ssh {
        host: host.clone(),
        port,
        source,
    };
    let offered = Arc::new(Mutex::new(None));
    let handler = Pinned {
        expected: up.host_key.clone(),
        offered: Arc::clone(&offered),
    };
    let config = Arc::new(client::Config {
        inactivity_timeout: Some(Duration::from_mins(10)),
        ..client::Config::default()
    });
    let connect = client::connect(config, (up.host.as_str(), up.port), handler);
    let mut session = match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
        Err(_) => {
            return Err(SshError::Timeout { host, port });
        }
        Ok(Err(russh::Error::UnknownKey)) => {
            let offered = offered
                .lock()
                .ok()
                .and_then(|o| o.clone())
                .unwrap_or_else(|| "an unknown key".into());
            return Err(SshError::HostKeyMismatch {
                host,
                port,
                expected: up.host_key.fingerprint(HashAlg::Sha256).to_string(),
                offered,
            });
        }
        Ok(Err(e)) => return Err(ssh_err(e)),
        Ok(Ok(session)) => session,
    };
    // No RSA support is built in, so no RSA hash needs negotiating.
    let auth = session
        .authenticate_publickey(
            up.user.clone(),
            PrivateKeyWithHashAlg::new(Arc::clone(&up.key), None),
        )
        .await
        .map_err(ssh_err)?;
    if !auth.success() {
        return Err(SshError::AuthRefused {
            host,
            port,
            user: up.user.clone(),
        });
    }
    Ok(session)
}
