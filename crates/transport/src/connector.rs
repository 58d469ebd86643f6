//! One type for every way mcp-edge reaches a tool server.
//!
//! A route holds a [`Connector`] and never asks which transport is behind it: every
//! operation a route needs (a call, a notification, an answer to the tool server's
//! request, the first start, the state for `/health`, shutting down) is here, and each
//! is one `match` over the variants.

use std::sync::Arc;
use std::time::SystemTime;

use mcp_edge_protocol::Id;
use serde_json::value::RawValue;
use tokio::time::Instant;

use crate::http::HttpStatus;
use crate::link::LinkStatus;
use crate::{
    Call, Http, Link, LinkPool, Phase, Reply, ServerInfo, Stdio, StdioPool, UpstreamError,
};

/// How a route reaches its tool server. Cheap to clone: clones share the connection.
#[derive(Clone)]
pub enum Connector {
    /// A supervised child process.
    Stdio(Stdio),
    /// A supervised child process per client session (and the route's own).
    StdioPool(StdioPool),
    /// A legacy HTTP+SSE or WebSocket connection per client session (and the route's
    /// own).
    LinkPool(LinkPool),
    /// A Streamable HTTP server.
    Http(Http),
    /// A legacy HTTP+SSE or WebSocket server.
    Link(Link),
    /// A route this build cannot serve; every call is refused with the reason.
    Unserved(Arc<str>),
}

/// A connector's state, whatever the transport.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Connected (or the child running) and initialized.
    pub up: bool,
    /// Not up, and a start or connection is under way (the tool server is being
    /// initialized): a caller would wait for it.
    pub starting: bool,
    /// The child's pid.
    pub pid: Option<u32>,
    /// Restarts or reconnections after the first.
    pub restarts: u64,
    /// The connector's last failure and when.
    pub last_error: Option<(SystemTime, String)>,
    /// The protocol version agreed with the tool server, while connected.
    pub protocol_version: Option<String>,
}

impl From<HttpStatus> for State {
    fn from(s: HttpStatus) -> State {
        State {
            up: s.connected,
            starting: s.connecting,
            pid: None,
            restarts: u64::from(s.failures),
            last_error: s.last_error,
            protocol_version: s.info.map(|i| i.protocol_version.clone()),
        }
    }
}

/// A link's state.
fn link_state(s: LinkStatus) -> State {
    State {
        up: s.phase == Phase::Ready,
        starting: s.phase == Phase::Starting,
        pid: None,
        restarts: s.restarts,
        last_error: s.last_error,
        protocol_version: s.info.map(|i| i.protocol_version.clone()),
    }
}

/// A child's state.
fn stdio_state(s: crate::stdio::Status) -> State {
    State {
        up: s.phase == Phase::Ready,
        starting: s.phase == Phase::Starting,
        pid: s.pid,
        restarts: s.restarts,
        last_error: s.last_error,
        protocol_version: s.info.map(|i| i.protocol_version.clone()),
    }
}

impl Connector {
    /// The connector's state.
    pub fn state(&self) -> State {
        match self {
            Connector::Stdio(stdio) => stdio_state(stdio.status()),
            Connector::StdioPool(pool) => stdio_state(pool.base().status()),
            Connector::LinkPool(pool) => link_state(pool.base().status()),
            Connector::Http(http) => http.status().into(),
            Connector::Link(link) => link_state(link.status()),
            Connector::Unserved(why) => State {
                last_error: Some((SystemTime::now(), why.to_string())),
                ..State::default()
            },
        }
    }

    /// What the tool server said about itself, while it is up.
    pub fn info(&self) -> Option<Arc<ServerInfo>> {
        match self {
            Connector::Stdio(stdio) => stdio.status().info,
            Connector::StdioPool(pool) => pool.base().status().info,
            Connector::LinkPool(pool) => pool.base().status().info,
            Connector::Http(http) => http.status().info,
            Connector::Link(link) => link.status().info,
            Connector::Unserved(_) => None,
        }
    }

    /// Makes a call. Dropping the future cancels it at the tool server.
    pub async fn call(&self, call: Call) -> Result<Reply, UpstreamError> {
        match self {
            Connector::Stdio(stdio) => stdio.call(call).await,
            Connector::StdioPool(pool) => pool.call(call).await,
            Connector::LinkPool(pool) => pool.call(call).await,
            Connector::Http(http) => http.call(call).await,
            Connector::Link(link) => link.call(call).await,
            Connector::Unserved(why) => Err(UpstreamError::Unavailable {
                reason: why.to_string(),
                retry_in: None,
            }),
        }
    }

    /// Waits for the first start attempt, success or failure, until `deadline`.
    pub async fn first_attempt(&self, deadline: Instant) {
        match self {
            Connector::Stdio(stdio) => stdio.first_attempt(deadline).await,
            Connector::StdioPool(pool) => pool.base().first_attempt(deadline).await,
            Connector::LinkPool(pool) => pool.base().first_attempt(deadline).await,
            Connector::Http(http) => http.first_attempt(deadline).await,
            Connector::Link(link) => link.first_attempt(deadline).await,
            Connector::Unserved(_) => {}
        }
    }

    /// Sends a notification to the tool server (in the client's own session, on a route
    /// with one per client).
    pub async fn notify(
        &self,
        session: Option<&Arc<str>>,
        method: &str,
        params: Option<&RawValue>,
    ) {
        match self {
            Connector::Stdio(stdio) => stdio.notify(method, params).await,
            Connector::StdioPool(pool) => pool.notify(session, method, params).await,
            Connector::LinkPool(pool) => pool.notify(session, method, params).await,
            Connector::Http(http) => http.notify(session, method, params).await,
            Connector::Link(link) => link.notify(method, params).await,
            Connector::Unserved(_) => {}
        }
    }

    /// Answers a request the tool server made (in the session it came from).
    pub async fn respond(&self, session: Option<&Arc<str>>, id: &Id, reply: Reply) {
        match self {
            Connector::Stdio(stdio) => stdio.respond(id, reply).await,
            Connector::StdioPool(pool) => pool.respond(session, id, reply).await,
            Connector::LinkPool(pool) => pool.respond(session, id, reply).await,
            Connector::Http(http) => http.respond(session, id, reply).await,
            Connector::Link(link) => link.respond(id, reply).await,
            Connector::Unserved(_) => {}
        }
    }

    /// A client session ended: its own upstream session, if any, ends too.
    pub fn end_session(&self, session: &str) {
        match self {
            Connector::Http(http) => http.end_session(session),
            Connector::StdioPool(pool) => pool.end_session(session),
            Connector::LinkPool(pool) => pool.end_session(session),
            _ => {}
        }
    }

    /// Client sessions with an upstream session of their own.
    pub fn client_sessions(&self) -> usize {
        match self {
            Connector::Http(http) => http.client_sessions(),
            Connector::StdioPool(pool) => pool.client_sessions(),
            Connector::LinkPool(pool) => pool.client_sessions(),
            _ => 0,
        }
    }

    /// Stops the tool server (or ends the upstream session).
    pub async fn shutdown(&self) {
        match self {
            Connector::Stdio(stdio) => stdio.shutdown().await,
            Connector::StdioPool(pool) => pool.shutdown().await,
            Connector::LinkPool(pool) => pool.shutdown().await,
            Connector::Http(http) => http.shutdown().await,
            Connector::Link(link) => link.shutdown().await,
            Connector::Unserved(_) => {}
        }
    }
}
