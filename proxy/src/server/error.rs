//! Who failed, and the one place that turns a failure into a response.
//!
//! Every refusal or failure of a request is a [`ProxyError`] naming its
//! source (client, policy, upstream, the proxy itself); [`rescue`] maps it
//! to the status the agent sees (400/408, 403, 502/504) and writes the one
//! log line, at the level of what the operator must do about it.

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::Generation;
use super::pipeline::{full, log_block};
use super::upstream::{ConnectError, ProxyBody};
use crate::policy::Block;

/// Why a request was not served.
#[derive(Debug)]
pub(crate) enum ProxyError {
    /// The client sent something the proxy cannot serve.
    Client(ClientError),
    /// The policy or DLP refused the request (or response).
    Policy(Block),
    /// The upstream could not be reached, or failed.
    Upstream(UpstreamError),
    /// The proxy itself failed (someone must look).
    Internal(&'static str),
}

/// A client's mistake.
#[derive(Debug)]
pub(crate) enum ClientError {
    /// A request the proxy does not take; the text says what to do.
    Unusable(&'static str),
    /// Reading the request body failed.
    Body(String),
    /// The request body stopped arriving.
    BodyTimeout(Duration),
}

/// An upstream's failure.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// No connection (refused, unresolvable, private, too slow).
    Connect { host: String, error: ConnectError },
    /// Connected, but no response head within the deadline.
    NoResponse { host: String, after: Duration },
    /// The exchange failed after connecting.
    Failed { host: String, cause: String },
    /// The response body stopped arriving for the body timeout.
    BodyStalled { host: String, after: Duration },
}

/// The error a request body ends with when it stops arriving.
#[derive(Debug, thiserror::Error)]
#[error("no body data for {0:?}")]
pub(crate) struct BodyTimeout(pub(crate) Duration);

/// The error a response body ends with when it stops arriving.
#[derive(Debug, thiserror::Error)]
#[error("the upstream sent no body data for {0:?}")]
pub(crate) struct UpstreamBodyTimeout(pub(crate) Duration);

impl ProxyError {
    /// Sorts a failed upstream exchange by who failed: a client body that
    /// stalled, the connector's own errors, or the upstream.
    pub(crate) fn upstream(host: &str, e: &(dyn std::error::Error + 'static)) -> Self {
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cur {
            if let Some(t) = c.downcast_ref::<BodyTimeout>() {
                return Self::Client(ClientError::BodyTimeout(t.0));
            }
            if let Some(ce) = c.downcast_ref::<ConnectError>() {
                return Self::Upstream(UpstreamError::Connect {
                    host: host.to_owned(),
                    error: ce.clone(),
                });
            }
            cur = c.source();
        }
        Self::Upstream(UpstreamError::Failed {
            host: host.to_owned(),
            cause: error_chain(e),
        })
    }
}

/// `e` and its sources, `: `-separated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A plain-text response.
fn text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// The response (and log line) for `error` on a request for `method path`.
pub(crate) fn rescue(
    error: ProxyError,
    generation: &Generation,
    method: &str,
    path: &str,
) -> Response<ProxyBody> {
    match error {
        ProxyError::Policy(block) => {
            log_block(generation, &block, method, path);
            text(StatusCode::FORBIDDEN, block.agent_message())
        }
        ProxyError::Client(ClientError::Unusable(why)) => {
            text(StatusCode::BAD_REQUEST, format!("bb-egress: {why}\n"))
        }
        ProxyError::Client(ClientError::Body(cause)) => {
            tracing::debug!(error = %cause, "reading the request body failed");
            text(
                StatusCode::BAD_REQUEST,
                format!("bb-egress: reading the request body failed: {cause}\n"),
            )
        }
        ProxyError::Client(ClientError::BodyTimeout(after)) => {
            tracing::info!(method, ?after, "request body timed out");
            text(
                StatusCode::REQUEST_TIMEOUT,
                format!("bb-egress: the request body stopped arriving (nothing for {after:?})\n"),
            )
        }
        ProxyError::Upstream(UpstreamError::Connect { host, error }) => {
            let status = if error.is_timeout() {
                tracing::warn!(%host, error = %error, "upstream timed out");
                StatusCode::GATEWAY_TIMEOUT
            } else {
                tracing::warn!(%host, error = %error, "upstream request failed");
                StatusCode::BAD_GATEWAY
            };
            text(
                status,
                format!("bb-egress: upstream {host} failed: {error}\n"),
            )
        }
        ProxyError::Upstream(UpstreamError::NoResponse { host, after }) => {
            tracing::warn!(%host, ?after, "upstream timed out waiting for the response");
            text(
                StatusCode::GATEWAY_TIMEOUT,
                format!("bb-egress: upstream {host} did not answer within {after:?}\n"),
            )
        }
        ProxyError::Upstream(UpstreamError::BodyStalled { host, after }) => {
            tracing::warn!(%host, ?after, "upstream response body stalled");
            text(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "bb-egress: upstream {host} stopped sending its response (nothing for {after:?})\n"
                ),
            )
        }
        ProxyError::Upstream(UpstreamError::Failed { host, cause }) => {
            tracing::warn!(%host, error = %cause, "upstream request failed");
            text(
                StatusCode::BAD_GATEWAY,
                format!("bb-egress: upstream {host} failed: {cause}\n"),
            )
        }
        ProxyError::Internal(what) => {
            tracing::error!(what, "proxy failure");
            text(StatusCode::BAD_GATEWAY, format!("bb-egress: {what}\n"))
        }
    }
}
