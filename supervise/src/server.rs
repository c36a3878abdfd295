//! The supervise MCP server: the [`tools`](crate::tools) over streamable
//! HTTP (rmcp's server transport), for one bottle whose state folder holds
//! its `queue/` and its live `routes.yaml`.
//!
//! The transport runs stateless with JSON responses: every `POST /mcp`
//! carries one JSON-RPC message and gets one answer, so no session outlives
//! a request and a restarted server loses nothing (the queue is on disk).
//! `Host` must be one of the configured names and any `Origin` header is
//! refused (the MCP spec's DNS-rebinding rule: no browser page may drive
//! the server); bodies are bounded, connections are bounded, request heads
//! must arrive in time, and at most `max_pending` proposals wait per
//! bottle. Anything else on the port is a 404.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, ServerHandler, tool, tool_handler, tool_router};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::queue::{MAX_PROPOSED_FILE_BYTES, Queue, QueueError, Tool};
use crate::tools::{self, CapabilityArgs, NoArgs, Prepared, RoutesArgs, StatusArgs, ToolError};

/// The folder of a bottle's queue inside its state folder.
pub const QUEUE_DIR: &str = "queue";
/// The live routes file inside a bottle's state folder.
pub const ROUTES_FILE: &str = "routes.yaml";
/// The agent Dockerfile inside a bottle's state folder, when the
/// orchestrator keeps one there (the file `capability-block` replaces).
pub const DOCKERFILE: &str = "Dockerfile";
/// The only path served.
pub const MCP_PATH: &str = "/mcp";
/// Host names accepted by default: the bundle's name on the agent network
/// and loopback.
pub const DEFAULT_ALLOWED_HOSTS: [&str; 4] = ["supervise", "localhost", "127.0.0.1", "::1"];
/// Default bound on a request body: a largest proposed file plus room for
/// JSON escaping of ordinary text.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * MAX_PROPOSED_FILE_BYTES;
/// Largest allowlist answer read from egress.
const MAX_ALLOWLIST_BYTES: usize = 4 * 1024 * 1024;
/// Time egress has to answer the allowlist.
const EGRESS_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a waiting `proposal-status` looks at the queue.
const POLL: Duration = Duration::from_millis(250);

/// Everything the server needs.
#[derive(Debug, Clone)]
pub struct Config {
    /// The bottle's state folder (holds `queue/` and `routes.yaml`).
    pub state_dir: PathBuf,
    /// The bottle's slug, written into each proposal.
    pub slug: String,
    /// The egress proxy (`host:port`) to ask for the live allowlist; when
    /// unset, the allowlist is read from the state folder's routes.yaml.
    pub egress_proxy: Option<String>,
    /// Accepted `Host` header names (a name alone accepts any port).
    pub allowed_hosts: Vec<String>,
    /// Most proposals waiting at once for this bottle.
    pub max_pending: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Most concurrent connections.
    pub max_connections: usize,
}

impl Config {
    /// A configuration with the defaults for `state_dir`, taking the slug
    /// from the folder's name.
    #[must_use]
    pub fn new(state_dir: PathBuf) -> Self {
        let slug = state_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self {
            state_dir,
            slug,
            egress_proxy: None,
            allowed_hosts: DEFAULT_ALLOWED_HOSTS
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
            max_pending: tools::DEFAULT_MAX_PENDING,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_connections: 64,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The slug is not one a proposal can carry.
    #[error(
        "bottle slug {0:?} is not [a-z0-9-], 1 to 64 characters (name the state folder so, or pass --slug)"
    )]
    Slug(String),
    /// The queue folder could not be opened.
    #[error(transparent)]
    Queue(#[from] QueueError),
}

struct Shared {
    config: Config,
    queue: Queue,
    /// Held (on a blocking thread, never across an await) while counting
    /// pending proposals and queueing one, so two calls cannot both pass
    /// the bound.
    submit: Mutex<()>,
}

/// The MCP handler for one bottle.
#[derive(Clone)]
pub struct Supervise {
    shared: Arc<Shared>,
    tool_router: ToolRouter<Self>,
}

impl std::fmt::Debug for Supervise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervise")
            .field("state_dir", &self.shared.config.state_dir)
            .finish_non_exhaustive()
    }
}

impl Supervise {
    /// Opens the bottle's queue (creating `queue/` when missing).
    pub fn new(config: Config) -> Result<Self, StartError> {
        if crate::queue::check_bottle_slug(&config.slug).is_err() {
            return Err(StartError::Slug(config.slug.clone()));
        }
        let queue = Queue::open(config.state_dir.join(QUEUE_DIR))?;
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                queue,
                submit: Mutex::new(()),
            }),
            tool_router: Self::tool_router(),
        })
    }

    fn state_file(&self, name: &str) -> PathBuf {
        self.shared.config.state_dir.join(name)
    }

    /// Checks, bounds and queues a prepared proposal (on a blocking thread).
    async fn submit(&self, prepared: Prepared) -> Result<CallToolResult, ErrorData> {
        let shared = Arc::clone(&self.shared);
        let outcome = blocking(move || {
            let _guard = shared
                .submit
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let pending = shared.queue.pending().proposals.len();
            if pending >= shared.config.max_pending {
                return Err(ToolError::TooManyPending {
                    pending,
                    max: shared.config.max_pending,
                });
            }
            shared.queue.submit(&prepared.proposal)?;
            Ok(prepared)
        })
        .await?;
        Ok(match outcome {
            Ok(prepared) => {
                tracing::info!(
                    id = %prepared.proposal.id,
                    tool = %prepared.proposal.tool,
                    "proposal queued"
                );
                CallToolResult::success(vec![ContentBlock::text(tools::queued_text(&prepared))])
            }
            Err(e) => tool_error(&e),
        })
    }

    async fn routes_proposal(
        &self,
        tool: Tool,
        args: RoutesArgs,
    ) -> Result<CallToolResult, ErrorData> {
        let live = read_optional(self.state_file(ROUTES_FILE)).await?;
        let slug = self.shared.config.slug.clone();
        match tools::prepare_routes(tool, args, &slug, live.as_deref()) {
            Ok(prepared) => self.submit(prepared).await,
            Err(e) => Ok(tool_error(&e)),
        }
    }

    async fn allowlist(&self) -> Result<String, ToolError> {
        if let Some(proxy) = &self.shared.config.egress_proxy {
            return fetch_allowlist(proxy).await.map_err(ToolError::Allowlist);
        }
        let text = read_optional(self.state_file(ROUTES_FILE))
            .await
            .map_err(|e| ToolError::Allowlist(e.message.to_string()))?
            .ok_or_else(|| ToolError::Allowlist(format!("no {ROUTES_FILE} in the state folder")))?;
        bb_egress::policy::RoutesConfig::from_yaml(&text)
            .map(|cfg| cfg.to_json())
            .map_err(|e| ToolError::Allowlist(format!("the live {ROUTES_FILE} is invalid: {e}")))
    }
}

#[tool_router]
impl Supervise {
    #[tool(
        name = "list-egress-routes",
        description = "The live egress allowlist of this bottle, as JSON with the same field \
                       names as routes.yaml (defaults omitted). Call it before `allow` or \
                       `egress-block`: a proposal is a WHOLE routes.yaml, so copy these routes \
                       into it and add your change. Read-only; needs no approval.",
        annotations(read_only_hint = true)
    )]
    async fn list_egress_routes(
        &self,
        Parameters(NoArgs {}): Parameters<NoArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(match self.allowlist().await {
            Ok(json) => CallToolResult::success(vec![ContentBlock::text(json)]),
            Err(e) => tool_error(&e),
        })
    }

    #[tool(
        name = "allow",
        description = "Ask a human to widen this bottle's egress allowlist (a new host, more \
                       paths or methods, git fetch). Pass the WHOLE proposed routes.yaml (the \
                       live routes from `list-egress-routes` plus your change) and a \
                       justification. The file is checked with egress's own parser first; an \
                       invalid file is refused with the route, host and key at fault and \
                       nothing is queued. A valid one is queued (not applied) and you get its \
                       id and what it adds; then call `proposal-status`."
    )]
    async fn allow(
        &self,
        Parameters(args): Parameters<RoutesArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.routes_proposal(Tool::Allow, args).await
    }

    #[tool(
        name = "egress-block",
        description = "Like `allow`, filed right after egress refused a request (a 403 from \
                       bot-bottle egress): pass the WHOLE proposed routes.yaml that would let \
                       the refused request through, and a justification naming the request. \
                       Queued for a human, never applied by itself; then call \
                       `proposal-status`."
    )]
    async fn egress_block(
        &self,
        Parameters(args): Parameters<RoutesArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        self.routes_proposal(Tool::EgressBlock, args).await
    }

    #[tool(
        name = "capability-block",
        description = "Ask a human for a capability the agent image lacks (a package, a tool). \
                       Pass the WHOLE proposed agent Dockerfile and a justification. If \
                       approved it takes effect on the NEXT resume of this bottle (the image is \
                       rebuilt), not in the running one; call `proposal-status` for the \
                       decision."
    )]
    async fn capability_block(
        &self,
        Parameters(args): Parameters<CapabilityArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let current = read_optional(self.state_file(DOCKERFILE)).await?;
        let slug = self.shared.config.slug.clone();
        match tools::prepare_capability(args, &slug, current.as_deref()) {
            Ok(prepared) => self.submit(prepared).await,
            Err(e) => Ok(tool_error(&e)),
        }
    }

    #[tool(
        name = "proposal-status",
        description = "The decision on a proposal: pending, approved, modified (approved with \
                       the human's edits, see final_file), rejected (see notes) or failed \
                       (approved but could not be applied). With wait_seconds (at most 50) it \
                       waits that long for a decision before answering pending; call it again \
                       to keep waiting.",
        annotations(read_only_hint = true)
    )]
    async fn proposal_status(
        &self,
        Parameters(args): Parameters<StatusArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        let (id, wait) = match tools::parse_status(&args) {
            Ok(parsed) => parsed,
            Err(e) => return Ok(tool_error(&e)),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
        loop {
            let shared = Arc::clone(&self.shared);
            let id2 = id.clone();
            let looked = blocking(move || {
                let proposal = shared.queue.proposal(&id2).map_err(|e| match e {
                    QueueError::NotFound { .. } => ToolError::NotFound(id2.to_string()),
                    other => ToolError::Queue(other),
                })?;
                let response = shared.queue.response(&id2)?;
                Ok::<_, ToolError>((proposal, response))
            })
            .await?;
            let (proposal, response) = match looked {
                Ok(found) => found,
                Err(e) => return Ok(tool_error(&e)),
            };
            if response.is_some() || tokio::time::Instant::now() >= deadline {
                let report = tools::status_report(&proposal, response.as_ref());
                let json = serde_json::to_string_pretty(&report).unwrap_or_default();
                return Ok(CallToolResult::success(vec![ContentBlock::text(json)]));
            }
            tokio::time::sleep(POLL.min(deadline - tokio::time::Instant::now())).await;
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Supervise {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "bb-supervise",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(tools::INSTRUCTIONS)
    }
}

/// A tool error the agent sees (`isError: true`), never a protocol error.
fn tool_error(e: &ToolError) -> CallToolResult {
    tracing::info!(error = %e, "tool call refused");
    CallToolResult::error(vec![ContentBlock::text(e.to_string())])
}

/// Runs file-system work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ErrorData> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ErrorData::internal_error("queue task failed", None))
}

/// Reads a state file; `None` when it does not exist. Bounded, and never
/// through a symlink's target outside the rules of [`Queue`]: the state
/// folder is the operator's, the agent cannot write it.
async fn read_optional(path: PathBuf) -> Result<Option<String>, ErrorData> {
    blocking(move || read_state_file(&path))
        .await?
        .map_err(|e| ErrorData::internal_error(e, None))
}

fn read_state_file(path: &Path) -> Result<Option<String>, String> {
    use std::io::Read as _;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut text = String::new();
    file.take(MAX_PROPOSED_FILE_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if text.len() > MAX_PROPOSED_FILE_BYTES {
        return Err(format!(
            "{}: larger than {MAX_PROPOSED_FILE_BYTES} bytes",
            path.display()
        ));
    }
    Ok(Some(text))
}

/// `GET http://_egress.local/allowlist` through the egress proxy at
/// `proxy` (`host:port`), bounded in time and size.
async fn fetch_allowlist(proxy: &str) -> Result<String, String> {
    let host = bb_egress::policy::INTROSPECTION_HOST;
    let work = async {
        let stream = TcpStream::connect(proxy)
            .await
            .map_err(|e| format!("egress proxy {proxy}: {e}"))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("egress proxy {proxy}: {e}"))?;
        let conn = tokio::spawn(conn);
        let req = http::Request::get(format!("http://{host}/allowlist"))
            .header(http::header::HOST, host)
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("egress proxy {proxy}: {e}"))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ALLOWLIST_BYTES)
            .collect()
            .await
            .map_err(|e| format!("egress proxy {proxy}: {e}"))?
            .to_bytes();
        conn.abort();
        if status != http::StatusCode::OK {
            return Err(format!("egress proxy {proxy} answered {status}"));
        }
        // Egress's answer is passed on only when it is the JSON it should be.
        let value: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| format!("egress proxy {proxy} answered something that is not JSON"))?;
        Ok(serde_json::to_string_pretty(&value).unwrap_or_default())
    };
    tokio::time::timeout(EGRESS_TIMEOUT, work)
        .await
        .map_err(|_| format!("egress proxy {proxy} did not answer within {EGRESS_TIMEOUT:?}"))?
}

/// The rmcp transport configuration for `config`.
fn transport_config(config: &Config, cancel: &CancellationToken) -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(config.allowed_hosts.clone())
        // No browser has any business here: every Origin is refused.
        .enforce_origin_validation()
        .with_max_request_body_bytes(config.max_body_bytes)
        .with_cancellation_token(cancel.child_token())
}

type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn not_found() -> http::Response<Body> {
    let mut resp =
        http::Response::new(Full::new(Bytes::from_static(b"not found; MCP is at /mcp\n")).boxed());
    *resp.status_mut() = http::StatusCode::NOT_FOUND;
    resp
}

/// Serves MCP on `listener` until `cancel` fires. Connections beyond
/// `max_connections` wait in the accept queue.
///
/// Cancel-safety: dropping the future stops accepting; connections already
/// accepted run on until their requests finish.
pub async fn serve(
    listener: TcpListener,
    handler: Supervise,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let config = handler.shared.config.clone();
    let service: StreamableHttpService<Supervise, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        transport_config(&config, &cancel),
    );
    let service = Arc::new(service);
    let permits = Arc::new(Semaphore::new(config.max_connections.max(1)));
    loop {
        let permit = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            permit = Arc::clone(&permits).acquire_owned() => permit.map_err(std::io::Error::other)?,
        };
        let (stream, peer) = tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let service = Arc::clone(&service);
        tokio::spawn(connection(stream, peer, service, permit));
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    service: Arc<StreamableHttpService<Supervise, LocalSessionManager>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
) {
    let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
        let service = Arc::clone(&service);
        async move {
            if req.uri().path() != MCP_PATH {
                return Ok::<_, std::convert::Infallible>(not_found());
            }
            Ok(service.handle(req).await)
        }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(stream), svc)
        .await;
    if let Err(error) = result {
        tracing::debug!(%peer, %error, "connection ended with an error");
    }
}
