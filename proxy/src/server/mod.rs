//! The proxy server: listener, CONNECT + TLS bump, the SEC §3 pipeline,
//! the pooled upstream client, reload and shutdown.
//!
//! One *generation* (policy + DLP engine + injected tokens) is live at a
//! time; every request takes the generation current when it starts, so a
//! `SIGHUP` reload swaps policies atomically without dropping connections.

mod body;
mod pipeline;
mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ca::{BottleCa, LeafCache};
use crate::dlp::{DlpEngine, DlpError};
use crate::policy::{ConfigErrors, Policy};
use crate::redact::Redacted;

/// Resource limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent client connections; more wait in the accept queue.
    pub max_connections: usize,
    /// Time a client has to send a request head.
    pub header_timeout: Duration,
    /// Time a client has to finish the bumped TLS handshake.
    pub handshake_timeout: Duration,
    /// Largest request head accepted (HTTP/1.1 read buffer).
    pub max_header_bytes: usize,
    /// Time connections get to finish after SIGTERM.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The routes.yaml to load (and reload on SIGHUP).
    pub routes: PathBuf,
    /// Directory with `ca.key` and `ca.crt`.
    pub ca_dir: PathBuf,
    /// Extra PEM roots trusted for upstream TLS (tests, private CAs).
    pub upstream_ca: Option<PathBuf>,
    /// Resource limits.
    pub limits: Limits,
}

/// Why the server could not start or reload.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The routes file could not be read.
    #[error("reading {path}: {source}")]
    ReadRoutes {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The routes file is invalid.
    #[error("{path}: {errors}")]
    Routes {
        /// The file.
        path: PathBuf,
        /// Every error in it.
        errors: ConfigErrors,
    },
    /// A route's `token_env` is not set in the proxy's environment.
    #[error(
        "routes[{route}] (host {host:?}): token_env {var} is not set in bb-egress's environment"
    )]
    MissingToken {
        /// Route index.
        route: usize,
        /// Route host.
        host: String,
        /// The variable.
        var: String,
    },
    /// A secret could not be registered with `known_secrets`.
    #[error(transparent)]
    Dlp(#[from] DlpError),
    /// The CA could not be loaded.
    #[error(transparent)]
    Ca(#[from] crate::ca::CaError),
    /// Upstream TLS roots could not be loaded.
    #[error("upstream roots: {0}")]
    Roots(String),
    /// Binding the listener failed.
    #[error("listening on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// One live configuration: policy, DLP engine and the tokens to inject.
#[derive(Debug)]
pub struct Generation {
    /// The compiled policy.
    pub policy: Policy,
    /// The DLP engine with every secret registered.
    pub engine: Arc<DlpEngine>,
    /// `token_env` name → secret value.
    tokens: HashMap<String, Redacted<String>>,
}

impl Generation {
    /// Loads a routes file and the secrets it names from `env`.
    pub fn load(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        extra_secrets: &[(String, Redacted<String>)],
    ) -> Result<Self, ServerError> {
        let text = std::fs::read_to_string(path).map_err(|source| ServerError::ReadRoutes {
            path: path.to_owned(),
            source,
        })?;
        let policy = Policy::from_yaml(&text).map_err(|errors| ServerError::Routes {
            path: path.to_owned(),
            errors,
        })?;
        let mut tokens = HashMap::new();
        for (i, route) in policy.config().routes.iter().enumerate() {
            if let Some(auth) = route.auth() {
                let value = env(auth.token_env).ok_or_else(|| ServerError::MissingToken {
                    route: i,
                    host: route.host.clone(),
                    var: auth.token_env.to_owned(),
                })?;
                tokens.insert(auth.token_env.to_owned(), Redacted::new(value));
            }
        }
        let mut secrets: Vec<(String, Redacted<Vec<u8>>)> = tokens
            .iter()
            .map(|(k, v)| (k.clone(), Redacted::new(v.expose().as_bytes().to_vec())))
            .collect();
        for (k, v) in extra_secrets {
            if !tokens.contains_key(k) {
                secrets.push((k.clone(), Redacted::new(v.expose().as_bytes().to_vec())));
            }
        }
        secrets.sort_by(|a, b| a.0.cmp(&b.0));
        let engine = Arc::new(DlpEngine::new(secrets)?);
        Ok(Self {
            policy,
            engine,
            tokens,
        })
    }

    /// The value of a `token_env` variable, if the routes inject it.
    pub(crate) fn token(&self, var: &str) -> Option<&Redacted<String>> {
        self.tokens.get(var)
    }
}

/// The environment of the proxy process, as the secrets' only source.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Secrets given to the proxy besides `token_env` values: every
/// `EGRESS_TOKEN_*` variable of its environment.
fn extra_env_secrets() -> Vec<(String, Redacted<String>)> {
    let mut out: Vec<(String, Redacted<String>)> = std::env::vars()
        .filter(|(k, _)| k.starts_with(crate::env_vars::EGRESS_TOKEN_PREFIX))
        .map(|(k, v)| (k, Redacted::new(v)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// State shared by every connection.
pub(crate) struct Shared {
    generation: RwLock<Arc<Generation>>,
    pub(crate) leaves: LeafCache,
    pub(crate) client: upstream::Client,
    pub(crate) limits: Limits,
}

impl Shared {
    /// The generation current now.
    pub(crate) fn current(&self) -> Arc<Generation> {
        // A poisoned lock only means a panic elsewhere while swapping an
        // Arc; the Arc inside is still whole.
        Arc::clone(
            &self
                .generation
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn swap(&self, g: Generation) {
        *self
            .generation
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(g);
    }
}

/// A running server: its address and how to stop or reload it.
pub struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    shared: Arc<Shared>,
    routes: PathBuf,
    done: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Loads everything and binds; configuration errors surface here,
    /// before the listener accepts anything.
    pub async fn start(config: ServerConfig) -> Result<Self, ServerError> {
        let generation = Generation::load(&config.routes, &process_env, &extra_env_secrets())?;
        let ca = Arc::new(BottleCa::load(&config.ca_dir)?);
        let leaves = LeafCache::new(ca, 1024, Duration::from_hours(24));
        let client = upstream::Client::new(config.upstream_ca.as_deref())?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let shared = Arc::new(Shared {
            generation: RwLock::new(Arc::new(generation)),
            leaves,
            client,
            limits: config.limits.clone(),
        });
        client_resolver_policy(&shared);
        let shutdown = CancellationToken::new();
        let done = tokio::spawn(accept_loop(listener, Arc::clone(&shared), shutdown.clone()));
        tracing::info!(%addr, routes = %config.routes.display(), "bb-egress listening");
        Ok(Self {
            addr,
            shutdown,
            shared,
            routes: config.routes,
            done,
        })
    }

    /// The bound address (useful with port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Re-reads the routes file and the environment's secrets. On error the
    /// running generation stays and the error is returned.
    pub fn reload(&self) -> Result<(), ServerError> {
        match Generation::load(&self.routes, &process_env, &extra_env_secrets()) {
            Ok(g) => {
                let n = g.policy.config().routes.len();
                self.shared.swap(g);
                tracing::info!(routes = n, "routes reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %e, "reload refused; keeping the running routes");
                Err(e)
            }
        }
    }

    /// Leaves minted so far (tests check refused hosts mint none).
    #[must_use]
    pub fn leaves_minted(&self) -> u64 {
        self.shared.leaves.minted()
    }

    /// Stops accepting, lets connections finish (up to the grace period).
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.done.await;
    }

    /// Runs until SIGTERM/SIGINT, reloading on SIGHUP.
    pub async fn run_until_signalled(self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        loop {
            tokio::select! {
                _ = hup.recv() => { let _ = self.reload(); }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("shutting down");
        self.shutdown().await;
        Ok(())
    }
}

/// The upstream connector asks the live policy whether a host may resolve
/// to private addresses.
fn client_resolver_policy(shared: &Arc<Shared>) {
    let weak = Arc::downgrade(shared);
    shared.client.set_policy(Box::new(move |host: &str| {
        weak.upgrade().is_some_and(|s| {
            s.current()
                .policy
                .route(host)
                .is_some_and(|r| r.allow_private)
        })
    }));
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let tracker = TaskTracker::new();
    let slots = Arc::new(Semaphore::new(shared.limits.max_connections));
    loop {
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            p = Arc::clone(&slots).acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            pipeline::serve_client(stream, peer, shared, shutdown).await;
            drop(permit);
        });
    }
    tracker.close();
    let grace = shared.limits.shutdown_grace;
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            remaining = tracker.len(),
            "connections still open after the grace period"
        );
    }
}
