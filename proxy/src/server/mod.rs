//! The proxy server: listener, CONNECT + TLS bump, the SEC §3 pipeline,
//! the pooled upstream client, reload and shutdown.
//!
//! One *generation* (policy + DLP engine + injected tokens) is live at a
//! time; every request takes the generation current when it starts, so a
//! `SIGHUP` reload swaps policies atomically without dropping connections.
//!
//! A client connection holds one of `max_connections` slots for its whole
//! life, tunnels and WebSocket relays included; over the limit a new
//! connection is answered 503 and closed. Every task runs on one
//! `TaskTracker` and watches the shutdown token, so SIGTERM drains them all
//! (up to the grace period).

mod body;
mod conn;
mod error;
mod pipeline;
mod ssrf;
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
use tracing::Instrument as _;

use crate::ca::{BottleCa, LeafCache};
use crate::dlp::{DlpEngine, DlpError};
use crate::policy::{ConfigErrors, Policy};
use crate::redact::Redacted;

/// Resource limits.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Concurrent client connections, each counted until its last tunnel or
    /// WebSocket relay ends; more are answered 503 and closed.
    pub max_connections: usize,
    /// Time a client has to send a request head.
    pub header_timeout: Duration,
    /// Time a client has to finish the bumped TLS handshake.
    pub handshake_timeout: Duration,
    /// Largest request head accepted (HTTP/1.1 read buffer).
    pub max_header_bytes: usize,
    /// Time connections get to finish after SIGTERM.
    pub shutdown_grace: Duration,
    /// TCP connect to an upstream, across all of its addresses.
    pub upstream_connect_timeout: Duration,
    /// TLS handshake with an upstream, once TCP is up.
    pub upstream_tls_timeout: Duration,
    /// Time an upstream has to send its response head. Generous: model
    /// APIs can think for minutes before their first byte.
    pub upstream_response_timeout: Duration,
    /// A client connection with no request in flight and no byte moved for
    /// this long is closed (plain and bumped, HTTP/1.1 and h2).
    pub idle_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            header_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(10),
            upstream_connect_timeout: Duration::from_secs(10),
            upstream_tls_timeout: Duration::from_secs(10),
            upstream_response_timeout: Duration::from_mins(5),
            idle_timeout: Duration::from_mins(2),
            body_timeout: Duration::from_mins(1),
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
    /// A route's `token_env` is not set in the proxy's environment, or
    /// its value cannot be sent as an `Authorization` header.
    #[error("routes[{route}] (host {host:?}): token_env {var} {problem}")]
    MissingToken {
        /// Route index.
        route: usize,
        /// Route host.
        host: String,
        /// The variable.
        var: String,
        /// What is wrong with it (never the value).
        problem: &'static str,
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
                let missing = |problem| ServerError::MissingToken {
                    route: i,
                    host: route.host.clone(),
                    var: auth.token_env.to_owned(),
                    problem,
                };
                let value = env(auth.token_env)
                    .ok_or_else(|| missing("is not set in bb-egress's environment"))?;
                if value.trim().is_empty() {
                    return Err(missing("is empty in bb-egress's environment"));
                }
                // Checked here, so a request never finds it unusable.
                let header = format!("{} {value}", auth.scheme.as_str());
                if http::HeaderValue::from_str(&header).is_err() {
                    return Err(missing(
                        "holds characters an Authorization header cannot carry \
                         (a newline or control character?)",
                    ));
                }
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
    /// Every connection, tunnel and relay task.
    pub(crate) tasks: TaskTracker,
    /// The bumped side's TLS settings, built once; each CONNECT clones it
    /// with its host's leaf.
    pub(crate) tls: Arc<rustls::ServerConfig>,
    /// Cancelled at shutdown.
    pub(crate) shutdown: CancellationToken,
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
        let generation = load_off_runtime(config.routes.clone()).await?;
        let ca = Arc::new(BottleCa::load(&config.ca_dir)?);
        let leaves = LeafCache::new(ca, 1024, Duration::from_hours(24));
        let local = tokio::task::spawn_blocking(ssrf::LocalAddrs::load)
            .await
            .map_err(|e| ServerError::Roots(format!("listing interfaces: {e}")))?;
        let client = upstream::Client::new(
            config.upstream_ca.as_deref(),
            upstream::Deadlines {
                connect: config.limits.upstream_connect_timeout,
                tls: config.limits.upstream_tls_timeout,
            },
            &Arc::new(local),
        )?;
        let tls = pipeline::bump_tls_config().map_err(|e| ServerError::Roots(e.to_string()))?;
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
            tasks: TaskTracker::new(),
            tls,
            shutdown: CancellationToken::new(),
        });
        let shutdown = shared.shutdown.clone();
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
    ///
    /// The file is read and the automata built on the blocking pool, never
    /// on the runtime. Cancel-safe: dropping it before it finishes leaves
    /// the running generation in place.
    pub async fn reload(&self) -> Result<(), ServerError> {
        match load_off_runtime(self.routes.clone()).await {
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
                _ = hup.recv() => { let _ = self.reload().await; }
                _ = term.recv() => break,
                _ = int.recv() => break,
            }
        }
        tracing::info!("shutting down");
        self.shutdown().await;
        Ok(())
    }
}

/// Loads a generation on the blocking pool (file I/O, regex and automata
/// builds).
async fn load_off_runtime(routes: PathBuf) -> Result<Generation, ServerError> {
    let path = routes.clone();
    tokio::task::spawn_blocking(move || {
        Generation::load(&routes, &process_env, &extra_env_secrets())
    })
    .await
    .unwrap_or_else(|e| {
        // Only a panic while loading gets here; say so rather than guess.
        Err(ServerError::ReadRoutes {
            path,
            source: std::io::Error::other(format!("loading failed: {e}")),
        })
    })
}

/// The answer to a connection over `max_connections`.
const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 51\r\n\r\n\
bb-egress: too many connections; retry in a moment\n";

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let tracker = shared.tasks.clone();
    let slots = Arc::new(Semaphore::new(shared.limits.max_connections));
    loop {
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
        // Refused at once rather than queued: a queue would hold the
        // client (and a kernel buffer) for as long as a tunnel lives.
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            let _ = stream.try_write(TOO_MANY);
            // Debug: a flood must not become a log flood.
            tracing::debug!(%peer, limit = shared.limits.max_connections, "connection refused: too many connections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let span = tracing::info_span!("conn", %peer);
        tracker.spawn(
            pipeline::serve_client(
                stream,
                Arc::new(permit),
                Arc::clone(&shared),
                shutdown.clone(),
            )
            .instrument(span),
        );
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Bug 13: a reload reads the file and builds the automata off the
    /// runtime. On a single-threaded runtime a task keeps ticking while a
    /// large routes file loads; a reload on the runtime would starve it.
    #[test]
    fn reload_does_not_block_the_runtime() {
        let dir = tempfile::tempdir().unwrap();
        BottleCa::init(&dir.path().join("ca"), &[]).unwrap();
        let mut routes = String::from("routes:\n");
        for i in 0..3000 {
            use std::fmt::Write as _;
            let _ = write!(
                routes,
                "  - host: h{i}.example\n    matches:\n      - paths: [{{type: regex, value: \"/v[0-9]+/items/{i}/[a-z]+\"}}]\n"
            );
        }
        let file = dir.path().join("routes.yaml");
        std::fs::write(&file, &routes).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let server = Server::start(ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                routes: file,
                ca_dir: dir.path().join("ca"),
                upstream_ca: Some(dir.path().join("ca").join(crate::ca::CERT_FILE)),
                limits: Limits::default(),
            })
            .await
            .expect("start");
            let ticks = Arc::new(AtomicU64::new(0));
            let counter = Arc::clone(&ticks);
            let ticker = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            });
            let started = std::time::Instant::now();
            server.reload().await.expect("reload");
            let took = started.elapsed();
            ticker.abort();
            let seen = ticks.load(Ordering::Relaxed);
            assert!(
                took < Duration::from_millis(50) || seen >= 5,
                "the runtime stalled for {took:?} during a reload ({seen} ticks)"
            );
            server.shutdown().await;
        });
    }
}
