//! A route at run time: its naming, its policies and the connector to its tool server.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mcp_edge_config::Boundary;
use mcp_edge_config::model::Naming;
use mcp_edge_policy::Request;
use mcp_edge_protocol::Id;
use mcp_edge_transport::{Call, Http, Link, Phase, Reply, ServerInfo, Stdio, UpstreamError};

use crate::balance::Balanced;
use crate::policy::RoutePolicy;
use crate::stats::RouteStats;

/// A route, ready to take calls.
pub struct RouteRt {
    /// The route's name.
    pub name: String,
    /// Its tool prefix (empty: none).
    pub prefix: String,
    /// Tool filters.
    pub naming: Naming,
    /// The boundary it crosses.
    pub boundary: Boundary,
    /// The transport label (`stdio`, `https auto`, …).
    pub transport: String,
    /// The endpoint, safe to print.
    pub endpoint: String,
    /// The per-call deadline (before progress moves it on).
    pub timeout: Duration,
    /// The furthest progress may move it.
    pub max_timeout: Duration,
    /// The connector.
    pub upstream: Upstream,
    /// Its policies, over the same connector.
    pub policy: RoutePolicy,
    /// What it has done.
    pub stats: RouteStats,
    /// `/readyz` fails while this route is not usable.
    pub required: bool,
    /// How often it is probed.
    pub probe_interval: Option<Duration>,
    /// Its configuration, positions left out: unchanged on reload means kept as is.
    pub fingerprint: String,
}

/// A connector's state, whatever the transport.
#[derive(Debug, Clone, Default)]
pub struct UpState {
    /// Connected (or the child running) and initialized.
    pub up: bool,
    /// The child's pid.
    pub pid: Option<u32>,
    /// Restarts or reconnections after the first.
    pub restarts: u64,
    /// The connector's last failure and when.
    pub last_error: Option<(SystemTime, String)>,
    /// The protocol version agreed with the tool server, while connected.
    pub protocol_version: Option<String>,
}

/// How a route reaches its tool server. Cheap to clone.
#[derive(Clone)]
pub enum Upstream {
    /// A supervised child process.
    Stdio(Stdio),
    /// A Streamable HTTP server.
    Http(Http),
    /// A legacy HTTP+SSE or WebSocket server.
    Link(Link),
    /// Several replicas of a Streamable HTTP server, balanced.
    Balanced(Arc<Balanced>),
    /// A transport this build does not serve yet; the reason is given to callers.
    NotServed(String),
}

impl Upstream {
    /// The connector's state.
    pub fn state(&self) -> UpState {
        match self {
            Upstream::Stdio(stdio) => {
                let s = stdio.status();
                UpState {
                    up: s.phase == Phase::Ready,
                    pid: s.pid,
                    restarts: s.restarts,
                    last_error: s.last_error,
                    protocol_version: s.info.map(|i| i.protocol_version.clone()),
                }
            }
            Upstream::Http(http) => {
                let s = http.status();
                UpState {
                    up: s.connected,
                    pid: None,
                    restarts: u64::from(s.failures),
                    last_error: s.last_error,
                    protocol_version: s.info.map(|i| i.protocol_version.clone()),
                }
            }
            Upstream::Link(link) => {
                let s = link.status();
                UpState {
                    up: s.phase == Phase::Ready,
                    pid: None,
                    restarts: s.restarts,
                    last_error: s.last_error,
                    protocol_version: s.info.map(|i| i.protocol_version.clone()),
                }
            }
            Upstream::Balanced(balanced) => {
                let states: Vec<_> = balanced.replicas.iter().map(|r| r.http.status()).collect();
                UpState {
                    up: states.iter().any(|s| s.connected),
                    pid: None,
                    restarts: states.iter().map(|s| u64::from(s.failures)).sum(),
                    last_error: states
                        .iter()
                        .filter_map(|s| s.last_error.clone())
                        .max_by_key(|(at, _)| *at),
                    protocol_version: states
                        .iter()
                        .find_map(|s| s.info.as_ref().map(|i| i.protocol_version.clone())),
                }
            }
            Upstream::NotServed(why) => UpState {
                last_error: Some((SystemTime::now(), why.clone())),
                ..UpState::default()
            },
        }
    }

    /// Makes a call, with no policy: see [`RouteRt::call`].
    pub async fn call(&self, call: Call) -> Result<Reply, UpstreamError> {
        match self {
            Upstream::Stdio(stdio) => stdio.call(call).await,
            Upstream::Http(http) => http.call(call).await,
            Upstream::Link(link) => link.call(call).await,
            Upstream::Balanced(balanced) => balanced.call(call).await,
            Upstream::NotServed(why) => Err(UpstreamError::Unavailable {
                reason: why.clone(),
                retry_in: None,
            }),
        }
    }
}

impl RouteRt {
    /// Makes a call through the route's policies.
    pub async fn call(&self, request: Request) -> Result<Reply, UpstreamError> {
        self.policy.call(request).await
    }

    /// The protocol era the tool server speaks, once known.
    pub fn upstream_info_era(&self) -> Option<mcp_edge_protocol::version::Era> {
        self.info().map(|i| i.era)
    }

    /// The hard deadline of a call starting now: the furthest progress may move it.
    pub fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.max_timeout
    }

    /// What the tool server said about itself, while it is up.
    pub fn info(&self) -> Option<Arc<ServerInfo>> {
        match &self.upstream {
            Upstream::Stdio(stdio) => stdio.status().info,
            Upstream::Http(http) => http.status().info,
            Upstream::Link(link) => link.status().info,
            Upstream::Balanced(balanced) => balanced.info(),
            Upstream::NotServed(_) => None,
        }
    }

    /// Whether the tool server offers a capability (`tools`, `resources`, `prompts`, …).
    /// Unknown while it is down: assumed yes, so its calls fail with a clear error.
    pub fn offers(&self, capability: &str) -> bool {
        self.info()
            .is_none_or(|info| info.has_capability(capability))
    }

    /// Waits for the route's first start attempt (see [`Stdio::first_attempt`]).
    pub async fn first_attempt(&self, deadline: tokio::time::Instant) {
        match &self.upstream {
            Upstream::Stdio(stdio) => stdio.first_attempt(deadline).await,
            Upstream::Http(http) => http.first_attempt(deadline).await,
            Upstream::Link(link) => link.first_attempt(deadline).await,
            Upstream::Balanced(balanced) => balanced.first_attempt(deadline).await,
            Upstream::NotServed(_) => {}
        }
    }

    /// Sends a notification to the tool server.
    pub async fn notify(&self, method: &str, params: Option<&serde_json::value::RawValue>) {
        match &self.upstream {
            Upstream::Stdio(stdio) => stdio.notify(method, params).await,
            Upstream::Http(http) => http.notify(method, params).await,
            Upstream::Link(link) => link.notify(method, params).await,
            Upstream::Balanced(balanced) => balanced.notify(method, params).await,
            Upstream::NotServed(_) => {}
        }
    }

    /// Answers a request the tool server made.
    pub async fn respond(&self, id: &Id, reply: Reply) {
        match &self.upstream {
            Upstream::Stdio(stdio) => stdio.respond(id, reply).await,
            Upstream::Http(http) => http.respond(id, reply).await,
            Upstream::Link(link) => link.respond(id, reply).await,
            Upstream::Balanced(balanced) => balanced.respond(id, reply).await,
            Upstream::NotServed(_) => {}
        }
    }

    /// Stops the tool server (or ends the upstream session).
    pub async fn shutdown(&self) {
        match &self.upstream {
            Upstream::Stdio(stdio) => stdio.shutdown().await,
            Upstream::Http(http) => http.shutdown().await,
            Upstream::Link(link) => link.shutdown().await,
            Upstream::Balanced(balanced) => balanced.shutdown().await,
            Upstream::NotServed(_) => {}
        }
    }
}
